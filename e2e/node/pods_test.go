package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/e2e/cluster/clustertest"
)

// TestInjectedSidecarsServeTheApp creates a plain pod annotated for https-proxy and topz; the webhook injects
// them as native sidecars, and on the node: topz sees the app's process (one PID namespace), and HTTPS
// through the proxy reaches the app, which itself listens only on the pod's loopback.
func TestInjectedSidecarsServeTheApp(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns, name, host = "shop", "web", "web.shop.test"
	clustertest.CreateNamespace(t, env.cluster, ns, nil, nil)
	caPEM := createTLSSecret(t, ns, "web-tls", host)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			"outrigger.dev/inject":                 "https-proxy,topz",
			"https-proxy.outrigger.dev/tls-secret": "web-tls",
			"https-proxy.outrigger.dev/proxy-port": "8000",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: env.appRef, ImagePullPolicy: corev1.PullNever,
			// Loopback only: from outside the pod, the proxy is the only way in.
			Args: []string{"-listen=127.0.0.1:8000", "-name=web", "-check=http://127.0.0.1:9801/healthz"},
		}}},
	}
	defer dumpPod(t, ns, name)
	created := time.Now()
	got, err := env.cluster.Client().CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var native []string
	for _, c := range got.Spec.InitContainers {
		native = append(native, c.Name+"="+c.Image)
	}
	// topz first and https-proxy last among the init containers: their catalog order.
	if want := []string{"topz=" + image("topz"), "https-proxy=" + image("https-proxy")}; fmt.Sprint(native) != fmt.Sprint(want) {
		t.Fatalf("injected native sidecars %v, want %v", native, want)
	}
	running := waitPod(t, ns, name, 2*time.Minute, podRunning)
	ready := waitPod(t, ns, name, 2*time.Minute, podReady)
	t.Logf("timing: pod created → Running %s, → Ready %s", running.Sub(created).Round(time.Millisecond), ready.Sub(created).Round(time.Millisecond))
	ip := podIP(t, ns, name)

	t.Run("topz sees the app's process", func(t *testing.T) {
		body := get(t, nil, "http://"+net.JoinHostPort(ip, "8080")+"/topz")
		for _, want := range []string{"/app -listen=127.0.0.1:8000 -name=web", "/https-proxy", "/topz", "/pause"} {
			if !strings.Contains(body, want) {
				t.Errorf("/topz does not list %q (the pod shares one PID namespace):\n%s", want, body)
			}
		}
	})

	t.Run("https-proxy serves the app over TLS", func(t *testing.T) {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12},
		}}
		defer client.CloseIdleConnections()
		body := get(t, client, "https://"+net.JoinHostPort(ip, "8443")+"/")
		if !strings.HasPrefix(body, "hello from web\n") {
			t.Errorf("through the proxy: %q, want the app's greeting", body)
		}
		// The app listens on the pod's loopback only: its port is closed on the pod IP.
		if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + net.JoinHostPort(ip, "8000") + "/"); err == nil {
			resp.Body.Close()
			t.Errorf("the app answered on %s:8000 directly (%s); it should be reachable only through the proxy", ip, resp.Status)
		}
	})

	t.Run("the app started after https-proxy's startup probe passed", func(t *testing.T) {
		// The app GETs the proxy's /healthz (the startup probe's endpoint) once, as it starts.
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(caPEM)
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host}}}
		defer client.CloseIdleConnections()
		body := get(t, client, "https://"+net.JoinHostPort(ip, "8443")+"/")
		if !strings.Contains(body, "at start: GET http://127.0.0.1:9801/healthz -> 200\n") {
			t.Errorf("the app did not find https-proxy healthy when it started:\n%s", body)
		}
	})
}

