// Package policy proves `outrigger render --policy` on a real kube-apiserver with the MutatingAdmissionPolicy
// feature gate, and no webhook anywhere: for every golden case of webhook/testdata/cases, the pod created
// through the rendered policies equals, after the API server's defaulting, the webhook's result for the same
// case (its spec and its annotations, the status without its per-sidecar hashes); a pod the webhook denies
// is denied, naming what the webhook names.
package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
	"github.com/outrigger-dev/outrigger/webhook/catalog"
	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/inject"
	"github.com/outrigger-dev/outrigger/webhook/policy"
)

var resources = map[string]schema.GroupVersionResource{
	"MutatingAdmissionPolicy":          {Group: "admissionregistration.k8s.io", Version: "v1beta1", Resource: "mutatingadmissionpolicies"},
	"MutatingAdmissionPolicyBinding":   {Group: "admissionregistration.k8s.io", Version: "v1beta1", Resource: "mutatingadmissionpolicybindings"},
	"ValidatingAdmissionPolicy":        {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"},
	"ValidatingAdmissionPolicyBinding": {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"},
}

// goldenCase is webhook/testdata/cases/<name>.yaml (the fields this test reads).
type goldenCase struct {
	Namespace struct {
		Name        string            `json:"name"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"namespace"`
	Config        string     `json:"config,omitempty"`
	Pod           corev1.Pod `json:"pod"`
	PolicyDiffers string     `json:"policyDiffers,omitempty"`
}

// reference is the namespace where pods get the API server's defaulting and no policy (opted out).
const reference = "policy-reference"

func TestThePolicyInjectsWhatTheWebhookInjects(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, cluster.Options{APIServerFlags: []string{
		"--feature-gates=MutatingAdmissionPolicy=true", "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
	}})
	dyn := dynamic.NewForConfigOrDie(c.RESTConfig())
	clustertest.CreateNamespace(t, c, reference, map[string]string{inject.LabelInjection: inject.LabelInjectionDisabled}, nil)

	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, "webhook", "testdata", "cases", "*.yaml"))
	var injected, denied, unchanged int
	for _, file := range files {
		if strings.HasSuffix(file, ".golden.yaml") {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			var gc goldenCase
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(data, &gc); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse([]byte(gc.Config), "")
			if err != nil {
				t.Fatal(err)
			}
			res, err := policy.Render(cfg, policy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if gc.PolicyDiffers != "" {
				if !slices.ContainsFunc(res.Differences, func(d string) bool { return strings.Contains(d, gc.PolicyDiffers) }) {
					t.Fatalf("the case shows a difference %q that policy.Render does not document", gc.PolicyDiffers)
				}
				t.Skipf("a documented difference of the policies: %s", gc.PolicyDiffers)
			}
			applyPolicies(t, ctx, dyn, res.Objects)
			ns := gc.Namespace.Name
			if ns != "kube-system" {
				clustertest.CreateNamespace(t, c, ns, gc.Namespace.Labels, gc.Namespace.Annotations)
				setNamespace(t, ctx, c, ns, gc.Namespace.Labels, gc.Namespace.Annotations)
			}
			pod := gc.Pod.DeepCopy()
			pod.Namespace = ns
			want, wantErr := inject.Inject(inject.Input{Pod: pod, Namespace: ns, NamespaceLabels: gc.Namespace.Labels, NamespaceAnnotations: gc.Namespace.Annotations, Config: cfg})
			if wantErr != nil {
				denied++
				var lastErr error
				clustertest.Eventually(t, 20*time.Second, func() error {
					_, err := c.CreatePod(ctx, ns, pod.DeepCopy(), true)
					lastErr = err
					if err == nil {
						return fmt.Errorf("the policy admitted a pod the webhook denies (%v)", wantErr)
					}
					return namesTheSame(wantErr.Error(), err.Error())
				})
				t.Logf("webhook: %v\npolicy:  %v", wantErr, lastErr)
				return
			}
			if !want.Changed {
				unchanged++
			} else {
				injected++
			}
			expected := defaulted(t, ctx, c, want.Pod)
			var got *corev1.Pod
			clustertest.Eventually(t, 20*time.Second, func() error {
				p, err := c.CreatePod(ctx, ns, pod.DeepCopy(), true)
				if err != nil {
					return err
				}
				got = p
				if diff := compare(expected, got); diff != "" {
					return fmt.Errorf("the policy's pod differs from the webhook's (-webhook +policy):\n%s", diff)
				}
				return nil
			})
			if want.Changed {
				// Idempotent: the injected pod resubmitted gets nothing added twice.
				again, err := c.CreatePod(ctx, ns, resubmittable(got), true)
				if err != nil {
					t.Fatal(err)
				}
				if diff := compare(got, again); diff != "" {
					t.Errorf("the injected pod resubmitted changed (-first +again):\n%s", diff)
				}
			}
		})
	}
	t.Logf("%d golden cases: %d injected and %d left unchanged exactly as the webhook does, %d denied as it denies", injected+unchanged+denied, injected, unchanged, denied)
}

