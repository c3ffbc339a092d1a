// Package catalogtest checks that a built-in sidecar's catalog entry (sidecars/<name>/catalog.yaml) agrees
// with the sidecar binary's settings: the same ENV names, annotation names, defaults and one-line docs, and
// the same values accepted and refused. It lives beside the catalog, as httptest lives beside net/http,
// and is imported by each sidecar's tests only: no sidecar binary links the injector.
package catalogtest

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/outrigger-dev/outrigger/internal/envflag"
	"github.com/outrigger-dev/outrigger/internal/sidecarspec"
	"github.com/outrigger-dev/outrigger/webhook/catalog"
)

// Problems returns every disagreement between set and the sidecar's Dockerfile, README and catalog entry
// called name, all in its folder dir. An empty result means the four agree.
func Problems(dir, name string, set envflag.Set) []string {
	problems := append(sidecarspec.ImageProblems(filepath.Join(dir, "Dockerfile"), filepath.Join(dir, "README.md"), set),
		CatalogProblems(name, set)...)
	return append(problems, userProblems(filepath.Join(dir, "Dockerfile"), name)...)
}

// userProblems compares the Dockerfile's USER with the catalog's runAsUser:runAsGroup. Both matter: the
// pod runs the catalog's, `podman run` and a pod without the injector the image's, and a sidecar's own
// UID is what keeps an app sharing its PID namespace out of its /proc files.
func userProblems(dockerfile, name string) []string {
	d, err := sidecarspec.ReadDockerfile(dockerfile)
	if err != nil {
		return []string{err.Error()}
	}
	entries, err := catalog.Builtin()
	if err != nil {
		return []string{"catalog: " + err.Error()}
	}
	for _, e := range entries {
		if e.Name != name {
			continue
		}
		sc := e.Container.SecurityContext
		if sc == nil || sc.RunAsUser == nil || sc.RunAsGroup == nil {
			return []string{fmt.Sprintf("catalog: entry %q sets no runAsUser and runAsGroup", name)}
		}
		if want := fmt.Sprintf("%d:%d", *sc.RunAsUser, *sc.RunAsGroup); d.User != want {
			return []string{fmt.Sprintf("%s: USER %q, but the catalog runs the sidecar as %s", dockerfile, d.User, want)}
		}
	}
	return nil
}

// CatalogProblems compares set with the built-in catalog entry called name.
func CatalogProblems(name string, set envflag.Set) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	entries, err := catalog.Builtin()
	if err != nil {
		add("catalog: %v", err)
	}
	var entry *catalog.Entry
	for i := range entries {
		if entries[i].Name == name {
			entry = &entries[i]
		}
	}
	if entry == nil {
		add("catalog: no built-in entry named %q", name)
		entry = &catalog.Entry{}
	} else if entry.EnvPrefix != set.Prefix {
		add("catalog: envPrefix %q, but the binary's prefix is %q", entry.EnvPrefix, set.Prefix)
	}
	catalogEnv := map[string]catalog.Parameter{}
	for _, p := range entry.Parameters {
		if p.Env != "" {
			catalogEnv[p.Env] = p
		}
	}

	known := map[string]bool{}
	for _, v := range set.Vars {
		known[v.Env] = true
		p, ok := catalogEnv[v.Env]
		if !ok {
			add("catalog: entry %q has no parameter for %s", name, v.Env)
			continue
		}
		if p.Default != v.Default {
			add("catalog: %s default %q, but the binary's default is %q", v.Env, p.Default, v.Default)
		}
		if entry.ParamName(p) != set.FlagName(v) {
			add("catalog: %s annotation name %q, but the binary's flag is --%s", v.Env, entry.ParamName(p), set.FlagName(v))
		}
		if p.Doc != v.Usage {
			add("catalog: %s doc %q, but the binary's usage line is %q", v.Env, p.Doc, v.Usage)
		}
		for _, value := range Probes(p) {
			catalogErr, binaryErr := p.Check(value), v.Parse(value)
			switch {
			case catalogErr == nil && binaryErr != nil:
				// The worst disagreement: the webhook admits a pod whose sidecar then refuses to start.
				add("catalog: %s (type %s) accepts %q, but the binary refuses it: %v", v.Env, p.Type, value, binaryErr)
			case catalogErr != nil && binaryErr == nil && p.Type != "absolute-path" && !(p.Probed && value == "127.0.0.1:8080"):
				// A denial the sidecar would not have needed. absolute-path is the one type stricter on
				// purpose: in a pod a relative path resolves against the image's working directory, so the
				// injector refuses it, while the binary run by hand takes it relative to where it runs. So is a
				// probed listen address on loopback: fine by hand, a restart loop in a pod.
				add("catalog: %s (type %s) refuses %q (%v), but the binary accepts it", v.Env, p.Type, value, catalogErr)
			}
		}
	}
	for _, env := range slices.Sorted(maps.Keys(catalogEnv)) {
		if !known[env] {
			add("catalog: parameter %s is not a setting of the binary", env)
		}
	}
	return problems
}

// Probes are the values on which a parameter's type and bounds show: its default, its enum values and one
// beside them, its bounds and just past them, and one typical value of every parameter type. The empty
// string is not probed: for the catalog it means "leave the sidecar's default", which the webhook does by
// not setting the variable at all.
func Probes(p catalog.Parameter) []string {
	set := map[string]bool{}
	add := func(vs ...string) {
		for _, v := range vs {
			if v != "" {
				set[v] = true
			}
		}
	}
	add(p.Default, "x", "0", "1", "-1", "65535", "65536", "true", "false", "yes", "1s", "500ms", "1m", "-1s",
		":8080", "127.0.0.1:8080", "8080", "/etc/config", "relative/path", "a,b", "https://example.com/repo.git",
		"https://alice:secret@example.com/repo.git", "git@example.com:org/repo.git", "ftp://example.com/repo.git",
		"file:///srv/repo.git", "ssh://git@example.com:22/repo.git", "some-name", "Not_A_Name", "100Mi", "1.5")
	add(p.Values...)
	if len(p.Values) > 0 {
		add(p.Values[0] + "-not-a-value")
	}
	switch p.Type {
	case "int":
		for _, b := range []string{p.Min, p.Max} {
			if n, err := strconv.Atoi(b); err == nil {
				add(strconv.Itoa(n-1), strconv.Itoa(n), strconv.Itoa(n+1))
			}
		}
	case "size":
		for _, b := range []string{p.Min, p.Max} {
			var n int64
			if envflag.Size(&n, 0, 1<<40)(b) == nil {
				add(strconv.FormatInt(n-1, 10), strconv.FormatInt(n, 10), strconv.FormatInt(n+1, 10), b)
			}
		}
	case "duration", "seconds-or-duration":
		for _, b := range []string{p.Min, p.Max} {
			if d, err := time.ParseDuration(b); err == nil {
				add((d - time.Millisecond).String(), d.String(), (d + time.Millisecond).String())
			}
		}
	}
	values := make([]string, 0, len(set))
	for v := range set {
		values = append(values, v)
	}
	sort.Strings(values)
	return values
}
