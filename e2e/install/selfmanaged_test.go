package install

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/webhook/certs"
)

// TestSelfManaged installs the chart in the self-managed mode (what manifests/ holds) and runs two webhook
// replicas from the installed Deployment: the webhook fills its Secret and the caBundle, pods are
// injected, a forced CA rotation refuses no pod, RBAC is what the README says, the helm test check passes
// as its own ServiceAccount, and upgrade and uninstall do what they should.
func TestSelfManaged(t *testing.T) {
	const release, ns, apps = "outrigger", "outrigger-system", "shop"
	ctx := context.Background()
	client := env.cluster.Client()
	namespace(t, ns, nil)
	namespace(t, apps, nil)
	notes := helm(t, "install", release, env.chart, "-n", ns, "--set", "certificates.mode=self-managed")
	for _, want := range []string{`outrigger.dev/inject: "https-proxy,topz"`, "outrigger.dev/injection=disabled", "helm test outrigger -n outrigger-system",
		"annotate secret outrigger-webhook-tls outrigger.dev/rotate=ca"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt does not say %q:\n%s", want, notes)
		}
	}
	t.Cleanup(func() {
		_, _, _ = run("", env.helm, "uninstall", release, "-n", ns, "--kubeconfig", env.cluster.Kubeconfig())
	})

	secret, err := client.CoreV1().Secrets(ns).Get(ctx, "outrigger-webhook-tls", metav1.GetOptions{})
	if err != nil || len(secret.Data) != 0 {
		t.Fatalf("the chart must create the Secret empty: %v, %d keys", err, len(secret.Data))
	}
	if cfg := webhookConfig(t, release); len(cfg.Webhooks[0].ClientConfig.CABundle) != 0 {
		t.Fatal("the chart must leave the caBundle to the webhook")
	}

	// Two replicas. The API server can only call one by URL: a; b must serve the same certificate.
	extra := map[string]string{"CERT_EXTRA_SANS": "127.0.0.1"}
	a := startWebhook(t, ns, "outrigger-webhook", "webhook-a", extra)
	b := startWebhook(t, ns, "outrigger-webhook", "webhook-b", extra)

	var ca, leaf *x509.Certificate
	t.Run("the webhook fills the Secret and the caBundle", func(t *testing.T) {
		cluster.Eventually(t, 20*time.Second, func() error {
			s, err := client.CoreV1().Secrets(ns).Get(ctx, "outrigger-webhook-tls", metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, k := range []string{certs.KeyCABundle, certs.KeyCAKey, certs.KeyCert, certs.KeyKey} {
				if len(s.Data[k]) == 0 {
					return fmt.Errorf("Secret has no %s yet", k)
				}
			}
			if got := webhookConfig(t, release).Webhooks[0].ClientConfig.CABundle; !bytes.Equal(got, s.Data[certs.KeyCABundle]) {
				return fmt.Errorf("caBundle (%d bytes) is not the Secret's ca.crt yet", len(got))
			}
			ca, leaf = pemCerts(t, s.Data[certs.KeyCABundle])[0], pemCerts(t, s.Data[certs.KeyCert])[0]
			return nil
		})
		if err := leaf.CheckSignatureFrom(ca); err != nil {
			t.Fatalf("the serving certificate is not signed by the CA: %v", err)
		}
		for _, name := range []string{"outrigger-webhook.outrigger-system.svc", "outrigger-webhook.outrigger-system", "outrigger-webhook"} {
			if err := leaf.VerifyHostname(name); err != nil {
				t.Errorf("serving certificate: %v", err)
			}
		}
		for _, w := range []*webhookProcess{a, b} {
			if !w.servedCert(t).Equal(leaf) {
				t.Errorf("%s does not serve the Secret's certificate", w.Name)
			}
		}
		lease, err := client.CoordinationV1().Leases(ns).Get(ctx, "outrigger-webhook-tls", metav1.GetOptions{})
		if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			t.Errorf("the Lease has no holder: %v", err)
		}
	})

	var unpoint func()
	t.Run("an annotated pod created through the API server is injected", func(t *testing.T) {
		unpoint = pointAtProcess(t, release, a)
		waitInjecting(t, apps, a)
		pod, err := env.cluster.CreatePod(ctx, apps, cluster.AppPod("web", map[string]string{"outrigger.dev/inject": "topz"}), false)
		if err != nil {
			t.Fatal(err)
		}
		if got := cluster.NativeSidecars(pod); !slices.Equal(got, []string{"topz"}) {
			t.Fatalf("stored pod has sidecars %v, want [topz]", got)
		}
	})

	t.Run("a forced CA rotation refuses no pod", func(t *testing.T) {
		rotateWithLoad(t, ns, apps, release, ca, a, b)
	})

	t.Run("RBAC is what the README says", func(t *testing.T) {
		checkRBAC(t, "self-managed", release, ns, apps)
	})

	t.Run("the helm test check passes as its ServiceAccount", func(t *testing.T) {
		checkHelmTestHook(t, release, ns)
	})

	t.Run("upgrade keeps the certificates and reloads the config", func(t *testing.T) {
		before, err := client.CoreV1().Secrets(ns).Get(ctx, "outrigger-webhook-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		unpoint()
		helm(t, "upgrade", release, env.chart, "-n", ns, "--reuse-values",
			"--set", "webhook.failurePolicy=Ignore", "--set", "webhook.timeoutSeconds=3", "--set", "config.defaults={topz}")
		cfg := webhookConfig(t, release).Webhooks[0]
		pointAtProcess(t, release, a)
		if string(*cfg.FailurePolicy) != "Ignore" || *cfg.TimeoutSeconds != 3 {
			t.Errorf("after upgrade: failurePolicy %s, timeoutSeconds %d", *cfg.FailurePolicy, *cfg.TimeoutSeconds)
		}
		after, err := client.CoreV1().Secrets(ns).Get(ctx, "outrigger-webhook-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before.Data[certs.KeyCert], after.Data[certs.KeyCert]) || !bytes.Equal(cfg.ClientConfig.CABundle, after.Data[certs.KeyCABundle]) {
			t.Error("helm upgrade changed the certificates or the caBundle")
		}
		// The kubelet would update the mounted ConfigMap; the webhook reloads it without a restart.
		a.syncConfig(t, ns)
		cluster.Eventually(t, 20*time.Second, func() error {
			pod, err := env.cluster.CreatePod(ctx, apps, cluster.AppPod("quiet", nil), true)
			if err != nil {
				return err
			}
			if got := cluster.NativeSidecars(pod); !slices.Equal(got, []string{"topz"}) {
				return fmt.Errorf("a pod that says nothing got %v, want the new cluster default [topz]", got)
			}
			return nil
		})
	})

	t.Run("uninstall leaves nothing behind", func(t *testing.T) {
		_ = a.Stop()
		_ = b.Stop()
		helm(t, "uninstall", release, "-n", ns)
		checkNothingLeft(t, release, ns)
		// With the webhook gone, pods are created as they are.
		pod, err := env.cluster.CreatePod(ctx, apps, cluster.AppPod("after", map[string]string{"outrigger.dev/inject": "topz"}), false)
		if err != nil {
			t.Fatalf("after uninstall a pod is refused: %v", err)
		}
		if got := cluster.NativeSidecars(pod); len(got) != 0 {
			t.Errorf("after uninstall a pod got %v", got)
		}
	})
}

