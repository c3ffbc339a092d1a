// Package config is the injector's configuration file: cluster-wide default sidecars, excluded namespaces,
// the sidecar mode, the images, and operators' own catalog entries. The webhook and the CLI read the same
// file through Load, so that `outrigger inject` shows exactly what the webhook would do.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/webhook/catalog"
)

// Sidecar modes.
const (
	// ModeNative injects sidecars as initContainers with restartPolicy: Always (Kubernetes 1.29+): they start
	// before the app and do not keep a Job from completing.
	ModeNative = "native"
	// ModeContainers injects sidecars as ordinary containers, for clusters older than 1.29.
	ModeContainers = "containers"
)

// File is the YAML file as written by an operator (the Helm chart renders it into a ConfigMap).
type File struct {
	// Defaults are sidecars injected into every pod, except in excluded namespaces and opted-out pods.
	Defaults []string `json:"defaults,omitempty"`
	// ExcludedNamespaces are never injected (kube-system, kube-public and the injector's own namespace
	// never are, whatever this says).
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// SidecarMode is native (default) or containers.
	SidecarMode string `json:"sidecarMode,omitempty"`
	// InjectHostNetwork injects into hostNetwork pods too (default false: their ports are the node's).
	InjectHostNetwork bool `json:"injectHostNetwork,omitempty"`
	// AllowHostPID lets a sidecar that shares the pod's PID namespace (topz; config-sync with a
	// reload-process) into a hostPID pod, where it sees every process of the node and topz serves their
	// command lines over HTTP. Default false: such a pod is refused with the reason.
	AllowHostPID bool `json:"allowHostPID,omitempty"`
	// Images completes the built-in entries' image names.
	Images Images `json:"images,omitempty"`
	// Sidecars are the operator's catalog entries, added to (or replacing) the built-in ones by name.
	Sidecars []catalog.Entry `json:"sidecars,omitempty"`
	// Resources override a sidecar's catalog resources, per resource (cpu, memory, ephemeral-storage):
	// {topz: {requests: {cpu: 2m}, limits: {memory: 32Mi}}}. A pod's <sidecar>.outrigger.dev/cpu-request
	// (and -limit, memory-, ephemeral-storage-) annotations override these in turn.
	Resources map[string]corev1.ResourceRequirements `json:"resources,omitempty"`
	// Order overrides a sidecar's catalog order among the init containers: {https-proxy: first}.
	Order map[string]string `json:"order,omitempty"`
}

// Images says where the built-in sidecars' images come from.
type Images struct {
	// Registry prefixes a built-in entry's image name, e.g. ghcr.io/outrigger-dev.
	Registry string `json:"registry,omitempty"`
	// Tag is the built-in images' tag.
	Tag string `json:"tag,omitempty"`
	// PullPolicy is the injected containers' imagePullPolicy (default IfNotPresent).
	PullPolicy corev1.PullPolicy `json:"pullPolicy,omitempty"`
	// Overrides maps a sidecar's name to a full image reference, e.g. to pin a digest.
	Overrides map[string]string `json:"overrides,omitempty"`
}

// Defaults used when the file leaves them out.
const (
	DefaultRegistry = "ghcr.io/outrigger-dev"
	DefaultTag      = "0.1.0"
)

// Config is a validated configuration with its catalog, ready for injection. It is immutable: a reload
// builds a new one.
type Config struct {
	File
	// InjectorNamespace is never injected (the webhook must not depend on itself).
	InjectorNamespace string
	Catalog           *catalog.Catalog
	// entryHashes[name] hashes an entry with its resolved image, computed once per config (the status
	// annotation records it for every injection).
	entryHashes map[string][32]byte
}

// AlwaysExcluded are namespaces never injected, whatever the configuration says.
var AlwaysExcluded = []string{"kube-system", "kube-public"}

// Load reads and validates the file at path; an empty path means the embedded defaults only.
func Load(path, injectorNamespace string) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("reading the config file: %w", err)
		}
	}
	cfg, err := Parse(data, injectorNamespace)
	if err != nil && path != "" {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return cfg, err
}

// Parse decodes strictly (an unknown key is an error that names it) and validates.
func Parse(data []byte, injectorNamespace string) (*Config, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, err
	}
	return New(f, injectorNamespace)
}

