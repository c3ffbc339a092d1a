package install

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// webhookProcess is the outrigger-webhook binary running as a process with the env of the chart's
// installed Deployment.
type webhookProcess struct {
	*cluster.Component
	// URL is where the API server reaches it: https://127.0.0.1:PORT/inject.
	URL      string
	addr     string // 127.0.0.1:PORT of the webhook's TLS port
	readyURL string
	// volumes maps the pod's volume names to their local directories.
	volumes map[string]string
}

// startWebhook runs the webhook as the pod of Deployment ns/deployment would, mapped onto this machine:
//   - the container's env, with the downward API's metadata.namespace resolved;
//   - its ConfigMap and Secret volumes written to local directories in the kubelet's layout (the env
//     paths under their mount points rewritten to those directories);
//   - its ServiceAccount, by a kubeconfig that impersonates it (RBAC decides as for the pod);
//   - loopback instead of the pod IP: LISTEN_HOST=127.0.0.1 and free ports;
//   - then extra (e.g. CERT_EXTRA_SANS) on top.
//
// It waits until /readyz answers 200.
func startWebhook(t *testing.T, ns, deployment, name string, extra map[string]string) *webhookProcess {
	t.Helper()
	ctx := context.Background()
	d, err := env.cluster.Client().AppsV1().Deployments(ns).Get(ctx, deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading the installed Deployment: %v", err)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("the webhook pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	dir := t.TempDir()
	mounts := map[string]string{} // mount path in the pod -> local directory
	volumes := map[string]string{}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			t.Fatalf("volume %s is mounted with subPath: the kubelet never updates it", m.Name)
		}
		local := filepath.Join(dir, m.Name)
		for _, v := range pod.Volumes {
			switch {
			case v.Name != m.Name:
			case v.ConfigMap != nil:
				configMapVolume(t, ns, v.ConfigMap.Name, local)
			case v.Secret != nil:
				secretVolume(t, ns, v.Secret.SecretName, local)
			default:
				t.Fatalf("volume %s: only ConfigMap and Secret volumes are mapped", v.Name)
			}
		}
		mounts[m.MountPath], volumes[m.Name] = local, local
	}
	var vars []string
	for _, e := range c.Env {
		value := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			value = ns
		case e.ValueFrom != nil:
			t.Fatalf("env %s: only the downward API's metadata.namespace is mapped", e.Name)
		}
		for mountPath, local := range mounts {
			if strings.HasPrefix(value, mountPath+"/") || value == mountPath {
				value = local + strings.TrimPrefix(value, mountPath)
			}
		}
		vars = append(vars, e.Name+"="+value)
	}
	ports := freePorts(t, 3)
	sa := "system:serviceaccount:" + ns + ":" + pod.ServiceAccountName
	vars = append(vars,
		"KUBECONFIG="+kubeconfigAs(t, sa),
		"LISTEN_HOST=127.0.0.1",
		"WEBHOOK_PORT="+strconv.Itoa(ports[0]),
		"HEALTH_PORT="+strconv.Itoa(ports[1]),
		"METRICS_PORT="+strconv.Itoa(ports[2]),
	)
	for k, v := range extra {
		vars = append(vars, k+"="+v)
	}
	w := &webhookProcess{
		URL:      fmt.Sprintf("https://127.0.0.1:%d/inject", ports[0]),
		addr:     fmt.Sprintf("127.0.0.1:%d", ports[0]),
		readyURL: fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]),
		volumes:  volumes,
		Component: &cluster.Component{
			Name: name, Path: env.webhook, Env: vars,
			LogPath: filepath.Join(env.cluster.Dir(), name+".log"),
		},
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	clustertest.Eventually(t, 60*time.Second, func() error {
		if !w.Running() {
			t.Fatalf("%s exited:\n%s", name, w.LogTail(30))
		}
		resp, err := http.Get(w.readyURL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s not ready: %s\n%s", name, resp.Status, w.LogTail(10))
		}
		return nil
	})
	return w
}

