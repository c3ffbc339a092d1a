package install

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/policy"
)

// TestMatchConditionsKeepPodsAwayFromTheWebhookOnTheAPIServer evaluates the chart's matchConditions where
// they run, in the API server's CEL: the chart's MutatingWebhookConfiguration (renamed, and scoped to one
// test namespace) points at a closed port under failurePolicy Fail, so any pod it sends to the webhook
// is refused and any pod its conditions leave out is admitted. A mirror pod and a hostNetwork pod are
// left out, an ordinary pod is not; with injectHostNetwork=true the hostNetwork pod is sent (and refused)
// too. The admission policies (`outrigger render --policy`) carry the same conditions, expression for
// expression.
func TestMatchConditionsKeepPodsAwayFromTheWebhookOnTheAPIServer(t *testing.T) {
	ctx := context.Background()
	const ns, name = "match-conditions", "outrigger-match-conditions-test"
	namespace(t, ns, map[string]string{"e2e.outrigger.dev/match-conditions": "yes"})
	client := env.cluster.Client().AdmissionregistrationV1().MutatingWebhookConfigurations()

	install := func(values ...string) *admissionregistrationv1.MutatingWebhookConfiguration {
		t.Helper()
		var wh admissionregistrationv1.MutatingWebhookConfiguration
		into(t, find(t, objects(t, render(t, "outrigger", "outrigger-system", values...)), "MutatingWebhookConfiguration", "outrigger"), &wh)
		wh.Name = name
		url := "https://127.0.0.1:1/inject" // nothing listens: a pod sent here is refused under Fail
		for i := range wh.Webhooks {
			wh.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
			wh.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"e2e.outrigger.dev/match-conditions": "yes"}}
		}
		client.Delete(ctx, name, metav1.DeleteOptions{})
		if _, err := client.Create(ctx, &wh, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return &wh
	}
	defer client.Delete(ctx, name, metav1.DeleteOptions{})
	pod := func(podName string, edit func(*corev1.Pod)) *corev1.Pod {
		p := cluster.AppPod(podName, nil)
		edit(p)
		return p
	}
	ordinary := pod("ordinary", func(*corev1.Pod) {})
	mirror := pod("mirror", func(p *corev1.Pod) {
		p.Annotations = map[string]string{"kubernetes.io/config.mirror": "static-pod-hash"}
		p.Spec.NodeName = "node-1" // the API server's validation wants a mirror pod bound to its node
	})
	hostNetwork := pod("host-network", func(p *corev1.Pod) { p.Spec.HostNetwork = true })
	sent := func(p *corev1.Pod) (bool, error) {
		_, err := env.cluster.CreatePod(ctx, ns, p.DeepCopy(), true)
		if err == nil {
			return false, nil
		}
		if strings.Contains(err.Error(), "failed calling webhook") {
			return true, nil
		}
		return false, err
	}

	wh := install()
	// The API server picks up a new configuration within a moment: wait until the ordinary pod is sent.
	clustertest.Eventually(t, 30*time.Second, func() error {
		if s, err := sent(ordinary); err != nil || !s {
			return fmt.Errorf("the ordinary pod was not sent to the webhook yet (%v)", err)
		}
		return nil
	})
	for _, tc := range []struct {
		pod  *corev1.Pod
		sent bool
	}{{ordinary, true}, {mirror, false}, {hostNetwork, false}} {
		got, err := sent(tc.pod)
		if err != nil {
			t.Fatalf("pod %s: %v", tc.pod.Name, err)
		}
		if got != tc.sent {
			t.Errorf("pod %s sent to the webhook: %v, want %v", tc.pod.Name, got, tc.sent)
		}
	}
	cfg, err := config.Parse(nil, "outrigger-system")
	if err != nil {
		t.Fatal(err)
	}
	res, err := policy.Render(cfg, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rendered, _ := json.Marshal(res.Objects)
	for _, mc := range wh.Webhooks[0].MatchConditions {
		if want, _ := json.Marshal(map[string]string{"expression": mc.Expression, "name": mc.Name}); !strings.Contains(string(rendered), string(want)) {
			t.Errorf("the admission policies do not carry the chart's condition %s: %s", mc.Name, want)
		}
	}
	t.Logf("result: on the API server, the chart's conditions leave out the mirror pod and the hostNetwork pod and send the ordinary one")

	install("config.injectHostNetwork=true")
	clustertest.Eventually(t, 30*time.Second, func() error {
		if s, err := sent(hostNetwork); err != nil || !s {
			return fmt.Errorf("with injectHostNetwork=true the hostNetwork pod is still left out (%v)", err)
		}
		return nil
	})
	if s, err := sent(mirror); err != nil || s {
		t.Errorf("with injectHostNetwork=true the mirror pod was sent (%v, %v)", s, err)
	}
	t.Logf("result: with injectHostNetwork=true the hostNetwork pod is sent too; the mirror pod still is not")
}
