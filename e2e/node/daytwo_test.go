package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// TestDayTwoAfterACatalogUpgrade is the operator's day two, with the CLI users run (built from cmd/outrigger)
// against the helm-installed webhook's cluster:
//   - after a helm upgrade that changes topz's image, `outrigger status` reports the Deployment with topz
//     stale (naming the image change) and the one with https-proxy current; `--fail-on stale` exits 3;
//   - `outrigger restart --stale` rolls only that Deployment and waits for it; status is then all current;
//   - a Deployment created while the webhook was down (failurePolicy Ignore) is reported missing, and
//     `restart --missing` gives its pods the sidecar once the webhook is back;
//   - `outrigger explain pod` says why each sidecar was or was not injected, with the parameters' sources;
//   - `outrigger inject --kubeconfig` reads the namespace's annotation from the cluster.
//
// exitFound is outrigger status's exit status when a workload is in a --fail-on state.
const exitFound = 3

func TestDayTwoAfterACatalogUpgrade(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns = "day-two"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, map[string]string{"outrigger.dev/inject": "topz"})
	createTLSSecret(t, ns, "web-tls", "web.day-two.test")
	cli := buildCLI(t)
	outrigger := func(wantExit int, args ...string) string {
		t.Helper()
		cmd := exec.Command(cli, append(args, "--kubeconfig", env.cluster.Kubeconfig())...)
		out, err := cmd.CombinedOutput()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantExit {
			t.Fatalf("outrigger %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, wantExit, out)
		}
		return string(out)
	}
	states := func() map[string]string {
		t.Helper()
		var out struct {
			Workloads []struct{ Kind, Name, State string }
		}
		if err := json.Unmarshal([]byte(outrigger(0, "status", "-n", ns, "-o", "json")), &out); err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, w := range out.Workloads {
			m[w.Kind+"/"+w.Name] = w.State
		}
		return m
	}

	// Two Deployments: topz from the namespace's annotation, https-proxy from the pod's own.
	createDeployment(t, ns, "with-topz", nil)
	createDeployment(t, ns, "with-proxy", map[string]string{
		"outrigger.dev/inject":                 "https-proxy",
		"https-proxy.outrigger.dev/tls-secret": "web-tls",
		"https-proxy.outrigger.dev/proxy-port": "8000",
	})
	if got := states(); got["Deployment/with-topz"] != "current" || got["Deployment/with-proxy"] != "current" {
		t.Fatalf("right after install: %v, want both current", got)
	}
	outrigger(0, "status", "-n", ns, "--fail-on", "stale,missing")

	// The catalog upgrade: topz's image changes (a sidecar release), nothing else.
	newTopz := "localhost/outrigger/topz:" + env.version
	setTopzImage(t, ctx, newTopz)
	t.Cleanup(func() { setTopzImage(t, context.Background(), "") })

	table := outrigger(exitFound, "status", "-n", ns, "-v", "--fail-on", "stale")
	t.Logf("outrigger status -n %s -v after the upgrade:\n%s", ns, table)
	for _, want := range []string{
		"Deployment/with-topz", "stale: topz (1/1 pods)", "image: " + image("topz") + " → " + newTopz,
		"2 workloads: 1 current, 1 stale (1 pod), 0 missing",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	if got := states(); got["Deployment/with-proxy"] != "current" {
		t.Errorf("a topz upgrade flags the https-proxy Deployment: %v", got)
	}

	plan := outrigger(0, "restart", "-n", ns, "--stale", "--dry-run")
	if !strings.Contains(plan, "Deployment day-two/with-topz (stale: topz (1/1 pods)): would restart") || strings.Contains(plan, "with-proxy") {
		t.Errorf("restart --dry-run plan:\n%s", plan)
	}
	proxyBefore := deploymentPodUID(t, ns, "with-proxy")
	rolled := outrigger(0, "restart", "-n", ns, "--stale", "--timeout", "3m")
	t.Logf("outrigger restart --stale: %s", rolled)
	if got := states(); got["Deployment/with-topz"] != "current" || got["Deployment/with-proxy"] != "current" {
		t.Errorf("after restart --stale: %v, want both current", got)
	}
	if after := deploymentPodUID(t, ns, "with-proxy"); after != proxyBefore {
		t.Errorf("restart --stale rolled the current https-proxy Deployment too")
	}
	if img := readyPod(t, ns, "app=with-topz").Spec.InitContainers[0].Image; img != newTopz {
		t.Errorf("the restarted pod's topz is %s, want %s", img, newTopz)
	}

	// The webhook is down and its failure policy is Ignore: a Deployment created now has no sidecar.
	t.Run("a pod admitted while the webhook was down is missing its sidecar until restarted", func(t *testing.T) {
		setWebhookDown(t, ctx, true)
		up := false
		t.Cleanup(func() {
			if !up {
				setWebhookDown(t, context.Background(), false)
			}
		})
		createDeployment(t, ns, "while-down", nil)
		setWebhookDown(t, ctx, false)
		up = true
		if n := len(readyPod(t, ns, "app=while-down").Spec.InitContainers); n != 0 {
			t.Fatalf("the pod created while the webhook was down has %d init containers", n)
		}
		table := outrigger(exitFound, "status", "-n", ns, "--fail-on", "missing")
		if !strings.Contains(table, "missing: topz (1/1 pods)") {
			t.Errorf("status does not report the missing topz:\n%s", table)
		}
		outrigger(0, "restart", "-n", ns, "--missing", "--timeout", "3m")
		if got := states()["Deployment/while-down"]; got != "current" {
			t.Errorf("after restart --missing: %s, want current", got)
		}
	})

	t.Run("explain names each sidecar's reason and each parameter's source", func(t *testing.T) {
		out := outrigger(0, "explain", "pod", readyPod(t, ns, "app=with-proxy").Name, "-n", ns)
		for _, want := range []string{
			"sidecars asked for: https-proxy (the pod's outrigger.dev/inject annotation)",
			"https-proxy: injected (native, from the pod annotation)",
			"tls-secret", "(annotation https-proxy.outrigger.dev/tls-secret)",
			"listen-port", "8443", "(catalog default)",
			"topz: not injected: not in that list",
			"in the running pod: current",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("explain lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("inject in cluster mode reads the namespace's annotation", func(t *testing.T) {
		manifest := filepath.Join(t.TempDir(), "pod.yaml")
		writeFile(t, manifest, "apiVersion: v1\nkind: Pod\nmetadata: {name: plain, namespace: day-two}\nspec: {containers: [{name: app, image: web:1}]}\n")
		out := outrigger(0, "inject", "-f", manifest)
		if !strings.Contains(out, "name: topz") || !strings.Contains(out, "image: "+newTopz) {
			t.Errorf("inject --kubeconfig did not inject the namespace's topz with the cluster's config:\n%s", out)
		}
	})
}

// buildCLI builds cmd/outrigger into the run's directory.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(env.dir, "outrigger")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/outrigger")
	cmd.Dir = env.root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/outrigger: %v\n%s", err, out)
	}
	return bin
}

// createDeployment creates a one-replica Deployment of the test app with these pod annotations and waits
// for its pod to be Ready.
func createDeployment(t *testing.T, ns, name string, annotations map[string]string) {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr(int64(1)), Containers: []corev1.Container{{
					Name: "app", Image: env.appRef, ImagePullPolicy: corev1.PullNever, Args: []string{"-listen=127.0.0.1:8000", "-name=" + name},
				}}},
			},
		},
	}
	if _, err := env.cluster.Client().AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	readyPod(t, ns, "app="+name)
}

