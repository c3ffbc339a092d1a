package inject

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/outrigger-dev/outrigger/webhook/catalog"
	"github.com/outrigger-dev/outrigger/webhook/config"
)

// Input is everything Inject looks at.
type Input struct {
	// Pod is the pod as submitted; Inject does not modify it.
	Pod *corev1.Pod
	// Namespace is the pod's namespace (on CREATE the pod's own field may still be empty).
	Namespace string
	// NamespaceLabels and NamespaceAnnotations are the namespace's, or nil when unknown (the CLI).
	NamespaceLabels      map[string]string
	NamespaceAnnotations map[string]string
	// Config is the injector's configuration with its catalog.
	Config *config.Config
	// Explain fills each injected sidecar's Decision.Parameters (`outrigger explain`); the webhook leaves it
	// off, so that an admission does not build records nobody reads.
	Explain bool
}

// Actions of a Decision.
const (
	ActionInjected = "injected"
	ActionPresent  = "already-present"
	ActionSkipped  = "skipped"
	// ActionReordered: nothing added, but Outrigger's sidecars moved back to their catalog order.
	ActionReordered = "reordered"
)

// Skip reasons (the values of the skips metric's reason label).
const (
	ReasonNamespaceExcluded  = "namespace-excluded"
	ReasonPodOptedOut        = "pod-opted-out"
	ReasonNamespaceOptedOut  = "namespace-opted-out"
	ReasonHostNetwork        = "host-network"
	ReasonNothingRequested   = "nothing-requested"
	ReasonDefaultsOptedOut   = "defaults-opted-out"
	ReasonAlreadyInjected    = "already-injected"
	ReasonRequested          = "requested"
	ReasonNoDefaultsToInject = "no-defaults"
	ReasonOrder              = "order"
)

// Decision is one thing Inject decided, for logs, metrics and the CLI's report.
type Decision struct {
	// Sidecar is the sidecar concerned, or "" for the whole pod.
	Sidecar string `json:"sidecar,omitempty"`
	// Action is injected, already-present or skipped.
	Action string `json:"action"`
	// Reason is a short machine-readable reason (see the Reason constants, or a Source for injections).
	Reason string `json:"reason"`
	// Message says it for a person.
	Message string `json:"message"`
	// Parameters are, for an injected sidecar, each parameter's effective value and where it came from
	// (`outrigger explain` prints them); filled only when Input.Explain is set.
	Parameters []ParameterValue `json:"parameters,omitempty"`
}

// ParameterValue is a parameter's effective value in one injection.
type ParameterValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// From is the annotation that set it, or "" for the default.
	From string `json:"from,omitempty"`
	// DefaultFrom says where a default comes from when not the catalog (the config file's resources).
	DefaultFrom string `json:"defaultFrom,omitempty"`
}

// Result is the outcome of a successful Inject.
type Result struct {
	// Pod is the mutated copy (a copy even when nothing changed).
	Pod *corev1.Pod
	// Changed reports whether Pod differs from the input.
	Changed bool
	// Decisions lists what was decided, per sidecar or for the pod.
	Decisions []Decision
	// Requested lists the sidecars asked for, and Source where the list came from (a Source constant, or
	// ReasonDefaultsOptedOut / ReasonNothingRequested); both empty when the pod was skipped before.
	Requested []string
	Source    string
	// Warnings are for the user (admission warnings, CLI stderr): things they would want to know.
	Warnings []string
}

// Injected lists the sidecars injected by this call.
func (r *Result) Injected() []string {
	var names []string
	for _, d := range r.Decisions {
		if d.Action == ActionInjected {
			names = append(names, d.Sidecar)
		}
	}
	return names
}

// DeniedError means the pod's request cannot be honoured: every problem is listed, each naming the
// annotation, the bad value and what is accepted. The webhook turns it into a denial.
type DeniedError struct {
	Problems []string
}

func (e *DeniedError) Error() string {
	return "outrigger: " + strings.Join(e.Problems, "; ")
}

