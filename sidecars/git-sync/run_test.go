package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startRun runs the sidecar's loop in the background until the test ends; the returned channel yields
// run's result.
func startRun(t *testing.T, cfg *Config) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run after cancel: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("run did not stop within 10s of cancel")
		}
	})
	return done
}

// status GETs path on the status port.
func status(cfg *Config, path string) (int, string, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", cfg.StatusPort, path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// metric returns the value of the metric line starting with name (e.g. `git_sync_count_total{status="error"}`).
func metric(cfg *Config, name string) (string, error) {
	_, body, err := status(cfg, "/metrics")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no %s in /metrics", name)
}

func waitPublished(t *testing.T, cfg *Config, hash string) {
	t.Helper()
	waitFor(t, 30*time.Second, "the link to point at "+hash, func() error {
		target, err := os.Readlink(cfg.Link)
		if err != nil {
			return err
		}
		if filepath.Base(target) != hash {
			return fmt.Errorf("link -> %s", target)
		}
		return nil
	})
}

// hookRecorder is a webhook receiver that counts calls per hash; it fails the first call with 500 to
// prove that a failed call is retried and counted once when it succeeds.
type hookRecorder struct {
	mu      sync.Mutex
	calls   map[string]int
	methods map[string]bool
	failed  bool
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.failed {
		h.failed = true
		http.Error(w, "try again", http.StatusInternalServerError)
		return
	}
	h.calls[r.Header.Get("Gitsync-Hash")]++
	h.methods[r.Method] = true
	w.WriteHeader(http.StatusAccepted)
}

func (h *hookRecorder) snapshot() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for k, v := range h.calls {
		out[k] = v
	}
	return out
}

// TestHooksOncePerNewCommit: after each new commit the webhook (method, expected status, a retry after a
// 500) and the exec hook (in the new checkout, GITSYNC_HASH set) are called exactly once with its hash;
// syncs that find nothing new call nothing.
func TestHooksOncePerNewCommit(t *testing.T) {
	u := newUpstream(t)
	rec := &hookRecorder{calls: map[string]int{}, methods: map[string]bool{}}
	receiver := httptest.NewServer(rec)
	defer receiver.Close()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "exechook.log")
	script := filepath.Join(dir, "hook.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$GITSYNC_HASH $(cat f)\" >> "+logFile+"\n"), 0o755)
	cfg := testConfig(t, u.FileURL(), map[string]string{
		"GITSYNC_PERIOD": "50ms", "GITSYNC_WEBHOOK_URL": receiver.URL, "GITSYNC_WEBHOOK_METHOD": "PUT",
		"GITSYNC_WEBHOOK_SUCCESS_STATUS": "202", "GITSYNC_WEBHOOK_BACKOFF": "10ms", "GITSYNC_EXECHOOK_COMMAND": script,
	})
	var hashes []string
	for i := 0; i < 3; i++ {
		hash := u.Commit(map[string]string{"f": fmt.Sprint("v", i)})
		hashes = append(hashes, hash)
		if i == 0 {
			startRun(t, cfg)
		}
		waitFor(t, 30*time.Second, "both hooks to see "+hash, func() error {
			logged, _ := os.ReadFile(logFile)
			if rec.snapshot()[hash] == 0 || !strings.Contains(string(logged), hash) {
				return fmt.Errorf("webhook calls %v, exechook log %q", rec.snapshot(), logged)
			}
			return nil
		})
	}
	// Several more periods with nothing new: no more calls.
	waitFor(t, 10*time.Second, "noop syncs", func() error {
		v, err := metric(cfg, `git_sync_count_total{status="noop"}`)
		if n, _ := strconv.Atoi(v); err != nil || n < 5 {
			return fmt.Errorf("noop syncs %q %v", v, err)
		}
		return nil
	})
	calls := rec.snapshot()
	logged, _ := os.ReadFile(logFile)
	var wantLog strings.Builder
	for i, h := range hashes {
		if calls[h] != 1 {
			t.Errorf("webhook called %d times for commit %d (%s), want once: %v", calls[h], i, h, calls)
		}
		fmt.Fprintf(&wantLog, "%s v%d\n", h, i)
	}
	if len(calls) != len(hashes) {
		t.Errorf("webhook called for %d hashes, want %d: %v", len(calls), len(hashes), calls)
	}
	if string(logged) != wantLog.String() {
		t.Errorf("exec hook log:\n%s\nwant (each hash once, run in its checkout):\n%s", logged, wantLog.String())
	}
	if !rec.methods["PUT"] || len(rec.methods) != 1 {
		t.Errorf("webhook methods %v, want PUT only", rec.methods)
	}
	if v, err := metric(cfg, `git_sync_hook_run_count_total{name="webhook",status="error"}`); err != nil || v != "1" {
		t.Errorf("webhook errors counted %q (%v), want 1 (the 500)", v, err)
	}
}

