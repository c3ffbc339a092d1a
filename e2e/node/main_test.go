// Package node proves Outrigger the way users run it: on a complete one-node cluster (e2e/cluster with a
// node: kubelet, containerd, kube-proxy, CoreDNS), Outrigger installed by `helm install` from
// charts/outrigger — the webhook runs as the chart's Deployment from its own image, the API server calls it
// through the chart's Service, its certificates come from the self-managed rotator — and pods created
// through kube-apiserver, scheduled by kube-scheduler and run by the kubelet from the images `make images`
// built with podman, under the names the chart and the catalog use (nothing is pulled). Traffic goes only to
// loopback, to pod IPs on the node's own bridge (cluster.PodSubnet) and to the cluster's Service addresses.
//
// It needs root, the node's Debian packages and the images: run it through `make test-node`, which builds
// them first and sets OUTRIGGER_NODE=1 (without it every test skips, so `go test ./...` stays API-only).
// OUTRIGGER_KEEP=1 keeps the run's directory after the teardown: every component's log is there.
package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

// The release every test runs against: what the README's install command creates.
const (
	release           = "outrigger"
	injectorNamespace = "outrigger-system"
)

// env is what TestMain starts for every test: one cluster, Outrigger installed in it by helm.
var env struct {
	skip    string
	dir     string // the run's directory, removed after the node's teardown
	version string
	cluster *cluster.Cluster
	appRef  string
	root    string // the repository
	helm    string
	kubectl string
}

// image is the reference of one of the project's images as the chart and the catalog name it.
func image(name string) string { return "ghcr.io/outrigger-dev/" + name + ":" + env.version }

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	if os.Getenv("OUTRIGGER_NODE") == "" {
		env.skip = "runs pods on a real local node as root: run it through `make test-node`, which builds the images first"
		return m.Run()
	}
	env.version = os.Getenv("OUTRIGGER_VERSION")
	if env.version == "" {
		env.version = "0.1.0"
	}
	env.appRef = "localhost/outrigger/e2e-app:" + env.version
	ctx := context.Background()
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "node e2e setup: %v\n", err)
		return 1
	}
	var err error
	if env.root, err = cluster.RepoRoot(); err != nil {
		return fail(err)
	}
	bin := os.Getenv("OUTRIGGER_BIN_DIR")
	if bin == "" {
		bin = filepath.Join(env.root, "bin")
	}
	env.helm, env.kubectl = filepath.Join(bin, "helm"), filepath.Join(bin, "kubectl")
	// Short: containerd's socket lives under it (unix socket paths are limited to 107 bytes).
	dir, err := os.MkdirTemp("", "outrigger-node-")
	if err != nil {
		return fail(err)
	}
	env.dir = dir
	keep := os.Getenv("OUTRIGGER_KEEP") != ""
	defer func() { // runs last: after the node's teardown
		if keep {
			fmt.Fprintf(os.Stderr, "kept %s: the components' logs are in %s\n", dir, filepath.Join(dir, "c"))
			return
		}
		os.RemoveAll(dir)
	}()
	// helm keeps a cache and config; keep them out of $HOME.
	for k, sub := range map[string]string{"HELM_CACHE_HOME": "helm-cache", "HELM_CONFIG_HOME": "helm-config", "HELM_DATA_HOME": "helm-data"} {
		os.Setenv(k, filepath.Join(dir, sub))
	}
	if kubeconfig := os.Getenv("OUTRIGGER_KUBECONFIG"); kubeconfig != "" {
		// `make examples`: the cluster of `make cluster`, Outrigger installed (or upgraded) in it.
		if env.cluster, err = cluster.Attach(kubeconfig); err != nil {
			return fail(err)
		}
		if err := installOutrigger(ctx, "upgrade", "--install"); err != nil {
			return fail(err)
		}
		return m.Run()
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...) }
	// localhost/outrigger/topz: the "new" topz image of the day-two test's catalog upgrade (same image, new name).
	images := []string{env.appRef, image("outrigger-webhook"), "localhost/outrigger/redis:" + env.version, "localhost/outrigger/memcached:" + env.version,
		"localhost/outrigger/topz:" + env.version}
	for _, s := range []string{"https-proxy", "topz", "config-sync", "git-sync", "shard-ambassador"} {
		images = append(images, image(s))
	}
	start := time.Now()
	c, err := cluster.New(ctx, cluster.Options{Dir: filepath.Join(dir, "c"), Log: logf, Node: &cluster.NodeOptions{Images: images}})
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "timing: start to cluster ready (control plane, node, kube-proxy, %d images loaded, CoreDNS answering): %s\n", len(images)+2, time.Since(start).Round(time.Millisecond))
	env.cluster = c
	defer func() {
		stopStart := time.Now()
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the cluster: %v\n", err)
			keep = true // mounts may be left under it: do not remove through them
			return
		}
		fmt.Fprintf(os.Stderr, "timing: ordered teardown %s\n", time.Since(stopStart).Round(time.Millisecond))
	}()

	start = time.Now()
	if err := installOutrigger(ctx, "install"); err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "timing: helm install → 2 webhook replicas Ready, caBundle set, a pod injected through the Service: %s\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// installOutrigger runs the README's install command (helm verb: install, or upgrade --install) with
