package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/appprobe"
)

// TestTheAppsProbesAreRepeatedOnItsLoopback: the injector points an app's probes at the status port
// (appprobe.StatusPath); the proxy repeats each to the app on 127.0.0.1 as the kubelet made it (path and
// query, the kubelet's headers, a Host the probe set), within the probe's timeout, and answers with the
// app's status: 200, the app's 503, 503 when the app takes longer than the timeout or does not accept
// connections (tcpSocket), a 302 without its Location, 404 for a path the injector did not set.
func TestTheAppsProbesAreRepeatedOnItsLoopback(t *testing.T) {
	var mu sync.Mutex
	var seen []*http.Request
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Clone(r.Context()))
		mu.Unlock()
		switch r.URL.Path {
		case "/ready":
			io.WriteString(w, "ready")
		case "/sick":
			http.Error(w, "database down", http.StatusServiceUnavailable)
		case "/slow":
			select { // past the probe's timeout; the proxy gives up and closes the connection
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/redirect":
			http.Redirect(w, r, "/login", http.StatusFound)
		}
	})
	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: app}
	go srv.Serve(appLn)
	defer srv.Close()

	ca := newPKI(t, "test CA")
	cfg := testConfig(t, ca, portOf(t, appLn.Addr().String()))
	second := appprobe.Duration(time.Second)
	cfg.AppProbes = appprobe.Set{
		appprobe.StatusPath("web", "readyz"):   {Path: "/ready?full=1", Timeout: second},
		appprobe.StatusPath("web", "livez"):    {TCP: true, Timeout: second},
		appprobe.StatusPath("web", "startupz"): {Path: "/slow", Timeout: appprobe.Duration(200 * time.Millisecond)},
		appprobe.StatusPath("w2", "readyz"):    {Path: "/sick", Timeout: second},
		appprobe.StatusPath("w3", "readyz"):    {Path: "/redirect", Timeout: second},
	}
	p := startProxy(t, ca, cfg)
	probe := func(path string, header map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+p.statusAddr+path, nil)
		req.Header.Set("User-Agent", "kube-probe/1.34")
		for k, v := range header {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	resp, body := probe("/app-health/web/readyz", map[string]string{"X-Probe": "1"})
	if resp.StatusCode != 200 || body != "ready" {
		t.Errorf("readyz: %d %q, want the app's 200 ready", resp.StatusCode, body)
	}
	mu.Lock()
	got := seen[len(seen)-1]
	mu.Unlock()
	if got.URL.RequestURI() != "/ready?full=1" || got.Header.Get("User-Agent") != "kube-probe/1.34" || got.Header.Get("X-Probe") != "1" || got.Host != appLn.Addr().String() {
		t.Errorf("the app got %s with User-Agent %q, X-Probe %q, Host %q; want the probe's path, the kubelet's headers and its own address",
			got.URL.RequestURI(), got.Header.Get("User-Agent"), got.Header.Get("X-Probe"), got.Host)
	}
	probe("/app-health/web/readyz", map[string]string{"Host": "legacy.example"})
	mu.Lock()
	if got := seen[len(seen)-1]; got.Host != "legacy.example" {
		t.Errorf("a Host the probe set reached the app as %q", got.Host)
	}
	mu.Unlock()
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/app-health/web/livez", 200, "accepts connections"},
		{"/app-health/web/startupz", 503, "deadline exceeded"},
		{"/app-health/w2/readyz", 503, "database down"},
		{"/app-health/w3/readyz", 302, ""},
		{"/app-health/nobody/readyz", 404, "no app probe"},
	} {
		resp, body := probe(tc.path, nil)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %q, want %d with %q", tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
		if tc.status == 302 && resp.Header.Get("Location") != "" {
			t.Errorf("%s: Location %q passed on; the kubelet would follow it to the status port", tc.path, resp.Header.Get("Location"))
		}
	}
	srv.Close()
	if resp, body := probe("/app-health/web/livez", nil); resp.StatusCode != 503 || !strings.Contains(body, "refused") {
		t.Errorf("tcpSocket probe with the app gone: %d %q, want 503 saying the connection was refused", resp.StatusCode, body)
	}
}
