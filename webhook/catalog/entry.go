package catalog

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// Entry is one sidecar of the catalog.
type Entry struct {
	// Name is the sidecar's name in the outrigger.dev/inject annotation and its annotation prefix
	// (<name>.outrigger.dev/<parameter>). It is also the injected container's name.
	Name string `json:"name"`
	// Description is one line for `outrigger sidecars`.
	Description string `json:"description"`
	// Image is the image reference. For a built-in entry it is just the image's name, and the injector's
	// images.registry and images.tag complete it; an entry with a '/' or ':' is used as it is.
	Image string `json:"image"`
	// EnvPrefix is the sidecar's own ENV prefix (e.g. GITSYNC_), dropped from the annotation names.
	EnvPrefix string `json:"envPrefix,omitempty"`
	// Container is the container template: ports, probes, resources, securityContext, args, base env.
	// Name and Image are filled in by the injector.
	Container corev1.Container `json:"container"`
	// Parameters are what a pod may set with <name>.outrigger.dev/<parameter> annotations.
	Parameters []Parameter `json:"parameters,omitempty"`
	// RequireOneOf lists groups of parameter names of which at least one must be set, e.g.
	// [[configmap, source-dir]]: config-sync needs either a ConfigMap or a source directory.
	RequireOneOf [][]string `json:"requireOneOf,omitempty"`
	// Pod is what the sidecar needs from the pod.
	Pod PodNeeds `json:"pod,omitempty"`
	// Order places the native sidecar among the pod's init containers: "first" (default: before the app's
	// own init containers and other injectors', which may use it) or "last" (after them: for a sidecar
	// that needs what they prepare, such as a certificate another injector's init container writes). The
	// config file's order overrides it. Containers mode appends sidecars after the app in any case.
	Order string `json:"order,omitempty"`
}

// Orders are the accepted values of Entry.Order.
const (
	OrderFirst = "first"
	OrderLast  = "last"
)

// Last reports whether e goes after the other init containers.
func (e *Entry) Last() bool { return e.Order == OrderLast }

// Parameter is one annotation a pod may set for a sidecar.
type Parameter struct {
	// Name is the annotation's parameter name. For an ENV parameter it is derived from Env (lower kebab
	// case without EnvPrefix) when empty; a non-ENV parameter must name itself.
	Name string `json:"name,omitempty"`
	// Env is the sidecar's ENV variable this parameter sets. Empty for a pod-level parameter (see Sets).
	Env string `json:"env,omitempty"`
	// Sets names the pod-level setting a non-ENV parameter controls: "volumes.<volume>.secretName",
	// "volumes.<volume>.configMapName", "volumes.<volume>.appMountPath", "volumes.<volume>.appContainers"
	// (a list of the app containers that get the volume; every app container when unset), or
	// "volumes.<volume>.sizeLimit" (an emptyDir's size limit, a quantity).
	Sets string `json:"sets,omitempty"`
	// Default is the value the sidecar uses when the parameter is not set (documentation, and for an ENV
	// parameter the binary's own default: a test keeps them equal).
	Default string `json:"default,omitempty"`
	// Type says which values are accepted (see ParameterTypes).
	Type string `json:"type"`
	// Values are the accepted values of an enum, or the only signals a signal accepts (SIGHUP, ...).
	Values []string `json:"values,omitempty"`
	// Min and Max bound an int, a duration (as durations) or a size (as sizes, 16Mi).
	Min string `json:"min,omitempty"`
	Max string `json:"max,omitempty"`
	// Required parameters must be set by every pod that asks for the sidecar.
	Required bool `json:"required,omitempty"`
	// Probed marks a host-port listen address that the kubelet's probes reach: a loopback host is refused,
	// since the probes come from outside the pod's loopback and would fail until the container restarts.
	Probed bool `json:"probed,omitempty"`
	// Injected marks an ENV parameter the injector computes from the pod (PodNeeds.AppProbes' env): no
	// annotation may set it, so what the sidecar is told always matches what the injector did.
	Injected bool `json:"injected,omitempty"`
	// Doc is one line for `outrigger sidecars` and denial messages.
	Doc string `json:"doc"`
	// DefaultSource says where Default comes from when not the catalog: the config file's resources
	// ("config resources.topz.requests.cpu"); set by Entry.SetResources, not written in a catalog file.
	DefaultSource string `json:"-"`
}

