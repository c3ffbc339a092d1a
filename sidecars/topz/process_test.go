package main

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

// secretArgs are the helper's arguments: secrets in every supported form, plus harmless ones that must
// stay visible and an HTML-escaping probe.
var secretArgs = []string{
	"--password=hunter2", "--token", "s3cr3t-tok", "postgres://app:pa55w0rd@127.0.0.1/db", "api_key=k3y-value",
	"--listen=127.0.0.1:1", "<script>alert(1)</script>",
}

var secrets = []string{"hunter2", "s3cr3t-tok", "pa55w0rd", "k3y-value"}

// testProcs is the set of real processes the table tests look for.
type testProcs struct {
	busy, idle, secret, unshare *exec.Cmd
	inNamespace                 int // the sleep inside `unshare --pid --fork`, by its PID here
}

func startTestProcs(t *testing.T) testProcs {
	t.Helper()
	var p testProcs
	p.busy = startProcess(t, nil, "sh", "-c", "while :; do :; done")
	p.idle = startProcess(t, nil, "sleep", "1000")
	p.secret = startProcess(t, []string{"TOPZ_TEST_MODE=sleep"}, os.Args[0], secretArgs...)
	if os.Geteuid() == 0 {
		p.unshare = startProcess(t, nil, "unshare", "--pid", "--fork", "sleep", "1000")
		p.inNamespace = waitForChild(t, p.unshare.Process.Pid, "sleep")
	}
	return p
}

