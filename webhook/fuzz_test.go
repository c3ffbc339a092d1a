package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/outrigger-dev/outrigger/webhook"
	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/inject"
)

func testInjector(t testing.TB, configYAML string) *webhook.Injector {
	t.Helper()
	cfg, err := config.Parse([]byte(configYAML), "outrigger-system")
	if err != nil {
		t.Fatal(err)
	}
	return &webhook.Injector{Config: func() *config.Config { return cfg }}
}

func review(ns string, raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: ns,
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
	}}
}

// applyResponse applies an allowed response's patch to raw, failing the test if it does not apply.
func applyResponse(t testing.TB, raw []byte, resp admission.Response) []byte {
	t.Helper()
	if len(resp.Patches) == 0 {
		return raw
	}
	ops, _ := json.Marshal(resp.Patches)
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatalf("patch does not decode: %v\n%s", err, ops)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("patch does not apply: %v\n%s", err, ops)
	}
	return out
}

// FuzzAdmission feeds arbitrary pod JSON and annotations (the inject list and two more of any key) through
// decode → inject → patch. Whatever comes in, the handler must not panic, must answer
// allowed-with-an-applicable-patch, denied-with-a-reason or 400; an allowed pod gains no privilege
// (privilegeGained), its patch carries every change Inject made, and submitted again it comes back
// unchanged (never injected twice).
func FuzzAdmission(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"a"}]}}`), "topz,https-proxy", "https-proxy.outrigger.dev/tls-secret", "t", "topz.outrigger.dev/image", "evil:1")
	f.Add([]byte(`{"spec":{"initContainers":[{"name":"topz"}],"containers":[]}}`), "topz", "topz.outrigger.dev/addr", ":1", "", "")
	f.Add([]byte(`{"metadata":{"annotations":{"a":"b"}},"spec":{"containers":[{"name":"x","volumeMounts":[{"name":"v","mountPath":"/git"}]}]}}`), "git-sync", "git-sync.outrigger.dev/repo", "file:///r", "", "")
	f.Add([]byte(`not json`), "", "", "", "", "")
	f.Add([]byte(`{"spec":{"containers":[{"name":"app","ports":[{"containerPort":8080}]}],"shareProcessNamespace":false}}`), "config-sync", "config-sync.outrigger.dev/configmap", "cm", "", "")
	f.Add([]byte(`{"metadata":{"annotations":{"outrigger.dev/status":"{bad"}},"spec":{"hostNetwork":true,"containers":[{"name":"a"}]}}`), "none", `"odd.key"/"x"`, "\x00", "", "")
	h := testInjector(f, "")
	cfg := h.Config()
	f.Add([]byte(`{"spec":{"containers":[{"name":"app"}]}}`), "git-sync", "git-sync.outrigger.dev/repo", "file:///r", "git-sync.outrigger.dev/mount-path", "/proc")
	f.Fuzz(func(t *testing.T, raw []byte, sidecars, key, value, key2, value2 string) {
		var pod corev1.Pod
		if err := json.Unmarshal(raw, &pod); err == nil {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations["outrigger.dev/inject"] = sidecars
			pod.Annotations[key] = value
			pod.Annotations[key2] = value2
			raw, _ = json.Marshal(&pod)
		}
		resp := h.Handle(context.Background(), review("fuzz", raw))
		if !resp.Allowed {
			if resp.Result == nil || resp.Result.Message == "" {
				t.Fatalf("refused without a reason: %+v", resp)
			}
			if len(resp.Patches) > 0 {
				t.Fatal("a refusal carries a patch")
			}
			return
		}
		injected := applyResponse(t, raw, resp)
		// No annotation gains a privilege: images, security contexts, volumes and host namespaces are the
		// catalog's and the config's.
		var submittedPod, injectedPod corev1.Pod
		if json.Unmarshal(raw, &submittedPod) == nil && json.Unmarshal(injected, &injectedPod) == nil {
			if gained := privilegeGained(cfg, &submittedPod, &injectedPod); gained != "" {
				t.Fatalf("annotations gained a privilege: %s", gained)
			}
		}
		// The patch carries every change Inject made (inject.EditedParts is the whole of what it edits).
		var submitted corev1.Pod
		if err := json.Unmarshal(raw, &submitted); err == nil {
			if res, err := inject.Inject(inject.Input{Pod: &submitted, Namespace: "fuzz", Config: cfg}); err == nil && res.Changed {
				if missed := patchMisses(t, &submitted, res.Pod); missed != "" {
					t.Fatalf("Inject changed fields outside inject.EditedParts, and the patch drops them: %s", missed)
				}
			}
		}
		again := h.Handle(context.Background(), review("fuzz", injected))
		if !again.Allowed || len(again.Patches) > 0 {
			t.Fatalf("a pod injected once was changed or refused when submitted again: allowed=%v patches=%v", again.Allowed, again.Patches)
		}
	})
}

// TestHugePod injects into a pod with 1,500 env vars (~55 KB), as Istio's slow case: allowed, a patch that
// only adds (nothing of the app's rewritten), and every env var still there.
func TestHugePod(t *testing.T) {
	h := testInjector(t, "")
	var env []corev1.EnvVar
	for i := 0; i < 1500; i++ {
		env = append(env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%04d", i), Value: strings.Repeat("v", 16)})
	}
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "big", Annotations: map[string]string{
			"outrigger.dev/inject": "topz,https-proxy", "https-proxy.outrigger.dev/tls-secret": "tls"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "a", Env: env}}},
	}
	raw, _ := json.Marshal(&pod)
	if len(raw) < 50_000 {
		t.Fatalf("pod is only %d bytes", len(raw))
	}
	resp := h.Handle(context.Background(), review("shop", raw))
	if !resp.Allowed {
		t.Fatalf("denied: %v", resp.Result)
	}
	for _, op := range resp.Patches {
		if op.Operation != "add" {
			t.Errorf("patch op %s %s: only additions expected", op.Operation, op.Path)
		}
	}
	var out corev1.Pod
	if err := json.Unmarshal(applyResponse(t, raw, resp), &out); err != nil {
		t.Fatal(err)
	}
	if n := len(out.Spec.Containers[0].Env); n != 1500 {
		t.Fatalf("app has %d env vars after injection, want 1500", n)
	}
	if n := len(out.Spec.InitContainers); n != 2 {
		t.Fatalf("%d sidecars injected, want 2", n)
	}
}

// TestBadReviews: malformed or misdirected reviews are answered with a clear 400, never a panic or patch.
func TestBadReviews(t *testing.T) {
	h := testInjector(t, "")
	for _, tc := range []struct {
		name string
		req  admission.Request
		want string
	}{
		{"not json", review("ns", []byte("{")), "decoding the pod"},
		{"no object", review("ns", nil), "has no object"},
		{"a deployment", admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: []byte(`{}`)}}}, "injects Pods only, got apps/v1 Deployment"},
		{"wrong type inside", review("ns", []byte(`{"spec":{"containers":"app"}}`)), "decoding the pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.Handle(context.Background(), tc.req)
			if resp.Allowed || resp.Result.Code != 400 || !strings.Contains(resp.Result.Message, tc.want) {
				t.Fatalf("got allowed=%v %d %q, want 400 containing %q", resp.Allowed, resp.Result.Code, resp.Result.Message, tc.want)
			}
		})
	}
}

// TestReinvocationAfterAnotherWebhook: a second webhook adds a container after us; when the API server
// calls us again (reinvocationPolicy: IfNeeded), nothing is injected twice.
func TestReinvocationAfterAnotherWebhook(t *testing.T) {
	h := testInjector(t, "defaults: [topz]")
	raw := []byte(`{"metadata":{"name":"p","annotations":{"outrigger.dev/inject":"topz,git-sync","git-sync.outrigger.dev/repo":"file:///r"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`)
	once := applyResponse(t, raw, h.Handle(context.Background(), review("shop", raw)))
	var pod corev1.Pod
	_ = json.Unmarshal(once, &pod)
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "other-webhooks-agent", Image: "x"})
	edited, _ := json.Marshal(&pod)
	resp := h.Handle(context.Background(), review("shop", edited))
	if !resp.Allowed || len(resp.Patches) != 0 {
		t.Fatalf("reinvocation changed the pod: %v", resp.Patches)
	}
	if got := len(pod.Spec.InitContainers); got != 2 {
		t.Fatalf("%d sidecars, want 2", got)
	}
	if got := len(pod.Spec.Volumes); got != 1 {
		t.Fatalf("%d volumes, want 1", got)
	}
}
