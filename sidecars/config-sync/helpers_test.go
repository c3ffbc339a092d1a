package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// eventually polls cond until it is true or timeout passes, then fails with what cond last said.
func eventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sidecar is one run() of config-sync inside the test process.
type sidecar struct {
	cfg    *Config
	logs   *syncBuffer
	addr   string
	done   chan error
	cancel context.CancelFunc
}

// testConfig is a valid configuration from env (as the binary would read it) with the test-only
// fields set: a loopback status listener, a captured log, short reload backoff.
func testConfig(t *testing.T, env map[string]string) *Config {
	t.Helper()
	cfg, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatalf("loadConfig(%v): %v", env, err)
	}
	cfg.reloadBackoff, cfg.reloadBackoffCap = 50*time.Millisecond, 200*time.Millisecond
	return cfg
}

// start runs config-sync with cfg until the test ends; the test fails if run returns an error.
func start(t *testing.T, cfg *Config) *sidecar {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg.statusListener = ln
	cfg.logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	s := &sidecar{cfg: cfg, logs: logs, addr: ln.Addr().String(), done: make(chan error, 1), cancel: cancel}
	go func() { s.done <- run(ctx, cfg) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop ends run and checks that it returned cleanly.
func (s *sidecar) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("run did not return within 15s of its context ending")
	}
}

// running fails the test if run has returned (it must never stop on its own).
func (s *sidecar) running(t *testing.T) {
	t.Helper()
	select {
	case err := <-s.done:
		t.Fatalf("run returned on its own: %v\nlogs:\n%s", err, s.logs)
	default:
	}
}

// get fetches a path of the status port: status code and body.
func (s *sidecar) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady waits for /readyz to answer 200.
func (s *sidecar) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, func() (bool, string) {
		code, body := s.get(t, "/readyz")
		return code == 200, fmt.Sprintf("/readyz %d %s\nlogs:\n%s", code, body, s.logs)
	})
}

// metric returns the value of the sample whose line starts with name (labels included), or -1.
func (s *sidecar) metric(t *testing.T, name string) float64 {
	t.Helper()
	_, body := s.get(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, name)), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	return -1
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// hupApp is a real process that counts the SIGHUPs it receives: a copy of /bin/sh under a unique command
// name (so that only it matches RELOAD_PROCESS) running a trap loop. It appends "HUP" to a file per signal.
type hupApp struct {
	name, counter string
	cmd           *exec.Cmd
}

func startHUPApp(t *testing.T) *hupApp {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("sh not found: run `make deps`")
	}
	dir := t.TempDir()
	name := fmt.Sprintf("csapp%d", time.Now().UnixNano()%1e8)
	bin := filepath.Join(dir, name)
	data, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	a := &hupApp{name: name, counter: filepath.Join(dir, "hups")}
	// `sleep & wait` so the trap runs as soon as the signal arrives (a shell runs traps between commands).
	script := `trap 'echo HUP >> "$0"' HUP; echo ready >> "$0"; while :; do sleep 0.05 & wait $!; done`
	a.cmd = exec.Command(bin, "-c", script, a.counter)
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		a.cmd.Wait()
	})
	eventually(t, 10*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(a.counter)
		return strings.Contains(string(b), "ready"), "the trap loop did not start"
	})
	return a
}

// hups is how many SIGHUPs the app received so far.
func (a *hupApp) hups() int {
	b, _ := os.ReadFile(a.counter)
	return strings.Count(string(b), "HUP")
}

// freePort is a loopback port that was free a moment ago (for the real binary's STATUS_PORT).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