func deploymentPodUID(t *testing.T, ns, name string) types.UID {
	return readyPod(t, ns, "app="+name).UID
}

// setTopzImage is a catalog upgrade as users make it (helm upgrade of the config: topz's image is ref, or,
// when ref is "", the release goes back to the README's install values), then waits until the webhook
// injects that image (the kubelet updates the mounted ConfigMap within its sync period).
func setTopzImage(t *testing.T, ctx context.Context, ref string) {
	t.Helper()
	values := []string{"--reuse-values", "--set", "config.images.overrides.topz=" + ref}
	if ref == "" {
		values, ref = []string{"--reset-values", "--set", "certificates.mode=self-managed"}, image("topz")
	}
	helm(t, append([]string{"upgrade", release, env.root + "/charts/outrigger", "-n", injectorNamespace, "--wait", "--timeout", "3m"}, values...)...)
	clustertest.CreateNamespace(t, env.cluster, "day-two-probe", nil, nil)
	clustertest.Eventually(t, 2*time.Minute, func() error {
		pod, err := env.cluster.CreatePod(ctx, "day-two-probe", cluster.AppPod("probe", map[string]string{"outrigger.dev/inject": "topz"}), true)
		if err != nil {
			return err
		}
		if got := pod.Spec.InitContainers[0].Image; got != ref {
			return fmt.Errorf("a new pod's topz is %s, want %s", got, ref)
		}
		return nil
	})
}

