package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func benchPod(envVars int) []byte {
	var env []corev1.EnvVar
	for i := 0; i < envVars; i++ {
		env = append(env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%04d", i), Value: "value-of-sixteen"})
	}
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{
			"outrigger.dev/inject": "https-proxy,topz", "https-proxy.outrigger.dev/tls-secret": "web-tls",
			"topz.outrigger.dev/addr": ":9805"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web:1", Env: env,
			Ports: []corev1.ContainerPort{{ContainerPort: 8000}}}}},
	}
	raw, _ := json.Marshal(&pod)
	return raw
}

// BenchmarkHandle measures decode → inject → patch in process (no TLS, no HTTP), for profiling; the
// end-to-end benchmark over TLS against a floor handler is bench/webhook.
func BenchmarkHandle(b *testing.B) {
	for _, n := range []int{20, 1500} {
		b.Run(fmt.Sprintf("env=%d", n), func(b *testing.B) {
			h := testInjector(b, "")
			raw := benchPod(n)
			req := review("shop", raw)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if resp := h.Handle(context.Background(), req); !resp.Allowed {
					b.Fatal(resp.Result)
				}
			}
		})
	}
}