// self-managed certificates and waits until the API server injects a dry-run pod through the chart's
// Service.
func installOutrigger(ctx context.Context, verb ...string) error {
	args := append(verb, release, filepath.Join(env.root, "charts", "outrigger"), "-n", injectorNamespace, "--create-namespace",
		"--set", "certificates.mode=self-managed", "--wait", "--timeout", "3m", "--kubeconfig", env.cluster.Kubeconfig())
	out, err := runCmd(env.helm, args...)
	if err != nil {
		return fmt.Errorf("helm install: %v\n%s", err, out)
	}
	return waitInjecting(ctx, "webhook-probe", 60*time.Second)
}

// waitInjecting creates namespace ns and waits until a server-side dry-run pod created there comes back
// with topz injected.
func waitInjecting(ctx context.Context, ns string, timeout time.Duration) error {
	if err := env.cluster.EnsureNamespace(ctx, ns, nil, nil); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		pod, err := env.cluster.CreatePod(ctx, ns, cluster.AppPod("probe", map[string]string{"outrigger.dev/inject": "topz"}), true)
		if err == nil && len(cluster.NativeSidecars(pod)) == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			logs, _ := runCmd(env.kubectl, "--kubeconfig", env.cluster.Kubeconfig(), "-n", injectorNamespace, "logs", "deploy/outrigger-webhook", "--tail=20")
			return fmt.Errorf("the API server does not inject through the webhook after %s (%v)\n--- webhook log ---\n%s", timeout, err, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runCmd runs a command with a 5-minute limit and returns its combined output.
func runCmd(name string, args ...string) (string, error) { return runCmdIn("", name, args...) }

// runCmdIn is runCmd with stdin as the command's standard input.
func runCmdIn(stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// helm runs helm against the cluster and fails the test on error.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCmd(env.helm, append(args, "--kubeconfig", env.cluster.Kubeconfig())...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// kubectl runs kubectl against the cluster and fails the test on error.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCmd(env.kubectl, append([]string{"--kubeconfig", env.cluster.Kubeconfig()}, args...)...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// requireNode skips the test outside `make test-node`.
func requireNode(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

// dumpPod logs the pod's status and its containers' logs (through the API server and the kubelet) when
// the test failed.
func dumpPod(t *testing.T, ns, name string) {
	t.Helper()
	if !t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs := env.cluster.Client()
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Logf("pod %s/%s: %v", ns, name, err)
		return
	}
	var b strings.Builder
	for _, st := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, "  %s: ready=%v started=%v restarts=%d state=%+v last=%+v\n", st.Name, st.Ready, st.Started != nil && *st.Started, st.RestartCount, st.State, st.LastTerminationState)
		logs, err := cs.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: st.Name, TailLines: ptr(int64(20))}).DoRaw(ctx)
		if err != nil {
			fmt.Fprintf(&b, "    (logs: %v)\n", err)
		} else {
			fmt.Fprintf(&b, "    %s\n", strings.ReplaceAll(strings.TrimSpace(string(logs)), "\n", "\n    "))
		}
	}
	t.Logf("pod %s/%s phase %s (%s)\n%s", ns, name, pod.Status.Phase, pod.Status.Message, b.String())
}

func ptr[T any](v T) *T { return &v }
