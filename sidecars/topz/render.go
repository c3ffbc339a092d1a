package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// view is what every format shows: the table's facts and the rows selected by ?sort and ?limit.
type view struct {
	*Table
	Rows  []Row
	Sort  string
	Limit int
}

func (v view) summary() string {
	redaction := "command lines redacted"
	if !v.Redacted {
		redaction = "command lines NOT redacted (TOPZ_REDACT=false)"
	}
	s := fmt.Sprintf("%d processes", len(v.Table.Rows))
	if len(v.Table.Rows) == 1 {
		s = "1 process"
	}
	if len(v.Rows) < len(v.Table.Rows) {
		s = fmt.Sprintf("%d of %d processes", len(v.Rows), len(v.Table.Rows))
	}
	if v.Unreadable > 0 {
		s += fmt.Sprintf(" (%d unreadable)", v.Unreadable)
	}
	return fmt.Sprintf("%s, sorted by %s; %%CPU over %s to %s, of one core (%d cores); %s",
		s, v.Sort, v.Window.Round(time.Millisecond), v.SampledAt.UTC().Format(time.RFC3339), v.CPUs, redaction)
}

const memLimitLegend = "%MEM is RSS of MEMLIMIT: cgroup-v1/cgroup-v2 = the process's cgroup memory limit, host = MemTotal (no limit visible)"

