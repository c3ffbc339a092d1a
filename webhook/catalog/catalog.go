package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/sidecars"
)

// Catalog is a validated, immutable set of entries by name.
type Catalog struct {
	entries map[string]*Entry
}

// Builtin returns the embedded entries. It fails only if an embedded file is broken, which a unit test
// rules out; callers still report the error instead of panicking.
func Builtin() ([]Entry, error) {
	files, err := fs.Glob(sidecars.Catalog, "*/catalog.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	entries := make([]Entry, 0, len(files))
	for _, f := range files {
		data, err := sidecars.Catalog.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var e Entry
		if err := yaml.UnmarshalStrict(data, &e); err != nil {
			return nil, fmt.Errorf("built-in catalog entry sidecars/%s: %w", f, err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// New validates entries and builds a catalog. Later entries replace earlier ones of the same name, so an
// operator's entry in the config file can replace a built-in one. Every problem is reported, each naming
// the entry and the field.
func New(entries ...Entry) (*Catalog, error) {
	c := &Catalog{entries: make(map[string]*Entry, len(entries))}
	var problems []error
	for i := range entries {
		e := entries[i]
		e.Parameters = append([]Parameter{}, e.Parameters...)
		addResourceParameters(&e)
		if err := e.Validate(); err != nil {
			problems = append(problems, err)
			continue
		}
		c.entries[e.Name] = &e
	}
	return c, errors.Join(problems...)
}

// Get returns the entry named name.
func (c *Catalog) Get(name string) (*Entry, bool) {
	e, ok := c.entries[name]
	return e, ok
}

// Names lists the entries' names, sorted.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.entries))
	for n := range c.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks an entry once, so that a pod never meets a broken one.
func (e *Entry) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if errs := validation.IsDNS1123Label(e.Name); len(errs) > 0 {
		add("name %q: want a DNS label (%s)", e.Name, strings.Join(errs, "; "))
	}
	if e.Image == "" {
		add("image: must be set")
	}
	if e.Order != "" && e.Order != OrderFirst && e.Order != OrderLast {
		add("order %q: want %s or %s", e.Order, OrderFirst, OrderLast)
	}
	seen := map[string]bool{}
	for i, p := range e.Parameters {
		name := e.ParamName(p)
		where := fmt.Sprintf("parameters[%d] (%s)", i, name)
		if name == "" {
			add("parameters[%d]: set env or name", i)
			continue
		}
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			add("%s: name: want a DNS label (%s)", where, strings.Join(errs, "; "))
		}
		if seen[name] {
			add("%s: name repeats an earlier parameter", where)
		}
		seen[name] = true
		switch {
		case p.Env == "" && p.Sets == "":
			add("%s: set env (an ENV variable of the sidecar) or sets (a pod-level setting)", where)
		case p.Env != "" && p.Sets != "":
			add("%s: set env or sets, not both", where)
		case p.Sets != "":
			if err := e.checkSets(p.Sets); err != nil {
				add("%s: sets: %v", where, err)
			}
		}
		t, ok := ParameterTypes[p.Type]
		if !ok {
			add("%s: type %q: want one of %s", where, p.Type, strings.Join(TypeNames(), ", "))
			continue
		}
		if p.Probed && p.Type != "host-port" {
			add("%s: probed: only a host-port listen address can be probed, not a %s", where, p.Type)
		}
		check, err := t(p)
		if err != nil {
			add("%s: %v", where, err)
			continue
		}
		if p.Default != "" {
			if err := check(p.Default); err != nil {
				add("%s: default %q: %v", where, p.Default, err)
			}
		}
	}
	for _, group := range e.RequireOneOf {
		for _, n := range group {
			if !seen[n] {
				add("requireOneOf: %q is not a parameter of this entry", n)
			}
		}
	}
	for field, need := range map[string]func() (bool, string, error){
		"pod.shareProcessNamespace": e.Pod.ShareProcessNamespaceWhen, "pod.signalsApp": e.Pod.SignalsAppWhen,
	} {
		_, param, err := need()
		if err != nil {
			add("%v", err)
		} else if param != "" && !seen[param] {
			add("%s: %q is not a parameter of this entry", field, param)
		}
	}
	if ap := e.Pod.AppProbes; ap != nil {
		byEnv := map[string]Parameter{}
		for _, p := range e.Parameters {
			if p.Env != "" {
				byEnv[p.Env] = p
			}
		}
		for field, want := range map[string][2]string{"port": {ap.Port, "port"}, "via": {ap.Via, "port"}, "env": {ap.Env, "app-probes"}} {
			if p, ok := byEnv[want[0]]; !ok || p.Type != want[1] {
				add("pod.appProbes.%s: %q is not an ENV parameter of type %s", field, want[0], want[1])
			}
		}

	}
	for i, p := range e.Parameters {
		if p.Injected && (p.Env == "" || e.Pod.AppProbes == nil || e.Pod.AppProbes.Env != p.Env) {
			add("parameters[%d] (%s): injected, but not the env of pod.appProbes", i, e.ParamName(p))
		}
	}
	vols := map[string]bool{}
	for i, v := range e.Pod.Volumes {
		if errs := validation.IsDNS1123Label(v.Name); len(errs) > 0 {
			add("pod.volumes[%d].name %q: want a DNS label", i, v.Name)
		}
		if vols[v.Name] {
			add("pod.volumes[%d].name %q repeats an earlier volume", i, v.Name)
		}
		vols[v.Name] = true
		if !path.IsAbs(v.MountPath) {
			add("pod.volumes[%d] (%s).mountPath %q: want an absolute path", i, v.Name, v.MountPath)
		}
		if v.AppMountPath != "" && !path.IsAbs(v.AppMountPath) {
			add("pod.volumes[%d] (%s).appMountPath %q: want an absolute path", i, v.Name, v.AppMountPath)
		}
		if name := strings.TrimPrefix(v.When, "!"); v.When != "" && !seen[name] {
			add("pod.volumes[%d] (%s).when: %q is not a parameter of this entry", i, v.Name, v.When)
		}
		if v.EmptyDir == nil && v.Secret == nil && v.ConfigMap == nil && v.Projected == nil && v.DownwardAPI == nil {
			add("pod.volumes[%d] (%s): want a source: emptyDir, secret, configMap, projected or downwardAPI", i, v.Name)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("catalog entry %q: %s", e.Name, strings.Join(problems, "; "))
	}
	return nil
}

// checkSets validates a pod-level parameter target: volumes.<volume>.<field>, or
// resources.<requests|limits>.<resource> (the parameters every entry gets).
func (e *Entry) checkSets(sets string) error {
	if _, _, ok := ParseResourceSets(sets); ok {
		return nil
	}
	if sets == "appProbes" {
		if e.Pod.AppProbes == nil {
			return fmt.Errorf("%q: the entry has no pod.appProbes", sets)
		}
		return nil
	}
	vol, field, err := ParseSets(sets)
	if err != nil {
		return err
	}
	for _, v := range e.Pod.Volumes {
		if v.Name != vol {
			continue
		}
		switch field {
		case "secretName":
			if v.Secret == nil {
				return fmt.Errorf("%q: volume %s is not a secret volume", sets, vol)
			}
		case "configMapName":
			if v.ConfigMap == nil {
				return fmt.Errorf("%q: volume %s is not a configMap volume", sets, vol)
			}
		case "sizeLimit":
			if v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil {
				return fmt.Errorf("%q: volume %s is not an emptyDir volume with a sizeLimit of its own (the limit when a pod sets none)", sets, vol)
			}
		case "appContainers":
			if v.AppMountPath == "" {
				return fmt.Errorf("%q: volume %s is not mounted into the app containers (no appMountPath)", sets, vol)
			}
		}
		return nil
	}
	return fmt.Errorf("%q: no volume named %s in pod.volumes", sets, vol)
}

// ParseSets splits "volumes.<volume>.<field>".
func ParseSets(sets string) (volume, field string, err error) {
	parts := strings.Split(sets, ".")
	if len(parts) != 3 || parts[0] != "volumes" {
		return "", "", fmt.Errorf("%q: want volumes.<volume>.secretName, .configMapName, .appMountPath, .appContainers or .sizeLimit", sets)
	}
	switch parts[2] {
	case "secretName", "configMapName", "appMountPath", "appContainers", "sizeLimit":
		return parts[1], parts[2], nil
	}
	return "", "", fmt.Errorf("%q: want volumes.<volume>.secretName, .configMapName, .appMountPath, .appContainers or .sizeLimit", sets)
}
