package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// restrictedPod is a pod that itself passes Pod Security "restricted": non-root, no privilege escalation,
// every capability dropped, the runtime's seccomp profile.
func restrictedPod(name string, annotations map[string]string) *corev1.Pod {
	pod := cluster.AppPod(name, annotations)
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr(true),
		RunAsUser:      ptr(int64(1000)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	pod.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	return pod
}

func ptr[T any](v T) *T { return &v }

// TestInjectedPodsStayPodSecurityRestricted: in a namespace that enforces Pod Security "restricted" (the
// API server's own PodSecurity admission, which runs after the mutating webhooks), a pod that passes
// restricted on its own still passes it with every built-in sidecar injected, in native and in
// containers mode. A pod that does not pass is still refused: the webhook adds nothing that hides it.
func TestInjectedPodsStayPodSecurityRestricted(t *testing.T) {
	ctx := context.Background()
	const ns = "restricted"
	clustertest.CreateNamespace(t, env.cluster, ns, map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}, nil)
	all := map[string]string{
		"outrigger.dev/inject":                       "topz,https-proxy,config-sync,git-sync,shard-ambassador",
		"https-proxy.outrigger.dev/tls-secret":       "web-tls",
		"config-sync.outrigger.dev/configmap":        "web-conf",
		"config-sync.outrigger.dev/reload-process":   "app",
		"git-sync.outrigger.dev/repo":                "https://git.example/site.git",
		"shard-ambassador.outrigger.dev/shards":      "cache-0:6379:1",
		"shard-ambassador.outrigger.dev/status-port": "9805",
	}
	for _, mode := range []string{"native", "containers"} {
		annotations := map[string]string{"outrigger.dev/sidecar-mode": mode}
		for k, v := range all {
			annotations[k] = v
		}
		pod, err := env.cluster.CreatePod(ctx, ns, restrictedPod("all-"+mode, annotations), true)
		if err != nil {
			t.Fatalf("%s mode: a restricted pod with all five sidecars was refused: %v", mode, err)
		}
		native, plain := sidecarNames(pod)
		got := len(native) + len(plain) - 1 // the app is one of the containers
		if got != 5 {
			t.Fatalf("%s mode: %d sidecars (native %v, containers %v), want 5", mode, got, native, plain)
		}
		t.Logf("result: %s mode: %d sidecars, admitted under enforce=restricted", mode, got)
	}
	// The control: the same pod without its own restricted settings is refused, naming what is missing.
	loose := cluster.AppPod("loose", map[string]string{"outrigger.dev/inject": "topz"})
	_, err := env.cluster.CreatePod(ctx, ns, loose, true)
	if err == nil || !strings.Contains(err.Error(), "violates PodSecurity \"restricted") {
		t.Fatalf("a pod that is not restricted itself: %v, want PodSecurity's refusal", err)
	}
	if !strings.Contains(err.Error(), `container "app"`) || strings.Contains(err.Error(), fmt.Sprintf("container %q", "topz")) {
		t.Errorf("PodSecurity's refusal should name the app's container only, not the sidecar's: %v", err)
	}
}
