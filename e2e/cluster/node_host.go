package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hostSysctls are the kernel settings the node changes: the kubelet wants the kernel to panic and reboot on
// an oops and to allow memory overcommit; the node turns on IPv4 forwarding so that a pod's packet to a
// Service address, rewritten by kube-proxy to another pod, is routed back onto the bridge; kube-proxy may
// touch route_localnet. The node restores the values it found.
var hostSysctls = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops", "net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet"}

// nodeHostDirs are directories the kubelet, CNI and containerd's shims create outside the node's directory
// whatever they are told; the node removes those that did not exist before it.
var nodeHostDirs = []string{"/var/lib/kubelet", "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/run/containerd"}

// hostRecordPath is the machine's record of the local node that runs (or ran and was killed): what it
// found on the host, so that the next start or `make cluster-down` can put the host back after a run that
// never reached its teardown. One node runs on a machine at a time (the bridge and the pod subnet are fixed),
// so one record is enough.
var hostRecordPath = "/run/outrigger-local-node.json"

// hostState is what the node found on the host before it changed anything, so that Stop (or, after a
// killed run, the next start) can put it back. It is written to hostRecordPath as JSON.
type hostState struct {
	Owner     int               `json:"owner"`     // pid of the process running the node
	Dir       string            `json:"dir"`       // the node's directory (mounts live below it)
	Socket    string            `json:"socket"`    // containerd's socket (its shims name it)
	KubeProxy string            `json:"kubeProxy"` // the kube-proxy binary, whose --cleanup removes its rules
	Sysctls   map[string]string `json:"sysctls"`   // /proc/sys path → value found
	NewDirs   []string          `json:"newDirs"`   // nodeHostDirs that did not exist
	Cgroups   []string          `json:"cgroups"`   // <hierarchy>/kubepods that did not exist
	NoBridge  bool              `json:"noBridge"`  // cni0 did not exist
	// KubeChains are the KUBE-* iptables chains that existed already, per "<command> <table>".
	KubeChains map[string][]string `json:"kubeChains"`
}

// recordHost reads what the node is about to change and writes the record before anything changes.
func recordHost(dir, socket, kubeProxy string) (*hostState, error) {
	h := &hostState{Owner: os.Getpid(), Dir: dir, Socket: socket, KubeProxy: kubeProxy, Sysctls: map[string]string{}}
	for _, s := range hostSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", s))
		if err != nil {
			return nil, fmt.Errorf("reading sysctl %s to restore it later: %w", s, err)
		}
		h.Sysctls[s] = strings.TrimSpace(string(b))
	}
	for _, d := range nodeHostDirs {
		if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
			h.NewDirs = append(h.NewDirs, d)
		}
	}
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, hier := range hierarchies {
		kp := filepath.Join(hier, "kubepods")
		if _, err := os.Stat(kp); errors.Is(err, fs.ErrNotExist) {
			h.Cgroups = append(h.Cgroups, kp)
		}
	}
	_, err := net.InterfaceByName(bridgeName)
	h.NoBridge = err != nil
	h.KubeChains = kubeChains()
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(hostRecordPath, data, 0o600); err != nil {
		return nil, fmt.Errorf("writing the host record %s: %w", hostRecordPath, err)
	}
	return h, nil
}

// RecoverHost puts the host back after a local node whose process is gone without its teardown (killed,
// or the machine's session ended): it reads the record that node left and undoes what it changed. It does
// nothing when there is no record, and refuses while the node's process still runs. It reports whether
// there was something to recover.
func RecoverHost() (bool, error) {
	data, err := os.ReadFile(hostRecordPath)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	var h hostState
	if err := json.Unmarshal(data, &h); err != nil {
		return false, fmt.Errorf("reading the host record %s: %w (remove it once nothing of that node is left)", hostRecordPath, err)
	}
	if h.Owner != os.Getpid() && processAlive(h.Owner) {
		return false, fmt.Errorf("a local node is running (pid %d, directory %s): stop it first (`make cluster-down`)", h.Owner, h.Dir)
	}
	return true, h.restore()
}

// processAlive reports whether pid is a live process (not a zombie).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name's closing parenthesis: "pid (comm) S ...".
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// restore undoes the node's traces once the kubelet and containerd have stopped (or died): it kills shims
// still serving this node's containerd and any process left in the pods' cgroups, unmounts everything under
// the node's directory, deletes the bridge (its routes go with it), removes the forwarding guard and
// kube-proxy's rules, removes the kubepods cgroups, restores the sysctls, removes the directories the node
// created and, when all of that worked, the host record.
func (h *hostState) restore() error {
	var errs []error
	errs = append(errs, killShims(h.Socket))
	for _, cg := range h.Cgroups {
		errs = append(errs, killCgroupProcs(cg))
	}
	errs = append(errs, unmountUnder(append([]string{h.Dir}, h.NewDirs...)...))
	if h.NoBridge {
		if _, err := net.InterfaceByName(bridgeName); err == nil {
			if out, err := exec.Command("ip", "link", "delete", bridgeName).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("deleting the bridge %s: %w: %s", bridgeName, err, out))
			}
		}
	}
	errs = append(errs, removeForwardGuard())
	if h.KubeProxy != "" {
		errs = append(errs, cleanupKubeProxy(h.KubeProxy))
	}
	errs = append(errs, removeNewKubeChains(h.KubeChains))
	for _, cg := range h.Cgroups {
		errs = append(errs, removeCgroupTree(cg))
	}
	for s, v := range h.Sysctls {
		if err := os.WriteFile(filepath.Join("/proc/sys", s), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring sysctl %s=%s: %w", s, v, err))
		}
	}
	for _, d := range h.NewDirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("removing %s (the node created it): %w", d, err))
		}
	}
	err := errors.Join(errs...)
	if err == nil {
		if rerr := os.Remove(hostRecordPath); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return rerr
		}
	}
	return err
}

// killCgroupProcs SIGKILLs every process in a cgroup tree: containers whose shim is gone (a killed run)
// keep running there, and a cgroup with processes cannot be removed.
func killCgroupProcs(root string) error {
	var errs []error
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			pid, _ := strconv.Atoi(f)
			if pid > 0 {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
					errs = append(errs, fmt.Errorf("killing pod process %d: %w", pid, err))
				}
			}
		}
		return nil
	})
	return errors.Join(errs...)
}

// killShims kills containerd-shim processes started for this node's containerd (their command line names
// its socket), by process id. Normally there are none: the kubelet and removeLeftoverContainers delete
// every task first.
func killShims(socket string) error {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var errs []error
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") || !slices.Contains(args, socket) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing shim %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

// unmountUnder lazily unmounts every mount point at or below the given directories, deepest first
// (container root filesystems, /dev/shm of sandboxes, network namespaces, pods' Secret volumes).
func unmountUnder(dirs ...string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		for _, d := range dirs {
			if mp == d || strings.HasPrefix(mp, d+"/") {
				points = append(points, mp)
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	// Deeper paths first; a mount point listed twice (stacked mounts) is unmounted twice.
	slices.SortStableFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountPath decodes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeCgroupTree removes a cgroup directory and its children, deepest first (a cgroup is removed with
// rmdir, and only once it has no processes and no children).
func removeCgroupTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walking cgroup %s: %w", root, err)
	}
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		// A process killed a moment ago (killCgroupProcs) leaves its cgroup busy until it has exited.
		err := syscall.Rmdir(dirs[i])
		for try := 0; errors.Is(err, syscall.EBUSY) && try < 50; try++ {
			time.Sleep(100 * time.Millisecond)
			err = syscall.Rmdir(dirs[i])
		}
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}
