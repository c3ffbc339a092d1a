// Package install proves the Helm chart (charts/outrigger) and the plain manifests (manifests/) against a
// real kube-apiserver and etcd from ./bin, with the real helm and kubectl from ./bin, in seconds and without
// root: what the chart renders in every mode is accepted by the API server, wrong values are refused, RBAC
// is what the chart README says, the `helm test` check refuses what it must, and the provided-certificate
// mode serves a renewed certificate without a restart (the webhook binary running as a process with the
// installed Deployment's env, the chart's clientConfig pointed at it by URL: see pointAtProcess).
//
// The chart as users run it — the webhook as the Deployment's pods behind its Service, self-managed
// certificates rotating under load, `helm test`, upgrade and uninstall — is proven on the local cluster by
// e2e/node (`make test-node`). Tests here run one after the other and share one control plane.
package install

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

// env is what TestMain starts for every test.
var env struct {
	cluster *cluster.Cluster
	root    string // the repository
	chart   string // charts/outrigger
	helm    string
	kubectl string
	webhook string // the outrigger-webhook binary
	dir     string // scratch space for the whole run
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "e2e/install setup: %v\n", err)
		return 1
	}
	var err error
	if env.root, err = cluster.RepoRoot(); err != nil {
		return fail(err)
	}
	env.chart = filepath.Join(env.root, "charts", "outrigger")
	bin := os.Getenv("OUTRIGGER_BIN_DIR")
	if bin == "" {
		bin = filepath.Join(env.root, "bin")
	}
	env.helm, env.kubectl = filepath.Join(bin, "helm"), filepath.Join(bin, "kubectl")
	if _, err := os.Stat(env.helm); err != nil {
		return fail(fmt.Errorf("helm not found in %s: run `make helm`", bin))
	}
	if _, err := exec.LookPath("go"); err != nil {
		return fail(fmt.Errorf("go not found in PATH: the cert-manager CRDs come from its Go module"))
	}
	if env.dir, err = os.MkdirTemp("", "outrigger-install-"); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(env.dir)
	// helm keeps a cache and config; keep them out of $HOME.
	for k, sub := range map[string]string{"HELM_CACHE_HOME": "helm-cache", "HELM_CONFIG_HOME": "helm-config", "HELM_DATA_HOME": "helm-data"} {
		os.Setenv(k, filepath.Join(env.dir, sub))
	}
	c, err := cluster.New(context.Background(), cluster.Options{Dir: filepath.Join(env.dir, "cluster"), BinDir: bin})
	if err != nil {
		return fail(err)
	}
	defer c.Stop()
	env.cluster = c
	if env.webhook, err = cluster.BuildWebhook(env.dir); err != nil {
		return fail(err)
	}
	return m.Run()
}
