package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestSignalReloaderSignalsOnlyTheNamedProcess(t *testing.T) {
	app := startHUPApp(t)
	other := startHUPApp(t) // another process, another name: must not be signalled
	r := &signalReloader{name: app.name, signal: syscall.SIGHUP, procRoot: "/proc"}
	for i := 1; i <= 3; i++ {
		if err := r.reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() (bool, string) {
			return app.hups() == i, "the app has not received the SIGHUP"
		})
	}
	if n := other.hups(); n != 0 {
		t.Errorf("a process with another name got %d SIGHUPs", n)
	}
}

func TestSignalReloaderNoProcessIsAnError(t *testing.T) {
	r := &signalReloader{name: "no-such-process-x", signal: syscall.SIGHUP, procRoot: "/proc"}
	err := r.reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), `no process named "no-such-process-x"`) || !strings.Contains(err.Error(), "shareProcessNamespace") {
		t.Fatalf("err = %v, want one naming the process and shareProcessNamespace", err)
	}
}

func TestHTTPReloaderRetriesUntil2xx(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/-/reload" {
			t.Errorf("got %s %s", r.Method, r.URL.Path)
		}
		if calls.Add(1) <= 2 {
			http.Error(w, "still starting", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := testConfig(t, map[string]string{"CONFIGMAP": "x", "RELOAD_URL": srv.URL + "/-/reload?token=secret"})
	r := newHTTPReloader(cfg)
	defer r.close()
	if err := r.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d requests, want 3 (two 503s, then 204)", n)
	}
}

func TestHTTPReloaderGivesUpWithAClearError(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "bad config", http.StatusBadRequest)
	}))
	defer srv.Close()
	cfg := testConfig(t, map[string]string{"CONFIGMAP": "x", "RELOAD_URL": srv.URL + "/reload?token=secret", "RELOAD_RETRIES": "2", "RELOAD_METHOD": "PUT"})
	u, _ := url.Parse(srv.URL)
	u.User = url.UserPassword("admin", "hunter2")
	u.Path, u.RawQuery = "/reload", "token=secret"
	cfg.ReloadURL = u
	r := newHTTPReloader(cfg)
	defer r.close()
	err := r.reload(context.Background())
	if err == nil {
		t.Fatal("want an error")
	}
	msg := err.Error()
	for _, want := range []string{"PUT", "/reload", "400", "want 2xx", "bad config", "3 attempts"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	for _, secret := range []string{"hunter2", "token=secret"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error %q leaks %q", msg, secret)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d requests, want 3 (1 + RELOAD_RETRIES=2)", n)
	}
}

func TestHTTPReloaderTimesOutEachRequest(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select { // the first request hangs
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := testConfig(t, map[string]string{"CONFIGMAP": "x", "RELOAD_URL": srv.URL, "RELOAD_TIMEOUT": "200ms"})
	r := newHTTPReloader(cfg)
	defer r.close()
	if err := r.reload(context.Background()); err != nil {
		t.Fatalf("the retry after a hung request should succeed: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
}

func TestCommandReloader(t *testing.T) {
	sh := "/bin/sh"
	if _, err := os.Stat(sh); err != nil {
		t.Fatalf("%s not found: run `make deps`", sh)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	r := &commandReloader{argv: []string{sh, "-c", `echo "reloaded $TARGET_DIR" >> ` + out}, timeout: 5 * time.Second, targetDir: "/etc/config"}
	if err := r.reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "reloaded /etc/config\n" {
		t.Errorf("command wrote %q", b)
	}
	// A failing command is retried, and the error carries its output.
	count := filepath.Join(dir, "count")
	r = &commandReloader{argv: []string{sh, "-c", `echo x >> ` + count + `; echo "nginx: bad directive" >&2; exit 3`},
		timeout: 5 * time.Second, retries: 2, backoff: time.Millisecond, backoffLimit: time.Millisecond}
	err := r.reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "nginx: bad directive") {
		t.Fatalf("err = %v, want the exit status and the output", err)
	}
	if b, _ := os.ReadFile(count); strings.Count(string(b), "x") != 3 {
		t.Errorf("ran %d times, want 3", strings.Count(string(b), "x"))
	}
}
