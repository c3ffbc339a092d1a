package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/outrigger-dev/outrigger/e2e/cluster"
	"github.com/outrigger-dev/outrigger/internal/testpki"
)

// soakReviews is how many AdmissionReviews the soak sends; OUTRIGGER_SOAK_REVIEWS changes it.
const soakReviews = 100_000

// TestSoakWithRotationAndReload sends 100,000 AdmissionReviews over TLS to one webhook process at a steady
// 1,500 a second (16 clients with keep-alive), rotates its serving certificate (to one from a new CA) at a quarter of the run and swaps its
// config file (the kubelet's ..data swap) at half. Every review must be answered allowed with a patch;
// the new certificate and the new config must be seen in force; and the process's memory, goroutines
// and open files must stay flat: sampled from its /metrics and printed; once the clients hang up,
// goroutines and open files must be back near the first sample and RSS near the warmed-up fifth.
func TestSoakWithRotationAndReload(t *testing.T) {
	total := soakReviews
	if v, err := strconv.Atoi(os.Getenv("OUTRIGGER_SOAK_REVIEWS")); err == nil && v > 0 {
		total = v
	}
	const rate = 1500 // reviews per second, open loop: review n leaves at start + n/rate
	ctx := context.Background()
	configDir := filepath.Join(t.TempDir(), "config")
	if err := writeConfigMapVolume(configDir, map[string]string{"config.yaml": ""}); err != nil {
		t.Fatal(err)
	}
	hook, err := env.cluster.StartWebhook(ctx, cluster.WebhookOptions{Binary: env.binary, Namespace: injectorNamespace,
		Name: "webhook-soak", ConfigFile: filepath.Join(configDir, "config.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	defer hook.Stop()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(hook.CABundle)
	newCA, err := testpki.NewCA("soak-rotated-ca")
	if err != nil {
		t.Fatal(err)
	}
	roots.AddCert(newCA.Cert) // the client trusts both, as a caBundle does during a rotation
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, MaxIdleConnsPerHost: 64, IdleConnTimeout: 2 * time.Second,
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: transport}
	body := soakReview(t)

	type sample struct {
		at                      int
		rss, goroutines, openFD float64
	}
	var (
		failed, reloadSeen atomic.Int64
		firstErr           atomic.Value
		samples            []sample
	)
	rotateAt, reloadAt := total/4, total/2
	var reloaded atomic.Bool
	work := make(chan int, 256)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				cpu, err := soakOnce(client, hook.URL, body)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("review %d: %v", n, err))
					continue
				}
				if cpu == "3m" && reloaded.Load() {
					reloadSeen.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	for n := 0; n < total; n++ {
		if d := time.Until(start.Add(time.Duration(n) * time.Second / rate)); d > 0 {
			time.Sleep(d)
		}
		work <- n
		switch {
		case n == rotateAt:
			leaf, err := newCA.ServingCert(time.Time{}, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			if err := writeRotated(hook.CertDir, leaf); err != nil {
				t.Fatal(err)
			}
		case n == reloadAt:
			if err := writeConfigMapVolume(configDir, map[string]string{"config.yaml": "resources: {topz: {requests: {cpu: 3m}}}\n"}); err != nil {
				t.Fatal(err)
			}
			reloaded.Store(true)
		}
		if n%max(total/20, 1) == 0 {
			s := sample{at: n}
			s.rss, s.goroutines, s.openFD = soakMetrics(t, hook.MetricsURL)
			samples = append(samples, s)
		}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	end := sample{at: total}
	end.rss, end.goroutines, end.openFD = soakMetrics(t, hook.MetricsURL)
	samples = append(samples, end)

	var lines []string
	for _, s := range samples {
		lines = append(lines, fmt.Sprintf("%6d reviews: RSS %.1f MB, %3.0f goroutines, %3.0f open files", s.at, s.rss/(1<<20), s.goroutines, s.openFD))
	}
	t.Logf("samples:\n%s", strings.Join(lines, "\n"))
	t.Logf("result: %d reviews in %s (%.0f/s) over TLS, %d failed; certificate rotated at %d, config reloaded at %d (%d answers carried the new config)",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), failed.Load(), rotateAt, reloadAt, reloadSeen.Load())

	if failed.Load() != 0 {
		t.Errorf("%d of %d reviews failed; the first: %v", failed.Load(), total, firstErr.Load())
	}
	if reloadSeen.Load() == 0 {
		t.Error("no answer after the config swap carried the new config")
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(hook.URL, "/inject"), "https://"), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	served := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if served.Issuer.CommonName != "soak-rotated-ca" {
		t.Errorf("after the run the webhook serves a certificate issued by %q, not the rotated one", served.Issuer.CommonName)
	}
	// Goroutines and open files move with the clients' connections while the load runs (each
	// connection is a goroutine and a socket on the webhook's side), so a leak is what is left once
	// the clients hang up: close their connections, give the webhook a few seconds to see them go,
	// and compare with the first sample. RSS does not fall back, so it is compared with the
	// warmed-up fifth of the run instead.
	transport.CloseIdleConnections()
	first, warm := samples[0], samples[min(4, len(samples)-1)]
	settled := sample{at: total}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		settled.rss, settled.goroutines, settled.openFD = soakMetrics(t, hook.MetricsURL)
		if settled.goroutines <= first.goroutines+10 && settled.openFD <= first.openFD+5 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("after the clients hung up: %.0f goroutines, %.0f open files (first sample %.0f, %.0f); RSS %.1f MB (warmed up %.1f MB)",
		settled.goroutines, settled.openFD, first.goroutines, first.openFD, settled.rss/(1<<20), warm.rss/(1<<20))
	if settled.goroutines > first.goroutines+10 || settled.openFD > first.openFD+5 || settled.rss > 1.5*warm.rss {
		t.Errorf("left behind by %d reviews: goroutines %.0f → %.0f, open files %.0f → %.0f; RSS %.1f MB after %d reviews → %.1f MB",
			total, first.goroutines, settled.goroutines, first.openFD, settled.openFD, warm.rss/(1<<20), warm.at, settled.rss/(1<<20))
	}
}

// soakReview is the AdmissionReview of a typical pod asking for topz.
func soakReview(t *testing.T) []byte {
	t.Helper()
	pod, err := json.Marshal(cluster.AppPod("soak", map[string]string{"outrigger.dev/inject": "topz"}))
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "soak", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: "default",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: pod}},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// soakOnce posts one review and returns the topz CPU request its patch sets, or an error unless it was
// answered allowed with a patch.
func soakOnce(client *http.Client, url string, body []byte) (string, error) {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		return "", fmt.Errorf("status %d: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || review.Response == nil || !review.Response.Allowed || len(review.Response.Patch) == 0 {
		return "", fmt.Errorf("status %d, response %+v", resp.StatusCode, review.Response)
	}
	var ops []struct {
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	_ = json.Unmarshal(review.Response.Patch, &ops)
	for _, op := range ops {
		if strings.HasPrefix(op.Path, "/spec/initContainers") && bytes.Contains(op.Value, []byte(`"cpu":"3m"`)) {
			return "3m", nil
		}
	}
	return "", nil
}

// writeRotated replaces tls.crt and tls.key in dir the way a Secret update lands (new files renamed over
// the old ones), for the webhook's certwatcher to reload.
func writeRotated(dir string, leaf testpki.Leaf) error {
	for name, data := range map[string][]byte{"tls.key": leaf.KeyPEM, "tls.crt": leaf.CertPEM} {
		tmp := filepath.Join(dir, "."+name+".new")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// soakMetrics reads the webhook process's resident memory, goroutines and open files from /metrics.
func soakMetrics(t *testing.T, url string) (rss, goroutines, openFD float64) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "process_resident_memory_bytes":
			rss = v
		case "go_goroutines":
			goroutines = v
		case "process_open_fds":
			openFD = v
		}
	}
	return rss, goroutines, openFD
}
