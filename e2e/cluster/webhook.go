package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Webhook is a running outrigger-webhook process with its own serving certificate.
type Webhook struct {
	*Component
	// URL is the admission endpoint, e.g. https://127.0.0.1:PORT/inject.
	URL string
	// CABundle is the CA that signed the serving certificate.
	CABundle []byte
	// MetricsURL and ReadyURL are the plain-HTTP endpoints.
	MetricsURL, ReadyURL string
	// CertDir holds tls.crt and tls.key (the webhook reloads them when they change).
	CertDir string
}

// WebhookOptions start a webhook process.
type WebhookOptions struct {
	// Binary is the outrigger-webhook binary (see BuildWebhook).
	Binary string
	// ConfigFile is the injector's config file ("" = built-in defaults only).
	ConfigFile string
	// Namespace is the injector's own namespace.
	Namespace string
	// Name distinguishes several webhooks' files in the cluster directory.
	Name string
	// Kubeconfig is the identity the webhook reaches the API server with ("" = cluster-admin).
	Kubeconfig string
	// Env is more of the webhook's settings (NAME=value), e.g. FAILURE_POLICY=Ignore.
	Env []string
}

// BuildWebhook compiles ./cmd/outrigger-webhook from the repository into dir and returns its path.
func BuildWebhook(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "outrigger-webhook")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/outrigger-webhook")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building outrigger-webhook: %v\n%s", err, b)
	}
	return out, nil
}

// StartWebhook runs the webhook binary against this cluster with a new serving certificate for 127.0.0.1
// and waits until /readyz answers.
func (c *Cluster) StartWebhook(ctx context.Context, o WebhookOptions) (*Webhook, error) {
	if o.Name == "" {
		o.Name = "webhook"
	}
	certDir := filepath.Join(c.dir, o.Name+"-certs")
	ca, err := ServingCert(certDir, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	kubeconfig := o.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = c.kubeconfig
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	w := &Webhook{
		URL:        fmt.Sprintf("https://127.0.0.1:%d/inject", ports[0]),
		CABundle:   ca,
		ReadyURL:   fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]),
		MetricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[2]),
		CertDir:    certDir,
		Component: &Component{
			Name: o.Name, Path: o.Binary, LogPath: filepath.Join(c.dir, o.Name+".log"),
			Env: append([]string{
				"KUBECONFIG=" + kubeconfig,
				"CONFIG_FILE=" + o.ConfigFile,
				"CERT_DIR=" + certDir,
				"LISTEN_HOST=127.0.0.1",
				"WEBHOOK_PORT=" + strconv.Itoa(ports[0]),
				"HEALTH_PORT=" + strconv.Itoa(ports[1]),
				"METRICS_PORT=" + strconv.Itoa(ports[2]),
				"POD_NAMESPACE=" + o.Namespace,
			}, o.Env...),
		},
	}
	if err := w.Start(); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, w.Component, w.ReadyURL, nil, 60*time.Second); err != nil {
		_ = w.Stop()
		return nil, err
	}
	return w, nil
}

// Restart stops the webhook process and starts it again with the same ports and certificate.
func (w *Webhook) Restart(ctx context.Context) error {
	if err := w.Stop(); err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	return waitHTTP(ctx, w.Component, w.ReadyURL, nil, 60*time.Second)
}

// Configuration is the MutatingWebhookConfiguration a chart installs, pointed at this local process by
// URL (there is no kube-proxy, so the API server cannot reach a Service here): sideEffects None,
// reinvocationPolicy IfNeeded, and selectors that leave out kube-system, kube-public, the injector's own
// namespace and anything labelled outrigger.dev/injection=disabled.
func (w *Webhook) Configuration(name string, policy admissionregistrationv1.FailurePolicyType, ownNamespace string) *admissionregistrationv1.MutatingWebhookConfiguration {
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	timeout := int32(5)
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.outrigger.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &w.URL, CABundle: w.CABundle},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy:           &policy,
			SideEffects:             &none,
			ReinvocationPolicy:      &ifNeeded,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-public", ownNamespace}},
				{Key: "outrigger.dev/injection", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}},
			}},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "outrigger.dev/injection", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}},
			}},
		}},
	}
}

// Register creates or replaces cfg in the cluster and waits until the API server uses it: a server-side
// dry-run pod create in probeNamespace (which must be selected by cfg) reaches the webhook.
func (c *Cluster) Register(ctx context.Context, cfg *admissionregistrationv1.MutatingWebhookConfiguration) error {
	api := c.Client().AdmissionregistrationV1().MutatingWebhookConfigurations()
	existing, err := api.Get(ctx, cfg.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, cfg, metav1.CreateOptions{})
	case err == nil:
		cfg.ResourceVersion = existing.ResourceVersion
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("registering webhook configuration %s: %w", cfg.Name, err)
	}
	return nil
}
