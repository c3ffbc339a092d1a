package install

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
	"github.com/outrigger-dev/outrigger/internal/testpki"
)

// TestProvided installs the chart with the user's own Secret and caBundle: the webhook serves the mounted
// Secret, pods are injected, and a renewed serving certificate (same CA: the caBundle does not change,
// as with cert-manager's renewals) is served without a restart while pods keep being admitted.
func TestProvided(t *testing.T) {
	const release, ns, apps = "outrigger-provided", "outrigger-provided", "shop-provided"
	ctx := context.Background()
	client := env.cluster.Client()
	namespace(t, ns, nil)
	namespace(t, apps, nil)

	ca := newTestCA(t)
	names := []string{release + "-webhook." + ns + ".svc", "127.0.0.1"}
	tlsSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "my-webhook-tls", Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data:       ca.issue(t, names...),
	}
	if _, err := client.CoreV1().Secrets(ns).Create(ctx, tlsSecret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	helm(t, "install", release, env.chart, "-n", ns, "--set", "certificates.mode=provided",
		"--set", "certificates.provided.secretName=my-webhook-tls",
		"--set", "certificates.provided.caBundle="+base64.StdEncoding.EncodeToString(ca.PEM),
		"--set", "configSyncRole.create=false") // TestSelfManaged's release owns outrigger-config-sync
	t.Cleanup(func() {
		_, _, _ = run("", env.helm, "uninstall", release, "-n", ns, "--kubeconfig", env.cluster.Kubeconfig())
	})

	w := startWebhook(t, ns, release+"-webhook", "webhook-provided", nil)
	pointAtProcess(t, release, w)
	waitInjecting(t, apps, w)
	pod, err := env.cluster.CreatePod(ctx, apps, cluster.AppPod("web", map[string]string{"outrigger.dev/inject": "topz"}), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := cluster.NativeSidecars(pod); !slices.Equal(got, []string{"topz"}) {
		t.Fatalf("stored pod has sidecars %v, want [topz]", got)
	}

	t.Run("a renewed serving certificate is served without a restart", func(t *testing.T) {
		old := w.servedCert(t)
		bundle := webhookConfig(t, release).Webhooks[0].ClientConfig.CABundle
		tlsSecret.Data = ca.issue(t, names...)
		if _, err := client.CoreV1().Secrets(ns).Update(ctx, tlsSecret, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// What the kubelet does to the mounted Secret (cert-manager's renewals arrive the same way).
		secretVolume(t, ns, tlsSecret.Name, w.volumes["certs"])
		clustertest.Eventually(t, 20*time.Second, func() error {
			if w.servedCert(t).Equal(old) {
				return fmt.Errorf("still serving the old certificate")
			}
			return nil
		})
		if !w.Running() {
			t.Fatal("the webhook restarted")
		}
		waitInjecting(t, apps, w)
		if got := webhookConfig(t, release).Webhooks[0].ClientConfig.CABundle; string(got) != string(bundle) {
			t.Error("a renewal under the same CA changed the caBundle")
		}
	})

	t.Run("RBAC is what the README says", func(t *testing.T) {
		checkRBAC(t, "provided", release, ns, apps)
	})

	t.Run("uninstall leaves nothing behind", func(t *testing.T) {
		_ = w.Stop()
		helm(t, "uninstall", release, "-n", ns)
		checkNothingLeft(t, release, ns)
		if _, err := client.CoreV1().Secrets(ns).Get(ctx, tlsSecret.Name, metav1.GetOptions{}); err != nil {
			t.Errorf("the user's own Secret must stay: %v", err)
		}
	})
}

// testCA is a CA for the provided mode, as a user would bring one.
type testCA struct{ *testpki.CA }

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca, err := testpki.NewCA("my-ca")
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca}
}

// issue returns a Secret's data (tls.crt, tls.key) for a new serving certificate for names.
func (ca *testCA) issue(t *testing.T, names ...string) map[string][]byte {
	t.Helper()
	leaf, err := ca.ServingCert(time.Time{}, names...)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{corev1.TLSCertKey: leaf.CertPEM, corev1.TLSPrivateKeyKey: leaf.KeyPEM}
}