// TestServerDownKeepsLastGoodCheckout stops the HTTP server: syncs fail and are counted, the last good
// checkout stays published and the sidecar stays ready; when the server is back the new commit arrives.
func TestServerDownKeepsLastGoodCheckout(t *testing.T) {
	u := newUpstream(t)
	good := u.Commit(map[string]string{"f": "good"})
	web := newHTTPServer(t, u, "", "")
	cfg := testConfig(t, web.URL(), map[string]string{"GITSYNC_PERIOD": "50ms", "GITSYNC_MAX_FAILURES": "-1"})
	startRun(t, cfg)
	waitPublished(t, cfg, good)

	web.Stop()
	next := u.Commit(map[string]string{"f": "next"})
	waitFor(t, 30*time.Second, "failed syncs to be counted", func() error {
		if v, err := metric(cfg, "git_sync_consecutive_failures"); err != nil || v == "0" || v == "1" {
			return fmt.Errorf("consecutive failures %q %v", v, err)
		}
		return nil
	})
	if hash, content := published(t, cfg, "f"); hash != good || content != "good" {
		t.Errorf("while the server is down the link shows %s (f=%q), want the last good %s", hash, content, good)
	}
	if code, body, err := status(cfg, "/readyz"); err != nil || code != 200 {
		t.Errorf("/readyz while the server is down = %d %q %v, want 200 (the last good checkout is served)", code, body, err)
	}

	web.Start()
	waitPublished(t, cfg, next)
	if _, content := published(t, cfg, "f"); content != "next" {
		t.Errorf("after recovery f = %q, want next", content)
	}
	waitFor(t, 10*time.Second, "the failure gauge to reset", func() error {
		if v, err := metric(cfg, "git_sync_consecutive_failures"); err != nil || v != "0" {
			return fmt.Errorf("consecutive failures %q %v", v, err)
		}
		return nil
	})
	if v, err := metric(cfg, fmt.Sprintf(`git_sync_info{hash=%q}`, next)); err != nil || v != "1" {
		t.Errorf("git_sync_info for %s = %q (%v), want 1", next, v, err)
	}
}

// TestReadyOnlyAfterFirstSync: /readyz is 503 with the reason until the first sync succeeds (here the
// first sync waits for the repository to exist).
func TestReadyOnlyAfterFirstSync(t *testing.T) {
	u := newUpstream(t)
	hidden := u.Bare + ".hidden"
	os.Rename(u.Bare, hidden)
	cfg := testConfig(t, u.FileURL(), map[string]string{"GITSYNC_PERIOD": "50ms", "GITSYNC_MAX_FAILURES": "-1"})
	startRun(t, cfg)
	waitFor(t, 10*time.Second, "a failed sync", func() error {
		_, err := metric(cfg, `git_sync_count_total{status="error"}`)
		return err
	})
	if code, body, err := status(cfg, "/readyz"); err != nil || code != 503 || !strings.Contains(body, "no successful sync yet") {
		t.Errorf("/readyz before the first sync = %d %q %v, want 503 saying why", code, body, err)
	}
	if code, _, err := status(cfg, "/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz = %d %v, want 200", code, err)
	}
	os.Rename(hidden, u.Bare)
	hash := u.Commit(map[string]string{"f": "x"})
	waitPublished(t, cfg, hash)
	waitFor(t, 10*time.Second, "/readyz 200", func() error {
		if code, body, err := status(cfg, "/readyz"); err != nil || code != 200 {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
}

func TestMaxFailuresEndsTheRun(t *testing.T) {
	u := newUpstream(t)
	os.RemoveAll(u.Bare)
	cfg := testConfig(t, u.FileURL(), map[string]string{"GITSYNC_PERIOD": "10ms", "GITSYNC_MAX_FAILURES": "2"})
	err := run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "3 syncs failed in a row (GITSYNC_MAX_FAILURES=2)") {
		t.Fatalf("run = %v, want it to give up after the third failure", err)
	}
}

func TestOneTime(t *testing.T) {
	u := newUpstream(t)
	hash := u.Commit(map[string]string{"f": "x"})
	var calls []string
	var mu sync.Mutex
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, r.Header.Get("Gitsync-Hash"))
		mu.Unlock()
	}))
	defer receiver.Close()
	cfg := testConfig(t, u.FileURL(), map[string]string{"GITSYNC_ONE_TIME": "true", "GITSYNC_WEBHOOK_URL": receiver.URL})
	if err := run(context.Background(), cfg); err != nil {
		t.Fatalf("one-time run: %v", err)
	}
	if got, _ := published(t, cfg, "f"); got != hash {
		t.Errorf("published %s, want %s", got, hash)
	}
	if len(calls) != 1 || calls[0] != hash {
		t.Errorf("webhook calls %v, want one with %s", calls, hash)
	}

	// A failing hook fails the one-time run (an init container must not let the pod start).
	failing := testConfig(t, u.FileURL(), map[string]string{"GITSYNC_ONE_TIME": "true", "GITSYNC_WEBHOOK_URL": receiver.URL, "GITSYNC_WEBHOOK_SUCCESS_STATUS": "204"})
	if err := run(context.Background(), failing); err == nil || !strings.Contains(err.Error(), "status 200, want 204") {
		t.Errorf("one-time run with a failing webhook = %v, want the status mismatch", err)
	}
}

func TestSyncOnSignal(t *testing.T) {
	u := newUpstream(t)
	first := u.Commit(map[string]string{"f": "1"})
	cfg := testConfig(t, u.FileURL(), map[string]string{"GITSYNC_PERIOD": "1h", "GITSYNC_SYNC_ON_SIGNAL": "SIGUSR1"})
	startRun(t, cfg)
	waitPublished(t, cfg, first)
	second := u.Commit(map[string]string{"f": "2"})
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, cfg, second) // the period is an hour: only the signal can have done it
}
