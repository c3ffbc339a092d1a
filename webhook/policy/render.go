// Package policy renders the injector's catalog as Kubernetes admission policies, so that a cluster can
// inject Outrigger's sidecars with no webhook at all: a MutatingAdmissionPolicy that adds what the webhook
// would add (containers, volumes, mounts, the shared PID namespace, the status annotation), and a
// ValidatingAdmissionPolicy that refuses what the webhook would deny (unknown sidecars and parameters, bad
// values, missing required parameters, mount conflicts).
//
// The policies are CEL written from the same catalog entries and config the webhook reads, following
// inject's rules step by step (builder.add, addVolume, movePort, setEnv, commit); e2e/policy proves on a real
// API server that pods through them equal the webhook's. What CEL cannot do is said, never dropped: an entry
// it cannot express is refused with the reason (Result.Refused), and what differs for every pod is listed
// (Result.Differences).
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

// API versions of the admission policy objects.
const (
	// V1beta1 is Kubernetes 1.34 and 1.35's, behind the MutatingAdmissionPolicy feature gate and
	// --runtime-config=admissionregistration.k8s.io/v1beta1=true.
	V1beta1 = "admissionregistration.k8s.io/v1beta1"
	// V1 is Kubernetes 1.36's.
	V1 = "admissionregistration.k8s.io/v1"
)

// Names of the rendered objects (cluster-scoped).
const (
	MutatingName   = "outrigger-inject"
	ValidatingName = "outrigger-validate"
)

// Options for Render.
type Options struct {
	// APIVersion is V1beta1 (default) or V1.
	APIVersion string
	// Sidecars limits the policy to these entries (default: every entry of the catalog).
	Sidecars []string
}

// Refusal is an entry the policy does not inject, and why.
type Refusal struct {
	Sidecar string `json:"sidecar"`
	Reason  string `json:"reason"`
}

// Result is what Render made.
type Result struct {
	// Objects are the four objects to apply, in order: the two policies and their bindings.
	Objects []map[string]any
	// Rendered are the sidecars the mutating policy injects.
	Rendered []string
	// Refused are the entries it does not; a pod asking for one is denied with the reason.
	Refused []Refusal
	// Differences say how every pod through the policies differs from the webhook's result.
	Differences []string
}

// maxHashedSidecars bounds the catalog-hash table (one entry per subset of the rendered sidecars).
const maxHashedSidecars = 8

// Render writes the policies for cfg.
func Render(cfg *config.Config, opts Options) (*Result, error) {
	if opts.APIVersion == "" {
		opts.APIVersion = V1beta1
	}
	if opts.APIVersion != V1beta1 && opts.APIVersion != V1 {
		return nil, fmt.Errorf("api version %q: want %s or %s", opts.APIVersion, V1beta1, V1)
	}
	names := opts.Sidecars
	if len(names) == 0 {
		names = cfg.Catalog.Names()
	}
	res := &Result{}
	var entries []*catalog.Entry
	volumeOwner := map[string]string{}
	for _, name := range names {
		e, ok := cfg.Catalog.Get(name)
		if !ok {
			return nil, fmt.Errorf("sidecar %q: not in the catalog; accepted: %s", name, strings.Join(cfg.Catalog.Names(), ", "))
		}
		if reason := refusal(e, volumeOwner); reason != "" {
			res.Refused = append(res.Refused, Refusal{Sidecar: name, Reason: reason})
			continue
		}
		for _, v := range e.Pod.Volumes {
			volumeOwner[v.Name] = e.Name
		}
		entries = append(entries, e)
		res.Rendered = append(res.Rendered, name)
	}
	for _, d := range cfg.Defaults {
		if !slices.Contains(res.Rendered, d) {
			return nil, fmt.Errorf("defaults: %s is a cluster-wide default but the policy cannot inject it (%s): every pod would be denied; render it, or keep the webhook", d, reasonFor(res.Refused, d))
		}
	}
	res.Differences = []string{
		"no admission warnings: the webhook warns (hostNetwork pods skipped, parameters for a sidecar the pod does not get, port conflicts, hostPID when allowed, a sidecar that signals an app whose UID it cannot take); the policy adds or denies silently",
		"a hostPID pod submitted with a PID-sharing sidecar (topz) already in it is denied by the policy, which cannot tell a sidecar it added from one that was there; the webhook leaves such a pod as it is",
		"outrigger.dev/status has no per-sidecar hashes (they hash the rendered container, which CEL cannot compute); outrigger status compares such pods field by field and by catalog hash",
		"a pod submitted with an outrigger.dev/status of its own and sidecars still to add gets a new status (the webhook merges the old one's sidecar list); a sidecar the status names but the pod no longer asks for is ordered as another injector's init container",
		"the app's probes on https-proxy's PROXY_PORT are not pointed at the proxy's status port (the webhook does it, for an app listening on 127.0.0.1 only, which the kubelet's probes never reach; CEL cannot rewrite the app's containers): such an app's probes fail as they would without Outrigger",
		"denials name the annotation, the value and what is accepted, one validation at a time (the webhook lists every problem at once); a refused repository URL is not shown (it may hold a password, which the webhook shows hidden and CEL cannot hide)",
	}
	if len(entries) > maxHashedSidecars {
		res.Differences = append(res.Differences, fmt.Sprintf("the status's catalogHash is left empty: more than %d sidecars rendered (the table has one hash per subset)", maxHashedSidecars))
	}
	r := &renderer{cfg: cfg, entries: entries, refused: res.Refused}
	res.Objects = r.objects(opts.APIVersion)
	return res, nil
}

