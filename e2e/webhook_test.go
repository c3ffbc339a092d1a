package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
	"github.com/outrigger-dev/outrigger/webhook/inject"
)

func TestAnnotatedPodIsInjected(t *testing.T) {
	ctx := context.Background()
	clustertest.CreateNamespace(t, env.cluster, "shop", nil, nil)
	pod, err := env.cluster.CreatePod(ctx, "shop", cluster.AppPod("web", map[string]string{
		"outrigger.dev/inject":                 "https-proxy,topz",
		"https-proxy.outrigger.dev/tls-secret": "web-tls",
		"https-proxy.outrigger.dev/proxy-port": "8000",
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	native, containers := sidecarNames(pod)
	// topz first, https-proxy last (their catalog order), whatever order the annotation lists them in.
	if !slices.Equal(native, []string{"topz", "https-proxy"}) || !slices.Equal(containers, []string{"app"}) {
		t.Fatalf("native sidecars %v, containers %v; want [topz https-proxy] and [app]", native, containers)
	}
	if pod.Spec.ShareProcessNamespace == nil || !*pod.Spec.ShareProcessNamespace {
		t.Error("topz needs shareProcessNamespace: true")
	}
	if env := pod.Spec.InitContainers[1].Env; len(env) != 1 || env[0].Name != "PROXY_PORT" || env[0].Value != "8000" {
		t.Errorf("https-proxy env = %v, want PROXY_PORT=8000", env)
	}
	status, ok := inject.ReadStatus(pod)
	if !ok || !slices.Equal(status.Sidecars, []string{"https-proxy", "topz"}) || !strings.HasPrefix(status.CatalogHash, "sha256:") {
		t.Errorf("status annotation = %q", pod.Annotations[inject.AnnotationStatus])
	}
	// The stored object is the injected one.
	stored, err := env.cluster.Client().CoreV1().Pods("shop").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || len(stored.Spec.InitContainers) != 2 {
		t.Fatalf("stored pod: %v, %d init containers", err, len(stored.Spec.InitContainers))
	}
}

func TestNamespaceDefault(t *testing.T) {
	ctx := context.Background()
	clustertest.CreateNamespace(t, env.cluster, "team-a", nil, map[string]string{"outrigger.dev/inject": "topz"})
	// The namespace informer may see the new namespace a moment later; the webhook falls back to the API,
	// so even the first pod gets the default.
	pod, err := env.cluster.CreatePod(ctx, "team-a", cluster.AppPod("quiet", nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if native, _ := sidecarNames(pod); !slices.Equal(native, []string{"topz"}) {
		t.Fatalf("sidecars %v, want the namespace default [topz]", native)
	}
	// The pod's own list wins over the namespace's.
	pod, err = env.cluster.CreatePod(ctx, "team-a", cluster.AppPod("own", map[string]string{"outrigger.dev/inject": "none"}), false)
	if err != nil {
		t.Fatal(err)
	}
	if native, _ := sidecarNames(pod); len(native) != 0 {
		t.Fatalf("opted-out pod got %v", native)
	}
}

func TestClusterDefaultFollowsConfigMapSwap(t *testing.T) {
	ctx := context.Background()
	clustertest.CreateNamespace(t, env.cluster, "plain", nil, nil)
	t.Cleanup(func() { _ = writeConfigMapVolume(env.configDir, map[string]string{"config.yaml": ""}) })
	reloadsBefore := metric(t, env.hook.MetricsURL, `outrigger_config_reloads_total{result="success"}`)

	if err := writeConfigMapVolume(env.configDir, map[string]string{"config.yaml": "defaults: [topz]\n"}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 20*time.Second, func() error {
		pod, err := env.cluster.CreatePod(ctx, "plain", cluster.AppPod("p", nil), true)
		if err != nil {
			return err
		}
		if native, _ := sidecarNames(pod); !slices.Equal(native, []string{"topz"}) {
			return fmt.Errorf("sidecars %v, want the cluster default [topz]", native)
		}
		return nil
	})
	if after := metric(t, env.hook.MetricsURL, `outrigger_config_reloads_total{result="success"}`); after <= reloadsBefore {
		t.Errorf("reload counter %v → %v", reloadsBefore, after)
	}

	// A broken file is refused and the previous config stays in force.
	if err := writeConfigMapVolume(env.configDir, map[string]string{"config.yaml": "defaults: [topz, nonesuch]\n"}); err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 20*time.Second, func() error {
		if n := metric(t, env.hook.MetricsURL, `outrigger_config_reloads_total{result="failure"}`); n < 1 {
			return fmt.Errorf("no failed reload counted yet")
		}
		return nil
	})
	pod, err := env.cluster.CreatePod(ctx, "plain", cluster.AppPod("p", nil), true)
	if err != nil {
		t.Fatal(err)
	}
	if native, _ := sidecarNames(pod); !slices.Equal(native, []string{"topz"}) {
		t.Fatalf("after a bad config: sidecars %v, want the last good default [topz]", native)
	}
}

func TestOptOutLabelMeansTheWebhookIsNotCalled(t *testing.T) {
	ctx := context.Background()
	clustertest.CreateNamespace(t, env.cluster, "labelled", nil, nil)
	clustertest.CreateNamespace(t, env.cluster, "quiet-ns", map[string]string{"outrigger.dev/injection": "disabled"}, map[string]string{"outrigger.dev/inject": "topz"})
	before := metric(t, env.hook.MetricsURL, "outrigger_admission_requests_total")

	pod := cluster.AppPod("skip-me", map[string]string{"outrigger.dev/inject": "topz"})
	pod.Labels = map[string]string{"outrigger.dev/injection": "disabled"}
	got, err := env.cluster.CreatePod(ctx, "labelled", pod, false)
	if err != nil {
		t.Fatal(err)
	}
	if native, _ := sidecarNames(got); len(native) != 0 {
		t.Fatalf("a pod labelled disabled got %v", native)
	}
	got, err = env.cluster.CreatePod(ctx, "quiet-ns", cluster.AppPod("in-disabled-ns", nil), false)
	if err != nil {
		t.Fatal(err)
	}
	if native, _ := sidecarNames(got); len(native) != 0 {
		t.Fatalf("a pod in a namespace labelled disabled got %v", native)
	}
	if after := metric(t, env.hook.MetricsURL, "outrigger_admission_requests_total"); after != before {
		t.Fatalf("the webhook was called %v times for opted-out pods; the selectors should keep the API server from calling it", after-before)
	}
}

func TestBadParameterIsDeniedWithTheReason(t *testing.T) {
	ctx := context.Background()
	clustertest.CreateNamespace(t, env.cluster, "denials", nil, nil)
	_, err := env.cluster.CreatePod(ctx, "denials", cluster.AppPod("bad", map[string]string{
		"outrigger.dev/inject":                 "https-proxy",
		"https-proxy.outrigger.dev/tls-secret": "web-tls",
		"https-proxy.outrigger.dev/proxy-port": "eighty",
	}), false)
	if err == nil {
		t.Fatal("a pod with proxy-port=eighty was admitted")
	}
	for _, want := range []string{`https-proxy.outrigger.dev/proxy-port="eighty"`, "want a port number from 1 to 65535"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("denial %q does not say %q", err, want)
		}
	}
	if !apierrors.IsForbidden(err) {
		t.Errorf("denial is %v, want 403 Forbidden", apierrors.ReasonForError(err))
	}
	if _, err := env.cluster.Client().CoreV1().Pods("denials").Get(ctx, "bad", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a denied pod exists: %v", err)
	}
}

func TestServerSideDryRunReturnsTheInjectedPod(t *testing.T) {
	ctx := context.Background()
	clustertest.CreateNamespace(t, env.cluster, "dry", nil, nil)
	pod, err := env.cluster.CreatePod(ctx, "dry", cluster.AppPod("preview", map[string]string{
		"outrigger.dev/inject": "git-sync", "git-sync.outrigger.dev/repo": "https://git.example/site.git",
	}), true)
	if err != nil {
		t.Fatal(err)
	}
	if native, _ := sidecarNames(pod); !slices.Equal(native, []string{"git-sync"}) {
		t.Fatalf("dry-run returned sidecars %v", native)
	}
	if m := pod.Spec.Containers[0].VolumeMounts; len(m) == 0 || m[0].MountPath != "/git" {
		t.Errorf("app mounts %v, want the shared volume at /git", m)
	}
	if _, err := env.cluster.Client().CoreV1().Pods("dry").Get(ctx, "preview", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a dry-run pod was stored: %v", err)
	}
}

// TestSecondWebhookDoesNotCauseDoubleInjection registers a second, real mutating webhook that runs after
// ours and adds a container. The API server then calls ours again (reinvocationPolicy: IfNeeded); the pod
// must still have each sidecar, volume and env var once.
func TestSecondWebhookDoesNotCauseDoubleInjection(t *testing.T) {
	ctx := context.Background()
	clustertest.CreateNamespace(t, env.cluster, "two-hooks", map[string]string{"e2e.outrigger.dev/second-webhook": "yes"}, nil)
	registerOtherWebhook(t, "zz-audit-agent", "audit.example.com", "yes", func(pod corev1.Pod) string {
		if slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "audit-agent" }) {
			return ""
		}
		return `[{"op":"add","path":"/spec/containers/-","value":{"name":"audit-agent","image":"audit:1"}}]`
	})

	clustertest.Eventually(t, 20*time.Second, func() error {
		pod, err := env.cluster.CreatePod(ctx, "two-hooks", cluster.AppPod("p", map[string]string{
			"outrigger.dev/inject": "topz,config-sync", "config-sync.outrigger.dev/configmap": "app-config",
		}), true)
		if err != nil {
			return err
		}
		if _, containers := sidecarNames(pod); !slices.Contains(containers, "audit-agent") {
			return fmt.Errorf("the second webhook has not run yet")
		}
		return nil
	})
	before := metric(t, env.hook.MetricsURL, "outrigger_admission_requests_total")
	pod, err := env.cluster.CreatePod(ctx, "two-hooks", cluster.AppPod("p", map[string]string{
		"outrigger.dev/inject": "topz,config-sync", "config-sync.outrigger.dev/configmap": "app-config",
	}), true)
	if err != nil {
		t.Fatal(err)
	}
	if calls := metric(t, env.hook.MetricsURL, "outrigger_admission_requests_total") - before; calls != 2 {
		t.Errorf("outrigger was called %v times for one pod; want 2 (once, then reinvoked after the second webhook)", calls)
	}
	native, containers := sidecarNames(pod)
	if !slices.Equal(native, []string{"topz", "config-sync"}) || !slices.Equal(containers, []string{"app", "audit-agent"}) {
		t.Fatalf("native %v containers %v: want each sidecar once, and the other webhook's container", native, containers)
	}
	if len(pod.Spec.Volumes) != 1 || len(pod.Spec.Containers[0].VolumeMounts) != 1 {
		t.Fatalf("volumes %v, app mounts %v: want the config volume once", pod.Spec.Volumes, pod.Spec.Containers[0].VolumeMounts)
	}
}

// TestFailurePolicy stops a webhook process and shows both policies: Fail refuses pods (the safe choice
// for a security sidecar), Ignore admits them without sidecars.
func TestFailurePolicy(t *testing.T) {
	ctx := context.Background()
	clustertest.CreateNamespace(t, env.cluster, "fp", map[string]string{"e2e.outrigger.dev/failure-policy": "yes"}, nil)
	hook, err := env.cluster.StartWebhook(ctx, cluster.WebhookOptions{Binary: env.binary, Namespace: injectorNamespace, Name: "webhook-fp"})
	if err != nil {
		t.Fatal(err)
	}
	defer hook.Stop()
	register := func(policy admissionregistrationv1.FailurePolicyType) {
		cfg := hook.Configuration("outrigger-fp", policy, injectorNamespace)
		cfg.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"e2e.outrigger.dev/failure-policy": "yes"}}
		if err := env.cluster.Register(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = env.cluster.Client().AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, "outrigger-fp", metav1.DeleteOptions{})
	})
	register(admissionregistrationv1.Fail)
	if err := waitInjecting(ctx, "fp", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := hook.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err = env.cluster.CreatePod(ctx, "fp", cluster.AppPod("refused", map[string]string{"outrigger.dev/inject": "topz"}), true)
	if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Fatalf("failurePolicy Fail with the webhook down: %v, want a refusal naming the webhook", err)
	}
	register(admissionregistrationv1.Ignore)
	clustertest.Eventually(t, 20*time.Second, func() error {
		pod, err := env.cluster.CreatePod(ctx, "fp", cluster.AppPod("admitted", map[string]string{"outrigger.dev/inject": "topz"}), true)
		if err != nil {
			return err
		}
		if native, _ := sidecarNames(pod); len(native) != 0 {
			return fmt.Errorf("sidecars %v with the webhook down", native)
		}
		return nil
	})
}

