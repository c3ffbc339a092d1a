package webhook

import (
	"encoding/json"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// patchFor returns the JSON patch from original to mutated, computed by gomodules.xyz/jsonpatch/v2 on the
// parts of the pod that injection can change, not on the whole pod.
//
// Why: diffing the whole pod decodes and compares every field of the app containers; for a pod with
// 1,500 env vars that was over half of the webhook's time, for parts injection never touches. Injection
// only adds: annotations, init containers, volumes, shareProcessNamespace, containers appended after the
// app's, and volume mounts of the app containers (inject never removes or reorders anything). So the
// projection keeps those fields whole and, for each app container, only its volumeMounts; the patch paths
// are the same as in the whole pod. The golden tests apply every patch to the submitted pod and compare
// the result with the CLI's, which sees the whole pod.
func patchFor(original, mutated *corev1.Pod) ([]jsonpatch.Operation, error) {
	apps := len(original.Spec.Containers)
	a, err := json.Marshal(project(original, apps))
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(project(mutated, apps))
	if err != nil {
		return nil, err
	}
	return jsonpatch.CreatePatch(a, b)
}

type projectedPod struct {
	Metadata projectedMeta `json:"metadata"`
	Spec     projectedSpec `json:"spec"`
}

type projectedMeta struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

type projectedSpec struct {
	InitContainers        []corev1.Container `json:"initContainers,omitempty"`
	Containers            []any              `json:"containers,omitempty"`
	Volumes               []corev1.Volume    `json:"volumes,omitempty"`
	ShareProcessNamespace *bool              `json:"shareProcessNamespace,omitempty"`
}

// appContainerMounts is an app container as injection sees it: only its mounts can change.
type appContainerMounts struct {
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`
}

func project(p *corev1.Pod, apps int) projectedPod {
	out := projectedPod{
		Metadata: projectedMeta{Annotations: p.Annotations},
		Spec: projectedSpec{
			InitContainers:        p.Spec.InitContainers,
			Volumes:               p.Spec.Volumes,
			ShareProcessNamespace: p.Spec.ShareProcessNamespace,
		},
	}
	for i := range p.Spec.Containers {
		if i < apps {
			out.Spec.Containers = append(out.Spec.Containers, appContainerMounts{VolumeMounts: p.Spec.Containers[i].VolumeMounts})
		} else {
			out.Spec.Containers = append(out.Spec.Containers, &p.Spec.Containers[i])
		}
	}
	return out
}