// rotateWithLoad creates dry-run pods through the API server all along a forced CA rotation, and checks
// that none is refused or left uninjected: before the new CA is in the caBundle, while both CAs are (the
// served certificate is still the old CA's), and after the served certificate moved to the new CA.
func rotateWithLoad(t *testing.T, ns, apps, release string, oldCA *x509.Certificate, a, b *webhookProcess) {
	t.Helper()
	ctx := context.Background()
	client := env.cluster.Client()
	type admission struct {
		at  time.Time
		err error
	}
	var mu sync.Mutex
	var log []admission
	stop := make(chan struct{})
	done := make(chan struct{})
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop); <-done }) }
	defer stopLoad()
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			pod, err := env.cluster.CreatePod(ctx, apps, cluster.AppPod(fmt.Sprintf("load-%d", i), map[string]string{"outrigger.dev/inject": "topz"}), true)
			if err == nil && !slices.Equal(cluster.NativeSidecars(pod), []string{"topz"}) {
				err = fmt.Errorf("admitted without topz: %v", cluster.NativeSidecars(pod))
			}
			mu.Lock()
			log = append(log, admission{time.Now(), err})
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)

	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, certs.AnnotationRotate, certs.RotateCA)
	if _, err := client.CoreV1().Secrets(ns).Patch(ctx, "outrigger-webhook-tls", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	var newCA *x509.Certificate
	var bothInBundle, moved time.Time
	var published []*x509.Certificate
	cluster.Eventually(t, 45*time.Second, func() error {
		if newCA == nil {
			bundle := pemCerts(t, webhookConfig(t, release).Webhooks[0].ClientConfig.CABundle)
			if len(bundle) == 0 || bundle[0].Equal(oldCA) {
				return fmt.Errorf("the caBundle does not lead with a new CA yet")
			}
			bothInBundle, newCA, published = time.Now(), bundle[0], bundle
		}
		if a.servedCert(t).CheckSignatureFrom(newCA) != nil {
			return fmt.Errorf("the webhook still serves the old CA's certificate")
		}
		moved = time.Now()
		return nil
	})
	time.Sleep(2 * time.Second)
	stopLoad()

	var failures []string
	counts := map[string]int{}
	for _, adm := range log {
		phase := "after the move"
		switch {
		case adm.at.Before(rotated):
			phase = "before"
		case adm.at.Before(bothInBundle):
			phase = "while the new CA was published"
		case adm.at.Before(moved):
			phase = "with both CAs in the bundle"
		}
		counts[phase]++
		if adm.err != nil {
			failures = append(failures, fmt.Sprintf("%s (%s): %v", adm.at.Format("15:04:05.000"), phase, adm.err))
		}
	}
	t.Logf("pods admitted through the rotation: %v; both CAs in the bundle after %s, serving certificate moved after %s",
		counts, bothInBundle.Sub(rotated).Round(time.Millisecond), moved.Sub(rotated).Round(time.Millisecond))
	if len(failures) > 0 {
		t.Fatalf("%d of %d pods failed across the rotation:\n%s\n--- webhook-a ---\n%s", len(failures), len(log), strings.Join(failures[:min(len(failures), 5)], "\n"), a.LogTail(20))
	}
	if len(published) != 2 || !published[1].Equal(oldCA) {
		t.Errorf("the caBundle published with the new CA holds %d certificates; want the new CA, then the old one", len(published))
	}
	if counts["with both CAs in the bundle"] == 0 || counts["after the move"] == 0 {
		t.Fatalf("no pod was created in some phase of the rotation: %v", counts)
	}
	s, err := client.CoreV1().Secrets(ns).Get(ctx, "outrigger-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Annotations[certs.AnnotationRotate]; ok {
		t.Error("the rotate annotation is still there")
	}
	if !b.servedCert(t).Equal(pemCerts(t, s.Data[certs.KeyCert])[0]) {
		t.Error("replica b does not serve the rotated certificate")
	}
}

