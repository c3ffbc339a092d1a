package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/outrigger-dev/outrigger/webhook/catalog"
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
		// The patch carries every change Inject made (what inject's package doc says it may edit).
		var submitted corev1.Pod
		if err := json.Unmarshal(raw, &submitted); err == nil {
			if res, err := inject.Inject(inject.Input{Pod: &submitted, Namespace: "fuzz", Config: cfg}); err == nil && res.Changed {
				if missed := patchMisses(t, &submitted, res.Pod); missed != "" {
					t.Fatalf("Inject changed fields outside what the patch covers, and the patch drops them: %s", missed)
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

// FuzzAnnotationValues aims the fuzzer at the annotation parser: two real parameters of the catalog (picked
// by index, so that the inputs explore values rather than unknown keys), each given an arbitrary value, on
// a pod that asks for every sidecar. Whatever the values, Inject must deny with problems that each name an
// annotation or a sidecar, or inject; when it injects, every value it took passes its parameter's type
// (which the catalog tests prove the sidecar binary accepts too) and reaches its sidecar's environment
// exactly as written (inject.EnvLiteral); and the same input gives the same answer twice.
func FuzzAnnotationValues(f *testing.F) {
	f.Add(uint8(0), uint8(0), "web-conf", uint8(1), uint8(3), "https://git.example/site.git")
	f.Add(uint8(2), uint8(4), "$(HOME)$$", uint8(3), uint8(7), "\n")
	f.Add(uint8(4), uint8(1), "127.0.0.1:8080", uint8(1), uint8(0), "https://u:p@host/r")
	f.Add(uint8(0), uint8(9), "10s", uint8(0), uint8(10), "0s")
	f.Add(uint8(3), uint8(2), "cache-0:6379:1 name", uint8(3), uint8(5), "{}")
	h := testInjector(f, "")
	cfg := h.Config()
	names := cfg.Catalog.Names()
	f.Fuzz(func(t *testing.T, s1, p1 uint8, v1 string, s2, p2 uint8, v2 string) {
		annotations := map[string]string{
			"outrigger.dev/inject":                  strings.Join(names, ","),
			"https-proxy.outrigger.dev/tls-secret":  "web-tls",
			"config-sync.outrigger.dev/configmap":   "web-conf",
			"git-sync.outrigger.dev/repo":           "https://git.example/site.git",
			"shard-ambassador.outrigger.dev/shards": "cache-0:6379:1",
		}
		type pick struct {
			entry *catalog.Entry
			param catalog.Parameter
			key   string
			value string
		}
		var picks []pick
		for _, in := range []struct {
			s, p uint8
			v    string
		}{{s1, p1, v1}, {s2, p2, v2}} {
			e, _ := cfg.Catalog.Get(names[int(in.s)%len(names)])
			p := e.Parameters[int(in.p)%len(e.Parameters)]
			key := e.AnnotationPrefix() + e.ParamName(p)
			annotations[key] = in.v
			picks = append(picks, pick{e, p, key, in.v})
		}
		if picks[0].key == picks[1].key {
			picks = picks[1:] // the second value replaced the first
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: annotations},
			Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "app", Image: "a"}}}}
		res, err := inject.Inject(inject.Input{Pod: pod, Namespace: "fuzz", Config: cfg})
		again, err2 := inject.Inject(inject.Input{Pod: pod, Namespace: "fuzz", Config: cfg})
		if fmt.Sprint(err) != fmt.Sprint(err2) || (err == nil) != (err2 == nil) {
			t.Fatalf("the same pod, two answers: %v / %v", err, err2)
		}
		if err != nil {
			var denied *inject.DeniedError
			if !errors.As(err, &denied) {
				t.Fatalf("not a denial: %v", err)
			}
			for _, p := range denied.Problems {
				if !strings.Contains(p, "annotation ") && !strings.Contains(p, "sidecar ") {
					t.Fatalf("a problem that names neither an annotation nor a sidecar: %q", p)
				}
			}
			return
		}
		if a, b := podJSON(t, res.Pod), podJSON(t, again.Pod); a != b {
			t.Fatal("the same pod, two different injections")
		}
		for _, p := range picks {
			if p.value == "" {
				continue // "" leaves the sidecar's default
			}
			if err := p.param.Check(p.value); err != nil {
				t.Fatalf("admitted %s=%q, which its type refuses: %v", p.key, p.value, err)
			}
			if p.param.Env == "" {
				continue
			}
			c := findContainer(res.Pod, p.entry.Name)
			if c == nil {
				t.Fatalf("admitted without sidecar %s", p.entry.Name)
			}
			var got *corev1.EnvVar
			for i := range c.Env {
				if c.Env[i].Name == p.param.Env {
					got = &c.Env[i]
				}
			}
			if got == nil || got.ValueFrom != nil || got.Value != inject.EnvLiteral(p.value) {
				t.Fatalf("%s=%q reached %s as %+v, want %s=%q", p.key, p.value, p.entry.Name, got, p.param.Env, inject.EnvLiteral(p.value))
			}
		}
	})
}

func podJSON(t *testing.T, p *corev1.Pod) string {
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func findContainer(p *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}