// writeText writes the table as aligned columns with '#' summary lines, for curl in a terminal.
func writeText(w io.Writer, v view) error {
	header := []string{"PID", "PPID", "USER", "S", "%CPU", "RSS", "%MEM", "MEMLIMIT", "THR", "STARTED", "ELAPSED", "COMMAND"}
	right := []bool{true, true, false, false, true, true, true, false, true, false, true, false}
	lines := [][]string{header}
	for _, r := range v.Rows {
		lines = append(lines, []string{
			strconv.Itoa(r.PID), strconv.Itoa(r.PPID), r.User, r.State,
			strconv.FormatFloat(r.CPUPercent, 'f', 1, 64), humanBytes(r.RSSBytes), strconv.FormatFloat(r.MemPercent, 'f', 1, 64),
			r.MemLimitSource + ":" + humanBytes(r.MemLimitBytes), strconv.Itoa(r.Threads),
			started(r.StartTime, v.SampledAt), elapsed(r.UptimeSeconds), r.Command,
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# topz: %s\n# %s\n", v.summary(), memLimitLegend)
	writeAligned(&b, lines, right)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeAligned pads every column but the last to its widest cell.
func writeAligned(b *strings.Builder, lines [][]string, right []bool) {
	widths := make([]int, len(lines[0]))
	for _, l := range lines {
		for i, c := range l[:len(l)-1] {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, l := range lines {
		for i, c := range l {
			switch {
			case i == len(l)-1:
				b.WriteString(c)
			case right[i]:
				b.WriteString(strings.Repeat(" ", widths[i]-len(c)) + c + " ")
			default:
				b.WriteString(c + strings.Repeat(" ", widths[i]-len(c)) + " ")
			}
		}
		b.WriteByte('\n')
	}
}

// jsonTable is the ?format=json document: numbers are numbers, times RFC 3339.
type jsonTable struct {
	SampledAt         time.Time `json:"sampledAt"`
	WindowSeconds     float64   `json:"windowSeconds"`
	CPUs              int       `json:"cpus"`
	HostMemTotalBytes uint64    `json:"hostMemTotalBytes"`
	Redacted          bool      `json:"redacted"`
	Unreadable        int       `json:"unreadable"`
	Total             int       `json:"total"`
	Sort              string    `json:"sort"`
	Processes         []Row     `json:"processes"`
}

func writeJSON(w io.Writer, v view) error {
	rows := make([]Row, len(v.Rows))
	for i, r := range v.Rows {
		r.CPUPercent, r.MemPercent = round2(r.CPUPercent), round2(r.MemPercent)
		r.CPUSeconds, r.UptimeSeconds = round2(r.CPUSeconds), round2(r.UptimeSeconds)
		rows[i] = r
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // a JSON document, not HTML: keep "=>" readable in command lines
	return enc.Encode(jsonTable{
		SampledAt: v.SampledAt.UTC(), WindowSeconds: v.Window.Seconds(), CPUs: v.CPUs,
		HostMemTotalBytes: v.HostMemTotal, Redacted: v.Redacted, Unreadable: v.Unreadable,
		Total: len(v.Table.Rows), Sort: v.Sort, Processes: rows,
	})
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// htmlRefreshSeconds is how often the HTML view reloads itself.
const htmlRefreshSeconds = 2

// writeHTML writes the table as a page that reloads itself.
//
// It is written with html.EscapeString rather than html/template on purpose: html/template calls methods
// through reflection, which stops the linker from dropping unused exported methods anywhere in the binary
// and costs 2.6 MB (an 11.6 MB image instead of 9.0 MB, over the 10 MB target). The page is fixed markup
// whose only variable parts are text nodes and the ?sort=/?limit= links built from validated values, and
// every one of them goes through esc; TestHTMLRendersEscaped parses the page to hold that line, and the
// handler's Content-Security-Policy forbids scripts anyway.
func writeHTML(w io.Writer, v view) error {
	esc := html.EscapeString
	var b strings.Builder
	sortLink := func(by, label string) string {
		q := url.Values{"sort": {by}}
		if v.Limit > 0 {
			q.Set("limit", strconv.Itoa(v.Limit))
		}
		return `<a href="?` + esc(q.Encode()) + `">` + label + `</a>`
	}
	fmt.Fprintf(&b, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="%d">
<title>topz</title>
<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-family:monospace}
th,td{padding:2px 8px;text-align:right;white-space:nowrap}th{background:#eee}td.l,th.l{text-align:left}
td.cmd{white-space:pre-wrap;word-break:break-all}tr:nth-child(even){background:#f7f7f7}</style></head>
<body><h1>topz</h1>
<p>%s. Refreshes every %ds.</p>
<p>%s</p>
<table><thead><tr><th>%s</th><th>PPID</th><th class="l">USER</th><th class="l">S</th><th>%s</th><th>RSS</th><th>%s</th>
<th class="l">MEMLIMIT</th><th>THR</th><th class="l">STARTED</th><th>ELAPSED</th><th class="l">COMMAND</th></tr></thead>
<tbody>
`, htmlRefreshSeconds, esc(v.summary()), htmlRefreshSeconds, esc(memLimitLegend),
		sortLink("pid", "PID"), sortLink("cpu", "%CPU"), sortLink("mem", "%MEM"))
	for _, r := range v.Rows {
		fmt.Fprintf(&b, `<tr><td>%d</td><td>%d</td><td class="l">%s</td><td class="l">%s</td><td>%.1f</td><td>%s</td><td>%.1f</td>`+
			`<td class="l">%s:%s</td><td>%d</td><td class="l">%s</td><td>%s</td><td class="l cmd">%s</td></tr>`+"\n",
			r.PID, r.PPID, esc(r.User), esc(r.State), r.CPUPercent, humanBytes(r.RSSBytes), r.MemPercent,
			esc(r.MemLimitSource), humanBytes(r.MemLimitBytes), r.Threads, r.StartTime.Format("2006-01-02 15:04:05"),
			elapsed(r.UptimeSeconds), esc(r.Command))
	}
	b.WriteString("</tbody></table></body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// humanBytes writes a size with binary units, e.g. 12.3Mi.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + []string{"Ki", "Mi", "Gi", "Ti", "Pi"}[i]
}

// started is the start time as ps shows it: the clock time within the last day, else the date (UTC).
func started(t, now time.Time) string {
	if now.Sub(t) < 24*time.Hour {
		return t.UTC().Format("15:04:05")
	}
	return t.UTC().Format("2006-01-02")
}

// elapsed is a duration as ps's etime: [[dd-]hh:]mm:ss.
func elapsed(seconds float64) string {
	s := int64(seconds)
	d, h, m := s/86400, s/3600%24, s/60%60
	s %= 60
	switch {
	case d > 0:
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, s)
	case h > 0:
		return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%02d:%02d", m, s)
}