// setWebhookDown takes the webhook away with failurePolicy Ignore (down = true: its Deployment scaled to
// zero, so pods are admitted as submitted), or brings it back with failurePolicy Fail and waits until it
// injects again.
func setWebhookDown(t *testing.T, ctx context.Context, down bool) {
	t.Helper()
	policy, replicas := "Fail", "2"
	if down {
		policy, replicas = "Ignore", "0"
	}
	helm(t, "upgrade", release, env.root+"/charts/outrigger", "-n", injectorNamespace, "--reuse-values", "--set", "webhook.failurePolicy="+policy, "--timeout", "3m")
	kubectl(t, "-n", injectorNamespace, "scale", "deployment/"+webhookDeployment, "--replicas="+replicas)
	if down {
		waitWebhookPodsGone(t, ctx)
		return
	}
	kubectl(t, "-n", injectorNamespace, "rollout", "status", "deployment/"+webhookDeployment, "--timeout=2m")
	if err := waitInjecting(ctx, "day-two-probe", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// waitWebhookPodsGone waits until no webhook pod is left: gone, not only terminating, since a stopping
// replica keeps serving through its preStop delay (webhook.shutdownDelaySeconds), and kube-proxy still
// sends to it when no replica is ready.
func waitWebhookPodsGone(t *testing.T, ctx context.Context) {
	t.Helper()
	clustertest.Eventually(t, time.Minute, func() error {
		list, err := env.cluster.Client().CoreV1().Pods(injectorNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhook"})
		if err != nil {
			return err
		}
		if len(list.Items) > 0 {
			return fmt.Errorf("%d webhook pods still there", len(list.Items))
		}
		return nil
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestResourcesAndSomeContainersOnly runs what a pod can now say about its sidecars on the real node:
// topz's resources from annotations over the catalog's (the kubelet runs it with them), and config-sync's
// directory in one of two app containers only; `outrigger explain` names each value's source.
func TestResourcesAndSomeContainersOnly(t *testing.T) {
	requireNode(t)
	const ns = "resources"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	kubectlApply(t, configMapYAML(ns, "greeting=v1\n"))
	labels := map[string]string{"app": "two-apps"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "two-apps"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"outrigger.dev/inject":                       "topz,config-sync",
					"topz.outrigger.dev/cpu-request":             "20m",
					"topz.outrigger.dev/memory-limit":            "96Mi",
					"config-sync.outrigger.dev/source-configmap": "app-config",
					"config-sync.outrigger.dev/source-dir":       "/etc/config-source",
					"config-sync.outrigger.dev/containers":       "web",
				}},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr(int64(1)), Containers: []corev1.Container{
					{Name: "web", Image: env.appRef, ImagePullPolicy: corev1.PullNever, Args: []string{"-listen=127.0.0.1:8000", "-name=web", "-config=/etc/config/app.conf"}},
					{Name: "worker", Image: env.appRef, ImagePullPolicy: corev1.PullNever, Args: []string{"-listen=127.0.0.1:8001", "-name=worker"}},
				}},
			},
		},
	}
	if _, err := env.cluster.Client().AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := readyPod(t, ns, "app=two-apps")
	defer dumpPod(t, ns, pod.Name)
	topz := status(pod.Status.InitContainerStatuses, "topz")
	if topz == nil || !topz.Ready {
		t.Fatalf("topz is not running and ready: %+v", topz)
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name != "topz" {
			continue
		}
		cpu, mem := c.Resources.Requests[corev1.ResourceCPU], c.Resources.Limits[corev1.ResourceMemory]
		if cpu.String() != "20m" || mem.String() != "96Mi" {
			t.Errorf("topz runs with cpu request %s and memory limit %s, want the annotations' 20m and 96Mi", cpu.String(), mem.String())
		}
		if req := c.Resources.Requests[corev1.ResourceMemory]; req.String() != "16Mi" {
			t.Errorf("topz's memory request %s, want the catalog's 16Mi (not overridden)", req.String())
		}
	}
	mounts := func(name string) bool {
		for _, c := range pod.Spec.Containers {
			if c.Name == name {
				for _, m := range c.VolumeMounts {
					if m.Name == "outrigger-config" {
						return true
					}
				}
			}
		}
		return false
	}
	if !mounts("web") || mounts("worker") {
		t.Errorf("the config directory is in web: %v, in worker: %v; want web only", mounts("web"), mounts("worker"))
	}
	cli := buildCLI(t)
	out, err := exec.Command(cli, "explain", "pod", pod.Name, "-n", ns, "--kubeconfig", env.cluster.Kubeconfig()).CombinedOutput()
	if err != nil {
		t.Fatalf("outrigger explain: %v\n%s", err, out)
	}
	for _, want := range []string{"cpu-request = 20m (annotation topz.outrigger.dev/cpu-request)", "memory-request = 16Mi (catalog default)", "containers = web (annotation config-sync.outrigger.dev/containers)"} {
		if !strings.Contains(strings.Join(strings.Fields(string(out)), " "), want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
}
