// Command webhook benchmarks the admission webhook over TLS with keep-alive: Outrigger's injector next to
// a floor handler that only decodes the review and answers "allowed", both mounted on the same
// controller-runtime webhook server in the same run, so the ratio is what injection itself costs.
//
// For each pod (a typical ~3 KB pod asking for 2 sidecars, and a ~55 KB pod with 1,500 env vars) it runs
// an open-loop load at -rate reviews/s for -duration and reports server-side p50/p99 (time inside the
// server, from request to response written), then a closed-loop run with -workers clients for the
// maximum reviews/s. Run it with `go run ./bench/webhook` (see docs/performance.md).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/internal/gcdefaults"
	"github.com/outrigger-dev/outrigger/webhook"
	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/server"
)

func main() {
	rate := flag.Int("rate", 1000, "open-loop reviews per second for the typical pod")
	bigRate := flag.Int("big-rate", 100, "open-loop reviews per second for the 1,500-env pod (1,000/s saturates this 2-core machine even for the floor handler)")
	duration := flag.Duration("duration", 10*time.Second, "open-loop duration per scenario")
	workers := flag.Int("workers", 16, "closed-loop concurrent clients")
	closed := flag.Duration("closed", 5*time.Second, "closed-loop duration per scenario")
	flag.Parse()
	// The webhook binary's GC defaults (cmd/outrigger-webhook applies the same); GOGC/GOMEMLIMIT win.
	gcdefaults.Apply(os.LookupEnv, server.DefaultGOGC, server.DefaultMemoryLimit)
	if err := run(*rate, *bigRate, *duration, *workers, *closed); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// timings records server-side durations per path.
type timings struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

func (t *timings) wrap(path string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		took := time.Since(start)
		t.mu.Lock()
		t.d[path] = append(t.d[path], took)
		t.mu.Unlock()
	})
}

func (t *timings) take(path string) []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.d[path]
	t.d[path] = nil
	return d
}

func run(rate, bigRate int, duration time.Duration, workers int, closed time.Duration) error {
	dir, err := os.MkdirTemp("", "outrigger-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	caPEM, err := cluster.ServingCert(dir, "127.0.0.1")
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	cfg, err := config.Parse(nil, "outrigger-system")
	if err != nil {
		return err
	}
	injector := &webhook.Injector{Config: func() *config.Config { return cfg }}
	floor := admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		var pod corev1.Pod
		if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		return admission.Allowed("")
	})
	ctrl.SetLogger(logr.Discard())
	tm := &timings{d: map[string][]time.Duration{}}
	srv := crwebhook.NewServer(crwebhook.Options{Host: "127.0.0.1", Port: port, CertDir: dir})
	srv.Register("/inject", tm.wrap("/inject", &admission.Webhook{Handler: injector}))
	srv.Register("/floor", tm.wrap("/floor", &admission.Webhook{Handler: floor}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = srv.Start(ctx) }()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256,
	}}
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err := client.Get(base + "/floor"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}

	fmt.Printf("Admission webhook benchmark: %s, open loop %d reviews/s (typical) and %d/s (1500-env) for %s, closed loop %d clients for %s\n", strings.TrimSpace(runtimeInfo()), rate, bigRate, duration, workers, closed)
	fmt.Printf("%-14s %-8s %8s %10s %10s %10s %12s\n", "pod", "handler", "size", "p50", "p99", "errors", "max rev/s")
	for _, pc := range []struct {
		name string
		pod  *corev1.Pod
		rate int
	}{{"typical", typicalPod(), rate}, {"1500-env", hugePod(), bigRate}} {
		body, err := reviewBody(pc.pod)
		if err != nil {
			return err
		}
		results := map[string][3]float64{}
		for _, path := range []string{"/floor", "/inject"} {
			// Warm up, then measure.
			_ = openLoop(client, base+path, body, pc.rate, time.Second)
			tm.take(path)
			errs := openLoop(client, base+path, body, pc.rate, duration)
			d := tm.take(path)
			p50, p99 := percentile(d, 0.50), percentile(d, 0.99)
			tput := closedLoop(client, base+path, body, workers, closed)
			tm.take(path)
			results[path] = [3]float64{float64(p50), float64(p99), tput}
			fmt.Printf("%-14s %-8s %7.1fK %10s %10s %10d %12.0f\n", pc.name, strings.TrimPrefix(path, "/"), float64(len(body))/1024, p50.Round(time.Microsecond), p99.Round(time.Microsecond), errs, tput)
		}
		f, i := results["/floor"], results["/inject"]
		fmt.Printf("%-14s ratio inject/floor: p50 %.2f×  p99 %.2f×  throughput %.2f×\n", pc.name, i[0]/f[0], i[1]/f[1], i[2]/f[2])
	}
	return nil
}

// openLoop sends rate requests per second for d, each on its own goroutine (bounded), and returns the
// number of failed reviews.
func openLoop(client *http.Client, url string, body []byte, rate int, d time.Duration) int64 {
	var errs atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for n := 0; time.Since(start) < d; n++ {
		if wait := time.Until(start.Add(time.Duration(n) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if !post(client, url, body) {
				errs.Add(1)
			}
		}()
	}
	wg.Wait()
	return errs.Load()
}

func closedLoop(client *http.Client, url string, body []byte, workers int, d time.Duration) float64 {
	var done atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if post(client, url, body) {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / d.Seconds()
}

func post(client *http.Client, url string, body []byte) bool {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == 200 && review.Response != nil && review.Response.Allowed
}

func reviewBody(pod *corev1.Pod) ([]byte, error) {
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "bench", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "shop",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	})
}

// typicalPod is a ~3 KB pod of a real Deployment asking for two sidecars.
func typicalPod() *corev1.Pod {
	var env []corev1.EnvVar
	for i := 0; i < 20; i++ {
		env = append(env, corev1.EnvVar{Name: fmt.Sprintf("APP_SETTING_%02d", i), Value: "some-configuration-value"})
	}
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-7d9f8b6c5-", Namespace: "shop",
			Labels: map[string]string{"app": "web", "pod-template-hash": "7d9f8b6c5", "team": "storefront"},
			Annotations: map[string]string{"outrigger.dev/inject": "https-proxy,topz",
				"https-proxy.outrigger.dev/tls-secret": "web-tls", "https-proxy.outrigger.dev/proxy-port": "8000",
				"topz.outrigger.dev/addr": ":9805"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "web", Image: "registry.example/storefront/web:2.14.3", Env: env,
				Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8000}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready"}}},
				VolumeMounts:   []corev1.VolumeMount{{Name: "cache", MountPath: "/var/cache/web"}}}},
			Volumes:            []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			ServiceAccountName: "web",
		},
	}
}

// hugePod is the typical pod with 1,500 env vars (~55 KB), the case that took Istio ~1 s.
func hugePod() *corev1.Pod {
	p := typicalPod()
	var env []corev1.EnvVar
	for i := 0; i < 1500; i++ {
		env = append(env, corev1.EnvVar{Name: fmt.Sprintf("VAR_%04d", i), Value: "value-of-sixteen"})
	}
	p.Spec.Containers[0].Env = env
	return p
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*q)]
}

func runtimeInfo() string {
	data, _ := os.ReadFile(filepath.Join("/proc", "loadavg"))
	return "load " + strings.Join(strings.Fields(string(data))[:3], " ")
}