// checkHelmTestHook creates the `helm test` hook's ServiceAccount and RBAC from the release, and runs its
// pod's command (the webhook binary in check mode) with its env, as its ServiceAccount. There is no
// kubelet here to run the pod itself. The check must also fail, saying why, when injection does not
// happen.
func checkHelmTestHook(t *testing.T, release, ns string) {
	t.Helper()
	hooks := helm(t, "get", "hooks", release, "-n", ns)
	var rbac strings.Builder
	var pod corev1.Pod
	for _, o := range objects(t, hooks) {
		if o.GetKind() == "Pod" {
			into(t, o, &pod)
			continue
		}
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		rbac.Write(append(data, '\n'))
	}
	kubectl(t, rbac.String(), "apply", "-f", "-")
	t.Cleanup(func() { kubectl(t, rbac.String(), "delete", "-f", "-") })
	var vars []string
	for _, e := range pod.Spec.Containers[0].Env {
		vars = append(vars, e.Name+"="+e.Value)
	}
	sa := "system:serviceaccount:" + ns + ":" + pod.Spec.ServiceAccountName
	out, errOut, err := runEnv(append(vars, "KUBECONFIG="+kubeconfigAs(t, sa)), env.webhook)
	if err != nil || !strings.Contains(errOut, "injection works") {
		t.Fatalf("the helm test check failed: %v\n%s%s", err, out, errOut)
	}

	// In a namespace labelled disabled the API server does not call the webhook: the check must fail.
	namespace(t, "quiet", map[string]string{"outrigger.dev/injection": "disabled"})
	_, errOut, err = runEnv([]string{"CHECK_NAMESPACE=quiet", "KUBECONFIG=" + env.cluster.Kubeconfig()}, env.webhook)
	if err == nil || !strings.Contains(errOut, "came back without it") {
		t.Errorf("the check passed where nothing is injected: %v\n%s", err, errOut)
	}
	// The hook's ServiceAccount may create pods in its test namespace only.
	_, errOut, err = runEnv([]string{"CHECK_NAMESPACE=shop", "KUBECONFIG=" + kubeconfigAs(t, sa)}, env.webhook)
	if err == nil || !strings.Contains(errOut, "forbidden") {
		t.Errorf("the hook's ServiceAccount created a pod in namespace shop: %v\n%s", err, errOut)
	}
}

