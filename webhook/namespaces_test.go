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

var _ webhook.NamespaceLookup = failingLookup{}
