package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// TestProbesOfALoopbackAppGoThroughTheProxy: the book's legacy app listens on 127.0.0.1 only, and its own
// readiness (httpGet) and liveness (tcpSocket) probes name its port. The kubelet dials the pod IP, so
// without help the readiness probe fails and the liveness probe restarts the app forever: the control pod
// (rewrite-probes: "false") shows exactly that. With https-proxy injected, the probes are pointed at the
// proxy's status port, which repeats them on 127.0.0.1: the pod is Ready and the app never restarts, over
// the time the control needed to be restarted.
func TestProbesOfALoopbackAppGoThroughTheProxy(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns = "loopback-probes"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	createTLSSecret(t, ns, "legacy-tls", "legacy.loopback-probes.test")
	pod := func(name string, rewrite bool) *corev1.Pod {
		p := appPod(name, map[string]string{
			"outrigger.dev/inject":                     "https-proxy",
			"https-proxy.outrigger.dev/tls-secret":     "legacy-tls",
			"https-proxy.outrigger.dev/rewrite-probes": fmt.Sprint(rewrite),
		}, "-listen=127.0.0.1:8000", "-name=legacy")
		c := &p.Spec.Containers[0]
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8000}}
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 1}
		c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8000)}}, PeriodSeconds: 2, FailureThreshold: 2}
		return p
	}
	client := env.cluster.Client().CoreV1().Pods(ns)
	for _, p := range []*corev1.Pod{pod("rewritten", true), pod("as-written", false)} {
		if _, err := client.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer dumpPod(t, ns, p.Name)
	}
	got, err := client.Get(ctx, "rewritten", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := got.Spec.Containers[0].ReadinessProbe.HTTPGet; h == nil || h.Path != "/app-health/app/readyz" || h.Port.IntValue() != 9801 {
		t.Fatalf("the app's readiness probe was not pointed at the proxy: %+v", got.Spec.Containers[0].ReadinessProbe)
	}
	waitPod(t, ns, "rewritten", 2*time.Minute, podReady)

	// The control fails both probes: readiness events, then a restart by the liveness probe.
	clustertest.Eventually(t, 2*time.Minute, func() error {
		p, err := client.Get(ctx, "as-written", metav1.GetOptions{})
		if err != nil {
			return err
		}
		app := status(p.Status.ContainerStatuses, "app")
		if app == nil || app.RestartCount == 0 || probeFailures(t, ns, "as-written", "Readiness") == 0 {
			return fmt.Errorf("the control has not yet failed its readiness probe and been restarted by its liveness probe")
		}
		if podReady(p) == nil {
			return fmt.Errorf("the control is Ready, though the kubelet cannot reach its app")
		}
		return nil
	})
	p, err := client.Get(ctx, "rewritten", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	app := status(p.Status.ContainerStatuses, "app")
	// A readiness probe may fail while the app is still starting (as for any pod); a liveness failure or a
	// restart would be the app's probes not reaching it.
	if err := podReady(p); err != nil || app == nil || app.RestartCount != 0 || probeFailures(t, ns, "rewritten", "Liveness") != 0 {
		t.Fatalf("with the probes through the proxy the pod should stay Ready with no restart and no failed liveness probe: ready %v, app %+v", err, app)
	}
	control, _ := client.Get(ctx, "as-written", metav1.GetOptions{})
	t.Logf("result: through the proxy: Ready, 0 restarts, 0 failed liveness and %d failed readiness probes (while the app started); as written: %d failed readiness probes, %d restarts",
		probeFailures(t, ns, "rewritten", "Readiness"), probeFailures(t, ns, "as-written", "Readiness"), status(control.Status.ContainerStatuses, "app").RestartCount)
}
