// Package e2e proves Outrigger through a real kube-apiserver: the webhook binary runs with real TLS, is
// registered with a MutatingWebhookConfiguration, and every pod in these tests is created through the
// API server. Tests run serially: they share one control plane and one webhook process.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

const injectorNamespace = "outrigger-system"

// env is what TestMain starts for every test.
var env struct {
	cluster   *cluster.Cluster
	hook      *cluster.Webhook
	binary    string
	configDir string // a kubelet-style ConfigMap volume: config.yaml -> ..data/config.yaml
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "outrigger-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		return 1
	}
	c, err := cluster.New(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster")})
	if err != nil {
		return fail(err)
	}
	defer c.Stop()
	env.cluster = c
	if env.binary, err = cluster.BuildWebhook(dir); err != nil {
		return fail(err)
	}
	env.configDir = filepath.Join(dir, "config")
	if err := writeConfigMapVolume(env.configDir, map[string]string{"config.yaml": ""}); err != nil {
		return fail(err)
	}
	if err := c.EnsureNamespace(ctx, injectorNamespace, nil, nil); err != nil {
		return fail(err)
	}
	env.hook, err = c.StartWebhook(ctx, cluster.WebhookOptions{Binary: env.binary, ConfigFile: filepath.Join(env.configDir, "config.yaml"), Namespace: injectorNamespace})
	if err != nil {
		return fail(err)
	}
	defer env.hook.Stop()
	cfg := env.hook.Configuration("outrigger", admissionregistrationv1.Fail, injectorNamespace)
	// The failure-policy tests register their own webhooks for their own namespaces.
	cfg.Webhooks[0].NamespaceSelector.MatchExpressions = append(cfg.Webhooks[0].NamespaceSelector.MatchExpressions,
		metav1.LabelSelectorRequirement{Key: "e2e.outrigger.dev/failure-policy", Operator: metav1.LabelSelectorOpDoesNotExist},
		metav1.LabelSelectorRequirement{Key: "e2e.outrigger.dev/ns-read", Operator: metav1.LabelSelectorOpDoesNotExist})
	if err := c.Register(ctx, cfg); err != nil {
		return fail(err)
	}
	if err := c.EnsureNamespace(ctx, "e2e-ready", nil, nil); err != nil {
		return fail(err)
	}
	if err := waitInjecting(ctx, "e2e-ready", 30*time.Second); err != nil {
		return fail(fmt.Errorf("%w\n--- webhook log ---\n%s", err, env.hook.LogTail(20)))
	}
	return m.Run()
}