// PodNeeds is what a sidecar needs from the pod it is injected into.
type PodNeeds struct {
	// ShareProcessNamespace sets spec.shareProcessNamespace: "always", or "when <parameter> is set".
	ShareProcessNamespace string `json:"shareProcessNamespace,omitempty"`
	// SignalsApp says the sidecar sends signals to the app's processes ("always", or "when <parameter> is
	// set"). Without CAP_KILL, which Pod Security "restricted" forbids, a process may signal only
	// processes of its own UID, so the webhook warns when the app runs as another.
	SignalsApp string `json:"signalsApp,omitempty"`
	// Volumes are added to the pod (unless a volume of that name is already there) and mounted.
	Volumes []Volume `json:"volumes,omitempty"`
	// AppProbes says the sidecar answers the app's probes for it (https-proxy, for an app that listens on
	// 127.0.0.1 only, which the kubelet's probes, dialling the pod IP, never reach).
	AppProbes *AppProbes `json:"appProbes,omitempty"`
}

// AppProbes: each app container's httpGet or tcpSocket probe on the Port parameter's port (not one with a
// host, nor HTTPS) is pointed at the sidecar's Via port, at appprobe.StatusPath(container, kind), and the
// Env parameter gets what each probe asked (appprobe.Format), unless the bool parameter that "sets:
// appProbes" is "false".
type AppProbes struct {
	// Port is the ENV parameter (type port) holding the app's port.
	Port string `json:"port"`
	// Via is the ENV parameter (type port) holding the sidecar's port that serves appprobe.Prefix.
	Via string `json:"via"`
	// Env is the injected ENV parameter (type app-probes) that tells the sidecar the probes.
	Env string `json:"env"`
}

// AppProbesOn reports whether the app's probes are pointed at the sidecar given the parameter values: the
// entry has AppProbes and its switch parameter (sets: appProbes) is not "false".
func (e *Entry) AppProbesOn(values map[string]string) bool {
	if e.Pod.AppProbes == nil {
		return false
	}
	for _, p := range e.Parameters {
		if p.Sets == "appProbes" {
			v := values[e.ParamName(p)]
			if v == "" {
				v = p.Default
			}
			on, err := strconv.ParseBool(v)
			return err != nil || on // the type checked it
		}
	}
	return true
}

// Volume is a pod volume the sidecar brings, mounted into the sidecar and optionally into the app.
type Volume struct {
	// Name is the pod volume's name; prefix it with "outrigger-" to stay clear of the app's names.
	Name string `json:"name"`
	// VolumeSource is the volume's source (emptyDir, secret, configMap...). A secretName/configMap name
	// may be left empty when a parameter sets it.
	corev1.VolumeSource `json:",inline"`
	// MountPath is where the sidecar sees the volume.
	MountPath string `json:"mountPath"`
	// ReadOnly mounts it read-only in the sidecar.
	ReadOnly bool `json:"readOnly,omitempty"`
	// AppMountPath mounts the volume into every app container there ("" = not into the app), or into those
	// an appContainers parameter lists.
	AppMountPath string `json:"appMountPath,omitempty"`
	// AppReadOnly mounts it read-only in the app containers.
	AppReadOnly bool `json:"appReadOnly,omitempty"`
	// When names a parameter: the volume (and its mounts) is added only when the pod sets it, e.g. a
	// credentials Secret that only some pods have; "!name": only when the pod does not set it.
	When string `json:"when,omitempty"`
}

