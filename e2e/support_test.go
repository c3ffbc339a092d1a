package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
)

// writeConfigMapVolume updates the webhook's config directory as the kubelet updates a ConfigMap volume.
func writeConfigMapVolume(dir string, files map[string]string) error {
	data := make(map[string][]byte, len(files))
	for k, v := range files {
		data[k] = []byte(v)
	}
	return cluster.WriteVolume(dir, data)
}

// sidecarNames lists the init containers with restartPolicy Always (native sidecars) and containers.
func sidecarNames(pod *corev1.Pod) (native, containers []string) {
	native = cluster.NativeSidecars(pod)
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
		pod, err := env.cluster.CreatePod(ctx, ns, cluster.AppPod("probe", map[string]string{"outrigger.dev/inject": "topz"}), true)
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
