package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// TestAnnotationValuesReachTheSidecarAsWritten: the kubelet expands $(VAR) in env values and turns $$
// into $, so a parameter such as a reload command with a password in it would reach the sidecar changed.
// The injector escapes every $; the running config-sync process's own environment (read from /proc on
// the node) holds exactly the annotation's text.
func TestAnnotationValuesReachTheSidecarAsWritten(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns = "env-literal"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web-conf", Namespace: ns}, Data: map[string]string{"app.conf": "x"}}
	if _, err := env.cluster.Client().CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	marker := fmt.Sprint(time.Now().UnixNano()) // finds this pod's process among the node's
	// The command must exist in the sidecar's image (config-sync checks at start): its own binary.
	command := "/config-sync --token=pa$$word-" + marker + " --home=$(HOME) --cost=$5"
	pod := appPod("literal", map[string]string{
		"outrigger.dev/inject":                       "config-sync",
		"config-sync.outrigger.dev/source-configmap": "web-conf",
		"config-sync.outrigger.dev/source-dir":       "/etc/config-source",
		"config-sync.outrigger.dev/reload-command":   command,
	}, "-listen=127.0.0.1:8000")
	if _, err := env.cluster.Client().CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer dumpPod(t, ns, "literal")
	waitPod(t, ns, "literal", 2*time.Minute, podRunning)

	want := []byte("RELOAD_COMMAND=" + command)
	var found string
	clustertest.Eventually(t, 30*time.Second, func() error {
		environs, _ := filepath.Glob("/proc/[0-9]*/environ")
		for _, path := range environs {
			data, err := os.ReadFile(path)
			if err != nil {
				continue
			}
			for _, kv := range bytes.Split(data, []byte{0}) {
				if bytes.HasPrefix(kv, []byte("RELOAD_COMMAND=")) && bytes.Contains(kv, []byte(marker)) {
					found = string(kv)
				}
			}
		}
		if found == "" {
			return fmt.Errorf("no process on the node has this pod's RELOAD_COMMAND in its environment")
		}
		return nil
	})
	if found != string(want) {
		t.Fatalf("the sidecar's environment has %q, want the annotation's text %q", found, want)
	}
	t.Logf("result: the sidecar's environment holds %q, as the annotation wrote it", strings.TrimPrefix(found, "RELOAD_COMMAND="))
}
