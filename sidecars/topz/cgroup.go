package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// Where a process's memory limit came from (the JSON memLimitSource values).
const (
	memLimitCgroupV1 = "cgroup-v1" // memory.limit_in_bytes of the process's cgroup or an ancestor
	memLimitCgroupV2 = "cgroup-v2" // memory.max of the process's cgroup or an ancestor
	memLimitHost     = "host"      // no limit is set or visible: MemTotal of /proc/meminfo
)

// memLimit is the memory a process may use, and where that number came from.
type memLimit struct {
	Bytes  uint64
	Source string
}

// memLimitResolver finds the memory limit that applies to a process: the smallest limit on its memory
// cgroup and that cgroup's ancestors, as far as they are visible through this container's cgroup mounts.
// A cgroup outside the mounts (a sibling container seen through a shared PID namespace, whose cgroup
// this container cannot open) or without any limit gets the host's MemTotal, labelled as such.
type memLimitResolver struct {
	v1, v2    *procfs.MountInfo // the memory cgroup v1 hierarchy and the cgroup v2 hierarchy, if mounted
	hostTotal uint64
	// byDir caches the limit of each cgroup directory for one scan.
	byDir map[string]memLimit
}

func newMemLimitResolver(mounts []*procfs.MountInfo) *memLimitResolver {
	r := &memLimitResolver{byDir: map[string]memLimit{}}
	for _, m := range mounts {
		switch {
		case m.FSType == "cgroup" && hasKey(m.SuperOptions, "memory"):
			r.v1 = m
		case m.FSType == "cgroup2" && r.v2 == nil:
			r.v2 = m
		}
	}
	return r
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

// reset starts a new scan: limits may have changed since the last one.
func (r *memLimitResolver) reset(hostTotal uint64) {
	r.hostTotal = hostTotal
	clear(r.byDir)
}

func (r *memLimitResolver) host() memLimit { return memLimit{Bytes: r.hostTotal, Source: memLimitHost} }

// forProc returns p's memory limit. Any failure to read the cgroup falls back to the host's memory.
func (r *memLimitResolver) forProc(p procfs.Proc) memLimit {
	if r.v1 == nil && r.v2 == nil {
		return r.host()
	}
	cgroups, err := p.Cgroups()
	if err != nil {
		return r.host()
	}
	// The memory controller is in v1 when a v1 memory hierarchy is mounted (hybrid hosts), else in v2.
	for _, cg := range cgroups {
		if r.v1 != nil && slices.Contains(cg.Controllers, "memory") {
			return r.forCgroup(r.v1, cg.Path, "memory.limit_in_bytes", memLimitCgroupV1)
		}
		if r.v1 == nil && cg.HierarchyID == 0 {
			return r.forCgroup(r.v2, cg.Path, "memory.max", memLimitCgroupV2)
		}
	}
	return r.host()
}

// forCgroup maps the cgroup path (as /proc/<pid>/cgroup shows it) into the mount and takes the smallest
// limit from that directory up to the mount's root.
func (r *memLimitResolver) forCgroup(m *procfs.MountInfo, path, file, source string) memLimit {
	rel, ok := strings.CutPrefix(path, m.Root)
	if !ok || (m.Root != "/" && rel != "" && !strings.HasPrefix(rel, "/")) || strings.Contains(path+"/", "/../") {
		return r.host() // not below this container's view of the hierarchy
	}
	return r.forDir(m.MountPoint, filepath.Join(m.MountPoint, rel), file, source)
}

func (r *memLimitResolver) forDir(mountPoint, dir, file, source string) memLimit {
	if l, ok := r.byDir[dir]; ok {
		return l
	}
	best := r.host()
	if n, ok := readLimit(filepath.Join(dir, file)); ok && n < r.hostTotal {
		best = memLimit{Bytes: n, Source: source}
	}
	if dir != mountPoint && strings.HasPrefix(dir, mountPoint) {
		if parent := r.forDir(mountPoint, filepath.Dir(dir), file, source); parent.Bytes < best.Bytes {
			best = parent
		}
	}
	r.byDir[dir] = best
	return best
}

// readLimit reads a cgroup limit file: a byte count, or "max" (v2) for no limit. procfs has no reader for
// cgroupfs files, and the format is a single number.
func readLimit(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, false // "max", or unreadable
	}
	return n, true
}
