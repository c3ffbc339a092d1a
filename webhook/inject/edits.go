package inject

import corev1 "k8s.io/api/core/v1"

// EditedParts is the contract between injection and the webhook's JSON patch: the parts of a pod that
// Inject may change, with the same JSON paths as in the whole pod. The webhook diffs only these (diffing
// the whole pod cost over half of its time on a pod with 1,500 env vars, for fields injection never
// touches), so a change Inject makes anywhere else would be silently dropped from the patch.
//
// Inject only adds or reorders within these: the pod's annotations, its init containers (sidecars added
// and moved), its volumes, shareProcessNamespace, containers appended after the app's (containers mode),
// and the volume mounts and probes of the app's own containers (the first apps of them). Anything else it must leave
// as submitted. If Inject ever edits another field, add it here: TestThePatchCoversEveryChange (webhook)
// compares this patch with a whole-pod diff over the golden cases and the fuzz corpus, and fails until
// the field is here.
func EditedParts(p *corev1.Pod, apps int) any {
	out := editedPod{
		Metadata: editedMeta{Annotations: p.Annotations},
		Spec: editedSpec{
			InitContainers:        p.Spec.InitContainers,
			Volumes:               p.Spec.Volumes,
			ShareProcessNamespace: p.Spec.ShareProcessNamespace,
		},
	}
	for i := range p.Spec.Containers {
		if i < apps {
			c := &p.Spec.Containers[i]
			out.Spec.Containers = append(out.Spec.Containers, appContainerEdits{VolumeMounts: c.VolumeMounts,
				StartupProbe: c.StartupProbe, ReadinessProbe: c.ReadinessProbe, LivenessProbe: c.LivenessProbe})
		} else {
			out.Spec.Containers = append(out.Spec.Containers, &p.Spec.Containers[i])
		}
	}
	return out
}

type editedPod struct {
	Metadata editedMeta `json:"metadata"`
	Spec     editedSpec `json:"spec"`
}

type editedMeta struct {
	Annotations map[string]string `json:"annotations,omitempty"`
}

type editedSpec struct {
	InitContainers        []corev1.Container `json:"initContainers,omitempty"`
	Containers            []any              `json:"containers,omitempty"`
	Volumes               []corev1.Volume    `json:"volumes,omitempty"`
	ShareProcessNamespace *bool              `json:"shareProcessNamespace,omitempty"`
}

// appContainerEdits is an app container as injection edits it: its volume mounts, and its probes (pointed
// at a sidecar that answers them, catalog.AppProbes).
type appContainerEdits struct {
	VolumeMounts   []corev1.VolumeMount `json:"volumeMounts,omitempty"`
	StartupProbe   *corev1.Probe        `json:"startupProbe,omitempty"`
	ReadinessProbe *corev1.Probe        `json:"readinessProbe,omitempty"`
	LivenessProbe  *corev1.Probe        `json:"livenessProbe,omitempty"`
}
