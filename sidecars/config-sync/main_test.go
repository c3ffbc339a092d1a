package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

// The API tests share one control plane (etcd + kube-apiserver from ./bin), started by the first test that
// needs it and stopped after all tests; each test works in its own namespace.
var (
	clusterOnce sync.Once
	testCluster *cluster.Cluster
	clusterErr  error
)

func sharedCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	clusterOnce.Do(func() {
		testCluster, clusterErr = cluster.New(context.Background(), cluster.Options{
			// Without it kube-apiserver waits for open watches (ours) to end before it exits, and
			// RestartAPIServer gives up after 15 s.
			APIServerFlags: []string{"--shutdown-watch-termination-grace-period=2s"},
		})
	})
	if clusterErr != nil {
		t.Fatalf("starting the local control plane: %v", clusterErr)
	}
	return testCluster
}

func TestMain(m *testing.M) {
	if os.Getenv("CONFIG_SYNC_TEST_MAIN") == "1" {
		main() // the test binary stands in for the config-sync binary (see TestBinary*)
		return
	}
	code := m.Run()
	if testCluster != nil {
		if err := testCluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the control plane: %v\n", err)
			code = 1
		}
		if os.Getenv("CONFIG_SYNC_KEEP_CLUSTER") == "" { // set it to read the control plane's logs afterwards
			os.RemoveAll(testCluster.Dir())
		} else {
			fmt.Fprintf(os.Stderr, "control plane logs kept in %s\n", testCluster.Dir())
		}
	}
	if code == 0 {
		if err := goleak.Find(
			// client-go keeps its HTTP/2 connections to the API server in a shared transport cache.
			goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
			// klog's flush daemon starts with the package.
			goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