func reasonFor(refused []Refusal, name string) string {
	for _, r := range refused {
		if r.Sidecar == name {
			return r.Reason
		}
	}
	return "not rendered"
}

// refusal says why e cannot be expressed, or "".
func refusal(e *catalog.Entry, volumeOwner map[string]string) string {
	for _, v := range e.Pod.Volumes {
		if owner, ok := volumeOwner[v.Name]; ok {
			return fmt.Sprintf("its volume %s is also %s's: the webhook adds it once for both, the policy cannot share a volume between sidecars", v.Name, owner)
		}
	}
	for _, p := range e.Parameters {
		if _, ok := valueCheck(p); !ok {
			return fmt.Sprintf("parameter %s has type %q, which the policy cannot check", e.ParamName(p), p.Type)
		}
	}
	return ""
}

// renderer holds what every expression refers to.
type renderer struct {
	cfg     *config.Config
	entries []*catalog.Entry
	refused []Refusal
}

// sidecarVar names the CEL variables of entry i.
func sidecarVar(i int, what string) string { return fmt.Sprintf("s%d_%s", i, what) }

// paramVar is the CEL variable holding parameter j of entry i: the annotation's value, or "".
func paramVar(i, j int) string { return "variables." + sidecarVar(i, fmt.Sprintf("p%d", j)) }

func annotationKey(e *catalog.Entry, p catalog.Parameter) string {
	return e.AnnotationPrefix() + e.ParamName(p)
}

// choose is CEL that picks, for the sidecar name in nameExpr, the expression of its entry (def when none).
func (r *renderer) choose(nameExpr string, of func(i int) string, def string) string {
	out := def
	for i := len(r.entries) - 1; i >= 0; i-- {
		out = fmt.Sprintf("(%s == %s ? %s : %s)", nameExpr, str(r.entries[i].Name), of(i), out)
	}
	return out
}

// present is CEL: the pod already has a container of that name (injected before, or the user's own).
func present(name string) string {
	return fmt.Sprintf("((has(object.spec.initContainers) && object.spec.initContainers.exists(c, c.name == %s)) || object.spec.containers.exists(c, c.name == %s))", str(name), str(name))
}

