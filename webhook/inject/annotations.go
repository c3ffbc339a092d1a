package inject

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/outrigger-dev/outrigger/internal/envflag"
	"github.com/outrigger-dev/outrigger/webhook/catalog"
	"github.com/outrigger-dev/outrigger/webhook/config"
)

// The user-facing contract: annotation and label names.
const (
	// AnnotationInject on a pod or namespace lists the sidecars to inject: "https-proxy,topz". "false" or
	// "none" opts out of every default; "true" asks for the defaults.
	AnnotationInject = catalog.Domain + "/inject"
	// AnnotationSidecarMode on a pod overrides the config's sidecarMode: native or containers.
	AnnotationSidecarMode = catalog.Domain + "/sidecar-mode"
	// AnnotationStatus records what was injected (written by Outrigger).
	AnnotationStatus = catalog.Domain + "/status"
	// LabelInjection: "disabled" on a pod or namespace opts it out before the webhook is even called
	// (the webhook configuration's objectSelector and namespaceSelector use it).
	LabelInjection = catalog.Domain + "/injection"
	// LabelInjectionDisabled is LabelInjection's opt-out value.
	LabelInjectionDisabled = "disabled"
)

var podAnnotations = []string{AnnotationInject, AnnotationSidecarMode, AnnotationStatus}

// request is what a pod's (or namespace's) annotations ask for, checked against the catalog.
type request struct {
	// sidecars in the order asked, without repeats.
	sidecars []string
	// source says where the list came from, for decisions: pod, namespace or cluster default.
	source string
	// params[sidecar][parameter] = value, from <sidecar>.outrigger.dev/<parameter> annotations.
	params map[string]map[string]string
	// paramKeys[sidecar][parameter] = the annotation key, for messages.
	paramKeys map[string]map[string]string
	mode      string
}

// Sources of the sidecar list.
const (
	SourcePod       = "pod-annotation"
	SourceNamespace = "namespace-annotation"
	SourceCluster   = "cluster-default"
)

// parseInjectList parses an outrigger.dev/inject value. optOut is true for "false"/"none"; useDefaults for
// "true". Unknown names are problems naming the annotation, the value and the accepted names.
func parseInjectList(where, value string, cat *catalog.Catalog) (names []string, optOut, useDefaults bool, problems []string) {
	v := strings.TrimSpace(value)
	switch strings.ToLower(v) {
	case "false", "none":
		return nil, true, false, nil
	case "true", "":
		return nil, false, true, nil
	}
	seen := map[string]bool{}
	for _, raw := range strings.Split(v, ",") {
		name := strings.TrimSpace(raw)
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		if _, ok := cat.Get(name); !ok {
			problems = append(problems, fmt.Sprintf("%s %s=%q: unknown sidecar %q; accepted: %s, or \"none\"",
				where, AnnotationInject, value, name, strings.Join(cat.Names(), ", ")))
			continue
		}
		names = append(names, name)
	}
	return names, false, false, problems
}

// InjectedParameter says why an annotation may not set an injected parameter (catalog.Parameter.Injected).
const InjectedParameter = "set by the injector from the pod, not by an annotation (it tells the sidecar what the injector did); remove it"

// parsePodAnnotations checks every annotation in Outrigger's domain: pod-level ones must be known, and
// each <sidecar>.outrigger.dev/<parameter> must name a known sidecar, a known parameter and a valid value.
func parsePodAnnotations(annotations map[string]string, cfg *config.Config) (params, keys map[string]map[string]string, mode string, problems []string) {
	params, keys = map[string]map[string]string{}, map[string]map[string]string{}
	mode = cfg.SidecarMode
	for _, key := range slices.Sorted(maps.Keys(annotations)) {
		value := annotations[key]
		domain, name, ok := strings.Cut(key, "/")
		if !ok {
			continue
		}
		switch {
		case domain == catalog.Domain:
			if !slices.Contains(podAnnotations, key) {
				problems = append(problems, fmt.Sprintf("annotation %s: unknown; accepted in %s/: inject, sidecar-mode (and <sidecar>.%s/<parameter>)", key, catalog.Domain, catalog.Domain))
				continue
			}
			if key == AnnotationSidecarMode {
				if value != config.ModeNative && value != config.ModeContainers {
					problems = append(problems, fmt.Sprintf("annotation %s=%q: want %s or %s", key, value, config.ModeNative, config.ModeContainers))
					continue
				}
				mode = value
			}
		case strings.HasSuffix(domain, "."+catalog.Domain):
			sidecar := strings.TrimSuffix(domain, "."+catalog.Domain)
			e, ok := cfg.Catalog.Get(sidecar)
			if !ok {
				problems = append(problems, fmt.Sprintf("annotation %s: unknown sidecar %q; accepted: %s", key, sidecar, strings.Join(cfg.Catalog.Names(), ", ")))
				continue
			}
			p, ok := e.Parameter(name)
			if !ok {
				problems = append(problems, fmt.Sprintf("annotation %s: %s has no parameter %q; accepted: %s", key, sidecar, name, strings.Join(e.ParamNames(), ", ")))
				continue
			}
			if p.Injected {
				problems = append(problems, fmt.Sprintf("annotation %s: %s", key, InjectedParameter))
				continue
			}
			if err := p.Check(value); err != nil {
				problems = append(problems, fmt.Sprintf("annotation %s=%q: %v", key, envflag.RedactURL(value), err))
				continue
			}
			if params[sidecar] == nil {
				params[sidecar], keys[sidecar] = map[string]string{}, map[string]string{}
			}
			params[sidecar][name] = value
			keys[sidecar][name] = key
		}
	}
	return params, keys, mode, problems
}