// TestStartupProbeGatesTheApp shows the kubelet's native-sidecar contract that injection relies on: the app
// container does not start while a sidecar's startupProbe fails, and starts once it passes. The sidecar is
// the test app with its gate closed (its /healthz answers 503 until POST /open); the pod is not injected.
func TestStartupProbeGatesTheApp(t *testing.T) {
	requireNode(t)
	ctx := context.Background()
	const ns, name = "gate", "gated"
	clustertest.CreateNamespace(t, env.cluster, ns, map[string]string{"outrigger.dev/injection": "disabled"}, nil)
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{
				Name: "gatekeeper", Image: env.appRef, ImagePullPolicy: corev1.PullNever, RestartPolicy: &always,
				Args: []string{"-listen=:9000", "-name=gatekeeper", "-gate"},
				StartupProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(9000)}},
					PeriodSeconds: 1, FailureThreshold: 600,
				},
			}},
			Containers: []corev1.Container{{
				Name: "app", Image: env.appRef, ImagePullPolicy: corev1.PullNever,
				Args: []string{"-listen=:8000", "-name=app", "-check=http://127.0.0.1:9000/healthz"},
			}},
		},
	}
	defer dumpPod(t, ns, name)
	if _, err := env.cluster.Client().CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Wait until the kubelet has run the failing startup probe at least twice.
	waitPod(t, ns, name, 2*time.Minute, func(*corev1.Pod) error {
		if n := startupProbeFailures(t, ns, name); n < 2 {
			return fmt.Errorf("%d failed startup probes recorded", n)
		}
		return nil
	})
	p, err := env.cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if gk := status(p.Status.InitContainerStatuses, "gatekeeper"); gk == nil || gk.State.Running == nil || (gk.Started != nil && *gk.Started) {
		t.Fatalf("gatekeeper should be running and not started (its probe fails): %+v", gk)
	}
	if app := status(p.Status.ContainerStatuses, "app"); app != nil && app.State.Waiting == nil {
		t.Fatalf("the app left Waiting while the sidecar's startup probe still failed: %+v", app.State)
	}

	ip := podIP(t, ns, name)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Post("http://"+net.JoinHostPort(ip, "9000")+"/open", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitPod(t, ns, name, time.Minute, podReady)
	if body := get(t, nil, "http://"+net.JoinHostPort(ip, "8000")+"/"); !strings.Contains(body, "at start: GET http://127.0.0.1:9000/healthz -> 200\n") {
		t.Errorf("the app did not find the sidecar's startup probe passing when it started:\n%s", body)
	}
}

// createTLSSecret creates a kubernetes.io/tls Secret for host, signed by a new CA, and returns the CA (PEM).
func createTLSSecret(t *testing.T, ns, name, host string) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	caPEM, err := cluster.ServingCert(dir, host)
	if err != nil {
		t.Fatal(err)
	}
	crt, key := readFile(t, filepath.Join(dir, "tls.crt")), readFile(t, filepath.Join(dir, "tls.key"))
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key},
	}
	if _, err := env.cluster.Client().CoreV1().Secrets(ns).Create(context.Background(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return caPEM
}

func podRunning(p *corev1.Pod) error {
	if p.Status.Phase != corev1.PodRunning {
		return fmt.Errorf("phase %s", p.Status.Phase)
	}
	return nil
}

func podReady(p *corev1.Pod) error {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return nil
		}
	}
	return fmt.Errorf("phase %s, not Ready", p.Status.Phase)
}

// waitPod polls the pod until cond accepts it and returns when it did; it fails the test after timeout.
func waitPod(t *testing.T, ns, name string, timeout time.Duration, cond func(*corev1.Pod) error) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		p, err := env.cluster.Client().CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			if err = cond(p); err == nil {
				return time.Now()
			}
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("pod %s/%s after %s: %v", ns, name, timeout, last)
	return time.Time{}
}

// podIP returns the pod's IP and fails the test unless it is on the node's own bridge (the only non-loopback
// addresses these tests may send traffic to).
func podIP(t *testing.T, ns, name string) string {
	t.Helper()
	p, err := env.cluster.Client().CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil || !netip.MustParsePrefix(cluster.PodSubnet).Contains(addr) {
		t.Fatalf("pod %s/%s has IP %q, outside the node's pod subnet %s", ns, name, p.Status.PodIP, cluster.PodSubnet)
	}
	return addr.String()
}

// get GETs url with client (nil: plain HTTP with a 5 s timeout) and fails the test unless it answers 200.
func get(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v\n%s", url, resp.Status, err, body)
	}
	return string(body)
}

// getErr GETs url with client (nil: plain HTTP with a 5 s timeout) and returns the body, or an error unless
// it answered 200.
func getErr(client *http.Client, url string) (string, error) {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), err
}

// startupProbeFailures counts the kubelet's "Startup probe failed" events for the pod.
func startupProbeFailures(t *testing.T, ns, name string) int {
	t.Helper()
	return probeFailures(t, ns, name, "Startup")
}

// probeFailures counts the kubelet's "<kind> probe failed" events for the pod (kind: Startup, Readiness,
// Liveness).
func probeFailures(t *testing.T, ns, name, kind string) int {
	t.Helper()
	events, err := env.cluster.Client().CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events.Items {
		if e.Reason == "Unhealthy" && strings.HasPrefix(e.Message, kind+" probe failed") {
			n += max(int(e.Count), 1)
		}
	}
	return n
}

func status(statuses []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range statuses {
		if statuses[i].Name == name {
			return &statuses[i]
		}
	}
	return nil
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
