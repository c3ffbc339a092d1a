package drift

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Changes lists the fields in which a pod's container (as stored, after the API server's defaulting)
// differs from the container today's config renders (before defaulting): "image: a → b",
// "env[LISTEN_ADDR].value: ":8080" → ":9090"", "args: [...] → [...]".
//
// Defaulting only fills fields the request left empty, so a field today's container leaves empty is not
// compared (it may have been defaulted), with two exceptions the API server never fills: args and command,
// and env, whose entries are compared both ways. A field dropped from the catalog elsewhere is still caught
// by the status's per-sidecar hash; Changes only says where.
func Changes(expected, actual corev1.Container) []string {
	var changes []string
	if !slices.Equal(expected.Command, actual.Command) {
		changes = append(changes, fmt.Sprintf("command: %s → %s", showList(actual.Command), showList(expected.Command)))
	}
	if !slices.Equal(expected.Args, actual.Args) {
		changes = append(changes, fmt.Sprintf("args: %s → %s", showList(actual.Args), showList(expected.Args)))
	}
	for _, e := range expected.Env {
		i := slices.IndexFunc(actual.Env, func(a corev1.EnvVar) bool { return a.Name == e.Name })
		if i < 0 {
			changes = append(changes, fmt.Sprintf("env[%s]: added (%s)", e.Name, envValue(e)))
			continue
		}
		compare(&changes, "env["+e.Name+"]", generic(e), generic(actual.Env[i]))
	}
	for _, a := range actual.Env {
		if !slices.ContainsFunc(expected.Env, func(e corev1.EnvVar) bool { return e.Name == a.Name }) {
			changes = append(changes, fmt.Sprintf("env[%s]: removed (was %s)", a.Name, envValue(a)))
		}
	}
	e, a := generic(expected), generic(actual)
	for _, skip := range []string{"name", "command", "args", "env"} {
		delete(e, skip)
		delete(a, skip)
	}
	compare(&changes, "", e, a)
	return changes
}

// compare appends to changes every field set in want that got lacks or holds another value. Lists of
// objects with a "name" are matched by name, other lists by position.
func compare(changes *[]string, path string, want, got any) {
	switch w := want.(type) {
	case map[string]any:
		g, _ := got.(map[string]any)
		for _, k := range sortedKeys(w) {
			compare(changes, join(path, k), w[k], g[k])
		}
	case []any:
		g, _ := got.([]any)
		if named(w) && named(g) {
			for _, item := range w {
				name := item.(map[string]any)["name"].(string)
				var match any
				for _, other := range g {
					if other.(map[string]any)["name"] == name {
						match = other
					}
				}
				if match == nil {
					*changes = append(*changes, fmt.Sprintf("%s[%s]: added", path, name))
					continue
				}
				compare(changes, fmt.Sprintf("%s[%s]", path, name), item, match)
			}
			return
		}
		if len(w) != len(g) {
			*changes = append(*changes, fmt.Sprintf("%s: %s → %s", path, show(got), show(want)))
			return
		}
		for i := range w {
			compare(changes, fmt.Sprintf("%s[%d]", path, i), w[i], g[i])
		}
	default:
		if want == nil || want == "" || want == false || want == float64(0) {
			return // not set today: may have been defaulted in the pod
		}
		if show(want) != show(got) {
			*changes = append(*changes, fmt.Sprintf("%s: %s → %s", path, show(got), show(want)))
		}
	}
}

// named reports whether every item of a list is an object with a string "name".
func named(list []any) bool {
	if len(list) == 0 {
		return false
	}
	for _, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["name"].(string); !ok {
			return false
		}
	}
	return true
}

func generic(v any) map[string]any {
	data, _ := json.Marshal(v) // typed API objects: cannot fail
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return m
}

func show(v any) string {
	if v == nil {
		return "(none)"
	}
	if s, ok := v.(string); ok {
		return s
	}
	data, _ := json.Marshal(v)
	return string(data)
}

func showList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	data, _ := json.Marshal(l)
	return string(data)
}

func envValue(e corev1.EnvVar) string {
	if e.ValueFrom != nil {
		return "from " + show(generic(e.ValueFrom))
	}
	return fmt.Sprintf("%q", e.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