// Added reports whether the volume is added given the parameter values (When).
func (v Volume) Added(values map[string]string) bool {
	if name, ok := strings.CutPrefix(v.When, "!"); ok {
		return values[name] == ""
	}
	return v.When == "" || values[v.When] != ""
}

// NeedsServiceAccount reports whether the volume projects the service account's token, which the API
// server accepts only in a pod that names its service account (its ServiceAccount admission plugin sets
// spec.serviceAccountName before the webhooks run; a cluster without the plugin leaves it empty, and the
// injector then leaves such a volume out).
func (v Volume) NeedsServiceAccount() bool {
	if v.Projected == nil {
		return false
	}
	for _, src := range v.Projected.Sources {
		if src.ServiceAccountToken != nil {
			return true
		}
	}
	return false
}

// ParamName is the annotation parameter name of p within e.
func (e *Entry) ParamName(p Parameter) string {
	if p.Name != "" {
		return p.Name
	}
	return envflag.KebabName(p.Env, e.EnvPrefix)
}

// Parameter returns the parameter named name.
func (e *Entry) Parameter(name string) (Parameter, bool) {
	for _, p := range e.Parameters {
		if e.ParamName(p) == name {
			return p, true
		}
	}
	return Parameter{}, false
}

// ParamNames lists the entry's parameter names in catalog order, for "accepted: ..." messages.
func (e *Entry) ParamNames() []string {
	names := make([]string, 0, len(e.Parameters))
	for _, p := range e.Parameters {
		names = append(names, e.ParamName(p))
	}
	return names
}

// AnnotationPrefix is "<name>.outrigger.dev/".
func (e *Entry) AnnotationPrefix() string { return e.Name + "." + Domain + "/" }

// Domain is the annotation domain.
const Domain = "outrigger.dev"

// ShareProcessNamespaceWhen parses PodNeeds.ShareProcessNamespace: always, or the parameter it depends on.
func (n PodNeeds) ShareProcessNamespaceWhen() (always bool, param string, err error) {
	return when("pod.shareProcessNamespace", n.ShareProcessNamespace)
}

// SignalsAppWhen parses SignalsApp as ShareProcessNamespaceWhen does.
func (n PodNeeds) SignalsAppWhen() (always bool, param string, err error) {
	return when("pod.signalsApp", n.SignalsApp)
}

// when reads "always" or "when <parameter> is set" in field.
func when(field, s string) (always bool, param string, err error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return false, "", nil
	case s == "always":
		return true, "", nil
	case strings.HasPrefix(s, "when ") && strings.HasSuffix(s, " is set"):
		return false, strings.TrimSuffix(strings.TrimPrefix(s, "when "), " is set"), nil
	}
	return false, "", fmt.Errorf(`%s %q: want "always" or "when <parameter> is set"`, field, s)
}

// SharesProcessNamespace reports whether the pod needs a shared PID namespace given the parameter values
// the pod set (by parameter name).
func (e *Entry) SharesProcessNamespace(values map[string]string) bool {
	return e.active(values, e.Pod.ShareProcessNamespaceWhen)
}

// SignalsApp reports whether the sidecar signals the app's processes given the parameter values.
func (e *Entry) SignalsApp(values map[string]string) bool {
	return e.active(values, e.Pod.SignalsAppWhen)
}

// active evaluates an "always" / "when <parameter> is set" need against the pod's parameter values (by
// parameter name), a parameter's default counting as set.
func (e *Entry) active(values map[string]string, need func() (bool, string, error)) bool {
	always, param, err := need()
	if err != nil {
		return false // refused by Validate before any pod is seen
	}
	if always {
		return true
	}
	if param == "" {
		return false
	}
	if v, ok := values[param]; ok {
		return v != ""
	}
	p, _ := e.Parameter(param)
	return p.Default != ""
}