// commonVariables resolve the request as inject.resolveRequest does: the pod's outrigger.dev/inject list,
// else the namespace's, else the cluster defaults, whole; "true" or "" defers; "none"/"false" opts out.
func (r *renderer) commonVariables(known []string) [][2]string {
	podList := fmt.Sprintf(`%s in variables.ann ? variables.ann[%s].trim() : "true"`, str(inject.AnnotationInject), str(inject.AnnotationInject))
	nsList := fmt.Sprintf(`%s in variables.nsann ? variables.nsann[%s].trim() : "true"`, str(inject.AnnotationInject), str(inject.AnnotationInject))
	return [][2]string{
		{"ann", "has(object.metadata.annotations) ? object.metadata.annotations : {}"},
		{"nsann", "has(namespaceObject.metadata.annotations) ? namespaceObject.metadata.annotations : {}"},
		{"podList", podList},
		{"nsList", nsList},
		{"list", fmt.Sprintf(`variables.podList.lowerAscii() in ["true", ""] ? (variables.nsList.lowerAscii() in ["true", ""] ? %s : variables.nsList) : variables.podList`, str(strings.Join(r.cfg.Defaults, ",")))},
		{"optOut", `variables.list.lowerAscii() in ["none", "false"]`},
		{"raw", "variables.optOut ? [] : variables.list.split(\",\").map(s, s.trim()).filter(s, s in " + strList(known) + ")"},
		{"requested", "variables.raw.transformList(i, s, variables.raw.indexOf(s) == i, s)"},
		{"native", fmt.Sprintf(`(%s in variables.ann ? variables.ann[%s] : %s) == %s`, str(inject.AnnotationSidecarMode), str(inject.AnnotationSidecarMode), str(r.cfg.SidecarMode), str(config.ModeNative))},
	}
}

// paramVariables are each rendered entry's parameter values.
func (r *renderer) paramVariables() [][2]string {
	var vars [][2]string
	for i, e := range r.entries {
		for j, p := range e.Parameters {
			k := str(annotationKey(e, p))
			vars = append(vars, [2]string{sidecarVar(i, fmt.Sprintf("p%d", j)), fmt.Sprintf("%s in variables.ann ? variables.ann[%s] : \"\"", k, k)})
		}
	}
	return vars
}

// when is CEL: parameter name of e is set (non-empty), or "true" when name is ""; "!name": it is not set
// (catalog.Volume's When).
func when(i int, e *catalog.Entry, name string) string {
	if name == "" {
		return "true"
	}
	if unset, ok := strings.CutPrefix(name, "!"); ok {
		return "!(" + when(i, e, unset) + ")"
	}
	for j, p := range e.Parameters {
		if e.ParamName(p) == name {
			return paramVar(i, j) + ` != ""`
		}
	}
	return "false"
}

// volumeWhen is CEL: volume v of entry i is added (its When, and a named service account for a projected
// token: catalog.Volume.NeedsServiceAccount).
func volumeWhen(i int, e *catalog.Entry, v catalog.Volume) string {
	w := when(i, e, v.When)
	if v.NeedsServiceAccount() {
		w = "(" + w + `) && has(object.spec.serviceAccountName) && object.spec.serviceAccountName != ""`
	}
	return w
}

// sharesPID is CEL for e.SharesProcessNamespace.
func sharesPID(i int, e *catalog.Entry) string {
	return active(i, e, e.Pod.ShareProcessNamespaceWhen)
}

// signalsApp is CEL for e.SignalsApp.
func signalsApp(i int, e *catalog.Entry) string {
	return active(i, e, e.Pod.SignalsAppWhen)
}

// active is CEL for a pod need of e that is "always" or "when <parameter> is set" (catalog's when).
func active(i int, e *catalog.Entry, need func() (bool, string, error)) string {
	always, param, _ := need()
	switch {
	case always:
		return "true"
	case param == "":
		return "false"
	}
	for j, p := range e.Parameters {
		if e.ParamName(p) == param {
			k := str(annotationKey(e, p))
			return fmt.Sprintf(`(%s in variables.ann ? %s != "" : %t)`, k, paramVar(i, j), p.Default != "")
		}
	}
	return "false"
}

// appMountPath is CEL for where volume v of entry i mounts in the app containers ("" when it does not),
// and the trimmed comparison form.
func appMountPath(i int, e *catalog.Entry, v catalog.Volume) (path string, ok bool) {
	path = str(v.AppMountPath)
	ok = v.AppMountPath != ""
	for j, p := range e.Parameters {
		if vol, field, _ := catalog.ParseSets(p.Sets); vol == v.Name && field == "appMountPath" {
			path = fmt.Sprintf(`(%s != "" ? %s : %s)`, paramVar(i, j), paramVar(i, j), path)
			ok = true
		}
	}
	return path, ok
}

