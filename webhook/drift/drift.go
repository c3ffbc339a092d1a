// Package drift compares the sidecars a running pod carries with what the injector's config would inject
// into it today: per sidecar current, stale, missing, unexpected or refused. Like inject it is a pure
// function (pod + namespace + config → report), so that `outrigger status`, `restart` and `explain` say the
// same thing, and it calls inject.Inject itself rather than a second implementation of its decisions.
package drift

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/inject"
)

// State is what a sidecar of a pod is, compared with today's config.
type State string

// States, from best to worst for a CI gate.
const (
	// Current: the pod's sidecar is what today's config would inject.
	Current State = "current"
	// Stale: the pod has the sidecar, but today's catalog entry, image or rendered container differ.
	Stale State = "stale"
	// Missing: today's config asks for the sidecar but the pod has none (created while the webhook was
	// down with failurePolicy Ignore, or before a namespace or cluster default was set).
	Missing State = "missing"
	// Unexpected: the pod has the sidecar but today's config no longer asks for it.
	Unexpected State = "unexpected"
	// Refused: today's config would deny the pod (its annotations no longer pass), so a restart would
	// leave the workload without pods until they are fixed.
	Refused State = "refused"
)

// States lists every State, for flags and documentation.
var States = []State{Current, Stale, Missing, Unexpected, Refused}

// Namespace is what Compare needs to know of the pod's namespace.
type Namespace struct {
	Name                string
	Labels, Annotations map[string]string
}

// Sidecar is one sidecar's verdict.
type Sidecar struct {
	Name  string `json:"name"`
	State State  `json:"state"`
	// Reason says why, for a person.
	Reason string `json:"reason"`
	// Changes lists, for a stale sidecar, what differs from the pod's container ("image: a → b").
	Changes []string `json:"changes,omitempty"`
}

// Report is the verdict on one pod.
type Report struct {
	// Sidecars are the pod's sidecars and today's, in the order: the pod's own, then the missing ones.
	Sidecars []Sidecar
	// Today is today's injection into the pod as submitted, or nil when today's config refuses it.
	Today *inject.Result
	// Denied is today's refusal, when there is one.
	Denied error
}

// Compare re-runs today's injection on the pod as it was submitted (see Submitted) and compares each
// sidecar with the pod's own.
func Compare(pod *corev1.Pod, ns Namespace, cfg *config.Config) Report {
	status, _ := inject.ReadStatus(pod)
	submitted := Submitted(pod, cfg)
	today, err := inject.Inject(inject.Input{Pod: submitted, Namespace: ns.Name, NamespaceLabels: ns.Labels, NamespaceAnnotations: ns.Annotations, Config: cfg, Explain: true})
	rep := Report{Today: today, Denied: err}
	if err != nil {
		for _, name := range status.Sidecars {
			rep.Sidecars = append(rep.Sidecars, Sidecar{Name: name, State: Refused, Reason: "today's config refuses this pod: " + strings.TrimPrefix(err.Error(), "outrigger: ")})
		}
		return rep
	}
	todayStatus, _ := inject.ReadStatus(today.Pod)
	wanted := today.Injected()
	for _, name := range status.Sidecars {
		actual := findContainer(pod, name)
		if !slices.Contains(wanted, name) {
			rep.Sidecars = append(rep.Sidecars, Sidecar{Name: name, State: Unexpected, Reason: whyNot(today, name, cfg)})
			continue
		}
		expected := findContainer(today.Pod, name)
		if actual == nil {
			rep.Sidecars = append(rep.Sidecars, Sidecar{Name: name, State: Missing, Reason: "the status names it but the pod has no container " + name})
			continue
		}
		changes := Changes(expected.Container, actual.Container)
		if expected.Init != actual.Init {
			changes = append([]string{fmt.Sprintf("sidecar mode: %s → %s", modeOf(actual.Init), modeOf(expected.Init))}, changes...)
		}
		have, want := status.Hashes[name], todayStatus.Hashes[name]
		switch {
		case have != "" && have == want:
			rep.Sidecars = append(rep.Sidecars, Sidecar{Name: name, State: Current, Reason: "as today's config would inject it (" + want + ")"})
		case have != "":
			if len(changes) == 0 {
				changes = []string{"the catalog entry changed outside the container (its volumes, pod settings or a field the API server defaults)"}
			}
			rep.Sidecars = append(rep.Sidecars, Sidecar{Name: name, State: Stale, Reason: fmt.Sprintf("injected as %s, today's config renders %s", have, want), Changes: changes})
		case len(changes) > 0:
			rep.Sidecars = append(rep.Sidecars, Sidecar{Name: name, State: Stale, Reason: "its container differs from what today's config renders", Changes: changes})
		case status.CatalogHash != cfg.CatalogHash(status.Sidecars):
			rep.Sidecars = append(rep.Sidecars, Sidecar{Name: name, State: Stale, Reason: fmt.Sprintf("injected from catalog %s, today's is %s (the pod's status keeps no per-sidecar record)", status.CatalogHash, cfg.CatalogHash(status.Sidecars)),
				Changes: []string{"catalog hash: " + status.CatalogHash + " → " + cfg.CatalogHash(status.Sidecars)}})
		default:
			rep.Sidecars = append(rep.Sidecars, Sidecar{Name: name, State: Current, Reason: "as today's config would inject it"})
		}
	}
	for _, d := range today.Decisions {
		if d.Action == inject.ActionInjected && !slices.Contains(status.Sidecars, d.Sidecar) {
			rep.Sidecars = append(rep.Sidecars, Sidecar{Name: d.Sidecar, State: Missing,
				Reason: "today's config asks for it (" + strings.ReplaceAll(d.Reason, "-", " ") + ") but the pod was admitted without it: created while the webhook was down, or before the default was set"})
		}
	}
	return rep
}

