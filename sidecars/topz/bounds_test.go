package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/statusport"
)

// TestALongCommandLineIsCutToABound: a real process with a 200 KB command line (the kernel allows about
// 2 MiB) shows in /topz with its first maxCommandLine bytes and how much was left out, in the JSON and in
// the text view; a secret before the cut is still redacted.
func TestALongCommandLineIsCutToABound(t *testing.T) {
	// Five arguments of 40,000 bytes (one may not pass 128 KiB), of two-byte runes: the cut must keep UTF-8
	// whole.
	long := strings.Repeat("é", 20_000)
	args := []string{"--password=hunter2", long, long, long, long, long, "--after"}
	p := startProcess(t, []string{"TOPZ_TEST_MODE=sleep"}, os.Args[0], args...)
	srv := startServer(t, 50*time.Millisecond)
	_, body := get(t, "GET", srv.URL+"/topz?format=json", nil)
	var table struct {
		Processes []Row `json:"processes"`
	}
	if err := json.Unmarshal([]byte(body), &table); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	var row *Row
	for i := range table.Processes {
		if table.Processes[i].PID == p.Process.Pid {
			row = &table.Processes[i]
		}
	}
	if row == nil {
		t.Fatalf("PID %d is not in /topz", p.Process.Pid)
	}
	shown := strings.Join(row.Args, " ")
	full := len(strings.Join(redactArgs(append([]string{os.Args[0]}, args...)), " ")) // as redacted, before the cut
	if len(shown) > maxCommandLine || !strings.HasPrefix(long, row.Args[len(row.Args)-1]) || strings.Contains(shown, "hunter2") {
		t.Fatalf("args of %d bytes (want at most %d, a prefix of the long argument, the password redacted): %.120q", len(shown), maxCommandLine, shown)
	}
	if row.ArgsTruncatedBytes != full-len(shown) {
		t.Errorf("argsTruncatedBytes %d, want %d (the %d-byte redacted command line less the %d shown)", row.ArgsTruncatedBytes, full-len(shown), full, len(shown))
	}
	if !strings.HasSuffix(row.Command, fmt.Sprintf("…[%d bytes more]", row.ArgsTruncatedBytes)) {
		t.Errorf("the command does not say it was cut: ...%q", row.Command[max(0, len(row.Command)-60):])
	}
	_, text := get(t, "GET", srv.URL+"/topz", nil)
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "hunter2") || len(line) > maxCommandLine+200 {
			t.Errorf("a text row of %d bytes, or with the password: %.100q", len(line), line)
		}
	}
	t.Logf("result: a %d-byte command line shown as %d bytes, %d left out, marked; the /topz JSON answer is %d bytes", full, len(shown), row.ArgsTruncatedBytes, len(body))
}

// blockingTables hands out a table only when released: requests pile up inside the handler.
type blockingTables struct {
	release chan struct{}
	entered atomic.Int64
}

func (b *blockingTables) Table(ctx context.Context) (*Table, error) {
	b.entered.Add(1)
	select {
	case <-b.release:
		return &Table{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestRequestsBeyondTheBoundAreRefusedAtOnce: with maxRendering answers in the making, one more request
// gets 429 with Retry-After at once, counted in /metrics, and the ones in progress still get their table.
func TestRequestsBeyondTheBoundAreRefusedAtOnce(t *testing.T) {
	tables := &blockingTables{release: make(chan struct{})}
	h := newTopzHandler(tables, time.Second)
	reg := statusport.NewRegistry()
	reg.MustRegister(refusedCounter(h))
	srv := httptest.NewServer((&statusport.Server{Ready: func() error { return nil }, Registry: reg,
		Extra: map[string]http.Handler{"/topz": h}}).Handler())
	defer srv.Close()

	var wg sync.WaitGroup
	codes := make(chan int, maxRendering)
	for range maxRendering {
		wg.Go(func() {
			resp, err := http.Get(srv.URL + "/topz")
			if err == nil {
				resp.Body.Close()
				codes <- resp.StatusCode
			}
		})
	}
	for tables.entered.Load() < maxRendering {
		time.Sleep(time.Millisecond)
	}
	const extra = 3
	for range extra {
		resp, body := get(t, "GET", srv.URL+"/topz", nil)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "too many /topz requests") {
			t.Errorf("a request past the bound: %s, Retry-After %q, %q; want 429 with Retry-After 1", resp.Status, resp.Header.Get("Retry-After"), body)
		}
	}
	close(tables.release)
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusOK {
			t.Errorf("a request within the bound got %d", code)
		}
	}
	if _, metrics := get(t, "GET", srv.URL+"/metrics", nil); !strings.Contains(metrics, fmt.Sprintf("topz_requests_refused_total %d", extra)) {
		t.Errorf("/metrics does not count the %d refusals", extra)
	}
}

// TestAFloodOfRequestsScansOncePerWindow: 32 clients asking /topz in a loop for 2 s, against the real
// sampler and /proc. Each answer is 200 or 429, none fails; the scans of /proc stay at one per window
// (they are shared by all requests), so the cost a flood adds is bounded by maxRendering renderings.
func TestAFloodOfRequestsScansOncePerWindow(t *testing.T) {
	const window = 100 * time.Millisecond
	sc, err := newScanner("/proc")
	if err != nil {
		t.Fatal(err)
	}
	smp := newSampler(sc, window, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { smp.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	srv := httptest.NewServer(newTopzHandler(smp, window))
	defer srv.Close()

	began := time.Now()
	var ok, refused, failed atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	for range 32 {
		wg.Go(func() {
			for time.Since(began) < 2*time.Second {
				resp, err := client.Get(srv.URL)
				if err != nil {
					failed.Add(1)
					continue
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				default:
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	smp.mu.Lock()
	scans := smp.scans
	smp.mu.Unlock()
	if failed.Load() > 0 || ok.Load() == 0 {
		t.Fatalf("%d answered, %d refused, %d failed: want every request answered 200 or 429", ok.Load(), refused.Load(), failed.Load())
	}
	if limit := int(elapsed/window) + 2; scans > limit {
		t.Errorf("%d scans of /proc in %s: more than one per %s window (%d)", scans, elapsed.Round(time.Millisecond), window, limit)
	}
	t.Logf("result: 32 clients for %s: %d answered, %d refused with 429, 0 failed; %d scans of /proc (one per %s window)",
		elapsed.Round(time.Millisecond), ok.Load(), refused.Load(), scans, window)
}