// New validates f and builds its catalog: the built-in entries, then f.Sidecars.
func New(f File, injectorNamespace string) (*Config, error) {
	if f.SidecarMode == "" {
		f.SidecarMode = ModeNative
	}
	if f.Images.Registry == "" {
		f.Images.Registry = DefaultRegistry
	}
	if f.Images.Tag == "" {
		f.Images.Tag = DefaultTag
	}
	if f.Images.PullPolicy == "" {
		f.Images.PullPolicy = corev1.PullIfNotPresent
	}
	var problems []error
	switch f.SidecarMode {
	case ModeNative, ModeContainers:
	default:
		problems = append(problems, fmt.Errorf("sidecarMode %q: want %s or %s", f.SidecarMode, ModeNative, ModeContainers))
	}
	switch f.Images.PullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		problems = append(problems, fmt.Errorf("images.pullPolicy %q: want Always, IfNotPresent or Never", f.Images.PullPolicy))
	}
	for i, ns := range f.ExcludedNamespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			problems = append(problems, fmt.Errorf("excludedNamespaces[%d] %q: want a namespace name (%s)", i, ns, strings.Join(errs, "; ")))
		}
	}
	builtin, err := catalog.Builtin()
	if err != nil {
		return nil, err
	}
	cat, err := catalog.New(append(builtin, f.Sidecars...)...)
	if err != nil {
		problems = append(problems, fmt.Errorf("sidecars: %w", err))
	}
	for _, name := range slices.Sorted(maps.Keys(f.Resources)) {
		rr := f.Resources[name]
		e, ok := cat.Get(name)
		if !ok {
			problems = append(problems, fmt.Errorf("resources: %q is not a sidecar; accepted: %s", name, strings.Join(cat.Names(), ", ")))
			continue
		}
		if len(rr.Claims) > 0 {
			problems = append(problems, fmt.Errorf("resources.%s.claims: not supported (requests and limits only)", name))
		}
		bad := false
		for _, kind := range catalog.ResourceKinds {
			list := rr.Requests
			if kind == "limits" {
				list = rr.Limits
			}
			for _, r := range slices.Sorted(maps.Keys(list)) {
				q := list[r]
				if !slices.Contains(catalog.Resources, r) {
					problems = append(problems, fmt.Errorf("resources.%s.%s.%s: unknown resource; accepted: cpu, memory, ephemeral-storage", name, kind, r))
					bad = true
				} else if q.Sign() < 0 {
					problems = append(problems, fmt.Errorf("resources.%s.%s.%s %q: want a quantity that is not negative", name, kind, r, q.String()))
					bad = true
				}
			}
		}
		if bad {
			continue
		}
		e.SetResources(rr, "config resources."+name)
		for _, p := range catalog.ResourceProblems(e.Container.Resources, func(kind string, r corev1.ResourceName) string {
			return "resources." + name + "." + kind + "." + string(r) + " in the config, or the catalog's"
		}) {
			problems = append(problems, fmt.Errorf("resources.%s: %s", name, p))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(f.Order)) {
		e, ok := cat.Get(name)
		switch v := f.Order[name]; {
		case !ok:
			problems = append(problems, fmt.Errorf("order: %q is not a sidecar; accepted: %s", name, strings.Join(cat.Names(), ", ")))
		case v != catalog.OrderFirst && v != catalog.OrderLast:
			problems = append(problems, fmt.Errorf("order.%s %q: want %s or %s", name, v, catalog.OrderFirst, catalog.OrderLast))
		default:
			e.Order = v
		}
	}
	for name := range f.Images.Overrides {
		if _, ok := cat.Get(name); !ok {
			problems = append(problems, fmt.Errorf("images.overrides: %q is not a sidecar; accepted: %s", name, strings.Join(cat.Names(), ", ")))
		}
	}
	for i, name := range f.Defaults {
		e, ok := cat.Get(name)
		if !ok {
			problems = append(problems, fmt.Errorf("defaults[%d] %q: not a sidecar; accepted: %s", i, name, strings.Join(cat.Names(), ", ")))
			continue
		}
		// A default is injected into pods that say nothing: it cannot need a parameter only a pod can give.
		for _, p := range e.Parameters {
			if p.Required {
				problems = append(problems, fmt.Errorf("defaults[%d] %q: it needs the parameter %s, which a pod that says nothing cannot give", i, name, e.ParamName(p)))
			}
		}
		if len(e.RequireOneOf) > 0 {
			problems = append(problems, fmt.Errorf("defaults[%d] %q: it needs one of %v, which a pod that says nothing cannot give", i, name, e.RequireOneOf))
		}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	c := &Config{File: f, InjectorNamespace: injectorNamespace, Catalog: cat, entryHashes: map[string][32]byte{}}
	for _, name := range cat.Names() {
		e, _ := cat.Get(name)
		data, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("sidecar %s: %w", name, err)
		}
		c.entryHashes[name] = sha256.Sum256(append(data, c.Image(e)...))
	}
	return c, nil
}

// CatalogHash identifies the catalog entries of names (in any order), their images and the sidecar mode:
// "sha256:" and 16 hex digits.
func (c *Config) CatalogHash(names []string) string {
	sorted := append([]string{}, names...)
	sort.Strings(sorted)
	h := sha256.New()
	for _, n := range sorted {
		if sum, ok := c.entryHashes[n]; ok {
			h.Write(sum[:])
		}
	}
	h.Write([]byte(c.SidecarMode))
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// SidecarHash identifies sidecar e as rendered into one pod: the container c (before the API server's
// defaulting; it holds the image and the mode's restart policy) and what the entry adds to the pod (its
// volumes, the shared PID namespace): "sha256:" and 16 hex digits. Two pods get the same hash exactly when
// the injector would give them the same sidecar, so a change to an entry's descriptions or parameter docs
// does not make running pods stale.
func (c *Config) SidecarHash(e *catalog.Entry, container *corev1.Container) string {
	// What changes the pod, not what only changes the webhook's warnings (SignalsApp): a new warning must
	// not report every running pod stale.
	pod := e.Pod
	pod.SignalsApp = ""
	needs, _ := json.Marshal(pod)      // typed: cannot fail
	data, _ := json.Marshal(container) // typed API fields: cannot fail
	h := sha256.New()
	h.Write(needs)
	h.Write([]byte{0})
	h.Write(data)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// Excluded reports whether namespace ns is never injected, and why.
func (c *Config) Excluded(ns string) (bool, string) {
	for _, n := range AlwaysExcluded {
		if ns == n {
			return true, "namespace " + ns + " is never injected"
		}
	}
	if ns != "" && ns == c.InjectorNamespace {
		return true, "namespace " + ns + " is the injector's own"
	}
	for _, n := range c.ExcludedNamespaces {
		if ns == n {
			return true, "namespace " + ns + " is excluded in the injector's config"
		}
	}
	return false, ""
}

// Image is the image reference for entry e.
func (c *Config) Image(e *catalog.Entry) string {
	if img, ok := c.Images.Overrides[e.Name]; ok {
		return img
	}
	if strings.ContainsAny(e.Image, "/:") {
		return e.Image
	}
	return strings.TrimSuffix(c.Images.Registry, "/") + "/" + e.Image + ":" + c.Images.Tag
}
