package webhook_test

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	gomodules "gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/outrigger-dev/outrigger/webhook"
	"github.com/outrigger-dev/outrigger/webhook/inject"
)

// patchMisses applies the webhook's patch from original to mutated to the submitted pod and returns what
// the result lacks of mutated, the whole pod as Inject made it: a whole-pod diff, "" when nothing. It is
// how a test holds Inject to what inject may edit, the only parts the webhook's patch covers.
func patchMisses(t testing.TB, original, mutated *corev1.Pod) string {
	t.Helper()
	raw, err := json.Marshal(original)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(mutated)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := webhook.PatchFor(original, mutated)
	if err != nil {
		t.Fatalf("the patch: %v", err)
	}
	got := raw
	if len(ops) > 0 {
		data, err := json.Marshal(ops)
		if err != nil {
			t.Fatal(err)
		}
		patch, err := jsonpatch.DecodePatch(data)
		if err != nil {
			t.Fatal(err)
		}
		if got, err = patch.Apply(raw); err != nil {
			t.Fatalf("the patch does not apply to the submitted pod: %v", err)
		}
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(g, w) {
		return ""
	}
	missed, err := gomodules.CreatePatch(got, want)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, op := range missed {
		lines = append(lines, op.Operation+" "+op.Path)
	}
	return strings.Join(lines, "; ")
}

// goldenInjections runs Inject on every golden case that injects and returns the submitted and the
// injected pods.
func goldenInjections(t *testing.T) map[string][2]*corev1.Pod {
	files, err := filepath.Glob("testdata/cases/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]*corev1.Pod{}
	for _, f := range files {
		if strings.HasSuffix(f, ".golden.yaml") {
			continue
		}
		c, cfg := readCase(t, f)
		res, err := inject.Inject(inject.Input{Pod: &c.Pod, Namespace: c.Namespace.Name, Config: cfg,
			NamespaceLabels: c.Namespace.Labels, NamespaceAnnotations: c.Namespace.Annotations})
		if err != nil || !res.Changed {
			continue
		}
		out[filepath.Base(f)] = [2]*corev1.Pod{&c.Pod, res.Pod}
	}
	if len(out) < 15 {
		t.Fatalf("only %d golden cases inject", len(out))
	}
	return out
}

// Every change Inject makes to a golden case reaches the webhook's patch. (The fuzz target checks the same
// on every input it tries.)
func TestThePatchCoversEveryChange(t *testing.T) {
	for name, pods := range goldenInjections(t) {
		if missed := patchMisses(t, pods[0], pods[1]); missed != "" {
			t.Errorf("%s: Inject changed fields outside what the patch covers, and the webhook's patch drops them: %s", name, missed)
		}
	}
}

// The check above can fail: a change outside what the patch covers (hostNetwork, an app container's env) is
// what it reports.
func TestAChangeOutsideTheContractIsCaught(t *testing.T) {
	for name, pods := range goldenInjections(t) {
		mutated := pods[1].DeepCopy()
		mutated.Spec.HostNetwork = true
		mutated.Spec.Containers[0].Env = append(mutated.Spec.Containers[0].Env, corev1.EnvVar{Name: "ADDED", Value: "x"})
		missed := patchMisses(t, pods[0], mutated)
		if !strings.Contains(missed, "/spec/hostNetwork") || !strings.Contains(missed, "/spec/containers/0/env") {
			t.Errorf("%s: a change of hostNetwork and of the app's env was not reported (got %q)", name, missed)
		}
		return
	}
}
