// Command summary reads the outputs `bench/all.sh` saved (one file per benchmark, named after its folder)
// and prints one table of the figures the issues set goals for: component, figure, ours, peer, ratio,
// goal, met. It writes the same table to -o. A figure that is not found in its output (a benchmark that
// failed or changed its format) is a row saying so and makes the exit status 1, never a silent gap.
//
//	go run ./bench/summary -dir _output/bench -o _output/bench/summary.md
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// row is one line of the summary.
type row struct {
	component, figure, ours, peer, ratio, goal, met string
}

// outputs holds each benchmark's saved output by name; missing records what could not be found.
type outputs struct {
	dir     string
	text    map[string]string
	missing int
	rows    []row
}

func main() {
	dir := flag.String("dir", "_output/bench", "where bench/all.sh saved each benchmark's output (<name>.txt)")
	out := flag.String("o", "", "also write the table to this file")
	flag.Parse()
	o := &outputs{dir: *dir, text: map[string]string{}}
	webhook(o)
	httpsProxy(o)
	shardAmbassador(o)
	topz(o)
	configSync(o)
	gitSync(o)
	memory(o)

	var b strings.Builder
	b.WriteString("| component | figure | ours | peer | ratio | goal | met? |\n|---|---|---|---|---|---|---|\n")
	for _, r := range o.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.component, r.figure, r.ours, r.peer, r.ratio, r.goal, r.met)
	}
	fmt.Print(b.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "summary:", err)
			os.Exit(1)
		}
	}
	if o.missing > 0 {
		fmt.Fprintf(os.Stderr, "summary: %d figure(s) not found in the benchmarks' outputs under %s\n", o.missing, *dir)
		os.Exit(1)
	}
}

// read returns benchmark name's saved output, or "" (and a row saying so) when it is not there.
func (o *outputs) read(name string) string {
	if t, ok := o.text[name]; ok {
		return t
	}
	b, err := os.ReadFile(filepath.Join(o.dir, name+".txt"))
	if err != nil {
		o.text[name] = ""
		o.rows = append(o.rows, row{component: name, figure: "(no output)", met: "**did not run**: " + err.Error()})
		o.missing++
		return ""
	}
	o.text[name] = string(b)
	return string(b)
}

// lost records a figure its benchmark's output does not contain.
func (o *outputs) lost(component, figure string) {
	o.rows = append(o.rows, row{component: component, figure: figure, met: "**not found in the output**"})
	o.missing++
}

// add records a figure with its ratio judged against the goal: ratio <= limit when lowerIsBetter, else
// ratio >= limit.
func (o *outputs) add(component, figure, ours, peer string, ratio, limit float64, lowerIsBetter bool) {
	goal, ok := "≥ ", ratio >= limit
	if lowerIsBetter {
		goal, ok = "≤ ", ratio <= limit
	}
	met := "not met"
	if ok {
		met = "met"
	}
	o.rows = append(o.rows, row{component, figure, ours, peer, fmt.Sprintf("%.2f×", ratio), goal + fmt.Sprintf("%g×", limit), met})
}

// tableRows returns the cells of every markdown table row of text whose first cells are prefix.
func tableRows(text string, prefix ...string) [][]string {
	var out [][]string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		match := len(cells) >= len(prefix)
		for i := 0; match && i < len(prefix); i++ {
			match = cells[i] == prefix[i]
		}
		if match {
			out = append(out, cells)
		}
	}
	return out
}

var number = regexp.MustCompile(`[0-9][0-9,]*(\.[0-9]+)?`)

// num is the first number in s ("2.74; 2.71ms" → 2.74, "1,587 ms" → 1587), ok false when there is none.
func num(s string) (float64, bool) {
	m := number.FindString(s)
	if m == "" {
		return 0, false
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(m, ",", ""), 64)
	return v, err == nil
}

