package policy

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/outrigger-dev/outrigger/webhook/catalog"
	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/inject"
)

// container is CEL for entry i's container as inject's builder.add makes it: the template with the name,
// the image and pull policy, each set ENV parameter replacing the template's value or appended, ports and
// probes moved with their port parameters, the entry's volumes mounted, and the restart policy of the mode.
func (r *renderer) container(i int, e *catalog.Entry, mode string) string {
	c := e.Container.DeepCopy()
	c.Name = e.Name
	c.Image = r.cfg.Image(e)
	c.ImagePullPolicy = r.cfg.Images.PullPolicy
	if mode == config.ModeNative {
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
	} else {
		c.RestartPolicy = nil
	}
	tree := generic(c).(map[string]any)

	// Resources: both lists present (empty ones are dropped by the API server's decoding), so that the
	// patch can add a pod's resource annotations key by key (see resourceOps).
	res, _ := tree["resources"].(map[string]any)
	if res == nil {
		res = map[string]any{}
		tree["resources"] = res
	}
	for _, kind := range catalog.ResourceKinds {
		if _, ok := res[kind]; !ok {
			res[kind] = map[string]any{}
		}
	}

	// The UID: the app's when the sidecar signals its processes and the app containers' UIDs are set, one
	// and not root (inject's signalAsAppUID); variables.appUIDs has -1 for a UID that comes from an image.
	if sc, ok := tree["securityContext"].(map[string]any); ok && sc["runAsUser"] != nil {
		if signals := signalsApp(i, e); signals != "false" {
			sc["runAsUser"] = expr(fmt.Sprintf("(%s && variables.appUIDs.size() > 0 && variables.appUIDs.all(u, u > 0 && u == variables.appUIDs[0]) ? variables.appUIDs[0] : %d)",
				signals, int64(sc["runAsUser"].(float64))))
		}
	}

	// ENV: setEnv replaces a template entry in place, else appends, in parameter order.
	var env []string
	var items []string
	templateEnv := map[string]bool{}
	for _, item := range c.Env {
		templateEnv[item.Name] = true
		lit := literal(generic(item))
		for j, p := range e.Parameters {
			if p.Env == item.Name {
				lit = fmt.Sprintf(`(%s != "" ? {"name": dyn(%s), "value": dyn(%s)} : %s)`, paramVar(i, j), str(p.Env), envLiteral(paramVar(i, j)), lit)
				break
			}
		}
		items = append(items, lit)
	}
	if len(items) > 0 {
		env = append(env, "["+strings.Join(items, ", ")+"]")
	}
	for j, p := range e.Parameters {
		if p.Env == "" || templateEnv[p.Env] {
			continue
		}
		env = append(env, fmt.Sprintf(`(%s != "" ? [{"name": dyn(%s), "value": dyn(%s)}] : [])`, paramVar(i, j), str(p.Env), envLiteral(paramVar(i, j))))
	}
	if len(env) > 0 {
		tree["env"] = expr("dyn(" + concat(env) + ")")
	}

	// Ports and probes follow their port parameters (movePort).
	for j, p := range e.Parameters {
		if p.Env == "" || p.Type != "port" && p.Type != "host-port" {
			continue
		}
		from := inject.PortOf(p.Default)
		if from == 0 {
			continue
		}
		moved := expr(fmt.Sprintf("(variables.%s != 0 ? variables.%s : %d)", sidecarVar(i, fmt.Sprintf("port%d", j)), sidecarVar(i, fmt.Sprintf("port%d", j)), from))
		if ports, ok := tree["ports"].([]any); ok {
			for _, port := range ports {
				if m := port.(map[string]any); m["containerPort"] == float64(from) {
					m["containerPort"] = moved
				}
			}
		}
		for _, probe := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
			pr, ok := tree[probe].(map[string]any)
			if !ok {
				continue
			}
			for _, handler := range []string{"httpGet", "tcpSocket"} {
				if h, ok := pr[handler].(map[string]any); ok && h["port"] == float64(from) {
					h["port"] = moved
				}
			}
		}
	}

	// The entry's volumes, mounted in the sidecar (addVolume), each when its parameter is set.
	var mounts []string
	if len(c.VolumeMounts) > 0 {
		mounts = append(mounts, literal(generic(c.VolumeMounts)))
	}
	for _, v := range e.Pod.Volumes {
		if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name }) {
			continue
		}
		m := literal(generic(corev1.VolumeMount{Name: v.Name, MountPath: v.MountPath, ReadOnly: v.ReadOnly}))
		mounts = append(mounts, fmt.Sprintf("(%s ? [%s] : [])", volumeWhen(i, e, v), m))
	}
	if len(mounts) > 0 {
		tree["volumeMounts"] = expr("dyn(" + concat(mounts) + ")")
	}
	return literal(tree)
}