// applyPolicies server-side-applies the rendered objects, as `kubectl apply --server-side` would.
func applyPolicies(t *testing.T, ctx context.Context, dyn dynamic.Interface, objects []map[string]any) {
	t.Helper()
	for _, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		if _, err := dyn.Resource(resources[u.GetKind()]).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "outrigger-render", Force: true}); err != nil {
			t.Fatalf("applying %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

// setNamespace makes an existing namespace's labels and annotations the case's (cases share names).
func setNamespace(t *testing.T, ctx context.Context, c *cluster.Cluster, name string, labels, annotations map[string]string) {
	t.Helper()
	ns, err := c.Client().CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keep := map[string]string{"kubernetes.io/metadata.name": name}
	for k, v := range labels {
		keep[k] = v
	}
	ns.Labels, ns.Annotations = keep, annotations
	if _, err := c.Client().CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// defaulted is pod as the API server stores it (defaults applied), created in the reference namespace.
func defaulted(t *testing.T, ctx context.Context, c *cluster.Cluster, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	p := pod.DeepCopy()
	p.Namespace = reference
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	out, err := c.CreatePod(ctx, reference, p, true)
	if err != nil {
		t.Fatalf("the webhook's pod does not pass the API server: %v", err)
	}
	return out
}

// compare diffs what injection decides: the spec (without the service account's token volume, whose name is
// random) and the annotations, the status compared without the per-sidecar hashes the policy cannot compute.
func compare(want, got *corev1.Pod) string {
	norm := func(p *corev1.Pod) any {
		spec := p.Spec.DeepCopy()
		token := func(name string) bool { return strings.HasPrefix(name, "kube-api-access-") }
		spec.Volumes = slices.DeleteFunc(spec.Volumes, func(v corev1.Volume) bool { return token(v.Name) })
		for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
			for i := range list {
				list[i].VolumeMounts = slices.DeleteFunc(list[i].VolumeMounts, func(m corev1.VolumeMount) bool { return token(m.Name) })
				if len(list[i].VolumeMounts) == 0 {
					list[i].VolumeMounts = nil
				}
			}
		}
		annotations := map[string]string{}
		for k, v := range p.Annotations {
			annotations[k] = v
		}
		if s, ok := inject.ReadStatus(p); ok {
			s.Hashes = nil
			data, _ := json.Marshal(s)
			annotations[inject.AnnotationStatus] = string(data)
		}
		labels := map[string]string{}
		for k, v := range p.Labels {
			labels[k] = v
		}
		return struct {
			Annotations, Labels map[string]string
			Spec                *corev1.PodSpec
		}{annotations, labels, spec}
	}
	return cmp.Diff(norm(want), norm(got))
}

// resubmittable is a stored pod as a client would send it again.
func resubmittable(p *corev1.Pod) *corev1.Pod {
	out := p.DeepCopy()
	out.ResourceVersion, out.UID, out.CreationTimestamp, out.Status = "", types.UID(""), metav1.Time{}, corev1.PodStatus{}
	out.Spec.Volumes = slices.DeleteFunc(out.Spec.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, "kube-api-access-") })
	for _, list := range [][]corev1.Container{out.Spec.InitContainers, out.Spec.Containers} {
		for i := range list {
			list[i].VolumeMounts = slices.DeleteFunc(list[i].VolumeMounts, func(m corev1.VolumeMount) bool { return strings.HasPrefix(m.Name, "kube-api-access-") })
		}
	}
	return out
}

var named = regexp.MustCompile(`[a-z0-9.-]*outrigger\.dev/[a-z0-9-]+|sidecar [a-z0-9-]+|container [a-z0-9-]+`)

