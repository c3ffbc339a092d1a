package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTP1HostileHeads: heads built to confuse or exhaust the proxy. Each is refused before it reaches
// the app, with the status net/http's own server gives and a closed connection, or normalized the way
// net/http normalizes it; what the proxy allocated for each is the figure it held.
func TestHTTP1HostileHeads(t *testing.T) {
	ca := newPKI(t, "test CA")
	app := startRawApp(t, describeRequest)
	p := startProxy(t, ca, testConfig(t, ca, app.port(t)))
	var manyHeaders, tinyHeaders strings.Builder
	for i := range 10_000 {
		fmt.Fprintf(&manyHeaders, "X-Header-%05d: value\r\n", i)
		fmt.Fprintf(&tinyHeaders, "A%d:\r\n", i%10) // 10,000 headers in 50 KB: within the 64 KiB bound
	}
	for _, tc := range []struct {
		name, request string
		status        int // 200: answered (normalized)
	}{
		{"obs-fold (a header continued on the next line)", "GET /fold HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n folded\r\n\r\n", 200},
		{"bare LF line endings", "GET /bare-lf HTTP/1.1\nHost: localhost\nX-A: 1\n\n", 200},
		{"a 1 MB header line", "GET /big HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("x", 1<<20) + "\r\n\r\n", 431},
		{"10,000 headers in 270 KB", "GET /many HTTP/1.1\r\nHost: localhost\r\n" + manyHeaders.String() + "\r\n", 431},
		{"10,000 headers in 50 KB", "GET /tiny HTTP/1.1\r\nHost: localhost\r\n" + tinyHeaders.String() + "\r\n", 200},
		{"a NUL in a header value", "GET /nul HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n", 400},
		{"a bare CR in a header value", "GET /cr HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, headsBefore, _ := app.seen()
			var status int
			allocated := allocatedDuring(func() {
				c := dialH1(t, p)
				go io.WriteString(c.conn, tc.request) // the proxy may refuse before it has read it all
				resp, err := c.next("GET")
				if err != nil {
					t.Fatalf("no response: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
				if status != 200 {
					c.expectClosed("refusing a hostile head")
				}
			})
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			_, heads, _ := app.seen()
			reached := heads[len(headsBefore):]
			switch {
			case tc.status != 200 && len(reached) > 0:
				t.Errorf("the refused head reached the app:\n%.300s", reached[0])
			case tc.status == 200 && len(reached) != 1:
				t.Errorf("the app saw %d heads, want 1", len(reached))
			case tc.status == 200 && strings.Contains(strings.ReplaceAll(reached[0], "\r\n", ""), "\n"):
				t.Errorf("the app got a head with bare LFs: %q", reached[0])
			case tc.status == 200 && (strings.Contains(reached[0], "\n ") || strings.Contains(reached[0], "\n\t")):
				t.Errorf("the app got a folded header line: %q", reached[0])
			case strings.Contains(tc.name, "obs-fold") && !strings.Contains(reached[0], "X-A: 1 folded\r\n"):
				t.Errorf("the folded header did not reach the app as net/http reads it, one line %q: %q", "X-A: 1 folded", reached[0])
			}
			t.Logf("result: %d bytes sent, answered %d, %d KiB allocated (proxy and test client together)", len(tc.request), status, allocated>>10)
		})
	}
}

// allocatedDuring is how many bytes the process allocated while f ran.
func allocatedDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHTTP1SlowlorisIsCutOffAndOthersAreServed: 200 connections each send a request head one header line
// every 100 ms and never finish it. The proxy closes each once readHeaderTimeout has passed since its
// head began (shortened to 1 s here; 10 s in the binary), and a well-behaved client is served all along.
func TestHTTP1SlowlorisIsCutOffAndOthersAreServed(t *testing.T) {
	defer func(d time.Duration) { readHeaderTimeout = d }(readHeaderTimeout)
	readHeaderTimeout = time.Second
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, pathApp)))

	const slow = 200
	var closed atomic.Int64
	var longest atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for range slow {
		wg.Go(func() {
			c := dialH1(t, p)
			start := time.Now()
			if _, err := io.WriteString(c.conn, "GET /slow HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
				return
			}
			go func() {
				buf := make([]byte, 1)
				for {
					if _, err := c.conn.Read(buf); err != nil {
						if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
							closed.Add(1)
							if d := int64(time.Since(start)); d > longest.Load() {
								longest.Store(d)
							}
						}
						return
					}
				}
			}()
			for i := 0; time.Since(start) < 5*time.Second; i++ {
				if _, err := fmt.Fprintf(c.conn, "X-Slow-%d: 1\r\n", i); err != nil {
					return // closed by the proxy
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	client := p.client("1.1", nil)
	var good, bad int
	for time.Since(began) < 3*time.Second {
		resp, err := client.Get(p.url("/good"))
		if err != nil || resp.StatusCode != 200 {
			bad++
		} else {
			good++
		}
		if resp != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if n := closed.Load(); n != slow {
		t.Errorf("the proxy closed %d of the %d slow connections within 5 s; want all, after readHeaderTimeout", n, slow)
	}
	if bad > 0 || good == 0 {
		t.Errorf("the well-behaved client: %d requests answered, %d failed", good, bad)
	}
	t.Logf("result: %d slowloris connections all closed by the proxy (the last %s after its head began, readHeaderTimeout %s); the good client: %d answered, %d failed",
		slow, time.Duration(longest.Load()).Round(10*time.Millisecond), readHeaderTimeout, good, bad)
}