// servedCert is the certificate the process presents on its webhook port.
func (w *webhookProcess) servedCert(t *testing.T) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", w.addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // we only read the certificate
	if err != nil {
		t.Fatalf("dialing %s: %v", w.Name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// secretVolume mirrors Secret ns/name into dir as the kubelet would.
func secretVolume(t *testing.T, ns, name, dir string) {
	t.Helper()
	s, err := env.cluster.Client().CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading Secret %s/%s for the volume: %v", ns, name, err)
	}
	if err := cluster.WriteVolume(dir, s.Data); err != nil {
		t.Fatal(err)
	}
}

// pointAtProcess maps the chart's service reference to the process: the only change to the installed
// webhook configuration is clientConfig.service (<svc>.<ns>.svc:443/inject) → clientConfig.url (the
// process on loopback); the caBundle, selectors and policies stay as installed. In a cluster, the Service
// and kube-proxy do this mapping. It returns the undo, for before a `helm upgrade` (Helm puts the
// chart's service reference back, and a webhook cannot have both).
func pointAtProcess(t *testing.T, configName string, w *webhookProcess) (undo func()) {
	t.Helper()
	services := map[string]*admissionregistrationv1.ServiceReference{}
	updateClientConfig(t, configName, func(name string, cc *admissionregistrationv1.WebhookClientConfig) {
		if cc.Service == nil || cc.Service.Path == nil || *cc.Service.Path != "/inject" || cc.Service.Port == nil || *cc.Service.Port != 443 {
			t.Fatalf("webhook %s: clientConfig %+v, want the chart's service reference on 443 /inject", name, cc)
		}
		url := w.URL
		services[name], cc.Service, cc.URL = cc.Service, nil, &url
	})
	return func() {
		updateClientConfig(t, configName, func(name string, cc *admissionregistrationv1.WebhookClientConfig) {
			cc.Service, cc.URL = services[name], nil
		})
	}
}

// updateClientConfig changes every webhook's clientConfig (retrying on a conflict with the rotator, which
// updates the caBundle).
func updateClientConfig(t *testing.T, configName string, change func(webhook string, cc *admissionregistrationv1.WebhookClientConfig)) {
	t.Helper()
	ctx := context.Background()
	api := env.cluster.Client().AdmissionregistrationV1().MutatingWebhookConfigurations()
	clustertest.Eventually(t, 10*time.Second, func() error {
		cfg, err := api.Get(ctx, configName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range cfg.Webhooks {
			change(cfg.Webhooks[i].Name, &cfg.Webhooks[i].ClientConfig)
		}
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
		return err
	})
}

// waitInjecting waits until a dry-run pod asking for topz in ns comes back with it.
func waitInjecting(t *testing.T, ns string, w ...*webhookProcess) {
	t.Helper()
	clustertest.Eventually(t, 30*time.Second, func() error {
		pod, err := env.cluster.CreatePod(context.Background(), ns, cluster.AppPod("probe", map[string]string{"outrigger.dev/inject": "topz"}), true)
		if err != nil {
			return err
		}
		if got := cluster.NativeSidecars(pod); len(got) != 1 || got[0] != "topz" {
			var logs string
			for _, p := range w {
				logs += "\n--- " + p.Name + " ---\n" + p.LogTail(10)
			}
			return fmt.Errorf("probe pod got sidecars %v, want [topz]%s", got, logs)
		}
		return nil
	})
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// webhookConfig reads the installed MutatingWebhookConfiguration.
func webhookConfig(t *testing.T, name string) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	cfg, err := env.cluster.Client().AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// namespace creates ns (with labels) and its default ServiceAccount.
func namespace(t *testing.T, ns string, labels map[string]string) {
	t.Helper()
	clustertest.CreateNamespace(t, env.cluster, ns, labels, nil)
}
