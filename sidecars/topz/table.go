package main

import (
	"cmp"
	"fmt"
	"os/user"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Table is one published process table: the rows of the later of two snapshots, with CPU% measured
// between them.
type Table struct {
	SampledAt time.Time
	// Window is the time between the two snapshots CPU% was measured over.
	Window       time.Duration
	Redacted     bool
	CPUs         int
	HostMemTotal uint64
	Unreadable   int
	Rows         []Row
}

// Row is one process.
type Row struct {
	PID     int    `json:"pid"`
	PPID    int    `json:"ppid"`
	UID     int    `json:"uid"`
	User    string `json:"user"`
	State   string `json:"state"`
	Comm    string `json:"comm"`
	Threads int    `json:"threads"`
	// CPUPercent is of one core, like top: a process keeping two cores busy shows 200.
	CPUPercent float64 `json:"cpuPercent"`
	CPUSeconds float64 `json:"cpuSeconds"`
	RSSBytes   uint64  `json:"rssBytes"`
	// MemPercent is RSSBytes as a percentage of MemLimitBytes.
	MemPercent     float64   `json:"memPercent"`
	MemLimitBytes  uint64    `json:"memLimitBytes"`
	MemLimitSource string    `json:"memLimitSource"`
	StartTime      time.Time `json:"startTime"`
	UptimeSeconds  float64   `json:"uptimeSeconds"`
	// Args is the command line (redacted unless redaction is off); Command is it joined by blanks with
	// control characters replaced, or [comm] for a process without one (a kernel thread or a zombie).
	Args    []string `json:"args"`
	Command string   `json:"command"`
	// ArgsTruncatedBytes is how much of a command line longer than maxCommandLine was left out (0: none).
	ArgsTruncatedBytes int `json:"argsTruncatedBytes,omitempty"`
}

// maxCommandLine bounds each row's command line. The kernel allows about 2 MiB of arguments per process,
// so 1,000 processes could otherwise make one /topz answer 2 GB; with this bound the answer stays within
// about 4 KiB per process (16 MiB at Kubernetes' usual 4,096-PID pod limit). ps shows a terminal's
// width; 4 KiB keeps a JVM's or node's long command line readable.
const maxCommandLine = 4096

// truncateArgs cuts args after maxCommandLine bytes (counting a blank between arguments), at a UTF-8
// boundary, and says how many bytes it left out.
func truncateArgs(args []string) ([]string, int) {
	total := 0
	for i, a := range args {
		if i > 0 {
			total++
		}
		if total+len(a) <= maxCommandLine {
			total += len(a)
			continue
		}
		keep := maxCommandLine - total
		for keep > 0 && !utf8.RuneStart(a[keep]) {
			keep--
		}
		left := len(a) - keep
		for _, rest := range args[i+1:] {
			left += 1 + len(rest)
		}
		out := append(slices.Clone(args[:i]), a[:max(keep, 0)])
		return out, left
	}
	return args, 0
}

// tableBuilder turns two snapshots into a Table. It is used by the sampler's goroutine only.
type tableBuilder struct {
	redact bool
	users  map[int]string // uid → name from this container's /etc/passwd ("" when it has none)
}

func newTableBuilder(redact bool) *tableBuilder {
	return &tableBuilder{redact: redact, users: map[int]string{}}
}

// build returns the table of cur, with CPU% measured against prev (a snapshot taken before cur).
func (b *tableBuilder) build(prev, cur *snapshot) *Table {
	before := make(map[procKey]float64, len(prev.Procs))
	for i := range prev.Procs {
		before[prev.Procs[i].key()] = prev.Procs[i].CPUSeconds
	}
	t := &Table{
		SampledAt:    cur.At,
		Window:       cur.At.Sub(prev.At),
		Redacted:     b.redact,
		CPUs:         runtime.NumCPU(),
		HostMemTotal: cur.HostMemTotal,
		Unreadable:   cur.Unreadable,
		Rows:         make([]Row, 0, len(cur.Procs)),
	}
	for i := range cur.Procs {
		p := &cur.Procs[i]
		// A process that started during the window is measured from its start.
		cpu, since := p.CPUSeconds, p.Start
		if c, ok := before[p.key()]; ok {
			cpu, since = p.CPUSeconds-c, prev.At
		}
		r := Row{
			PID: p.PID, PPID: p.PPID, UID: p.UID, User: b.userName(p.UID), State: p.State, Comm: p.Comm,
			Threads: p.Threads, CPUSeconds: p.CPUSeconds, RSSBytes: p.RSSBytes,
			MemLimitBytes: p.MemLimit.Bytes, MemLimitSource: p.MemLimit.Source,
			StartTime: p.Start.UTC(), UptimeSeconds: max(cur.At.Sub(p.Start).Seconds(), 0),
			Args: p.Args,
		}
		if wall := cur.At.Sub(since).Seconds(); wall > 0 && cpu > 0 {
			r.CPUPercent = cpu / wall * 100
		}
		if r.MemLimitBytes > 0 {
			r.MemPercent = float64(r.RSSBytes) / float64(r.MemLimitBytes) * 100
		}
		if b.redact {
			r.Args = redactArgs(r.Args)
		}
		if r.Args == nil {
			r.Args = []string{}
		}
		r.Args, r.ArgsTruncatedBytes = truncateArgs(r.Args)
		r.Command = displayCommand(r.Args, p.Comm)
		if r.ArgsTruncatedBytes > 0 {
			r.Command += fmt.Sprintf(" …[%d bytes more]", r.ArgsTruncatedBytes)
		}
		t.Rows = append(t.Rows, r)
	}
	return t
}

// userName resolves uid through this container's /etc/passwd, once per uid. A FROM-scratch image has none,
// so the uid itself is shown: the app's own /etc/passwd lives in another container and is not consulted.
func (b *tableBuilder) userName(uid int) string {
	if uid < 0 {
		return "?"
	}
	name, ok := b.users[uid]
	if !ok {
		name = strconv.Itoa(uid)
		if u, err := user.LookupId(name); err == nil && u.Username != "" {
			name = u.Username
		}
		b.users[uid] = name
	}
	return name
}

// displayCommand joins args for the text and HTML views, replacing control characters (a command line can
// hold any bytes) so that one process stays on one line. Without args it shows [comm], like ps.
func displayCommand(args []string, comm string) string {
	s := strings.Join(args, " ")
	if strings.TrimSpace(s) == "" {
		s = "[" + comm + "]"
	}
	s = strings.ToValidUTF8(s, "?")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// Sort orders accepted by ?sort=.
var sortOrders = []string{"cpu", "mem", "pid"}

// sortedRows returns a sorted copy of rows, at most limit long (0: all). cpu and mem sort the largest
// first, pid the smallest first; ties go by PID.
func sortedRows(rows []Row, by string, limit int) []Row {
	out := slices.Clone(rows)
	slices.SortFunc(out, func(a, b Row) int {
		var c int
		switch by {
		case "cpu":
			c = cmp.Compare(b.CPUPercent, a.CPUPercent)
		case "mem":
			c = cmp.Or(cmp.Compare(b.MemPercent, a.MemPercent), cmp.Compare(b.RSSBytes, a.RSSBytes))
		}
		return cmp.Or(c, cmp.Compare(a.PID, b.PID))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
