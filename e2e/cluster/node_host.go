package cluster

import (
	"bufio"
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
)

// kubeletSysctls are the kernel settings the kubelet changes at start (it wants the kernel to panic and
// reboot on an oops, and to allow memory overcommit); the node restores the values it found.
var kubeletSysctls = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"}

// nodeHostDirs are directories the kubelet, CNI and containerd's shims create outside the node's directory
// whatever they are told; the node removes those that did not exist before it.
var nodeHostDirs = []string{"/var/lib/kubelet", "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/run/containerd"}

// hostState is what the node found on the host before it started, so Stop can put it back.
type hostState struct {
	sysctls  map[string]string // /proc/sys path → value
	newDirs  []string          // nodeHostDirs that did not exist
	cgroups  []string          // <hierarchy>/kubepods that did not exist
	noBridge bool              // cni0 did not exist
}

func recordHost() (*hostState, error) {
	h := &hostState{sysctls: map[string]string{}}
	for _, s := range kubeletSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", s))
		if err != nil {
			return nil, fmt.Errorf("reading sysctl %s to restore it later: %w", s, err)
		}
		h.sysctls[s] = strings.TrimSpace(string(b))
	}
	for _, d := range nodeHostDirs {
		if _, err := os.Lstat(d); errors.Is(err, fs.ErrNotExist) {
			h.newDirs = append(h.newDirs, d)
		}
	}
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, hier := range hierarchies {
		kp := filepath.Join(hier, "kubepods")
		if _, err := os.Stat(kp); errors.Is(err, fs.ErrNotExist) {
			h.cgroups = append(h.cgroups, kp)
		}
	}
	_, err := net.InterfaceByName(bridgeName)
	h.noBridge = err != nil
	return h, nil
}

// restore undoes the node's traces once the kubelet and containerd have stopped: it kills shims still
// serving this node's containerd, unmounts everything under dir, deletes the bridge, removes the kubepods
// cgroups, restores the sysctls and removes the directories the node created.
func (h *hostState) restore(dir, socket string) error {
	var errs []error
	errs = append(errs, killShims(socket))
	errs = append(errs, unmountUnder(append([]string{dir}, h.newDirs...)...))
	if h.noBridge {
		if _, err := net.InterfaceByName(bridgeName); err == nil {
			if out, err := exec.Command("ip", "link", "delete", bridgeName).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("deleting the bridge %s: %w: %s", bridgeName, err, out))
			}
		}
	}
	for _, cg := range h.cgroups {
		errs = append(errs, removeCgroupTree(cg))
	}
	for s, v := range h.sysctls {
		if err := os.WriteFile(filepath.Join("/proc/sys", s), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring sysctl %s=%s: %w", s, v, err))
		}
	}
	for _, d := range h.newDirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("removing %s (the node created it): %w", d, err))
		}
	}
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
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}
