package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMemLimitFromCgroupTree checks the mapping from /proc/<pid>/cgroup paths to limit files on cgroup
// trees laid out like the kernel's (a unit test of path logic: the real kernel is in TestMemLimitCgroupV1).
func TestMemLimitFromCgroupTree(t *testing.T) {
	const host = 8 << 30
	v2 := t.TempDir()
	writeFile(t, v2+"/memory.max", "max\n")
	writeFile(t, v2+"/pod/memory.max", "104857600\n")
	writeFile(t, v2+"/pod/ctr/memory.max", "max\n")
	writeFile(t, v2+"/pod/small/memory.max", "1048576\n")
	writeFile(t, v2+"/huge/memory.max", strconv.Itoa(host*2)+"\n")
	v1 := t.TempDir()
	writeFile(t, v1+"/memory.limit_in_bytes", "9223372036854771712\n")
	writeFile(t, v1+"/ctr/memory.limit_in_bytes", "67108864\n")

	v2root := &procfs.MountInfo{Root: "/", MountPoint: v2, FSType: "cgroup2"}
	v2pod := &procfs.MountInfo{Root: "/kubepods/pod", MountPoint: v2 + "/pod", FSType: "cgroup2"}
	v1ctr := &procfs.MountInfo{Root: "/kubepods/ctr", MountPoint: v1 + "/ctr", FSType: "cgroup", SuperOptions: map[string]string{"rw": "", "memory": ""}}
	for _, tc := range []struct {
		mount *procfs.MountInfo
		path  string
		want  memLimit
	}{
		{v2root, "/pod/ctr", memLimit{104857600, memLimitCgroupV2}}, // the pod's limit, from the parent
		{v2root, "/pod/small", memLimit{1048576, memLimitCgroupV2}}, // the smaller of own and parent
		{v2root, "/", memLimit{host, memLimitHost}},                 // "max" everywhere
		{v2root, "/huge", memLimit{host, memLimitHost}},             // a limit above the host's memory is none
		{v2root, "/../sibling", memLimit{host, memLimitHost}},       // outside this cgroup namespace
		{v2root, "/missing", memLimit{host, memLimitHost}},          // no such directory
		{v2pod, "/kubepods/pod/ctr", memLimit{104857600, memLimitCgroupV2}},
		{v2pod, "/kubepods/pod", memLimit{104857600, memLimitCgroupV2}},
		{v2pod, "/kubepods/podX/ctr", memLimit{host, memLimitHost}}, // a prefix, not a parent
		{v2pod, "/kubepods/other", memLimit{host, memLimitHost}},    // a sibling container
		{v1ctr, "/kubepods/ctr", memLimit{67108864, memLimitCgroupV1}},
	} {
		r := newMemLimitResolver([]*procfs.MountInfo{tc.mount})
		r.reset(host)
		got := r.forCgroup(tc.mount, tc.path, map[string]string{"cgroup": "memory.limit_in_bytes", "cgroup2": "memory.max"}[tc.mount.FSType],
			map[string]string{"cgroup": memLimitCgroupV1, "cgroup2": memLimitCgroupV2}[tc.mount.FSType])
		if got != tc.want {
			t.Errorf("mount root %s, cgroup %s: got %+v, want %+v", tc.mount.Root, tc.path, got, tc.want)
		}
	}
}

func TestMemLimitResolverPicksTheMemoryHierarchy(t *testing.T) {
	mounts := []*procfs.MountInfo{
		{FSType: "cgroup", MountPoint: "/sys/fs/cgroup/cpu", SuperOptions: map[string]string{"cpu": ""}},
		{FSType: "cgroup", MountPoint: "/sys/fs/cgroup/memory", SuperOptions: map[string]string{"memory": ""}},
		{FSType: "cgroup2", MountPoint: "/sys/fs/cgroup/unified"},
	}
	r := newMemLimitResolver(mounts)
	if r.v1 == nil || r.v1.MountPoint != "/sys/fs/cgroup/memory" || r.v2 == nil {
		t.Fatalf("v1 = %+v, v2 = %+v", r.v1, r.v2)
	}
	if r := newMemLimitResolver(nil); r.v1 != nil || r.v2 != nil {
		t.Fatal("no mounts: want no hierarchies")
	}
}

// TestMemLimitCgroupV1 puts a real process into a real memory cgroup with a limit and checks that topz
// reports that limit, and memory % of it, for that process.
func TestMemLimitCgroupV1(t *testing.T) {
	mounts, err := procfs.GetMounts()
	if err != nil {
		t.Fatal(err)
	}
	var mount *procfs.MountInfo
	for _, m := range mounts {
		if m.FSType == "cgroup" && hasKey(m.SuperOptions, "memory") {
			mount = m
		}
	}
	if mount == nil {
		t.Skip("no cgroup v1 memory hierarchy on this machine; the v2 mapping is covered by TestMemLimitFromCgroupTree")
	}
	self, err := procfs.Self()
	if err != nil {
		t.Fatal(err)
	}
	cgroups, err := self.Cgroups()
	if err != nil {
		t.Fatal(err)
	}
	var own string
	for _, cg := range cgroups {
		if slices.Contains(cg.Controllers, "memory") {
			own = cg.Path
		}
	}
	rel, ok := strings.CutPrefix(own, mount.Root)
	if !ok {
		t.Fatalf("own memory cgroup %s is not below the mount root %s", own, mount.Root)
	}
	dir := filepath.Join(mount.MountPoint, rel, fmt.Sprintf("topz-test-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("creating a memory cgroup (the test needs root): %v", err)
	}
	t.Cleanup(func() {
		// The cgroup can be removed once its last process is reaped (killed in an earlier cleanup).
		for i := 0; ; i++ {
			if err := syscall.Rmdir(dir); err == nil || i == 50 {
				if err != nil {
					t.Errorf("removing %s: %v", dir, err)
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	writeFile(t, dir+"/memory.limit_in_bytes", "268435456")
	limit, ok := readLimit(dir + "/memory.limit_in_bytes")
	if !ok {
		t.Fatal("cannot read back the limit")
	}
	sleeper := startProcess(t, nil, "sleep", "1000")
	writeFile(t, dir+"/cgroup.procs", strconv.Itoa(sleeper.Process.Pid))

	sc, err := newScanner("/proc")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := sc.scan(true)
	if err != nil {
		t.Fatal(err)
	}
	row := findRow(t, newTableBuilder(true).build(snap, snap), sleeper.Process.Pid)
	if row.MemLimitSource != memLimitCgroupV1 || row.MemLimitBytes != limit {
		t.Fatalf("sleep in a cgroup limited to %d bytes: got limit %d from %q", limit, row.MemLimitBytes, row.MemLimitSource)
	}
	if want := float64(row.RSSBytes) / float64(limit) * 100; row.MemPercent != want || want == 0 {
		t.Fatalf("memPercent = %v, want %v (RSS %d of %d)", row.MemPercent, want, row.RSSBytes, limit)
	}
}

// startProcess starts a real process for a test and kills and reaps it at the end.
func startProcess(t *testing.T, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	path := name
	if !strings.Contains(name, "/") {
		var err error
		if path, err = exec.LookPath(name); err != nil {
			t.Fatalf("%s not found: run `make deps`", name)
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return cmd
}

func findRow(t *testing.T, table *Table, pid int) Row {
	t.Helper()
	for _, r := range table.Rows {
		if r.PID == pid {
			return r
		}
	}
	t.Fatalf("PID %d is not in the table (%d rows)", pid, len(table.Rows))
	return Row{}
}
