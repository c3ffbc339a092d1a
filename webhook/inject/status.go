package inject

import (
	"encoding/json"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/outrigger-dev/outrigger/webhook/catalog"
	"github.com/outrigger-dev/outrigger/webhook/config"
)

// Status is the value of the outrigger.dev/status annotation.
type Status struct {
	// Sidecars are the sidecars the pod has from Outrigger, in the order first injected.
	Sidecars []string `json:"sidecars"`
	// CatalogHash identifies the catalog entries and images used, so that a pod injected from an older
	// catalog can be found (e.g. to roll it after an upgrade).
	CatalogHash string `json:"catalogHash"`
	// Hashes identify, per sidecar, the container as rendered for this pod (before the API server's
	// defaulting; image included) and what its entry adds to the pod (config.SidecarHash), so that
	// `outrigger status` can tell which sidecar of a pod an upgrade left stale without flagging the others.
	// Absent in pods injected by Outrigger 0.1.0.
	Hashes map[string]string `json:"hashes,omitempty"`
}

// ReadStatus decodes a pod's status annotation; ok is false when there is none or it is not ours.
func ReadStatus(pod *corev1.Pod) (Status, bool) {
	var s Status
	v, found := pod.Annotations[AnnotationStatus]
	if !found || json.Unmarshal([]byte(v), &s) != nil {
		return Status{}, false
	}
	return s, true
}

// setStatus records the sidecars used (merged with an earlier status), a hash of their entries, and the
// hash of each sidecar rendered by this call (hashes[name]); a sidecar already present keeps its record.
func setStatus(pod *corev1.Pod, used []*catalog.Entry, hashes map[string]string, cfg *config.Config) {
	if len(used) == 0 {
		return
	}
	prev, _ := ReadStatus(pod)
	names := append([]string{}, prev.Sidecars...)
	for _, e := range used {
		if !slices.Contains(names, e.Name) {
			names = append(names, e.Name)
		}
	}
	s := Status{Sidecars: names, CatalogHash: cfg.CatalogHash(names)}
	if len(prev.Hashes)+len(hashes) > 0 {
		s.Hashes = map[string]string{}
		for name, h := range prev.Hashes {
			if slices.Contains(names, name) {
				s.Hashes[name] = h
			}
		}
		maps.Copy(s.Hashes, hashes)
	}
	data, _ := json.Marshal(s) // a struct of strings: cannot fail
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationStatus] = string(data)
}
