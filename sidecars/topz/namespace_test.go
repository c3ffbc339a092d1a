package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinaryInAPodLikePIDNamespace runs the topz binary (this test binary in its main mode) as PID 1 of a
// new PID namespace with its own /proc, next to an app process, as in a pod with shareProcessNamespace:
// it must list exactly the namespace's processes with their namespace PIDs, serve /healthz and /metrics
// on the same port, and exit 0 on SIGTERM.
func TestBinaryInAPodLikePIDNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unshare --pid needs root; TestTableMatchesProcAndPs covers the table")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare not found: run `make deps` (util-linux)")
	}
	cmd := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "sh", "-c", `sleep 1000 & exec "$@"`,
		"sh", os.Args[0], "--addr="+freeLoopbackAddr(t), "--sample=50ms")
	cmd.Env = append(os.Environ(), "TOPZ_TEST_MODE=main")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
	})

	// topz logs the address it bound.
	lines := bufio.NewScanner(stderr)
	if !lines.Scan() {
		t.Fatalf("topz printed nothing: %v", lines.Err())
	}
	m := regexp.MustCompile(` on (127\.0\.0\.1:\d+) `).FindStringSubmatch(lines.Text())
	if m == nil {
		t.Fatalf("start-up line without an address: %q", lines.Text())
	}
	rest := make(chan string, 1)
	go func() { b, _ := io.ReadAll(stderr); rest <- string(b) }()
	base := "http://" + m[1]

	var doc jsonTable
	for range 100 { // the shell starts sleep in the background: wait until it has exec'd
		resp, err := http.Get(base + "/topz?format=json&sort=pid")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(doc.Processes) == 2 && doc.Processes[1].Comm == "sleep" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var pids []int
	for _, p := range doc.Processes {
		pids = append(pids, p.PID)
	}
	if !slices.Equal(pids, []int{1, 2}) {
		t.Fatalf("PIDs %v, want exactly [1 2] (topz and sleep, in namespace numbering)", pids)
	}
	if p := doc.Processes[0]; p.Args[0] != os.Args[0] || p.PPID != 0 {
		t.Errorf("PID 1: %q PPID %d, want topz as the namespace's init", p.Args, p.PPID)
	}
	if p := doc.Processes[1]; p.Command != "sleep 1000" || p.PPID != 1 {
		t.Errorf("PID 2: %q PPID %d, want sleep 1000 with PPID 1", p.Command, p.PPID)
	}

	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ok", "/metrics": `topz_processes{command="sleep"} 1`} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}

	// SIGTERM to topz (PID 1 inside, the unshare's child outside) shuts it down cleanly.
	topz := waitForChild(t, cmd.Process.Pid, "")
	if err := syscall.Kill(topz, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	waited = true
	if err != nil {
		t.Fatalf("topz did not exit 0 on SIGTERM: %v\n%s", err, <-rest)
	}
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port that was free a moment ago (TOPZ_ADDR takes
// no port 0).
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
