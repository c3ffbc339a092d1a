package install

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSelfManaged installs the chart in the self-managed mode (what manifests/ holds) and checks what needs
// no running webhook: the chart leaves the Secret and the caBundle to the webhook, RBAC is what the README
// says, and the `helm test` hook's check fails where it should. The webhook itself, its certificates, a
// forced CA rotation under load, `helm test`, upgrade and uninstall run for real on the local cluster, the
// webhook as the chart's pods behind its Service (e2e/node, `make test-node`).
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
	t.Run("RBAC is what the README says", func(t *testing.T) {
		checkRBAC(t, "self-managed", release, ns, apps)
	})
	t.Run("the helm test check refuses what it must", func(t *testing.T) {
		checkHelmTestHook(t, release, ns)
	})
}

// checkHelmTestHook creates the `helm test` hook's ServiceAccount and RBAC from the release, and runs its
// pod's command (the webhook binary in check mode) with its env: the check must fail, saying why, where
// injection does not happen, and its ServiceAccount may create pods in its test namespace only. (That the
// check passes is `helm test` on the local cluster, e2e/node.)
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

	// In a namespace labelled disabled the API server does not call the webhook: the check must fail.
	namespace(t, "quiet", map[string]string{"outrigger.dev/injection": "disabled"})
	_, errOut, err := runEnv(append(vars, "CHECK_NAMESPACE=quiet", "KUBECONFIG="+env.cluster.Kubeconfig()), env.webhook)
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
