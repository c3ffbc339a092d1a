package inject

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/outrigger-dev/outrigger/internal/appprobe"
	"github.com/outrigger-dev/outrigger/webhook/catalog"
)

// pointAppProbes points the app containers' probes on the app's port at sidecar c, which answers them on
// its own port (catalog.AppProbes): the kubelet's probes dial the pod IP, and an app listening on
// 127.0.0.1 only (the legacy app https-proxy fronts) would fail them and be restarted forever. c is told
// what each probe asked in its env; a probe with a host (it does not dial the pod) or the HTTPS scheme (the
// proxy speaks plain HTTP to the app) is left alone, as are probes on other ports.
func (b *builder) pointAppProbes(e *catalog.Entry, c *corev1.Container, values map[string]string) {
	if !e.AppProbesOn(values) {
		return
	}
	ap := e.Pod.AppProbes
	appPort, via := envPort(e, ap.Port, values), envPort(e, ap.Via, values)
	if appPort == 0 || via == 0 {
		return
	}
	set := appprobe.Set{}
	for i := range b.pod.Spec.Containers {
		app := &b.pod.Spec.Containers[i]
		if _, sidecar := b.cfg.Catalog.Get(app.Name); sidecar {
			continue // one of Outrigger's, from an earlier invocation in containers mode
		}
		for _, probe := range []struct {
			kind string
			p    **corev1.Probe
		}{{"startupz", &app.StartupProbe}, {"readyz", &app.ReadinessProbe}, {"livez", &app.LivenessProbe}} {
			p := *probe.p
			if p == nil {
				continue
			}
			path := appprobe.StatusPath(app.Name, probe.kind)
			timeout := appprobe.Duration(time.Duration(max(p.TimeoutSeconds, 1)) * time.Second) // the kubelet's default is 1 s
			switch {
			case p.HTTPGet != nil && p.HTTPGet.Host == "" && p.HTTPGet.Scheme != corev1.URISchemeHTTPS && portNumber(app, p.HTTPGet.Port) == appPort:
				asked := p.HTTPGet.Path
				if asked == "" {
					asked = "/"
				}
				set[path] = appprobe.Probe{Path: asked, Timeout: timeout}
				rewritten := p.DeepCopy()
				rewritten.HTTPGet.Path, rewritten.HTTPGet.Port, rewritten.HTTPGet.Scheme = path, intstr.FromInt32(int32(via)), corev1.URISchemeHTTP
				*probe.p = rewritten
			case p.TCPSocket != nil && p.TCPSocket.Host == "" && portNumber(app, p.TCPSocket.Port) == appPort:
				set[path] = appprobe.Probe{TCP: true, Timeout: timeout}
				rewritten := p.DeepCopy()
				rewritten.TCPSocket = nil
				rewritten.HTTPGet = &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(int32(via)), Scheme: corev1.URISchemeHTTP}
				*probe.p = rewritten
			}
		}
	}
	if len(set) > 0 {
		setEnv(c, ap.Env, EnvLiteral(appprobe.Format(set)))
	}
}

// envPort is the port an ENV parameter of e holds: the pod's value, else the catalog's default.
func envPort(e *catalog.Entry, env string, values map[string]string) int {
	for _, p := range e.Parameters {
		if p.Env == env {
			if v := values[e.ParamName(p)]; v != "" {
				return PortOf(v)
			}
			return PortOf(p.Default)
		}
	}
	return 0
}

// portNumber resolves a probe's port, a number or the name of one of the container's ports (0: neither).
func portNumber(c *corev1.Container, port intstr.IntOrString) int {
	if port.Type == intstr.Int {
		return port.IntValue()
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort)
		}
	}
	return 0
}
