package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/outrigger-dev/outrigger/webhook/catalog"
	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/inject"
)

// objects are the two policies and their bindings.
func (r *renderer) objects(apiVersion string) []map[string]any {
	labels := map[string]any{"app.kubernetes.io/name": "outrigger", "app.kubernetes.io/component": "admission-policy"}
	match := map[string]any{"resourceRules": []any{map[string]any{
		"apiGroups": []any{""}, "apiVersions": []any{"v1"}, "operations": []any{"CREATE"}, "resources": []any{"pods"},
	}}}
	// The chart's webhook matchConditions, the same expressions (e2e/install checks both on the API server).
	conditions := []any{map[string]any{"name": "not-a-mirror-pod", "expression": "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)"}}
	if !r.cfg.InjectHostNetwork {
		conditions = append(conditions, map[string]any{"name": "not-host-network", "expression": "!has(object.spec.hostNetwork) || !object.spec.hostNetwork"})
	}
	spec := func(extra map[string]any) map[string]any {
		s := map[string]any{"failurePolicy": "Fail", "matchConstraints": match}
		s["matchConditions"] = conditions
		for k, v := range extra {
			s[k] = v
		}
		return s
	}
	mutating := map[string]any{
		"apiVersion": apiVersion, "kind": "MutatingAdmissionPolicy",
		"metadata": map[string]any{"name": MutatingName, "labels": labels},
		"spec": spec(map[string]any{
			"reinvocationPolicy": "IfNeeded",
			"variables":          variables(r.mutatingVariables()),
			"mutations":          []any{map[string]any{"patchType": "JSONPatch", "jsonPatch": map[string]any{"expression": r.patch()}}},
		}),
	}
	// ValidatingAdmissionPolicy is GA (v1) since Kubernetes 1.30, whatever version the mutating one has.
	validating := map[string]any{
		"apiVersion": V1, "kind": "ValidatingAdmissionPolicy",
		"metadata": map[string]any{"name": ValidatingName, "labels": labels},
		"spec": spec(map[string]any{
			"variables":   variables(r.validatingVariables()),
			"validations": r.validations(),
		}),
	}
	return []map[string]any{
		mutating, binding(apiVersion, "MutatingAdmissionPolicyBinding", MutatingName, labels, r.selectors(), nil),
		validating, binding(V1, "ValidatingAdmissionPolicyBinding", ValidatingName, labels, r.selectors(), []any{"Deny"}),
	}
}

