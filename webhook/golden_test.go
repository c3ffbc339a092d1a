package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/webhook"
	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/manifests"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/cases from the current output")

// goldenCase is testdata/cases/<name>.yaml: what goes in.
type goldenCase struct {
	Description string `json:"description"`
	Namespace   struct {
		Name        string            `json:"name"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"namespace"`
	Config string     `json:"config,omitempty"`
	Pod    corev1.Pod `json:"pod"`
	// PolicyDiffers names the admission policies' documented difference (policy.Result.Differences) that
	// this case shows; e2e/policy then checks that the difference is documented instead of the pod.
	PolicyDiffers string `json:"policyDiffers,omitempty"`
}

// goldenResult is testdata/cases/<name>.golden.yaml: what comes out, identical through both paths.
type goldenResult struct {
	Denied   string      `json:"denied,omitempty"`
	Warnings []string    `json:"warnings,omitempty"`
	Pod      *corev1.Pod `json:"pod,omitempty"`
}

// staticNamespace is the namespace as the informer would return it (pure logic: no cluster needed here;
// the e2e tests use the real informer).
type staticNamespace struct{ labels, annotations map[string]string }

func (s staticNamespace) Lookup(context.Context, string) (map[string]string, map[string]string, error) {
	return s.labels, s.annotations, nil
}

// TestGolden runs every case through the admission handler (decode → inject → JSON patch, the patch
// applied to the submitted pod) and through the CLI (manifests.Inject), and checks that both give the
// golden result.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/cases/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := 0
	for _, f := range files {
		if strings.HasSuffix(f, ".golden.yaml") {
			if _, err := os.Stat(strings.TrimSuffix(f, ".golden.yaml") + ".yaml"); err != nil {
				t.Errorf("stale golden file %s: no case file beside it", f)
			}
			continue
		}
		cases++
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) { runGolden(t, f) })
	}
	if cases < 15 {
		t.Fatalf("only %d golden cases found", cases)
	}
}

// readCase reads a case file and parses its config.
func readCase(t *testing.T, file string) (goldenCase, *config.Config) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c goldenCase
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	cfg, err := config.Parse([]byte(c.Config), "outrigger-system")
	if err != nil {
		t.Fatalf("%s: config: %v", file, err)
	}
	return c, cfg
}

func runGolden(t *testing.T, file string) {
	c, cfg := readCase(t, file)
	viaWebhook := throughWebhook(t, c, cfg)
	viaCLI := throughCLI(t, c, cfg)
	got := marshal(t, viaWebhook)
	if cli := marshal(t, viaCLI); !bytes.Equal(got, cli) {
		t.Errorf("the webhook and the CLI disagree; -webhook +cli:\n%s", cmp.Diff(string(got), string(cli)))
	}
	golden := strings.TrimSuffix(file, ".yaml") + ".golden.yaml"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./webhook -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("result differs from %s (go test ./webhook -run TestGolden -update rewrites it); -want +got:\n%s", golden, cmp.Diff(string(want), string(got)))
	}
}

func throughWebhook(t *testing.T, c goldenCase, cfg *config.Config) goldenResult {
	raw, err := json.Marshal(&c.Pod)
	if err != nil {
		t.Fatal(err)
	}
	h := &webhook.Injector{
		Config:     func() *config.Config { return cfg },
		Namespaces: staticNamespace{c.Namespace.Labels, c.Namespace.Annotations},
	}
	resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "uid-1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: c.Namespace.Name,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}})
	if !resp.Allowed {
		if resp.Result == nil || resp.Result.Code != 403 {
			t.Fatalf("not allowed and not a denial: %+v", resp.Result)
		}
		if len(resp.Patches) > 0 {
			t.Fatalf("a denial carries a patch: %v", resp.Patches)
		}
		return goldenResult{Denied: resp.Result.Message}
	}
	patched := raw
	if len(resp.Patches) > 0 {
		ops, err := json.Marshal(resp.Patches)
		if err != nil {
			t.Fatal(err)
		}
		patch, err := jsonpatch.DecodePatch(ops)
		if err != nil {
			t.Fatalf("the webhook's patch does not decode: %v", err)
		}
		if patched, err = patch.Apply(raw); err != nil {
			t.Fatalf("the webhook's patch does not apply to the submitted pod: %v", err)
		}
	}
	var pod corev1.Pod
	if err := json.Unmarshal(patched, &pod); err != nil {
		t.Fatal(err)
	}
	return goldenResult{Warnings: resp.Warnings, Pod: &pod}
}

func throughCLI(t *testing.T, c goldenCase, cfg *config.Config) goldenResult {
	in, err := yaml.Marshal(&c.Pod)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	report, err := manifests.Inject(bytes.NewReader(in), &out, manifests.Options{
		Config: cfg, Namespace: c.Namespace.Name,
		NamespaceAnnotations: c.Namespace.Annotations, NamespaceLabels: c.Namespace.Labels,
	})
	if err != nil {
		msg := err.Error()
		// The CLI names the document; the denial itself follows.
		if i := strings.Index(msg, "outrigger: "); i >= 0 {
			return goldenResult{Denied: msg[i:]}
		}
		t.Fatalf("cli: %v", err)
	}
	if out.Len() > 0 && len(report.Objects) == 0 && c.Pod.Kind == "Pod" {
		t.Fatal("cli reported no object for a pod")
	}
	var pod corev1.Pod
	if err := yaml.Unmarshal(out.Bytes(), &pod); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	for _, o := range report.Objects {
		warnings = append(warnings, o.Warnings...)
	}
	return goldenResult{Warnings: warnings, Pod: &pod}
}

func marshal(t *testing.T, r goldenResult) []byte {
	t.Helper()
	data, err := yaml.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
