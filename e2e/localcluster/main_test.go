package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUpDownUpAndAKilledRun drives the binary as `make cluster` and `make cluster-down` do: up, down, up
// again; then the cluster's process is killed with SIGKILL (no teardown runs), and the next up puts the host
// back before it starts, and down after a second kill does the same. After every down the host is as it
// was before: no bridge, no host record, no KUBE-* iptables chain, no shim, IPv4 forwarding as found.
func TestUpDownUpAndAKilledRun(t *testing.T) {
	if os.Getenv("OUTRIGGER_NODE") == "" {
		t.Skip("starts the local cluster as root: run it through `make test-node`")
	}
	bin := filepath.Join(t.TempDir(), "localcluster")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building localcluster: %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "outrigger-lc-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	before := hostSnapshot(t)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append(args[:1:1], append([]string{"--dir", dir}, args[1:]...)...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("localcluster %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	up := func() int {
		t.Helper()
		out := run("up")
		if !strings.Contains(out, "export KUBECONFIG="+filepath.Join(dir, "run", "kubeconfig")) {
			t.Fatalf("up does not print the KUBECONFIG line:\n%s", out)
		}
		var in info
		data, err := os.ReadFile(filepath.Join(dir, "info.json"))
		if err != nil || json.Unmarshal(data, &in) != nil {
			t.Fatalf("no info.json after up: %v", err)
		}
		kubectl := exec.Command(filepath.Join(repoBin(t), "kubectl"), "--kubeconfig", in.Kubeconfig, "get", "--raw", "/readyz")
		if out, err := kubectl.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Fatalf("the cluster's API server after up: %v %s", err, out)
		}
		return in.PID
	}
	kill := func(pid int) {
		t.Helper()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for syscall.Kill(pid, 0) == nil {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := net.InterfaceByName("cni0"); err != nil {
			t.Fatalf("after SIGKILL the bridge is gone already (%v): nothing was left to recover", err)
		}
	}
	check := func(when string) {
		t.Helper()
		if after := hostSnapshot(t); after != before {
			t.Fatalf("%s the host differs from before the first up:\nbefore: %s\nafter:  %s", when, before, after)
		}
	}

	up()
	run("down")
	check("after up, down:")
	pid := up()
	kill(pid)
	if out := run("up"); !strings.Contains(out, "put back what a killed cluster left") {
		t.Errorf("up after a killed run does not say it put the host back:\n%s", out)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "info.json"))
	var in info
	_ = json.Unmarshal(data, &in)
	kill(in.PID)
	if out := run("down"); !strings.Contains(out, "put back what a killed cluster left") {
		t.Errorf("down after a killed run does not say it put the host back:\n%s", out)
	}
	check("after a killed run and down:")
}

// hostSnapshot is what the node changes on the host, as one comparable line.
func hostSnapshot(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	_, err := net.InterfaceByName("cni0")
	b.WriteString("bridge=" + map[bool]string{true: "yes", false: "no"}[err == nil])
	_, err = os.Stat("/run/outrigger-local-node.json")
	b.WriteString(" record=" + map[bool]string{true: "yes", false: "no"}[err == nil])
	fwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	b.WriteString(" ip_forward=" + strings.TrimSpace(string(fwd)))
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := exec.Command(cmd).Output()
		b.WriteString(" " + cmd + "-KUBE=" + strconv.Itoa(strings.Count(string(out), "KUBE-")))
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	shims := 0
	for _, p := range procs {
		if c, _ := os.ReadFile(p); bytes.Contains(c, []byte("containerd-shim")) {
			shims++
		}
	}
	b.WriteString(" shims=" + strconv.Itoa(shims))
	return b.String()
}

func repoBin(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("OUTRIGGER_BIN_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "bin")
}