// registerOtherWebhook serves and registers another injector's mutating webhook (reinvocationPolicy
// IfNeeded, called after ours by its name) for namespaces labelled e2e.outrigger.dev/second-webhook=label;
// patch returns its JSON patch for a pod, or "" for none.
func registerOtherWebhook(t *testing.T, configName, webhookName, label string, patch func(corev1.Pod) string) {
	t.Helper()
	ctx := context.Background()
	other := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var pod corev1.Pod
		_ = json.Unmarshal(review.Request.Object.Raw, &pod)
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		if p := patch(pod); p != "" {
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = []byte(p), &pt
		}
		review.Response, review.Request = resp, nil
		_ = json.NewEncoder(w).Encode(review)
	}))
	certDir := filepath.Join(t.TempDir(), "certs")
	ca, err := cluster.ServingCert(certDir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	other.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	other.StartTLS()
	t.Cleanup(other.Close)

	url := other.URL + "/mutate"
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: configName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: webhookName, ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:       []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			SideEffects: &none, ReinvocationPolicy: &ifNeeded, AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"e2e.outrigger.dev/second-webhook": label}},
		}},
	}
	if err := env.cluster.Register(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.cluster.Client().AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, cfg.Name, metav1.DeleteOptions{})
	})
}

// TestOrderHoldsNextToAnotherInjector registers another injector that prepends its own init container, as
// Vault's agent-init does, after Outrigger has run. Reinvoked, Outrigger puts its sidecars back in their
// catalog order: topz (first) before every other init container, https-proxy (last) after them, so that
// https-proxy starts once the other injector's init container has written what it needs.
func TestOrderHoldsNextToAnotherInjector(t *testing.T) {
	ctx := context.Background()
	const ns = "vault-like"
	clustertest.CreateNamespace(t, env.cluster, ns, map[string]string{"e2e.outrigger.dev/second-webhook": "prepends"}, nil)
	registerOtherWebhook(t, "zz-vault-like", "agent-init.vault.example.com", "prepends", func(pod corev1.Pod) string {
		if slices.ContainsFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "vault-agent-init" }) {
			return ""
		}
		init := `{"name":"vault-agent-init","image":"vault:1"}`
		if len(pod.Spec.InitContainers) == 0 {
			return `[{"op":"add","path":"/spec/initContainers","value":[` + init + `]}]`
		}
		return `[{"op":"add","path":"/spec/initContainers/0","value":` + init + `}]`
	})
	annotations := map[string]string{"outrigger.dev/inject": "https-proxy,topz", "https-proxy.outrigger.dev/tls-secret": "web-tls"}
	var pod *corev1.Pod
	clustertest.Eventually(t, 20*time.Second, func() error {
		var err error
		pod, err = env.cluster.CreatePod(ctx, ns, cluster.AppPod("p", annotations), true)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "vault-agent-init" }) {
			return fmt.Errorf("the other webhook has not run yet")
		}
		return nil
	})
	var order []string
	for _, c := range pod.Spec.InitContainers {
		order = append(order, c.Name)
	}
	if want := []string{"topz", "vault-agent-init", "https-proxy"}; !slices.Equal(order, want) {
		t.Fatalf("init containers %v, want %v (topz first, https-proxy last, the other injector's between)", order, want)
	}
	// Stable: the same pod again comes out the same.
	again, err := env.cluster.CreatePod(ctx, ns, cluster.AppPod("p", annotations), true)
	if err != nil {
		t.Fatal(err)
	}
	var second []string
	for _, c := range again.Spec.InitContainers {
		second = append(second, c.Name)
	}
	if !slices.Equal(second, order) {
		t.Errorf("a second create gave %v, the first %v", second, order)
	}
}

