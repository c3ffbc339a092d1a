package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/outrigger-dev/outrigger/internal/statusport"
)

// startServer serves the real mux (statusport with /topz mounted) on loopback, backed by a real sampler.
func startServer(t *testing.T, window time.Duration) *httptest.Server {
	t.Helper()
	sc, err := newScanner("/proc")
	if err != nil {
		t.Fatal(err)
	}
	collector, err := newProcessCollector("/proc")
	if err != nil {
		t.Fatal(err)
	}
	smp := newSampler(sc, window, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { smp.Run(ctx); close(done) }()
	reg := statusport.NewRegistry()
	reg.MustRegister(collector)
	srv := httptest.NewServer((&statusport.Server{Ready: smp.Ready, Registry: reg,
		Extra: map[string]http.Handler{"/topz": newTopzHandler(smp, window)}}).Handler())
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return srv
}

func get(t *testing.T, method, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestTextIsAlignedWithAHeader(t *testing.T) {
	idle := startProcess(t, nil, "sleep", "1000")
	srv := startServer(t, 20*time.Millisecond)
	resp, body := get(t, "GET", srv.URL+"/topz", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "# topz: ") || !strings.Contains(lines[0], "command lines redacted") || !strings.HasPrefix(lines[1], "# %MEM") {
		t.Fatalf("summary lines:\n%s\n%s", lines[0], lines[1])
	}
	header := lines[2]
	if f := strings.Fields(header); strings.Join(f, " ") != "PID PPID USER S %CPU RSS %MEM MEMLIMIT THR STARTED ELAPSED COMMAND" {
		t.Fatalf("header %q", header)
	}
	// Aligned: every row's command starts in the COMMAND column, and numbers end under their header.
	cmdCol, pidEnd := strings.Index(header, "COMMAND"), strings.Index(header, "PID")+3
	var sleepRow string
	for _, l := range lines[3:] {
		if len(l) < cmdCol || l[cmdCol-1] != ' ' || l[cmdCol] == ' ' || l[pidEnd-1] == ' ' || (len(l) > pidEnd && l[pidEnd] != ' ') {
			t.Errorf("row not aligned with the header:\n%s\n%.200s", header, l)
		}
		if f := strings.Fields(l); f[0] == strconv.Itoa(idle.Process.Pid) {
			sleepRow = l
		}
	}
	if sleepRow == "" || sleepRow[cmdCol:] != strings.Join(idle.Args, " ") {
		t.Errorf("want the sleep (PID %d) with its command in the COMMAND column:\n%s\n%s", idle.Process.Pid, header, sleepRow)
	}
}

func TestJSONIsValidAndTyped(t *testing.T) {
	secret := startProcess(t, []string{"TOPZ_TEST_MODE=sleep"}, os.Args[0], secretArgs...)
	srv := startServer(t, 20*time.Millisecond)
	resp, body := get(t, "GET", srv.URL+"/topz?format=json&sort=pid", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Strictly typed: the document decodes into the declared types with no unknown field.
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	var doc jsonTable
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("decoding: %v\n%s", err, body)
	}
	if doc.Total != len(doc.Processes) || doc.Total < 3 || doc.CPUs < 1 || doc.WindowSeconds <= 0 || !doc.Redacted || doc.Sort != "pid" {
		t.Fatalf("document facts: %+v", doc)
	}
	for i := 1; i < len(doc.Processes); i++ {
		if doc.Processes[i-1].PID >= doc.Processes[i].PID {
			t.Fatalf("sort=pid: %d before %d", doc.Processes[i-1].PID, doc.Processes[i].PID)
		}
	}
	// And numbers are JSON numbers, not strings.
	var raw struct{ Processes []map[string]any }
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"pid", "ppid", "uid", "threads", "cpuPercent", "cpuSeconds", "rssBytes", "memPercent", "memLimitBytes", "uptimeSeconds"} {
		if _, ok := raw.Processes[0][field].(float64); !ok {
			t.Errorf("%s is %T, want a number", field, raw.Processes[0][field])
		}
	}
	var row *Row
	for i := range doc.Processes {
		if doc.Processes[i].PID == secret.Process.Pid {
			row = &doc.Processes[i]
		}
	}
	if row == nil {
		t.Fatalf("helper PID %d missing", secret.Process.Pid)
	}
	if row.Args[0] != os.Args[0] || len(row.Args) != len(secretArgs)+1 || row.Args[1] != "--password=<redacted>" || row.RSSBytes == 0 || row.MemLimitBytes == 0 || row.StartTime.IsZero() {
		t.Errorf("helper row: %+v", row)
	}
	for _, s := range secrets {
		if strings.Contains(row.Command+strings.Join(row.Args, " "), s) {
			t.Errorf("JSON shows secret %q", s)
		}
	}
}

func TestHTMLRendersEscaped(t *testing.T) {
	secret := startProcess(t, []string{"TOPZ_TEST_MODE=sleep"}, os.Args[0], secretArgs...)
	srv := startServer(t, 20*time.Millisecond)
	resp, body := get(t, "GET", srv.URL+"/topz?sort=pid", map[string]string{"Accept": "text/html,application/xhtml+xml;q=0.9"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || resp.Header.Get("Content-Security-Policy") != "default-src 'none'; style-src 'unsafe-inline'" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var scripts, refresh int
	var cells []string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script":
				scripts++
			case "meta":
				for _, a := range n.Attr {
					if a.Key == "http-equiv" && a.Val == "refresh" {
						refresh++
					}
				}
			case "td":
				var b bytes.Buffer
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					html.Render(&b, c)
				}
				cells = append(cells, html.UnescapeString(b.String()))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if scripts != 0 || refresh != 1 {
		t.Fatalf("%d <script> elements (want 0: the helper's argument must be text), %d refresh metas", scripts, refresh)
	}
	want := strings.Join(redactArgs(append([]string{os.Args[0]}, secretArgs...)), " ")
	var row []string
	for i := 0; i+12 <= len(cells); i += 12 {
		if cells[i] == strconv.Itoa(secret.Process.Pid) {
			row = cells[i : i+12]
		}
	}
	if len(cells)%12 != 0 || row == nil || row[11] != want {
		t.Errorf("%d cells; the helper's (PID %d) row %q, want the COMMAND cell to read %q", len(cells), secret.Process.Pid, row, want)
	}
	// On the wire the argument is escaped text (other processes on a shared machine may show anything, so
	// only the helper's row is checked for secrets, above).
	if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the helper's <script> argument is not escaped on the wire")
	}
}

func TestQueryErrorsName(t *testing.T) {
	srv := startServer(t, 20*time.Millisecond)
	for query, wants := range map[string][]string{
		"sort=name":                {`sort="name"`, "cpu, mem, pid"},
		"limit=abc":                {`limit="abc"`, "from 1 to"},
		"limit=0":                  {`limit="0"`},
		"format=xml":               {`format="xml"`, "text, json, html"},
		"verbose=1":                {`"verbose"`, "format, sort and limit"},
		"sort=x&limit=-1&format=y": {`sort="x"`, `limit="-1"`, `format="y"`},
	} {
		resp, body := get(t, "GET", srv.URL+"/topz?"+query, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("?%s: status %d, want 400", query, resp.StatusCode)
		}
		for _, w := range wants {
			if !strings.Contains(body, w) {
				t.Errorf("?%s: body %q lacks %q", query, body, w)
			}
		}
	}
}

func TestReadOnly(t *testing.T) {
	srv := startServer(t, 20*time.Millisecond)
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		resp, _ := get(t, m, srv.URL+"/topz", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d Allow %q, want 405 and GET, HEAD", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	resp, body := get(t, "HEAD", srv.URL+"/topz?format=json", nil)
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("HEAD: status %d, %d body bytes, Content-Type %q", resp.StatusCode, len(body), resp.Header.Get("Content-Type"))
	}
}

func TestSortAndLimit(t *testing.T) {
	startProcess(t, nil, "sh", "-c", "while :; do :; done")
	srv := startServer(t, 100*time.Millisecond)
	for _, by := range sortOrders {
		_, body := get(t, "GET", srv.URL+"/topz?format=json&limit=3&sort="+by, nil)
		var doc jsonTable
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Processes) != 3 || doc.Total <= 3 {
			t.Fatalf("sort=%s limit=3: %d rows of %d", by, len(doc.Processes), doc.Total)
		}
		for i := 1; i < 3; i++ {
			a, b := doc.Processes[i-1], doc.Processes[i]
			if (by == "cpu" && a.CPUPercent < b.CPUPercent) || (by == "mem" && a.MemPercent < b.MemPercent) || (by == "pid" && a.PID > b.PID) {
				t.Errorf("sort=%s: %+v before %+v", by, a, b)
			}
		}
	}
}

func TestHealthzAndMetricsOnTheSamePort(t *testing.T) {
	startProcess(t, nil, "sleep", "1000")
	srv := startServer(t, 20*time.Millisecond)
	if resp, body := get(t, "GET", srv.URL+"/healthz", nil); resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", resp.StatusCode, body)
	}
	_, body := get(t, "GET", srv.URL+"/metrics", nil)
	for _, want := range []string{`topz_process_cpu_seconds_total{command="`, `topz_process_resident_memory_bytes{command="`, `topz_unreadable_processes 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The command label is capped; every process is still counted (the sleep above, this test...).
	labels, processes := 0, 0
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, `topz_processes{command="`); ok {
			_, count, _ := strings.Cut(v, "} ")
			n, _ := strconv.Atoi(count)
			labels, processes = labels+1, processes+n
		}
	}
	if labels == 0 || labels > maxCommandLabels || processes < 2 {
		t.Errorf("/metrics: %d command labels (want 1 to %d) counting %d processes", labels, maxCommandLabels, processes)
	}
}
