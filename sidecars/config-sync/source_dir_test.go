package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestVolumeMode follows a mounted ConfigMap directory. The source is updated the way the kubelet updates a
// ConfigMap volume (a new version directory and a ..data swap, written here with the kubelet's algorithm);
// UPDATE_FREQUENCY is long, so only the inotify events can deliver the change in time.
func TestVolumeMode(t *testing.T) {
	src := filepath.Join(t.TempDir(), "mounted")
	kubelet := &atomicDir{path: src, now: time.Now} // grace 0: the kubelet removes replaced versions at once
	if _, err := kubelet.write(files{"app.conf": []byte("v1"), "extra.conf": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	app := startHUPApp(t)
	target := filepath.Join(t.TempDir(), "config")
	cfg := testConfig(t, map[string]string{"SOURCE_DIR": src, "TARGET_DIR": target, "RELOAD_PROCESS": app.name,
		"DEBOUNCE": "1s", "UPDATE_FREQUENCY": "600"})
	s := start(t, cfg)
	s.waitReady(t)
	if got := readFile(t, filepath.Join(target, "app.conf")); got != "v1" {
		t.Fatalf("app.conf = %q", got)
	}
	// A burst of three swaps: one SIGHUP; the key that went away is gone from the target too.
	for i := 2; i <= 4; i++ {
		if _, err := kubelet.write(files{"app.conf": []byte(fmt.Sprintf("v%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	fileIs(t, s, filepath.Join(target, "app.conf"), "v4")
	eventually(t, 30*time.Second, func() (bool, string) { return app.hups() == 1, fmt.Sprintf("%d SIGHUPs", app.hups()) })
	time.Sleep(cfg.Debounce + 500*time.Millisecond)
	if n := app.hups(); n != 1 {
		t.Errorf("%d SIGHUPs for one burst, want 1", n)
	}
	if _, err := os.Lstat(filepath.Join(target, "extra.conf")); !os.IsNotExist(err) {
		t.Errorf("extra.conf still in the target after it left the source: %v", err)
	}
}

// TestVolumeModeReloadSignalKILL: the book's extreme case, the app is killed (and its orchestrator
// restarts it).
func TestVolumeModeReloadSignalKILL(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "app.conf"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	app := startHUPApp(t)
	exited := make(chan error, 1)
	go func() { exited <- app.cmd.Wait() }()
	cfg := testConfig(t, map[string]string{"SOURCE_DIR": src, "TARGET_DIR": filepath.Join(t.TempDir(), "c"),
		"RELOAD_PROCESS": app.name, "RELOAD_SIGNAL": "KILL", "DEBOUNCE": "0s"})
	s := start(t, cfg)
	s.waitReady(t)
	if err := os.WriteFile(filepath.Join(src, "app.conf"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		ws, ok := app.cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("the app ended with %v, want killed by SIGKILL", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the app was not killed\nlogs:\n%s", s.logs)
	}
}

// TestBinaryAgainstTheAPIServer runs the real main with KUBECONFIG, as outside a cluster: it writes the
// ConfigMap's keys and exits 0 on SIGTERM.
func TestBinaryAgainstTheAPIServer(t *testing.T) {
	e := newAPIEnv(t)
	e.putConfigMap(t, "app", map[string]string{"app.conf": "from the API"})
	target := filepath.Join(t.TempDir(), "config")
	cmd := exec.Command(os.Args[0])
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Env = append(os.Environ(), "CONFIG_SYNC_TEST_MAIN=1", "KUBECONFIG="+e.c.Kubeconfig(), "CONFIGMAP=app",
		"NAMESPACE="+e.ns, "TARGET_DIR="+target, "STATUS_PORT="+freePort(t))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	eventually(t, 30*time.Second, func() (bool, string) {
		return readFile(t, filepath.Join(target, "app.conf")) == "from the API", "not written yet:\n" + logs.String()
	})
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "config-sync stopped") {
		t.Errorf("no clean stop in the logs:\n%s", logs.String())
	}
}