// appUIDVariable is CEL for the UID of each app container (not one of the catalog's sidecars, as in
// inject's signalAsAppUID): its runAsUser, else the pod's, else -1 (its image's, unknown here).
func (r *renderer) appUIDVariable() [2]string {
	names := make([]string, 0, len(r.cfg.Catalog.Names()))
	for _, n := range r.cfg.Catalog.Names() {
		names = append(names, str(n))
	}
	return [2]string{"appUIDs", fmt.Sprintf("object.spec.containers.filter(c, !(c.name in [%s])).map(c, has(c.securityContext) && has(c.securityContext.runAsUser) ? c.securityContext.runAsUser : (has(object.spec.securityContext) && has(object.spec.securityContext.runAsUser) ? object.spec.securityContext.runAsUser : -1))",
		strings.Join(names, ", "))}
}

// portVariables are each port parameter's port (inject.PortOf of its value), or 0.
func (r *renderer) portVariables() [][2]string {
	var vars [][2]string
	for i, e := range r.entries {
		for j, p := range e.Parameters {
			if p.Env == "" || p.Type != "port" && p.Type != "host-port" || inject.PortOf(p.Default) == 0 {
				continue
			}
			v := paramVar(i, j)
			var x string
			if p.Type == "port" {
				x = fmt.Sprintf(`%s.matches("^[0-9]{1,5}$") && int(%s) >= 1 && int(%s) <= 65535 ? int(%s) : 0`, v, v, v, v)
			} else {
				port := fmt.Sprintf(`%s.substring(%s.lastIndexOf(":") + 1)`, v, v)
				x = fmt.Sprintf(`%s.matches(":[0-9]{1,5}$") && int(%s) >= 1 && int(%s) <= 65535 ? int(%s) : 0`, v, port, port, port)
			}
			vars = append(vars, [2]string{sidecarVar(i, fmt.Sprintf("port%d", j)), x})
		}
	}
	return vars
}

// resourcePair is one resource's effective request and limit of entry i, as CEL.
type resourcePair struct {
	resource                               string
	request, limit, requestFrom, limitFrom string
}

// ok is CEL: the limit is not below the request (true when either is unset or not a quantity: the value
// checks report those).
func (lr resourcePair) ok() string {
	return fmt.Sprintf(`%s == "" || %s == "" || !isQuantity(%s) || !isQuantity(%s) || !quantity(%s).isLessThan(quantity(%s))`,
		lr.request, lr.limit, lr.request, lr.limit, lr.limit, lr.request)
}

// resourcePairs are entry i's resources with both a request and a limit parameter (every resource).
func resourcePairs(i int, e *catalog.Entry) []resourcePair {
	type side struct{ value, from string }
	sides := map[string]side{}
	for j, p := range e.Parameters {
		kind, r, ok := catalog.ParseResourceSets(p.Sets)
		if !ok {
			continue
		}
		def := "the catalog's default"
		if p.DefaultSource != "" {
			def = p.DefaultSource
		}
		v := paramVar(i, j)
		sides[kind+"/"+string(r)] = side{
			value: fmt.Sprintf(`(%s != "" ? %s : %s)`, v, v, str(p.Default)),
			from:  fmt.Sprintf(`(%s != "" ? %s : %s)`, v, str("annotation "+annotationKey(e, p)), str(def)),
		}
	}
	var out []resourcePair
	for _, r := range catalog.Resources {
		req, lim := sides["requests/"+string(r)], sides["limits/"+string(r)]
		out = append(out, resourcePair{resource: string(r), request: req.value, limit: lim.value, requestFrom: req.from, limitFrom: lim.from})
	}
	return out
}

// resourceOps are the JSONPatch operations that put a pod's resource annotations into the sidecars just
// added (their index is their place in the new init containers, or after the app containers).
func (r *renderer) resourceOps() string {
	var ops []string
	for i, e := range r.entries {
		base := fmt.Sprintf(`(variables.native ? "/spec/initContainers/" + string(variables.initNames.indexOf(%s)) : "/spec/containers/" + string(object.spec.containers.size() + variables.pending.indexOf(%s)))`, str(e.Name), str(e.Name))
		for j, p := range e.Parameters {
			kind, res, ok := catalog.ParseResourceSets(p.Sets)
			if !ok {
				continue
			}
			v := paramVar(i, j)
			ops = append(ops, fmt.Sprintf(`(variables.%s && %s != "" ? [JSONPatch{op: "add", path: %s + "/resources/%s/%s", value: %s}] : [])`,
				sidecarVar(i, "pending"), v, base, kind, res, v))
		}
	}
	return concat(ops)
}

// envLiteral is inject.EnvLiteral in CEL: every $ doubled, so that the kubelet's $(VAR) expansion gives
// the sidecar the annotation's text.
func envLiteral(v string) string { return v + `.replace("$", "$$")` }