// waitForChild returns the PID of pid's child called comm ("": any), e.g. unshare --fork's child once it
// has exec'd.
func waitForChild(t *testing.T, pid int, comm string) int {
	t.Helper()
	proc, err := procfs.NewProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		all, err := procfs.AllProcs()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range all {
			st, err := c.Stat()
			if err == nil && st.PPID == proc.PID && (comm == "" || st.Comm == comm) {
				return c.PID
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("PID %d has no child %q", pid, comm)
	return 0
}

// sampleTable runs a sampler for one table, as /topz does.
func sampleTable(t *testing.T, window time.Duration, redact bool) *Table {
	t.Helper()
	sc, err := newScanner("/proc")
	if err != nil {
		t.Fatal(err)
	}
	smp := newSampler(sc, window, redact)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { smp.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	table, err := smp.Table(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

// psRow is one line of `ps -o pid=,ppid=,uid=,stat=,nlwp=,rss=,args=`.
type psRow struct {
	PID, PPID, UID, Threads int
	State                   string
	RSSKiB                  uint64
	Args                    string
}

func runPS(t *testing.T, args ...string) []psRow {
	t.Helper()
	if _, err := exec.LookPath("ps"); err != nil {
		t.Fatal("ps not found: run `make deps` (procps)")
	}
	out, err := exec.Command("ps", append(args, "-o", "pid=,ppid=,uid=,stat=,nlwp=,rss=,args=")...).Output()
	if err != nil {
		t.Fatalf("ps %v: %v", args, err)
	}
	var rows []psRow
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		var r psRow
		r.PID, _ = strconv.Atoi(f[0])
		r.PPID, _ = strconv.Atoi(f[1])
		r.UID, _ = strconv.Atoi(f[2])
		r.State = f[3][:1]
		r.Threads, _ = strconv.Atoi(f[4])
		r.RSSKiB, _ = strconv.ParseUint(f[5], 10, 64)
		r.Args = strings.Join(f[6:], " ")
		rows = append(rows, r)
	}
	return rows
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestTableMatchesProcAndPs starts real processes and checks the table against ps and /proc.
func TestTableMatchesProcAndPs(t *testing.T) {
	procs := startTestProcs(t)
	before := runPS(t, "-e")
	table := sampleTable(t, 300*time.Millisecond, true)
	rows := map[int]Row{}
	for _, r := range table.Rows {
		rows[r.PID] = r
	}

	// Every process ps saw that is still running is listed.
	for _, p := range before {
		if _, ok := rows[p.PID]; !ok && alive(p.PID) {
			t.Errorf("PID %d (%s) is listed by ps and still running, but not by topz", p.PID, p.Args)
		}
	}

	pids := []string{strconv.Itoa(procs.busy.Process.Pid), strconv.Itoa(procs.idle.Process.Pid), strconv.Itoa(procs.secret.Process.Pid)}
	if procs.inNamespace != 0 {
		pids = append(pids, strconv.Itoa(procs.inNamespace))
	}
	for _, ps := range runPS(t, "-p", strings.Join(pids, ",")) {
		r := findRow(t, table, ps.PID)
		if r.PPID != ps.PPID || r.UID != ps.UID {
			t.Errorf("PID %d: topz PPID %d UID %d, ps PPID %d UID %d", ps.PID, r.PPID, r.UID, ps.PPID, ps.UID)
		}
		if ps.PID == procs.secret.Process.Pid {
			// The secrets really are on the command line (ps shows them), and topz hides them.
			if !strings.Contains(ps.Args, "hunter2") {
				t.Fatalf("ps does not show the secret, the test proves nothing: %s", ps.Args)
			}
			continue
		}
		// sh, sleep: single-threaded, stable command lines.
		if r.Threads != ps.Threads || r.Command != ps.Args {
			t.Errorf("PID %d: topz threads %d command %q, ps threads %d args %q", ps.PID, r.Threads, r.Command, ps.Threads, ps.Args)
		}
	}

	busy, idle := findRow(t, table, procs.busy.Process.Pid), findRow(t, table, procs.idle.Process.Pid)
	// Relative, not a threshold: how much CPU the busy loop gets depends on what else the machine runs
	// (go test runs packages in parallel), but it always gets some, and more than a sleeping process.
	if busy.CPUPercent <= 0 || busy.CPUPercent <= idle.CPUPercent {
		t.Errorf("busy loop shows %.1f%% CPU and idle sleep %.1f%%: want the busy one clearly above", busy.CPUPercent, idle.CPUPercent)
	}
	if idle.CPUPercent > 2 {
		t.Errorf("idle sleep shows %.1f%% CPU, want about 0", idle.CPUPercent)
	}
	if idle.State != "S" {
		t.Errorf("idle sleep has state %q, want S", idle.State)
	}

	// RSS against /proc/<pid>/status VmRSS, read now (a sleeping process's RSS does not move).
	for _, pid := range []int{procs.idle.Process.Pid, procs.secret.Process.Pid} {
		p, err := procfs.NewProc(pid)
		if err != nil {
			t.Fatal(err)
		}
		status, err := p.NewStatus()
		if err != nil {
			t.Fatal(err)
		}
		got, want := float64(findRow(t, table, pid).RSSBytes), float64(status.VmRSS)
		if diff := got - want; diff > want/10+64<<10 || -diff > want/10+64<<10 {
			t.Errorf("PID %d: RSS %v bytes, /proc status VmRSS %v bytes", pid, got, want)
		}
	}

	secret := findRow(t, table, procs.secret.Process.Pid)
	for _, s := range secrets {
		if strings.Contains(secret.Command, s) || strings.Contains(strings.Join(secret.Args, " "), s) {
			t.Errorf("secret %q shown: %q", s, secret.Command)
		}
	}
	for _, want := range []string{"--password=<redacted>", "--token <redacted>", "postgres://app:<redacted>@127.0.0.1/db", "api_key=<redacted>", "--listen=127.0.0.1:1"} {
		if !strings.Contains(secret.Command, want) {
			t.Errorf("command %q lacks %q", secret.Command, want)
		}
	}

	if procs.inNamespace != 0 {
		r := findRow(t, table, procs.inNamespace)
		if r.PPID != procs.unshare.Process.Pid || r.Command != "sleep 1000" {
			t.Errorf("process in a child PID namespace: PPID %d command %q, want PPID %d (unshare) and sleep 1000", r.PPID, r.Command, procs.unshare.Process.Pid)
		}
	}
}

func TestRedactionCanBeTurnedOff(t *testing.T) {
	secret := startProcess(t, []string{"TOPZ_TEST_MODE=sleep"}, os.Args[0], secretArgs...)
	r := findRow(t, sampleTable(t, 20*time.Millisecond, false), secret.Process.Pid)
	if !strings.Contains(r.Command, "--password=hunter2") || strings.Contains(r.Command, redacted) {
		t.Fatalf("TOPZ_REDACT=false: command %q, want it as started", r.Command)
	}
}

func TestVanishedProcessesAreSkipped(t *testing.T) {
	sc, err := newScanner("/proc")
	if err != nil {
		t.Fatal(err)
	}
	short := startProcess(t, nil, "sleep", "1000")
	pid := short.Process.Pid
	// Listed, then gone before it is read: the race every /proc reader has.
	listed, err := sc.fs.Proc(pid)
	if err != nil {
		t.Fatal(err)
	}
	short.Process.Kill()
	short.Wait()
	if _, err := sc.read(listed); err == nil || !vanished(err) {
		t.Fatalf("reading a vanished process: err = %v, want a 'vanished' error", err)
	}
	snap, err := sc.scan(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range snap.Procs {
		if p.PID == pid {
			t.Fatalf("reaped PID %d still listed", pid)
		}
	}
	if snap.Unreadable != 0 {
		t.Fatalf("%d processes counted unreadable; vanished ones must not be", snap.Unreadable)
	}
}