// Inject decides which sidecars the pod gets and adds them. It returns *DeniedError when the pod's
// annotations are wrong, and never a partially mutated pod.
func Inject(in Input) (*Result, error) {
	if in.Pod == nil || in.Config == nil {
		return nil, fmt.Errorf("inject: pod and config are required")
	}
	cfg := in.Config
	pod := in.Pod.DeepCopy()
	res := &Result{Pod: pod}
	skip := func(reason, msg string, warn bool) (*Result, error) {
		res.Decisions = append(res.Decisions, Decision{Action: ActionSkipped, Reason: reason, Message: msg})
		if warn {
			res.Warnings = append(res.Warnings, "outrigger: "+msg)
		}
		return res, nil
	}
	_, podAsks := pod.Annotations[AnnotationInject]

	if excluded, why := cfg.Excluded(in.Namespace); excluded {
		return skip(ReasonNamespaceExcluded, why+"; no sidecar injected", podAsks)
	}
	if pod.Labels[LabelInjection] == LabelInjectionDisabled {
		return skip(ReasonPodOptedOut, "pod is labelled "+LabelInjection+"="+LabelInjectionDisabled, podAsks)
	}
	if in.NamespaceLabels[LabelInjection] == LabelInjectionDisabled {
		return skip(ReasonNamespaceOptedOut, "namespace "+in.Namespace+" is labelled "+LabelInjection+"="+LabelInjectionDisabled, podAsks)
	}

	req, problems := resolveRequest(pod, in, cfg)
	if len(problems) > 0 {
		return nil, &DeniedError{Problems: problems}
	}
	res.Requested, res.Source = req.sidecars, req.source
	for _, sidecar := range slices.Sorted(maps.Keys(req.params)) {
		if !slices.Contains(req.sidecars, sidecar) {
			for _, name := range slices.Sorted(maps.Keys(req.params[sidecar])) {
				res.Warnings = append(res.Warnings, fmt.Sprintf("outrigger: annotation %s has no effect: %s is not injected into this pod", req.paramKeys[sidecar][name], sidecar))
			}
		}
	}
	if len(req.sidecars) == 0 {
		return skip(req.source, describeEmpty(req.source), false)
	}
	if pod.Spec.HostNetwork && !cfg.InjectHostNetwork {
		return skip(ReasonHostNetwork, fmt.Sprintf("pod uses hostNetwork; %s not injected (set injectHostNetwork in the injector's config to allow it)", strings.Join(req.sidecars, ", ")), true)
	}

	b := &builder{pod: pod, cfg: cfg, mode: req.mode}
	for _, name := range req.sidecars {
		e, _ := cfg.Catalog.Get(name)
		if b.present(name) {
			res.Decisions = append(res.Decisions, Decision{Sidecar: name, Action: ActionPresent, Reason: ReasonAlreadyInjected,
				Message: fmt.Sprintf("%s is already in the pod", name)})
			b.used = append(b.used, e)
			continue
		}
		b.add(e, req.params[name], req.paramKeys[name])
		d := Decision{Sidecar: name, Action: ActionInjected, Reason: req.source,
			Message: fmt.Sprintf("%s injected (%s, from the %s)", name, req.mode, strings.ReplaceAll(req.source, "-", " "))}
		if in.Explain {
			d.Parameters = effectiveParameters(e, req.params[name], req.paramKeys[name])
		}
		res.Decisions = append(res.Decisions, d)
	}
	if len(b.problems) > 0 {
		return nil, &DeniedError{Problems: b.problems}
	}
	// Ours: the sidecars this pod asked for, and those its status says Outrigger injected before.
	prev, _ := ReadStatus(pod)
	ours := append(append([]string{}, prev.Sidecars...), req.sidecars...)
	reordered := b.commit(ours)
	res.Warnings = append(res.Warnings, b.warnings...)
	if len(b.pending) > 0 {
		// The status records the catalog as of the injection: a pod whose sidecars were all there already
		// keeps the status it has.
		setStatus(pod, b.used, b.hashes, cfg)
	}
	// Every change to the pod comes with a sidecar added (volumes, mounts, PID namespace, status), or is
	// our sidecars put back in their order after another webhook moved them.
	res.Changed = len(b.pending) > 0 || reordered
	if reordered {
		res.Decisions = append(res.Decisions, Decision{Action: ActionReordered, Reason: ReasonOrder,
			Message: "Outrigger's sidecars put back in their catalog order among the init containers"})
	}
	return res, nil
}

// resolveRequest picks the sidecar list (pod annotation, else namespace annotation, else cluster defaults)
// and checks every Outrigger annotation of the pod.
func resolveRequest(pod *corev1.Pod, in Input, cfg *config.Config) (request, []string) {
	params, keys, mode, problems := parsePodAnnotations(pod.Annotations, cfg)
	req := request{params: params, paramKeys: keys, mode: mode}
	// The most specific list wins, whole: the pod's annotation, else the namespace's, else the defaults.
	// "true" (or an empty value) at a level defers to the next one.
	levels := []struct {
		annotations map[string]string
		where       string
		source      string
	}{
		{pod.Annotations, "pod annotation", SourcePod},
		{in.NamespaceAnnotations, "namespace " + in.Namespace + " annotation", SourceNamespace},
	}
	for _, level := range levels {
		v, ok := level.annotations[AnnotationInject]
		if !ok {
			continue
		}
		names, optOut, useDefaults, p := parseInjectList(level.where, v, cfg.Catalog)
		problems = append(problems, p...)
		switch {
		case optOut:
			req.source = ReasonDefaultsOptedOut
			return req, problems
		case !useDefaults:
			req.sidecars, req.source = names, level.source
			return req, problems
		}
	}
	req.sidecars, req.source = cfg.Defaults, SourceCluster
	if len(req.sidecars) == 0 {
		req.source = ReasonNothingRequested
	}
	return req, problems
}

// effectiveParameters lists every parameter of e with the value the pod gets: its annotation's, or the
// catalog default.
func effectiveParameters(e *catalog.Entry, values, keys map[string]string) []ParameterValue {
	out := make([]ParameterValue, 0, len(e.Parameters))
	for _, p := range e.Parameters {
		name := e.ParamName(p)
		if v, ok := values[name]; ok && v != "" {
			out = append(out, ParameterValue{Name: name, Value: v, From: keys[name]})
			continue
		}
		out = append(out, ParameterValue{Name: name, Value: p.Default, DefaultFrom: p.DefaultSource})
	}
	return out
}

func describeEmpty(source string) string {
	if source == ReasonDefaultsOptedOut {
		return "pod or namespace opted out with " + AnnotationInject + "=none"
	}
	return "no sidecar requested and no cluster-wide default"
}