// TestANamespaceThatCannotBeReadIsNotFailOpen takes the webhook's right to read namespaces away while it
// runs (its ClusterRoleBinding deleted, then kube-apiserver restarted so that its informer's watch must
// start again, and cannot). A pod in a namespace created after that has a namespace default the webhook
// cannot see: under failurePolicy Fail it is refused with the reason, under Ignore admitted with a warning
// that says what it lacks, never silently admitted without its default sidecars.
func TestANamespaceThatCannotBeReadIsNotFailOpen(t *testing.T) {
	ctx := context.Background()
	client := env.cluster.Client()
	const user = "e2e-namespace-reader"
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}
	if _, err := client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.RbacV1().ClusterRoleBindings().Delete(ctx, user, metav1.DeleteOptions{})
		_ = client.RbacV1().ClusterRoles().Delete(ctx, user, metav1.DeleteOptions{})
	})
	kubeconfig := impersonatingKubeconfig(t, user)

	policies := []admissionregistrationv1.FailurePolicyType{admissionregistrationv1.Fail, admissionregistrationv1.Ignore}
	for _, policy := range policies {
		label := strings.ToLower(string(policy))
		hook, err := env.cluster.StartWebhook(ctx, cluster.WebhookOptions{Binary: env.binary, Namespace: injectorNamespace,
			Name: "webhook-nsread-" + label, Kubeconfig: kubeconfig, Env: []string{"FAILURE_POLICY=" + string(policy)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hook.Stop() })
		cfg := hook.Configuration("outrigger-nsread-"+label, policy, injectorNamespace)
		cfg.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"e2e.outrigger.dev/ns-read": label}}
		if err := env.cluster.Register(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, cfg.Name, metav1.DeleteOptions{})
		})
		clustertest.CreateNamespace(t, env.cluster, "nsread-before-"+label, map[string]string{"e2e.outrigger.dev/ns-read": label}, nil)
		if err := waitInjecting(ctx, "nsread-before-"+label, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	if err := client.RbacV1().ClusterRoleBindings().Delete(ctx, user, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	clustertest.RestartAPIServer(t, env.cluster)
	// The other tests' webhook reads namespaces as cluster-admin: wait until it serves again.
	clustertest.CreateNamespace(t, env.cluster, "nsread-main", nil, nil)
	if err := waitInjecting(ctx, "nsread-main", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	for _, policy := range policies {
		label := strings.ToLower(string(policy))
		ns := "nsread-after-" + label
		clustertest.CreateNamespace(t, env.cluster, ns, map[string]string{"e2e.outrigger.dev/ns-read": label}, map[string]string{"outrigger.dev/inject": "topz"})
		var created *corev1.Pod
		var createErr error
		var warnings []string
		clustertest.Eventually(t, 20*time.Second, func() error {
			warnings = nil
			created, createErr = createCollectingWarnings(ctx, ns, cluster.AppPod("defaulted", nil), &warnings)
			if createErr != nil && strings.Contains(createErr.Error(), "failed calling webhook") {
				return createErr // the API server is still reconnecting to the webhook
			}
			return nil
		})
		switch policy {
		case admissionregistrationv1.Fail:
			if createErr == nil || !strings.Contains(createErr.Error(), "namespace "+ns+" could not be read") || !strings.Contains(createErr.Error(), "forbidden") {
				t.Errorf("Fail: pod created (%v) or refused without the reason: %v", created != nil, createErr)
			}
		case admissionregistrationv1.Ignore:
			if createErr != nil {
				t.Fatalf("Ignore: %v", createErr)
			}
			if native, _ := sidecarNames(created); len(native) != 0 {
				t.Errorf("Ignore: sidecars %v, though the webhook could not read the namespace", native)
			}
			if w := strings.Join(warnings, "\n"); !strings.Contains(w, "could not be read") || !strings.Contains(w, "without its namespace's default sidecars") {
				t.Errorf("Ignore: warnings %q do not say what the pod lacks", w)
			}
		}
	}
	if !t.Failed() {
		t.Logf("result: with namespace reads forbidden, Fail refused the pod with the reason and Ignore admitted it uninjected with a warning")
	}
}

// impersonatingKubeconfig writes a copy of the cluster-admin kubeconfig that acts as user.
func impersonatingKubeconfig(t *testing.T, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(env.cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// createCollectingWarnings creates pod in ns and appends the API server's warnings to warnings.
func createCollectingWarnings(ctx context.Context, ns string, pod *corev1.Pod, warnings *[]string) (*corev1.Pod, error) {
	cfg := env.cluster.RESTConfig()
	cfg.WarningHandler = warningCollector{warnings}
	return kubernetes.NewForConfigOrDie(cfg).CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

type warningCollector struct{ out *[]string }

func (w warningCollector) HandleWarningHeader(_ int, _ string, text string) {
	*w.out = append(*w.out, text)
}