// namesTheSame checks that the policy's denial names one of the annotations, sidecars or containers the
// webhook's names.
func namesTheSame(webhook, policy string) error {
	// Outrigger's, or the API server's own validation, which runs before validating admission and refuses
	// some keys the webhook (running earlier, in mutating admission) denies first.
	if !strings.Contains(policy, "outrigger:") && !strings.Contains(policy, "is invalid") {
		return fmt.Errorf("the denial is not Outrigger's: %s", policy)
	}
	for _, m := range named.FindAllString(webhook, -1) {
		if strings.Contains(policy, m) {
			return nil
		}
	}
	return errors.New("the policy's denial names nothing the webhook's names:\n  webhook: " + webhook + "\n  policy:  " + policy)
}

// samples are values tried for every parameter: valid and invalid for one type or another.
var samples = []string{"", "0", "1", "-1", "8080", "99999", ":8080", "host:9090", "[::1]:80", "x:y", "10s", "5m", "1ms", "20s", "10", "1.5",
	"true", "FALSE", "maybe", "/etc/config", "relative/path", "/a:b", "web-tls", "Web_TLS", "a.b-c", "https://example.com/x", "example.com",
	"SIGHUP", "POST", "recursive", "1.3", "a,b", "\x00", "-1s", "1e3", "0.5", "11s", "1h", " 10 ", "64Mi", "100m", "2Gi", "1.5Ki"}

// TestThePolicyRefusesExactlyTheValuesTheWebhookRefuses tries every sample value on every parameter of every
// sidecar, one annotation at a time, through the real API server with the rendered policies: a value is
// admitted exactly when the webhook admits it (the CEL checks agree with the catalog's Go checks).
func TestThePolicyRefusesExactlyTheValuesTheWebhookRefuses(t *testing.T) {
	ctx := context.Background()
	c := clustertest.Start(t, cluster.Options{APIServerFlags: []string{
		"--feature-gates=MutatingAdmissionPolicy=true", "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
	}})
	cfg, err := config.Parse(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := policy.Render(cfg, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	applyPolicies(t, ctx, dynamic.NewForConfigOrDie(c.RESTConfig()), res.Objects)
	const ns = "values"
	clustertest.CreateNamespace(t, c, ns, nil, nil)
	// Wait for the policies to be in effect: a bad value denied.
	clustertest.Eventually(t, 20*time.Second, func() error {
		_, err := c.CreatePod(ctx, ns, cluster.AppPod("probe", map[string]string{"outrigger.dev/inject": "topz", "topz.outrigger.dev/redact": "maybe"}), true)
		if err == nil {
			return errors.New("the validating policy is not in effect yet")
		}
		return nil
	})
	tried, refused := 0, 0
	for _, name := range res.Rendered {
		e, _ := cfg.Catalog.Get(name)
		base := map[string]string{inject.AnnotationInject: name}
		for _, p := range e.Parameters {
			if p.Required {
				base[e.AnnotationPrefix()+e.ParamName(p)] = validSample(t, p)
			}
		}
		for _, group := range e.RequireOneOf {
			p, _ := e.Parameter(group[0])
			base[e.AnnotationPrefix()+group[0]] = validSample(t, p)
		}
		for _, p := range e.Parameters {
			key := e.AnnotationPrefix() + e.ParamName(p)
			for _, v := range samples {
				annotations := map[string]string{}
				for k, x := range base {
					annotations[k] = x
				}
				annotations[key] = v
				pod := cluster.AppPod("p", annotations)
				_, webhookErr := inject.Inject(inject.Input{Pod: pod, Namespace: ns, Config: cfg})
				_, policyErr := c.CreatePod(ctx, ns, pod.DeepCopy(), true)
				tried++
				if webhookErr != nil {
					refused++
				}
				if (webhookErr == nil) != (policyErr == nil) {
					t.Errorf("%s=%q: webhook %v, policy %v", key, v, errString(webhookErr), errString(policyErr))
				}
			}
		}
	}
	t.Logf("%d pods, one parameter value each: %d refused by both, %d admitted by both, none by one only", tried, refused, tried-refused)
}

func validSample(t *testing.T, p catalog.Parameter) string {
	t.Helper()
	for _, v := range append([]string{p.Default}, samples...) {
		if v != "" && p.Check(v) == nil {
			return v
		}
	}
	t.Fatalf("no valid sample for parameter %s (%s)", p.Name, p.Type)
	return ""
}

func errString(err error) string {
	if err == nil {
		return "admitted"
	}
	return "refused: " + err.Error()
}