// whyNot says why today's injection leaves out a sidecar the pod has.
func whyNot(today *inject.Result, name string, cfg *config.Config) string {
	for _, d := range today.Decisions {
		if d.Sidecar == "" && d.Action == inject.ActionSkipped {
			return "today's config injects nothing into this pod: " + d.Message
		}
	}
	if _, ok := cfg.Catalog.Get(name); !ok {
		return name + " is no longer in the catalog"
	}
	return fmt.Sprintf("today's config does not ask for %s (it injects %s)", name, strings.Join(today.Injected(), ", "))
}

// Submitted reconstructs the pod as it was submitted, before Outrigger injected it: the sidecars its status
// names go, with the volumes those sidecars bring (by today's catalog) and their mounts in the other
// containers, and the status itself. The pod is not modified.
func Submitted(pod *corev1.Pod, cfg *config.Config) *corev1.Pod {
	p := pod.DeepCopy()
	status, ok := inject.ReadStatus(p)
	if !ok {
		return p
	}
	delete(p.Annotations, inject.AnnotationStatus)
	var volumes []string
	for _, name := range status.Sidecars {
		if e, ok := cfg.Catalog.Get(name); ok {
			for _, v := range e.Pod.Volumes {
				volumes = append(volumes, v.Name)
			}
		}
	}
	keep := func(list []corev1.Container) []corev1.Container {
		var out []corev1.Container
		for _, c := range list {
			if slices.Contains(status.Sidecars, c.Name) {
				continue
			}
			c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return slices.Contains(volumes, m.Name) })
			out = append(out, c)
		}
		return out
	}
	p.Spec.InitContainers = keep(p.Spec.InitContainers)
	p.Spec.Containers = keep(p.Spec.Containers)
	p.Spec.Volumes = slices.DeleteFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return slices.Contains(volumes, v.Name) })
	return p
}

// located is a container and whether it is an init container.
type located struct {
	Container corev1.Container
	Init      bool
}

func findContainer(pod *corev1.Pod, name string) *located {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return &located{Container: c, Init: true}
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return &located{Container: c}
		}
	}
	return nil
}

func modeOf(init bool) string {
	if init {
		return config.ModeNative
	}
	return config.ModeContainers
}
