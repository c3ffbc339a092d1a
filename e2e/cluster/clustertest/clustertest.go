// Package clustertest is e2e/cluster for tests: a cluster started for one test and stopped when it ends,
// and helpers that fail the test instead of returning an error. It is apart from e2e/cluster so that the
// mains built on the cluster library (make demo, make cluster, the benchmarks) do not link testing.
package clustertest

import (
	"context"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

// Start starts a cluster for a test and stops it when the test ends. It fails the test, naming what to run,
// when the binaries are missing.
func Start(t testing.TB, opts ...cluster.Options) *cluster.Cluster {
	t.Helper()
	var o cluster.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Log == nil {
		o.Log = t.Logf
	}
	c, err := cluster.New(context.Background(), o)
	if err != nil {
		t.Fatalf("starting the local control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the local control plane: %v", err)
		}
	})
	return c
}

// CreateNamespace creates a namespace with its default ServiceAccount (cluster.EnsureNamespace), failing
// the test if it cannot. labels and annotations may be nil.
func CreateNamespace(t testing.TB, c *cluster.Cluster, name string, labels, annotations map[string]string) {
	t.Helper()
	if err := c.EnsureNamespace(context.Background(), name, labels, annotations); err != nil {
		t.Fatal(err)
	}
}

// RestartAPIServer restarts kube-apiserver over the same etcd (cluster.RestartAPIServer), failing the test
// if it cannot.
func RestartAPIServer(t testing.TB, c *cluster.Cluster) {
	t.Helper()
	if err := c.RestartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Eventually polls cond every 200 ms until it returns nil, and fails the test with its last error after
// timeout. API server admission chains and informers settle within moments, not at once.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
