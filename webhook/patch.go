package webhook

import (
	"encoding/json"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/outrigger-dev/outrigger/webhook/inject"
)

// patchFor returns the JSON patch from original to mutated, computed by gomodules.xyz/jsonpatch/v2 on the
// parts of the pod that injection declares it may change (inject.EditedParts), not on the whole pod: the
// rest of the pod is the app's, and diffing it was most of the webhook's time on large pods.
func patchFor(original, mutated *corev1.Pod) ([]jsonpatch.Operation, error) {
	apps := len(original.Spec.Containers)
	a, err := json.Marshal(inject.EditedParts(original, apps))
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(inject.EditedParts(mutated, apps))
	if err != nil {
		return nil, err
	}
	return jsonpatch.CreatePatch(a, b)
}
