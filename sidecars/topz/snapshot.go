package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// procSample is what one read of /proc says about one process.
type procSample struct {
	PID, PPID int
	// StartTicks is the start time in clock ticks after boot: with PID it identifies a process across
	// snapshots even when a PID is reused.
	StartTicks uint64
	Comm       string
	State      string
	// UID is the effective UID, taken like ps does from the owner of /proc/<pid>; -1 when unknown.
	// It is read by a detailed scan only, with Args and MemLimit.
	UID        int
	CPUSeconds float64
	RSSBytes   uint64
	Threads    int
	Start      time.Time
	Args       []string
	MemLimit   memLimit
}

// key identifies a process across snapshots.
type procKey struct {
	PID        int
	StartTicks uint64
}

func (p *procSample) key() procKey { return procKey{p.PID, p.StartTicks} }

// snapshot is one pass over /proc.
type snapshot struct {
	At    time.Time
	Procs []procSample
	// Unreadable counts processes that exist but could not be read (not those that vanished).
	Unreadable int
	// HostMemTotal is MemTotal from /proc/meminfo, in bytes.
	HostMemTotal uint64
}

// scanner reads process snapshots from a procfs mount. It is not safe for concurrent use: the sampler and
// the metrics collector each have their own.
type scanner struct {
	fs       procfs.FS
	procRoot string
	bootTime time.Time
	limits   *memLimitResolver
	// details caches what rarely changes (the owner, command line and memory limit) per process, refreshed
	// every detailTTL, so that a busy dashboard does not re-read them for every process every window.
	details   map[procKey]procDetails
	detailTTL time.Duration
}

type procDetails struct {
	UID      int
	Args     []string
	MemLimit memLimit
	ReadAt   time.Time
}

// newScanner opens the procfs mounted at procRoot and reads the boot time and the cgroup mounts once.
func newScanner(procRoot string) (*scanner, error) {
	pfs, err := procfs.NewFS(procRoot)
	if err != nil {
		return nil, fmt.Errorf("opening procfs at %s: %w", procRoot, err)
	}
	stat, err := pfs.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading the boot time from %s/stat: %w", procRoot, err)
	}
	// Mount points only matter for the cgroup memory limits: without them every limit is the host's.
	mounts, err := pfs.GetMounts()
	if err != nil {
		mounts = nil
	}
	return &scanner{
		fs:        pfs,
		procRoot:  procRoot,
		bootTime:  time.Unix(int64(stat.BootTime), 0),
		limits:    newMemLimitResolver(mounts),
		details:   map[procKey]procDetails{},
		detailTTL: 10 * time.Second,
	}, nil
}

// scan reads every visible process. A detailed scan also reads command lines and memory limits.
// Processes that vanish while being read are skipped silently; that is how /proc works, not an error.
func (s *scanner) scan(detailed bool) (*snapshot, error) {
	procs, err := s.fs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("listing processes in %s: %w", s.procRoot, err)
	}
	snap := &snapshot{At: time.Now(), Procs: make([]procSample, 0, len(procs))}
	if detailed {
		mi, err := s.fs.Meminfo()
		if err == nil && mi.MemTotalBytes != nil {
			snap.HostMemTotal = *mi.MemTotalBytes
		}
		s.limits.reset(snap.HostMemTotal)
	}
	for _, p := range procs {
		sample, err := s.read(p)
		if err != nil {
			if !vanished(err) {
				snap.Unreadable++
			}
			continue
		}
		snap.Procs = append(snap.Procs, sample)
	}
	if detailed {
		s.addDetails(snap)
	}
	return snap, nil
}

// read reads the per-process facts that change all the time, from /proc/<pid>/stat.
func (s *scanner) read(p procfs.Proc) (procSample, error) {
	st, err := p.Stat()
	if err != nil {
		return procSample{}, err
	}
	return procSample{
		PID:        st.PID,
		PPID:       st.PPID,
		StartTicks: st.Starttime,
		Comm:       st.Comm,
		State:      st.State,
		UID:        -1,
		CPUSeconds: st.CPUTime(),
		RSSBytes:   uint64(max(st.ResidentMemory(), 0)),
		Threads:    st.NumThreads,
		// procfs's StartTime re-reads /proc/stat for the boot time on every call; this is the same sum.
		Start: s.bootTime.Add(time.Duration(st.Starttime) * time.Second / userHZ),
	}, nil
}

// owner returns the effective UID of pid the way ps does: the owner of /proc/<pid>; -1 when unknown.
func (s *scanner) owner(pid int) int {
	fi, err := os.Stat(filepath.Join(s.procRoot, strconv.Itoa(pid)))
	if err != nil {
		return -1
	}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(sys.Uid)
	}
	return -1
}

// userHZ is the kernel's USER_HZ, the unit of /proc/<pid>/stat times (100 on every Linux ABI; procfs
// assumes the same).
const userHZ = 100

// addDetails fills in owners, command lines and memory limits, from the cache when fresh enough, and
// drops the cache entries of processes that are gone.
func (s *scanner) addDetails(snap *snapshot) {
	seen := make(map[procKey]bool, len(snap.Procs))
	for i := range snap.Procs {
		ps := &snap.Procs[i]
		k := ps.key()
		seen[k] = true
		d, ok := s.details[k]
		if !ok || snap.At.Sub(d.ReadAt) >= s.detailTTL {
			p, err := s.fs.Proc(ps.PID)
			if err != nil {
				// Vanished since the listing: keep the row with what stat said (kernel-thread style).
				d = procDetails{UID: -1, MemLimit: s.limits.host(), ReadAt: snap.At}
			} else {
				args, _ := p.CmdLine() // an unreadable or vanished command line shows as [comm], like ps
				d = procDetails{UID: s.owner(ps.PID), Args: args, MemLimit: s.limits.forProc(p), ReadAt: snap.At}
			}
			s.details[k] = d
		} else if d.MemLimit.Source == memLimitHost {
			// The host's total is not cached per process: keep it current.
			d.MemLimit = s.limits.host()
		}
		ps.UID, ps.Args, ps.MemLimit = d.UID, d.Args, d.MemLimit
	}
	for k := range s.details {
		if !seen[k] {
			delete(s.details, k)
		}
	}
}

// vanished reports whether err means the process exited while it was being read.
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}