// trimSlash is CEL for strings.TrimSuffix(s, "/").
func trimSlash(s string) string {
	return fmt.Sprintf(`(%s.endsWith("/") ? %s.substring(0, %s.size() - 1) : %s)`, s, s, s, s)
}

// conflict is CEL: container c mounts another volume at the path where v would go (inject.mountAt).
func conflict(c, volume, path string) string {
	return fmt.Sprintf(`(has(%s.volumeMounts) && %s.volumeMounts.exists(m, m.name != %s && %s == %s))`, c, c, str(volume), trimSlash("m.mountPath"), trimSlash(path))
}

// appContainer is CEL: container c gets volume v of entry i in the app (addVolume's last loop): it is not
// named as a catalog entry, does not mount v already, and is listed by the entry's appContainers parameter
// when the pod sets one.
func (r *renderer) appContainer(i int, e *catalog.Entry, v catalog.Volume, c string) string {
	out := fmt.Sprintf(`!(%s.name in %s) && !(has(%s.volumeMounts) && %s.volumeMounts.exists(m, m.name == %s))`, c, strList(r.cfg.Catalog.Names()), c, c, str(v.Name))
	if only := appOnly(i, e, v); only != "" {
		out += fmt.Sprintf(` && (%s == "" || %s.split(",").map(s, s.trim()).exists(n, n == %s.name))`, only, only, c)
	}
	return out
}

// appOnly is the CEL variable of entry i's appContainers parameter for volume v, or "" when it has none.
func appOnly(i int, e *catalog.Entry, v catalog.Volume) string {
	for j, p := range e.Parameters {
		if vol, field, _ := catalog.ParseSets(p.Sets); vol == v.Name && field == "appContainers" {
			return paramVar(i, j)
		}
	}
	return ""
}

// listedApps are CEL for an appContainers value: the names it lists, and those that are no app container
// of the pod.
func (r *renderer) listedApps(only string) (names, unknown string) {
	names = fmt.Sprintf(`%s.split(",").map(s, s.trim()).filter(s, s != "")`, only)
	unknown = fmt.Sprintf(`%s.filter(n, !object.spec.containers.exists(c, c.name == n && !(c.name in %s)))`, names, strList(r.cfg.Catalog.Names()))
	return names, unknown
}

// volumeSource is the pod volume v of entry i as CEL, its source names from parameters (addVolume).
func volumeSource(i int, e *catalog.Entry, v catalog.Volume) string {
	vol := corev1.Volume{Name: v.Name, VolumeSource: *v.VolumeSource.DeepCopy()}
	tree := generic(vol).(map[string]any)
	for j, p := range e.Parameters {
		volName, field, _ := catalog.ParseSets(p.Sets)
		if volName != v.Name {
			continue
		}
		switch {
		case field == "secretName" && vol.Secret != nil:
			secret := tree["secret"].(map[string]any)
			secret["secretName"] = expr(fmt.Sprintf(`(%s != "" ? %s : %s)`, paramVar(i, j), paramVar(i, j), str(vol.Secret.SecretName)))
		case field == "configMapName" && vol.ConfigMap != nil:
			cm := tree["configMap"].(map[string]any)
			cm["name"] = expr(fmt.Sprintf(`(%s != "" ? %s : %s)`, paramVar(i, j), paramVar(i, j), str(vol.ConfigMap.Name)))
		case field == "sizeLimit" && vol.EmptyDir != nil && vol.EmptyDir.SizeLimit != nil:
			// The catalog's own limit when the pod sets none (a limit the catalog lacks could not be left out).
			ed := tree["emptyDir"].(map[string]any)
			ed["sizeLimit"] = expr(fmt.Sprintf(`(%s != "" ? %s : %s)`, paramVar(i, j), paramVar(i, j), str(vol.EmptyDir.SizeLimit.String())))
		}
	}
	return literal(tree)
}
