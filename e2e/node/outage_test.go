package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// TestAnOutageRefusesNamingTheWebhookAndSparesTheSystem deletes every webhook pod (the Deployment scaled
// to zero) under the chart's default failurePolicy Fail: a pod in a selected namespace is refused with
// the webhook's name in the message, while kube-system and the webhook's own namespace keep admitting and
// running pods (the chart's namespaceSelector leaves them out), so the webhook can always come back. The
// Ignore half (admitted uninjected, then reported missing by `outrigger status`) is TestDayTwoAfterA
// CatalogUpgrade's.
func TestAnOutageRefusesNamingTheWebhookAndSparesTheSystem(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns = "outage"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	kubectl(t, "-n", injectorNamespace, "scale", "deployment/"+webhookDeployment, "--replicas=0")
	t.Cleanup(func() {
		kubectl(t, "-n", injectorNamespace, "scale", "deployment/"+webhookDeployment, "--replicas=2")
		kubectl(t, "-n", injectorNamespace, "rollout", "status", "deployment/"+webhookDeployment, "--timeout=2m")
		if err := waitInjecting(context.Background(), ns, 2*time.Minute); err != nil {
			t.Error(err)
		}
	})
	waitWebhookPodsGone(t, ctx)

	var refusal error
	clustertest.Eventually(t, time.Minute, func() error {
		_, refusal = env.cluster.CreatePod(ctx, ns, cluster.AppPod("during-outage", map[string]string{"outrigger.dev/inject": "topz"}), true)
		if refusal == nil {
			return fmt.Errorf("a pod was admitted with no webhook replica under failurePolicy Fail")
		}
		return nil
	})
	if msg := refusal.Error(); !strings.Contains(msg, "inject.outrigger.dev") || !strings.Contains(msg, "failed calling webhook") {
		t.Errorf("the refusal does not name the webhook: %v", refusal)
	}

	for _, system := range []string{"kube-system", injectorNamespace} {
		name := "outage-probe"
		pod := appPod(name, nil, "-listen=127.0.0.1:8000")
		pod.Namespace = system
		if _, err := env.cluster.Client().CoreV1().Pods(system).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: a pod was refused while the webhook is down: %v", system, err)
		}
		t.Cleanup(func() {
			_ = env.cluster.Client().CoreV1().Pods(system).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		})
		waitPod(t, system, name, 2*time.Minute, func(p *corev1.Pod) error {
			if len(p.Spec.InitContainers) > 0 {
				return fmt.Errorf("injected: %v", p.Spec.InitContainers)
			}
			return podRunning(p)
		})
	}
	t.Logf("result: with no webhook replica, a pod in %s was refused (%q); pods in kube-system and %s were admitted and ran", ns, firstLine(refusal.Error()), injectorNamespace)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}
