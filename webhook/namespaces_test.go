package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/webhook"
)

// failingLookup is a namespace lookup that fails, as the API server's 403 does when the webhook may no
// longer read namespaces (e2e.TestANamespaceThatCannotBeReadIsNotFailOpen does that for real).
type failingLookup struct{}

func (failingLookup) Lookup(context.Context, string) (map[string]string, map[string]string, error) {
	return nil, nil, errors.New(`namespaces "team-a" is forbidden`)
}

func TestAnUnreadableNamespaceIsDeniedUnderFailAndAdmittedWithAWarningUnderIgnore(t *testing.T) {
	raw, err := json.Marshal(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{"outrigger.dev/inject": "topz"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, failClosed := range []bool{true, false} {
		h := testInjector(t, "")
		h.Namespaces, h.FailClosed = failingLookup{}, failClosed
		resp := h.Handle(context.Background(), review("team-a", raw))
		if failClosed {
			if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, "namespace team-a could not be read") ||
				!strings.Contains(resp.Result.Message, "forbidden") || !strings.Contains(resp.Result.Message, "failurePolicy Fail") {
				t.Errorf("Fail: allowed=%v %+v, want a denial naming the namespace, the error and the policy", resp.Allowed, resp.Result)
			}
			continue
		}
		if !resp.Allowed || len(resp.Patches) == 0 {
			t.Errorf("Ignore: allowed=%v with %d patches, want the pod's own request (topz) injected", resp.Allowed, len(resp.Patches))
		}
		if w := strings.Join(resp.Warnings, "\n"); !strings.Contains(w, "without its namespace's default sidecars") {
			t.Errorf("Ignore: warnings %q do not say what the pod lacks", w)
		}
	}
}

// What the namespace says cannot change a pod that opts out of everything, nor one in a namespace the
// config never injects: those are admitted as they are even under Fail.
func TestAnUnreadableNamespaceDoesNotBlockPodsItCannotChange(t *testing.T) {
	for _, tc := range []struct {
		name, config, ns string
		annotations      map[string]string
	}{
		{"opted out", "", "team-a", map[string]string{"outrigger.dev/inject": "none"}},
		{"an excluded namespace", "excludedNamespaces: [legacy]", "legacy", map[string]string{"outrigger.dev/inject": "topz"}},
	} {
		raw, _ := json.Marshal(&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: tc.annotations},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		})
		h := testInjector(t, tc.config)
		h.Namespaces, h.FailClosed = failingLookup{}, true
		resp := h.Handle(context.Background(), review(tc.ns, raw))
		if !resp.Allowed || len(resp.Patches) != 0 {
			t.Errorf("%s: allowed=%v, %d patches, %+v; want admitted unchanged", tc.name, resp.Allowed, len(resp.Patches), resp.Result)
		}
	}
}

var _ webhook.NamespaceLookup = failingLookup{}