// checkNothingLeft lists every kind the chart renders (and the hooks) by the release's label, and the
// objects the webhook itself writes to, by name.
func checkNothingLeft(t *testing.T, release, ns string) {
	t.Helper()
	sel := "app.kubernetes.io/instance=" + release
	for _, where := range [][]string{
		{"-n", ns, "get", "deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,leases,roles,rolebindings,poddisruptionbudgets"},
		{"-n", "default", "get", "roles,rolebindings"},
		{"get", "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingwebhookconfigurations"},
	} {
		if out := kubectl(t, "", append(where, "-l", sel, "-o", "name")...); strings.TrimSpace(out) != "" {
			t.Errorf("left behind after helm uninstall:\n%s", out)
		}
	}
	for _, obj := range []string{"secret/" + release + "-webhook-tls", "lease/" + release + "-webhook-tls"} {
		if out, _, err := run("", env.kubectl, "--kubeconfig", env.cluster.Kubeconfig(), "-n", ns, "get", obj, "-o", "name"); err == nil {
			t.Errorf("left behind after helm uninstall: %s", out)
		}
	}
	if _, _, err := run("", env.kubectl, "--kubeconfig", env.cluster.Kubeconfig(), "get", "mutatingwebhookconfiguration", release); err == nil {
		t.Error("the webhook configuration is still there: it would keep calling a webhook that is gone")
	}
}

func pemCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// TestSelfManagedSettingsAreChecked: the webhook refuses a self-managed setup it cannot run, at start,
// naming the setting, the value and what is accepted (exit code 2).
func TestSelfManagedSettingsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		vars []string
		want string
	}{
		{[]string{"CERT_MODE=self-managed", "POD_NAMESPACE="}, `invalid POD_NAMESPACE="": CERT_MODE=self-managed needs it`},
		{[]string{"CERT_MODE=self-managed", "POD_NAMESPACE=x", "CA_VALIDITY=24h", "CERT_VALIDITY=48h"}, `invalid CA_VALIDITY="24h0m0s": want at least CERT_VALIDITY="48h0m0s"`},
		{[]string{"CERT_MODE=vault"}, `invalid CERT_MODE="vault": want one of files, self-managed`},
		{[]string{"CERT_VALIDITY=90d"}, `invalid CERT_VALIDITY="90d": want a duration`},
	} {
		_, errOut, err := runEnv(append(tc.vars, "KUBECONFIG="+env.cluster.Kubeconfig()), env.webhook)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %v, want exit code 2 and %q in:\n%s", tc.vars, err, tc.want, errOut)
		}
	}
}
