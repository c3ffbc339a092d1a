package cluster

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AppPod is a one-container pod with the given annotations: what the e2e suites submit to the webhook.
func AppPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
}

// CreatePod creates pod in ns through the API server (dryRun: a server-side dry run, which still calls the
// webhooks) and returns the pod as admitted, after every mutating webhook.
func (c *Cluster) CreatePod(ctx context.Context, ns string, pod *corev1.Pod, dryRun bool) (*corev1.Pod, error) {
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return c.Client().CoreV1().Pods(ns).Create(ctx, pod, opts)
}

// NativeSidecars lists the pod's native sidecars: init containers with restartPolicy Always.
func NativeSidecars(pod *corev1.Pod) []string {
	var out []string
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			out = append(out, c.Name)
		}
	}
	return out
}