func webhook(o *outputs) {
	text := o.read("webhook")
	if text == "" {
		return
	}
	for _, pod := range []string{"typical", "1500-env"} {
		line := regexp.MustCompile(`(?m)^` + pod + `\s+floor\s+\S+\s+\S+\s+(\S+)\s+\S+\s+(\d+)\s*$`).FindStringSubmatch(text)
		inj := regexp.MustCompile(`(?m)^` + pod + `\s+inject\s+\S+\s+\S+\s+(\S+)\s+\S+\s+(\d+)\s*$`).FindStringSubmatch(text)
		ratio := regexp.MustCompile(`(?m)^` + pod + `\s+ratio inject/floor: p50 \S+\s+p99 ([0-9.]+)×\s+throughput ([0-9.]+)×`).FindStringSubmatch(text)
		if line == nil || inj == nil || ratio == nil {
			o.lost("webhook", pod+" pod")
			continue
		}
		p99, _ := strconv.ParseFloat(ratio[1], 64)
		thr, _ := strconv.ParseFloat(ratio[2], 64)
		o.add("webhook", pod+" pod, p99 vs the floor handler", inj[1], line[1], p99, 1.5, true)
		o.add("webhook", pod+" pod, reviews/s vs the floor handler", inj[2], line[2], thr, 0.7, false)
	}
}

func httpsProxy(o *outputs) {
	text := o.read("https-proxy")
	if text == "" {
		return
	}
	scenarios := []struct{ prefix, name string }{
		{"keep-alive", "HTTP/1.1 keep-alive"}, {"handshake per request", "a TLS handshake per request"}, {"HTTP/2 keep-alive", "HTTP/2"},
	}
	for _, sc := range scenarios {
		var nginx, proxy []string
		for _, cells := range tableRows(text) {
			if len(cells) >= 8 && strings.HasPrefix(cells[0], sc.prefix) {
				switch cells[1] {
				case "nginx":
					nginx = cells
				case "proxy":
					proxy = cells
				}
			}
		}
		median := regexp.MustCompile(`(?m)^# ` + regexp.QuoteMeta(sc.prefix) + `[^:]*: p99 median of rounds: nginx ([0-9.]+)ms, proxy ([0-9.]+)ms \(([0-9.]+)×\)`).FindStringSubmatch(text)
		if nginx == nil || proxy == nil || median == nil {
			o.lost("https-proxy", sc.name)
			continue
		}
		rps, _ := num(proxy[5])
		cpu, _ := num(proxy[7])
		p99, _ := strconv.ParseFloat(median[3], 64)
		o.add("https-proxy", sc.name+", requests/s vs nginx", proxy[2], nginx[2], rps, 1.0, false)
		o.add("https-proxy", sc.name+", p99 (median of rounds) vs nginx", median[2]+" ms", median[1]+" ms", p99, 1.0, true)
		o.add("https-proxy", sc.name+", CPU per request vs nginx", strings.Fields(proxy[4])[0], strings.Fields(nginx[4])[0], cpu, 1.0, true)
	}
}

func shardAmbassador(o *outputs) {
	text := o.read("shard-ambassador")
	if text == "" {
		return
	}
	for _, pipeline := range []string{"1", "16"} {
		for _, test := range []string{"SET", "GET"} {
			ours := tableRows(text, "shard-ambassador", pipeline, test)
			peer := tableRows(text, "nutcracker", pipeline, test)
			if len(ours) == 0 || len(peer) == 0 || len(ours[0]) < 9 {
				o.lost("shard-ambassador", "redis -P "+pipeline+" "+test)
				continue
			}
			rps, _ := num(ours[0][7])
			p99, _ := num(ours[0][8])
			o.add("shard-ambassador", "redis -P "+pipeline+" "+test+", requests/s vs nutcracker", ours[0][3], peer[0][3], rps, 1.0, false)
			o.add("shard-ambassador", "redis -P "+pipeline+" "+test+", p99 vs nutcracker", ours[0][5]+" ms", peer[0][5]+" ms", p99, 1.0, true)
		}
	}
	ours, peer := tableRows(text, "shard-ambassador"), tableRows(text, "nutcracker")
	var mo, mp []string
	for _, r := range ours {
		if len(r) == 4 {
			mo = r
		}
	}
	for _, r := range peer {
		if len(r) == 4 {
			mp = r
		}
	}
	if mo == nil || mp == nil {
		o.lost("shard-ambassador", "memcache ops/s")
		return
	}
	ratio, _ := num(mo[3])
	o.add("shard-ambassador", "memcache ops/s vs nutcracker", mo[1], mp[1], ratio, 1.0, false)
}

