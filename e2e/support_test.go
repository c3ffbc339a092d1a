package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// writeConfigMapVolume lays out files the way the kubelet updates a ConfigMap volume: a new timestamped
// directory, a `..data` symlink swapped by rename, and `name -> ..data/name` links. The webhook must
// notice the swap even though no file it watches by name is written.
func writeConfigMapVolume(dir string, files map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ts := filepath.Join(dir, fmt.Sprintf("..%s.%d", time.Now().Format("2006_01_02_15_04_05"), time.Now().UnixNano()))
	if err := os.Mkdir(ts, 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(ts, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	if old != "" {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

func annotatedPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}
}

// createPod creates pod in ns through the API server (dryRun: server-side dry run) and returns what the
// API server returned: the pod as admitted, after every mutating webhook.
func createPod(ctx context.Context, ns string, pod *corev1.Pod, dryRun bool) (*corev1.Pod, error) {
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return env.cluster.Client().CoreV1().Pods(ns).Create(ctx, pod, opts)
}

// sidecarNames lists the init containers with restartPolicy Always (native sidecars) and containers.
func sidecarNames(pod *corev1.Pod) (native, containers []string) {
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			native = append(native, c.Name)
		}
	}
	for _, c := range pod.Spec.Containers {
		containers = append(containers, c.Name)
	}
	return native, containers
}

// waitInjecting waits until the API server calls the webhook for pods in ns (webhook configurations take
// a moment to reach the API server's admission chain).
func waitInjecting(ctx context.Context, ns string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		pod, err := createPod(ctx, ns, annotatedPod("probe", map[string]string{"outrigger.dev/inject": "topz"}), true)
		if err == nil {
			if native, _ := sidecarNames(pod); len(native) == 1 {
				return nil
			}
			err = fmt.Errorf("probe pod not injected")
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the webhook is not called for namespace %s after %s: %v", ns, timeout, last)
}

// eventually polls cond until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
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

// metric sums the samples of a Prometheus counter whose line starts with name (and labels, if given).
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest != "" && rest[0] != ' ' && rest[0] != '{' {
			continue // a longer metric name
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
