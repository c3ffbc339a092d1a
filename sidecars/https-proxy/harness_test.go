package main

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(removeBuildDir),
		// The FIFO poller's goroutine lives as long as the process, as Go's own netpoller does.
		goleak.IgnoreAnyFunction("github.com/outrigger-dev/outrigger/internal/fifopoll.(*fifoPoller).run"))
}

// runningProxy is one in-process https-proxy (serve) on 127.0.0.1 with random ports, stopped at the test's end.
type runningProxy struct {
	t          testing.TB
	ca         *pki
	cfg        *Config
	httpsAddr  string
	statusAddr string
}

// testConfig returns a Config for an app on upstreamPort, with a fresh serving certificate in dir.
func testConfig(t testing.TB, ca *pki, upstreamPort int) *Config {
	dir := t.TempDir()
	cert := ca.serverCert(t, time.Now().Add(time.Hour))
	writeFile(t, filepath.Join(dir, "tls.crt"), cert.certPEM)
	writeFile(t, filepath.Join(dir, "tls.key"), cert.keyPEM)
	return &Config{
		ProxyPort: upstreamPort, CertificatePath: filepath.Join(dir, "tls.crt"), KeyPath: filepath.Join(dir, "tls.key"),
		MinTLSVersion: "1.2", FIFOPoller: true, ListenHost: "127.0.0.1", PollInterval: time.Hour, ShutdownTimeout: 5 * time.Second,
	}
}

// startProxy serves cfg until the test ends and checks that serve then returns nil.
func startProxy(t testing.TB, ca *pki, cfg *Config) *runningProxy {
	t.Helper()
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	statusLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, httpsLn, statusLn, slog.New(slog.NewTextHandler(os.Stderr, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &runningProxy{t: t, ca: ca, cfg: cfg, httpsAddr: httpsLn.Addr().String(), statusAddr: statusLn.Addr().String()}
}

func (p *runningProxy) url(path string) string { return "https://" + p.httpsAddr + path }

// client is a Go HTTPS client trusting the test CA; proto is "1.1" or "2".
func (p *runningProxy) client(proto string, tweak func(*tls.Config)) *http.Client {
	tc := &tls.Config{RootCAs: p.ca.pool()}
	if tweak != nil {
		tweak(tc)
	}
	tr := &http.Transport{TLSClientConfig: tc, Protocols: new(http.Protocols)}
	if proto == "2" {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	p.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// status GETs a path of the status port.
func (p *runningProxy) status(path string) (int, string) {
	p.t.Helper()
	resp, err := http.Get("http://" + p.statusAddr + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of one sample line of /metrics (name with labels), or -1 if absent.
func (p *runningProxy) metric(sample string) float64 {
	p.t.Helper()
	_, body := p.status("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				p.t.Fatalf("metric %s: %v", line, err)
			}
			return v
		}
	}
	return -1
}

// upstream starts a plain-HTTP app on 127.0.0.1 and returns its port.
func upstream(t testing.TB, h http.Handler) int {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return portOf(t, srv.Listener.Addr().String())
}

func portOf(t testing.TB, addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

// freePort returns a port nothing listens on (bound, then released).
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return portOf(t, ln.Addr().String())
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedSerial makes a new TLS connection and returns the serial of the certificate the proxy presents.
func servedSerial(t testing.TB, addr string, ca *pki) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool()})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// eventually polls cond every 20ms until it holds or 15s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