func topz(o *outputs) {
	text := o.read("topz")
	if text == "" {
		return
	}
	var warm, ps []string
	for _, r := range tableRows(text) {
		if len(r) < 3 {
			continue
		}
		switch {
		case strings.Contains(r[1], "warm"):
			warm = r
		case strings.HasPrefix(r[1], "`ps "):
			ps = r
		}
	}
	if warm == nil || ps == nil {
		o.lost("topz", "/topz warm request")
		return
	}
	ms, _ := num(warm[2])
	psms, _ := num(ps[2])
	row := row{"topz", "/topz at " + warm[0] + " processes, p50 (goal ≤ 20 ms)", warm[2] + " ms", ps[2] + " ms (`ps`)", fmt.Sprintf("%.2f×", ms/psms), "≤ 20 ms", "not met"}
	if ms <= 20 {
		row.met = "met"
	}
	o.rows = append(o.rows, row)
}

func configSync(o *outputs) {
	text := o.read("config-sync")
	if text == "" {
		return
	}
	found := false
	for _, r := range tableRows(text) {
		if len(r) < 7 || r[1] != "config-sync: SIGHUP delivered" {
			continue
		}
		found = true
		p99, _ := num(r[3])
		ratio := tableRows(text, r[0], "ratio file visible / floor (from send)")
		rs := ""
		if len(ratio) > 0 && len(ratio[0]) >= 7 {
			rs = ratio[0][6] + " (file visible, p99 from send)"
		}
		met := "not met"
		if p99 <= 500 {
			met = "met"
		}
		o.rows = append(o.rows, row{"config-sync", "update → SIGHUP p99, DEBOUNCE " + r[0], r[3], "a bare watch", rs, "≤ 500 ms", met})
	}
	if !found {
		o.lost("config-sync", "update → SIGHUP")
	}
}

func gitSync(o *outputs) {
	text := o.read("git-sync")
	if text == "" {
		return
	}
	rows := 0
	for _, r := range tableRows(text) {
		if len(r) < 7 || !strings.HasSuffix(r[0], "files changed") {
			continue
		}
		rows++
		// With kubernetes/git-sync's columns: ours p50, p99, theirs p50, p99, peer p50, p99, ratios...
		ours, peer, ratioCell := r[1], r[3], r[5]
		if len(r) >= 11 {
			peer, ratioCell = r[5], r[7]
			kr, _ := num(r[9])
			o.add("git-sync", "one sync, "+r[0]+", p50 vs kubernetes/git-sync", ours, r[3], kr, 1.0, true)
		}
		o.rows = append(o.rows, row{"git-sync", "one sync, " + r[0] + ", p50 vs git fetch + checkout", ours, peer, ratioCell + "×", "(no goal)", "—"})
	}
	poll := tableRows(text, "git-sync")
	for _, r := range poll {
		if len(r) >= 6 && strings.Contains(r[4], "met") {
			goal, _, _ := strings.Cut(r[4], ":")
			o.rows = append(o.rows, row{"git-sync", "push → link flip p99, 1 s period", r[2], "", "", "≤ period + 200 ms = " + goal, strings.TrimSpace(r[4][len(goal)+1:])})
			rows++
		}
	}
	if init := tableRows(text, "ratio git-sync / git clone"); len(init) > 0 {
		o.rows = append(o.rows, row{"git-sync", "initial sync (depth 1) vs git clone --depth 1", "", "", init[0][1] + "×", "(no goal)", "—"})
	} else {
		o.lost("git-sync", "initial sync")
	}
	if rows == 0 {
		o.lost("git-sync", "push → flip")
	}
}

func memory(o *outputs) {
	text := o.read("memory")
	if text == "" {
		return
	}
	pairs := []struct{ component, peer string }{{"https-proxy", "nginx"}, {"shard-ambassador", "nutcracker"}}
	for _, name := range []string{"https-proxy", "shard-ambassador", "topz", "config-sync", "git-sync"} {
		rs := tableRows(text, name)
		var ours []string
		for _, r := range rs {
			if len(r) >= 4 && strings.HasPrefix(r[1], "ours") {
				ours = r
			}
		}
		if ours == nil {
			o.lost("memory", name)
			continue
		}
		idle, _ := num(ours[2])
		met := "not met"
		if idle <= 15 {
			met = "met"
		}
		o.rows = append(o.rows, row{name, "idle RSS", ours[2] + " MB", "", "", "≤ 15 MB", met})
		for _, p := range pairs {
			if p.component != name {
				continue
			}
			for _, r := range rs {
				if len(r) >= 4 && strings.HasPrefix(r[1], p.peer) {
					a, _ := num(ours[3])
					b, _ := num(r[3])
					o.add(name, "peak RSS under load vs "+p.peer, fmt.Sprintf("%.1f MB", a), fmt.Sprintf("%.1f MB", b), a/b, 1.0, true)
				}
			}
		}
	}
}