// selectors keep out what the webhook never injects: kube-system, kube-public, the config's excluded
// namespaces, and namespaces and pods labelled outrigger.dev/injection=disabled.
func (r *renderer) selectors() map[string]any {
	excluded := append(append([]string{}, config.AlwaysExcluded...), r.cfg.ExcludedNamespaces...)
	if r.cfg.InjectorNamespace != "" {
		excluded = append(excluded, r.cfg.InjectorNamespace)
	}
	names := make([]any, len(excluded))
	for i, n := range excluded {
		names[i] = n
	}
	optOut := map[string]any{"key": inject.LabelInjection, "operator": "NotIn", "values": []any{inject.LabelInjectionDisabled}}
	return map[string]any{
		"namespaceSelector": map[string]any{"matchExpressions": []any{
			map[string]any{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": names}, optOut,
		}},
		"objectSelector": map[string]any{"matchExpressions": []any{optOut}},
	}
}

func binding(apiVersion, kind, policy string, labels, matchResources map[string]any, actions []any) map[string]any {
	spec := map[string]any{"policyName": policy, "matchResources": matchResources}
	if actions != nil {
		spec["validationActions"] = actions
	}
	return map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": map[string]any{"name": policy, "labels": labels}, "spec": spec}
}

func variables(vars [][2]string) []any {
	out := make([]any, len(vars))
	for i, v := range vars {
		out[i] = map[string]any{"name": v[0], "expression": v[1]}
	}
	return out
}

func (r *renderer) renderedNames() []string {
	names := make([]string, len(r.entries))
	for i, e := range r.entries {
		names[i] = e.Name
	}
	return names
}

// mutatingVariables: the request, the parameters, then per sidecar whether it is added, its container and
// volumes, and for the pod the lists to add.
func (r *renderer) mutatingVariables() [][2]string {
	vars := r.commonVariables(r.renderedNames())
	vars = append(vars, r.paramVariables()...)
	vars = append(vars, r.portVariables()...)
	vars = append(vars, r.appUIDVariable())
	n := len(r.entries)
	for i, e := range r.entries {
		vars = append(vars,
			[2]string{sidecarVar(i, "ok"), r.noProblems(i, e)},
			[2]string{sidecarVar(i, "pending"), fmt.Sprintf("variables.requested.exists(n, n == %s) && !%s && variables.%s", str(e.Name), present(e.Name), sidecarVar(i, "ok"))},
			[2]string{sidecarVar(i, "container"), fmt.Sprintf("variables.native ? %s : %s", r.container(i, e, config.ModeNative), r.container(i, e, config.ModeContainers))},
			[2]string{sidecarVar(i, "volumes"), r.volumes(i, e)},
		)
	}
	pick := func(what, def string) func(string) string {
		return func(name string) string {
			return r.choose(name, func(i int) string { return "variables." + sidecarVar(i, what) }, def)
		}
	}
	var first, last []string
	for _, e := range r.entries {
		if e.Last() {
			last = append(last, e.Name)
		} else {
			first = append(first, e.Name)
		}
	}
	mine := func(names []string) string {
		return fmt.Sprintf("variables.inits.filter(c, c.name in variables.requested && c.name in %s)", strList(names))
	}
	vars = append(vars,
		[2]string{"pending", "variables.requested.filter(n, " + pick("pending", "false")("n") + ")"},
		[2]string{"sidecars", "variables.pending.map(n, " + pick("container", "{}")("n") + ")"},
		// builder.commit's order: ours "first" (present, then pending), the others, ours "last".
		[2]string{"inits", "has(object.spec.initContainers) ? object.spec.initContainers : []"},
		[2]string{"initOrder", fmt.Sprintf("dyn(%s) + dyn(variables.pending.filter(n, n in %s).map(n, %s)) + dyn(variables.inits.filter(c, !(c.name in variables.requested && c.name in %s))) + dyn(%s) + dyn(variables.pending.filter(n, n in %s).map(n, %s))",
			mine(first), strList(first), pick("container", "{}")("n"), strList(append(append([]string{}, first...), last...)), mine(last), strList(last), pick("container", "{}")("n"))},
		[2]string{"initNames", "variables.initOrder.map(c, c.name)"},
		[2]string{"reorder", "variables.native && variables.pending.size() == 0 && variables.initNames != variables.inits.map(c, c.name)"},
		[2]string{"volumes", flatten("variables.pending.map(n, "+pick("volumes", "[]")("n")+")", n)},
		[2]string{"sharePID", "variables.pending.exists(n, " + r.choose("n", func(i int) string { return sharesPID(i, r.entries[i]) }, "false") + ") && !(has(object.spec.hostPID) && object.spec.hostPID)"},
		[2]string{"status", r.status()},
	)
	return vars
}

// noProblems is CEL: none of the problems builder.add would report for entry i (a required parameter
// missing, no parameter of a require-one-of group, a volume without a source name, a PID namespace the pod
// refuses, a mount path an app container uses for another volume). The validating policy denies those pods.
func (r *renderer) noProblems(i int, e *catalog.Entry) string {
	var conds []string
	for j, p := range e.Parameters {
		if p.Required {
			conds = append(conds, paramVar(i, j)+` != ""`)
		}
	}
	for _, group := range e.RequireOneOf {
		var any []string
		for _, name := range group {
			any = append(any, "("+when(i, e, name)+")")
		}
		conds = append(conds, "("+strings.Join(any, " || ")+")")
	}
	for _, v := range e.Pod.Volumes {
		if c := sourceNamed(i, e, v); c != "" {
			conds = append(conds, c)
		}
		if path, ok := appMountPath(i, e, v); ok {
			conds = append(conds, fmt.Sprintf("!(%s) || !object.spec.containers.exists(c, %s && %s)", volumeWhen(i, e, v), r.appContainer(i, e, v, "c"), conflict("c", v.Name, path)))
		}
		if only := appOnly(i, e, v); only != "" {
			names, unknown := r.listedApps(only)
			conds = append(conds, fmt.Sprintf(`!(%s) || %s == "" || (%s.size() > 0 && %s.size() == 0)`, volumeWhen(i, e, v), only, names, unknown))
		}
	}
	if sharesPID(i, e) != "false" {
		conds = append(conds, fmt.Sprintf("!(%s) || !(has(object.spec.shareProcessNamespace) && !object.spec.shareProcessNamespace)", sharesPID(i, e)))
	}
	for _, lr := range resourcePairs(i, e) {
		conds = append(conds, lr.ok())
	}
	if len(conds) == 0 {
		return "true"
	}
	return "(" + strings.Join(conds, ") && (") + ")"
}

// sourceNamed is CEL: volume v of entry i, when added, has a Secret or ConfigMap name; "" when it always has.
func sourceNamed(i int, e *catalog.Entry, v catalog.Volume) string {
	if !(v.Secret != nil && v.Secret.SecretName == "" || v.ConfigMap != nil && v.ConfigMap.Name == "") {
		return ""
	}
	var named []string
	for j, p := range e.Parameters {
		vol, field, _ := catalog.ParseSets(p.Sets)
		if vol == v.Name && (field == "secretName" || field == "configMapName") {
			named = append(named, paramVar(i, j)+` != ""`)
		}
	}
	if len(named) == 0 {
		return fmt.Sprintf("!(%s)", volumeWhen(i, e, v))
	}
	return fmt.Sprintf("!(%s) || %s", volumeWhen(i, e, v), strings.Join(named, " || "))
}

// volumes is CEL: the pod volumes entry i adds (addVolume: when its parameter is set, unless the pod has a
// volume of that name).
func (r *renderer) volumes(i int, e *catalog.Entry) string {
	var parts []string
	for _, v := range e.Pod.Volumes {
		hasVolume := fmt.Sprintf("(has(object.spec.volumes) && object.spec.volumes.exists(v, v.name == %s))", str(v.Name))
		parts = append(parts, fmt.Sprintf("(%s && !%s ? [%s] : [])", volumeWhen(i, e, v), hasVolume, volumeSource(i, e, v)))
	}
	return "dyn(" + concat(parts) + ")"
}

// appMounts is CEL: the mounts entry i adds to app container c (addVolume's last loop).
func (r *renderer) appMounts(i int, e *catalog.Entry, c string) string {
	var parts []string
	for _, v := range e.Pod.Volumes {
		path, ok := appMountPath(i, e, v)
		if !ok {
			continue
		}
		m := map[string]any{"name": v.Name, "mountPath": expr(path)}
		if v.AppReadOnly {
			m["readOnly"] = true
		}
		parts = append(parts, fmt.Sprintf("(%s && %s && !%s ? [%s] : [])", volumeWhen(i, e, v), r.appContainer(i, e, v, c), conflict(c, v.Name, path), literal(m)))
	}
	return "dyn(" + concat(parts) + ")"
}

// status is CEL for the outrigger.dev/status value (inject.setStatus without the per-sidecar hashes).
func (r *renderer) status() string {
	sorted := r.renderedNames()
	sort.Strings(sorted)
	table := map[string]any{}
	if len(sorted) <= maxHashedSidecars {
		for mask := 1; mask < 1<<len(sorted); mask++ {
			var subset []string
			for b, name := range sorted {
				if mask&(1<<b) != 0 {
					subset = append(subset, name)
				}
			}
			table[strings.Join(subset, ",")] = r.cfg.CatalogHash(subset)
		}
	}
	key := strList(sorted) + ".filter(n, n in variables.requested).join(\",\")"
	hash := fmt.Sprintf(`(%s in %s ? %s[%s] : "")`, key, literal(table), literal(table), key)
	return `"{\"sidecars\":[" + variables.requested.map(n, "\"" + n + "\"").join(",") + "],\"catalogHash\":\"" + ` + hash + ` + "\"}"`
}

// patch is the JSONPatch expression: app mounts by container index, volumes, the PID namespace, the sidecars
// (in native mode the init containers in builder.commit's order, else appended), their resources, the
// status. Nothing when nothing is pending and the order holds, so a re-invocation adds nothing twice.
func (r *renderer) patch() string {
	n := len(r.entries)
	mounts := flatten("variables.pending.map(n, "+r.choose("n", func(i int) string { return r.appMounts(i, r.entries[i], "c") }, "[]")+")", n)
	ops := []string{
		fmt.Sprintf(`object.spec.containers.transformList(i, c, %s.size() > 0, JSONPatch{op: "add", path: "/spec/containers/" + string(i) + "/volumeMounts", value: (has(c.volumeMounts) ? dyn(c.volumeMounts) : dyn([])) + %s})`, mounts, mounts),
		`(variables.volumes.size() > 0 ? [JSONPatch{op: "add", path: "/spec/volumes", value: (has(object.spec.volumes) ? dyn(object.spec.volumes) : dyn([])) + variables.volumes}] : [])`,
		`(variables.sharePID ? [JSONPatch{op: "add", path: "/spec/shareProcessNamespace", value: true}] : [])`,
		`(variables.native ? [JSONPatch{op: "add", path: "/spec/initContainers", value: variables.initOrder}] : variables.sidecars.map(s, JSONPatch{op: "add", path: "/spec/containers/-", value: s}))`,
		r.resourceOps(),
		fmt.Sprintf(`(variables.pending.size() == 0 ? [] : has(object.metadata.annotations) ? [JSONPatch{op: "add", path: "/metadata/annotations/%s", value: variables.status}] : [JSONPatch{op: "add", path: "/metadata/annotations", value: {%s: variables.status}}])`, pointer(inject.AnnotationStatus), str(inject.AnnotationStatus)),
	}
	return "variables.pending.size() == 0 && !variables.reorder ? [] : " + strings.Join(ops, " +\n  ")
}
