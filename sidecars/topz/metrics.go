package main

import (
	"cmp"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// maxCommandLabels caps the command label's values: the busiest commands keep their name, the rest are
// summed under otherCommands, so a pod that forks many differently named processes cannot blow up the
// metric's cardinality.
const (
	maxCommandLabels = 30
	otherCommands    = "_other"
)

var (
	cpuDesc = prometheus.NewDesc("topz_process_cpu_seconds_total",
		"CPU time (user + system) of the visible processes with this command name (comm), summed. It drops when such a process exits: use rate(), which treats a drop as a reset.",
		[]string{"command"}, nil)
	rssDesc = prometheus.NewDesc("topz_process_resident_memory_bytes",
		"Resident memory of the visible processes with this command name (comm), summed.",
		[]string{"command"}, nil)
	countDesc = prometheus.NewDesc("topz_processes",
		"Number of visible processes with this command name (comm).",
		[]string{"command"}, nil)
	unreadableDesc = prometheus.NewDesc("topz_unreadable_processes",
		"Processes listed in /proc that could not be read at the last scrape (vanished ones are not counted).", nil, nil)
)

// processCollector reads /proc at every scrape (stat only: no sampling window, no command lines) and
// reports per-command totals.
type processCollector struct {
	mu      sync.Mutex // one scrape at a time: the scanner is not safe for concurrent use
	scanner *scanner
}

func newProcessCollector(procRoot string) (*processCollector, error) {
	sc, err := newScanner(procRoot)
	if err != nil {
		return nil, err
	}
	return &processCollector{scanner: sc}, nil
}

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cpuDesc
	ch <- rssDesc
	ch <- countDesc
	ch <- unreadableDesc
}

func (c *processCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	snap, err := c.scanner.scan(false)
	c.mu.Unlock()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(cpuDesc, err)
		return
	}
	for _, t := range commandTotals(snap.Procs, maxCommandLabels) {
		ch <- prometheus.MustNewConstMetric(cpuDesc, prometheus.CounterValue, t.CPUSeconds, t.Command)
		ch <- prometheus.MustNewConstMetric(rssDesc, prometheus.GaugeValue, float64(t.RSSBytes), t.Command)
		ch <- prometheus.MustNewConstMetric(countDesc, prometheus.GaugeValue, float64(t.Count), t.Command)
	}
	ch <- prometheus.MustNewConstMetric(unreadableDesc, prometheus.GaugeValue, float64(snap.Unreadable))
}

// commandTotal is the sum over the processes sharing a command name.
type commandTotal struct {
	Command    string
	CPUSeconds float64
	RSSBytes   uint64
	Count      int
}

// commandTotals sums procs by command name and keeps the limit-1 busiest (by CPU seconds, then RSS, then
// name) by name; the others are summed under otherCommands. The result is sorted by command name.
func commandTotals(procs []procSample, limit int) []commandTotal {
	byName := map[string]*commandTotal{}
	for i := range procs {
		name := strings.ToValidUTF8(procs[i].Comm, "?") // label values must be UTF-8
		t := byName[name]
		if t == nil {
			t = &commandTotal{Command: name}
			byName[name] = t
		}
		t.CPUSeconds += procs[i].CPUSeconds
		t.RSSBytes += procs[i].RSSBytes
		t.Count++
	}
	totals := make([]commandTotal, 0, len(byName))
	for _, t := range byName {
		totals = append(totals, *t)
	}
	slices.SortFunc(totals, func(a, b commandTotal) int {
		return cmp.Or(cmp.Compare(b.CPUSeconds, a.CPUSeconds), cmp.Compare(b.RSSBytes, a.RSSBytes), strings.Compare(a.Command, b.Command))
	})
	if len(totals) > limit {
		other := commandTotal{Command: otherCommands}
		for _, t := range totals[limit-1:] {
			other.CPUSeconds += t.CPUSeconds
			other.RSSBytes += t.RSSBytes
			other.Count += t.Count
		}
		totals = append(totals[:limit-1], other)
	}
	slices.SortFunc(totals, func(a, b commandTotal) int { return strings.Compare(a.Command, b.Command) })
	return totals
}

// refusedCounter counts the /topz requests answered 429 (maxRendering), so that a client polling too
// hard shows on a dashboard rather than only in its own errors.
func refusedCounter(h *topzHandler) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "topz_requests_refused_total",
		Help: "Requests to /topz answered 429 because maxRendering answers were being made already.",
	}, func() float64 { return float64(h.refused.Load()) })
}
