package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests in this file run the built binary, as the container does.

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binary builds the https-proxy binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "https-proxy-test-"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "https-proxy"), ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "https-proxy")
}

func removeBuildDir(exitCode int) {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(exitCode) // goleak's Cleanup replaces its os.Exit: without this a leak would not fail the run
}

// command runs the binary with exactly env (plus PATH) and no inherited environment.
func command(t *testing.T, env map[string]string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return cmd
}

func TestBinaryExitCodesAndMessages(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		args      []string
		code      int
		lastLines []string // the last lines of stderr
		stdout    string
	}{
		{"help", nil, []string{"--help"}, 0, nil, "PROXY_PORT"},
		{"bad values", map[string]string{"PROXY_PORT": "abc", "MIN_TLS_VERSION": "1.1"}, nil, 2, []string{
			`https-proxy: invalid PROXY_PORT="abc": want a port number from 1 to 65535`,
			`https-proxy: invalid MIN_TLS_VERSION="1.1": want one of 1.2, 1.3`}, ""},
		{"unknown flag", nil, []string{"--listen=1"}, 2, []string{
			`https-proxy: flag provided but not defined: -listen (see --help for the accepted flags and ENV variables)`}, ""},
		{"missing certificate", map[string]string{
			"CERTIFICATE_PATH": "/nonexistent/tls.crt", "LISTEN_PORT": strconv.Itoa(freePort(t)), "STATUS_PORT": strconv.Itoa(freePort(t)),
		}, nil, 1, []string{`https-proxy: reading CERTIFICATE_PATH: open /nonexistent/tls.crt: no such file or directory`}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			cmd := command(t, tc.env, tc.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(tc.lastLines) > 0 && len(lines) >= len(tc.lastLines) {
				lines = lines[len(lines)-len(tc.lastLines):]
			}
			for i, want := range tc.lastLines {
				if i >= len(lines) || lines[i] != want {
					t.Errorf("stderr ends with:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(tc.lastLines, "\n"))
					break
				}
			}
			if !strings.Contains(stdout.String(), tc.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout.String())
			}
		})
	}
}

// vmHWM is the peak resident memory of a process, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestBinaryBigBodiesSIGHUPAndSIGTERM runs the binary as the container does: 256 MiB each way with its
// memory staying within the catalog's 64 MiB limit, a reload on SIGHUP, and a drain on SIGTERM.
func TestBinaryBigBodiesSIGHUPAndSIGTERM(t *testing.T) {
	const size, memoryLimit = 256 << 20, 64 << 20
	slowStarted, releaseSlow := make(chan struct{}), make(chan struct{})
	app := http.NewServeMux()
	app.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		buf := make([]byte, 1<<20)
		for range size / len(buf) {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	app.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})
	app.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(slowStarted)
		if waitGate(releaseSlow) {
			fmt.Fprint(w, "done")
		}
	})
	ca := newPKI(t, "test CA")
	certA, certB := ca.serverCert(t, time.Now().Add(time.Hour)), ca.serverCert(t, time.Now().Add(time.Hour))
	// The certificate paths are symlinks to files in another directory: writing those files makes no event
	// in the watched directory, so only SIGHUP (or the 30 s poll) notices.
	mount, real := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(real, "a.crt"), certA.certPEM)
	writeFile(t, filepath.Join(real, "a.key"), certA.keyPEM)
	for name, target := range map[string]string{"tls.crt": "a.crt", "tls.key": "a.key"} {
		if err := os.Symlink(filepath.Join(real, target), filepath.Join(mount, name)); err != nil {
			t.Fatal(err)
		}
	}
	httpsPort, statusPort := freePort(t), freePort(t)
	cmd := command(t, map[string]string{
		"PROXY_PORT": strconv.Itoa(upstream(t, app)), "LISTEN_PORT": strconv.Itoa(httpsPort), "STATUS_PORT": strconv.Itoa(statusPort),
		"CERTIFICATE_PATH": filepath.Join(mount, "tls.crt"), "KEY_PATH": filepath.Join(mount, "tls.key"),
	})
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	p := &runningProxy{t: t, ca: ca, httpsAddr: fmt.Sprintf("127.0.0.1:%d", httpsPort), statusAddr: fmt.Sprintf("127.0.0.1:%d", statusPort)}
	eventually(t, "/readyz", func() bool {
		resp, err := http.Get("http://" + p.statusAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	t.Run("256 MiB download and upload", func(t *testing.T) {
		resp, err := p.client("2", nil).Get(p.url("/download"))
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			t.Fatalf("downloaded %d bytes (%v), want %d", n, err, size)
		}
		req, _ := http.NewRequest("POST", p.url("/upload"), io.LimitReader(zeros{}, size))
		resp, err = p.client("1.1", nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != strconv.Itoa(size) {
			t.Fatalf("the app got %s bytes, want %d", got, size)
		}
		if peak := vmHWM(t, cmd.Process.Pid); peak > memoryLimit {
			t.Errorf("peak RSS %d MiB after moving 512 MiB, want at most the catalog's limit of %d MiB", peak>>20, memoryLimit>>20)
		} else {
			t.Logf("peak RSS %.1f MiB after moving 512 MiB", float64(peak)/(1<<20))
		}
	})

	t.Run("SIGHUP reloads", func(t *testing.T) {
		writeFile(t, filepath.Join(real, "a.crt.new"), certB.certPEM)
		writeFile(t, filepath.Join(real, "a.key"), certB.keyPEM)
		if err := os.Rename(filepath.Join(real, "a.crt.new"), filepath.Join(real, "a.crt")); err != nil {
			t.Fatal(err)
		}
		if serial := servedSerial(t, p.httpsAddr, ca); serial.Cmp(certA.serial) != 0 {
			t.Fatalf("certificate changed before SIGHUP: the test cannot tell what reloaded it")
		}
		cmd.Process.Signal(syscall.SIGHUP)
		eventually(t, "certificate B after SIGHUP", func() bool { return servedSerial(t, p.httpsAddr, ca).Cmp(certB.serial) == 0 })
	})

	t.Run("SIGTERM drains in-flight requests", func(t *testing.T) {
		type result struct {
			status int
			body   string
			err    error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := p.client("1.1", nil).Get(p.url("/slow"))
			if err != nil {
				done <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			done <- result{resp.StatusCode, string(b), err}
		}()
		if !waitGate(slowStarted) {
			t.Fatal("the slow request never reached the app")
		}
		cmd.Process.Signal(syscall.SIGTERM)
		eventually(t, "the proxy to stop accepting connections", func() bool {
			conn, err := tls.Dial("tcp", p.httpsAddr, &tls.Config{RootCAs: ca.pool()})
			if err == nil {
				conn.Close()
			}
			return err != nil
		})
		close(releaseSlow)
		if r := <-done; r.err != nil || r.status != 200 || r.body != "done" {
			t.Errorf("in-flight request: %d %q %v, want 200 done", r.status, r.body, r.err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			if err != nil {
				t.Errorf("exit after SIGTERM: %v, want 0", err)
			}
		case <-ctx.Done():
			t.Error("still running 15 s after SIGTERM")
		}
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
