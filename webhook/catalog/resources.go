package catalog

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Resources every entry's container can be given, by the config file and by pod annotations.
var Resources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage}

// ResourceKinds are a container's two resource lists.
var ResourceKinds = []string{"requests", "limits"}

// resourceParameter is the parameter that sets kind (requests or limits) of r: "cpu-request",
// "memory-limit", "ephemeral-storage-request".
func resourceParameter(e *Entry, kind string, r corev1.ResourceName) Parameter {
	suffix := strings.TrimSuffix(kind, "s")
	list := e.Container.Resources.Requests
	if kind == "limits" {
		list = e.Container.Resources.Limits
	}
	def := ""
	if q, ok := list[r]; ok {
		def = q.String()
	}
	return Parameter{
		Name:    string(r) + "-" + suffix,
		Sets:    "resources." + kind + "." + string(r),
		Type:    "quantity",
		Default: def,
		Doc:     fmt.Sprintf("the sidecar's %s %s, a Kubernetes quantity (default: the config file's resources, else the catalog's)", r, suffix),
	}
}

// addResourceParameters gives e the six resource parameters, after its own; an entry's own parameter of
// one of those names is an error (Validate reports it).
func addResourceParameters(e *Entry) {
	for _, kind := range ResourceKinds {
		for _, r := range Resources {
			e.Parameters = append(e.Parameters, resourceParameter(e, kind, r))
		}
	}
}

// ParseResourceSets splits "resources.<requests|limits>.<resource>"; ok is false for any other Sets.
func ParseResourceSets(sets string) (kind string, r corev1.ResourceName, ok bool) {
	rest, found := strings.CutPrefix(sets, "resources.")
	if !found {
		return "", "", false
	}
	k, name, _ := strings.Cut(rest, ".")
	for _, known := range ResourceKinds {
		for _, res := range Resources {
			if k == known && name == string(res) {
				return known, res, true
			}
		}
	}
	return "", "", false
}

// CheckQuantity accepts a non-negative Kubernetes quantity.
func CheckQuantity(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		return fmt.Errorf("want a Kubernetes quantity such as 100m, 0.5, 64Mi or 1Gi, not negative")
	}
	return nil
}

// SetResources overrides e's container resources with those of r (per resource: a key r sets replaces
// the catalog's) and moves the resource parameters' defaults with them; source names where r comes from
// ("config resources.topz"), for `outrigger explain`.
func (e *Entry) SetResources(r corev1.ResourceRequirements, source string) {
	set := func(dst *corev1.ResourceList, src corev1.ResourceList) {
		for name, q := range src {
			if *dst == nil {
				*dst = corev1.ResourceList{}
			}
			(*dst)[name] = q
		}
	}
	set(&e.Container.Resources.Requests, r.Requests)
	set(&e.Container.Resources.Limits, r.Limits)
	for i, p := range e.Parameters {
		kind, name, ok := ParseResourceSets(p.Sets)
		if !ok {
			continue
		}
		list := r.Requests
		if kind == "limits" {
			list = r.Limits
		}
		if q, ok := list[name]; ok {
			e.Parameters[i].Default = q.String()
			e.Parameters[i].DefaultSource = source + "." + kind + "." + string(name)
		}
	}
}

// ResourceProblems returns a problem for each resource whose limit is below its request in rr, each
// naming the two values as described by describe(kind, resource) (e.g. the annotation that set it).
func ResourceProblems(rr corev1.ResourceRequirements, describe func(kind string, r corev1.ResourceName) string) []string {
	var problems []string
	for _, name := range Resources {
		req, hasReq := rr.Requests[name]
		lim, hasLim := rr.Limits[name]
		if hasReq && hasLim && lim.Cmp(req) < 0 {
			problems = append(problems, fmt.Sprintf("%s limit %s (%s) is below its request %s (%s): a limit must be at least its request",
				name, lim.String(), describe("limits", name), req.String(), describe("requests", name)))
		}
	}
	return problems
}
