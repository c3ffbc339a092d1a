// Package node proves Outrigger's sidecars on a real node: pods created through kube-apiserver, mutated by
// the real outrigger-webhook process, scheduled by kube-scheduler and run by the kubelet with containerd and
// runc from the images `make images` built with podman. Traffic goes only to loopback and to pod IPs on the
// node's own bridge (cluster.PodSubnet).
//
// It needs root, the node's Debian packages and the images: run it through `make test-node`, which builds
// them first and sets OUTRIGGER_NODE=1 (without it every test skips, so `go test ./...` stays API-only).
// OUTRIGGER_KEEP=1 keeps the run's directory after the teardown: every component's log is there.
package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

const injectorNamespace = "outrigger-system"

// env is what TestMain starts for every test: one node, one webhook.
var env struct {
	skip    string
	dir     string // the run's directory, removed after the node's teardown
	version string
	cluster *cluster.Cluster
	hook    *cluster.Webhook
	appRef  string
}

// image is the reference of one of the project's images at the version under test.
func image(name string) string { return "localhost/outrigger/" + name + ":" + env.version }

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
	env.appRef = image("e2e-app")
	ctx := context.Background()
	// Short: containerd's socket lives under it (unix socket paths are limited to 107 bytes).
	dir, err := os.MkdirTemp("", "outrigger-node-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
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
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "node e2e setup: %v\n", err)
		return 1
	}
	setup := time.Now()
	if err := buildAppImage(ctx, filepath.Join(dir, "app"), env.appRef); err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "timing: test app image built in %s\n", time.Since(setup).Round(time.Millisecond))
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...) }
	start := time.Now()
	c, err := cluster.New(ctx, cluster.Options{
		Dir: filepath.Join(dir, "c"),
		Log: logf,
		Node: &cluster.NodeOptions{
			SandboxImage: image("pause"),
			Images:       []string{image("topz"), image("https-proxy"), image("git-sync"), env.appRef},
		},
	})
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "timing: start to node Ready (etcd, kube-apiserver, controllers, containerd, 5 images loaded, kubelet): %s\n", time.Since(start).Round(time.Millisecond))
	env.cluster = c
	defer func() {
		stopStart := time.Now()
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the node: %v\n", err)
			keep = true // mounts may be left under it: do not remove through them
			return
		}
		fmt.Fprintf(os.Stderr, "timing: ordered teardown %s\n", time.Since(stopStart).Round(time.Millisecond))
	}()

	setup = time.Now()
	if err := startWebhook(ctx, c, dir); err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "timing: webhook built, started and called by the API server in %s\n", time.Since(setup).Round(time.Millisecond))
	defer env.hook.Stop()
	return m.Run()
}

// buildAppImage builds ./testapp statically and makes the FROM-scratch image ref from it with podman.
func buildAppImage(ctx context.Context, ctxDir, ref string) error {
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		return err
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(ctxDir, "app"), "./e2e/node/testapp")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the test app: %w\n%s", err, out)
	}
	img := exec.CommandContext(ctx, "podman", "build", "-q", "--pull=never", "-t", ref, "-f", filepath.Join(root, "e2e", "node", "testapp", "Dockerfile"), ctxDir)
	img.Env = os.Environ()
	if os.Getenv("CONTAINERS_CONF") == "" {
		img.Env = append(img.Env, "CONTAINERS_CONF="+filepath.Join(root, "hack", "podman", "containers.conf"))
	}
	if out, err := img.CombinedOutput(); err != nil {
		return fmt.Errorf("podman build %s: %w\n%s", ref, err, out)
	}
	return nil
}

// startWebhook runs the real outrigger-webhook binary on the host, configured for the local images, and
// registers it; it returns once the API server calls it for a new namespace.
func startWebhook(ctx context.Context, c *cluster.Cluster, dir string) error {
	bin, err := cluster.BuildWebhook(dir)
	if err != nil {
		return err
	}
	config := filepath.Join(dir, "webhook-config.yaml")
	yaml := fmt.Sprintf("images:\n  registry: localhost/outrigger\n  tag: %q\n  pullPolicy: Never\n", env.version)
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		return err
	}
	if err := c.EnsureNamespace(ctx, injectorNamespace, nil, nil); err != nil {
		return err
	}
	env.hook, err = c.StartWebhook(ctx, cluster.WebhookOptions{Binary: bin, ConfigFile: config, Namespace: injectorNamespace})
	if err != nil {
		return err
	}
	if err := c.Register(ctx, env.hook.Configuration("outrigger", admissionregistrationv1.Fail, injectorNamespace)); err != nil {
		return err
	}
	if err := c.EnsureNamespace(ctx, "webhook-probe", nil, nil); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		probe := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "probe", Annotations: map[string]string{"outrigger.dev/inject": "topz"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: env.appRef}}},
		}
		pod, err := c.Client().CoreV1().Pods("webhook-probe").Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && len(pod.Spec.InitContainers) == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the API server does not call the webhook after 30s (%v)\n--- webhook log ---\n%s", err, env.hook.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
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
