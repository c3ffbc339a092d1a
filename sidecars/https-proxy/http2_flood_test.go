package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Attacker is a raw HTTP/2 client connection over TLS, for writing frames no well-behaved client would.
type h2Attacker struct {
	conn *tls.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

func dialH2Attacker(t *testing.T, p *runningProxy) *h2Attacker {
	t.Helper()
	conn, err := tls.Dial("tcp", p.httpsAddr, &tls.Config{RootCAs: p.ca.pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if conn.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("ALPN chose %q, want h2", conn.ConnectionState().NegotiatedProtocol)
	}
	a := &h2Attacker{conn: conn, fr: http2.NewFramer(conn, conn)}
	a.enc = hpack.NewEncoder(&a.hbuf)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := a.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Read (and drop) whatever the proxy sends, acknowledging nothing: its GOAWAY or the close ends it.
	go func() {
		for {
			if _, err := a.fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	return a
}

func (a *h2Attacker) headerBlock(path string) []byte {
	a.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}} {
		a.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return append([]byte(nil), a.hbuf.Bytes()...)
}

// goodClientDuring runs a well-behaved HTTP/2 client's requests while attack runs and returns how many
// of them failed.
func goodClientDuring(t *testing.T, p *runningProxy, attack func()) (failed, total int) {
	t.Helper()
	client := p.client("2", nil)
	var stop atomic.Bool
	done := make(chan [2]int)
	go func() {
		var f, n int
		for !stop.Load() {
			n++
			resp, err := client.Get(p.url("/good"))
			if err != nil {
				f++
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "/good" {
				f++
			}
		}
		done <- [2]int{f, n}
	}()
	attack()
	stop.Store(true)
	r := <-done
	return r[0], r[1]
}

// peakHeapGrowth runs f and returns how far the heap in use rose above where it was before, sampled every
// 10 ms: the memory an attack holds, not what the collector reclaimed on the way.
func peakHeapGrowth(f func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base, peak := ms.HeapInuse, ms.HeapInuse
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
		}
	}()
	f()
	close(stop)
	<-done
	return peak - base
}

// HTTP/2 rapid reset (CVE-2023-44487): a client opens streams and resets each at once, 20,000 times. The
// proxy (net/http's HTTP/2 server) bounds the work those streams start, a well-behaved client on its own
// connection is served throughout, and the attack costs a bounded amount of memory.
func TestHTTP2RapidResetIsBounded(t *testing.T) {
	var appCalls atomic.Int64
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		appCalls.Add(1)
		io.WriteString(w, r.URL.Path)
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	const streams = 20000
	var writeErr error
	var alloc uint64
	failed, total := goodClientDuring(t, p, func() {
		alloc = peakHeapGrowth(func() {
			a := dialH2Attacker(t, p)
			defer a.conn.Close()
			block := a.headerBlock("/attack")
			for i := 0; i < streams && writeErr == nil; i++ {
				id := uint32(2*i + 1)
				if writeErr = a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); writeErr == nil {
					writeErr = a.fr.WriteRSTStream(id, http2.ErrCodeCancel)
				}
			}
			time.Sleep(200 * time.Millisecond) // what the streams started, finishes or is cancelled
		})
	})
	t.Logf("result: %d HEADERS+RST_STREAM pairs (write error after them: %v); the app saw %d of those requests; the heap grew by %d KiB at most; a good client: %d of %d requests failed",
		streams, writeErr, appCalls.Load()-int64(total), alloc>>10, failed, total)
	if failed != 0 || total == 0 {
		t.Errorf("the well-behaved client had %d of %d requests fail during the attack", failed, total)
	}
	// Memory grows with the streams in flight, not with every stream ever opened.
	if alloc > 64<<20 {
		t.Errorf("the heap grew by %d MiB during the attack", alloc>>20)
	}
}

// HTTP/2 CONTINUATION flood (CVE-2024-27316 class): one HEADERS frame without END_HEADERS, then
// CONTINUATION frames forever. The proxy stops reading at its header limit and closes the connection
// long before the attacker stops; the memory it spent is bounded by that limit.
func TestHTTP2ContinuationFloodIsCutOff(t *testing.T) {
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) }))))
	chunk := bytes.Repeat([]byte{0x40, 0x03, 'x', '-', 'a', 0x7f}, 2000) // literal headers, never ending: ~12 KB a frame
	var sent int
	var alloc uint64
	var err error
	failed, total := goodClientDuring(t, p, func() {
		alloc = peakHeapGrowth(func() {
			a := dialH2Attacker(t, p)
			defer a.conn.Close()
			a.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if err = a.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: a.headerBlock("/flood"), EndHeaders: false}); err != nil {
				return
			}
			for sent < 64<<20 { // 64 MB of header bytes, a thousand times the limit
				if err = a.fr.WriteContinuation(1, false, chunk); err != nil {
					return
				}
				sent += len(chunk)
			}
		})
	})
	t.Logf("result: the proxy cut the CONTINUATION flood off after %d KiB (%v); the heap grew by %d KiB at most; a good client: %d of %d requests failed", sent>>10, err, alloc>>10, failed, total)
	if err == nil {
		t.Errorf("the proxy read %d MB of never-ending headers without closing the connection", sent>>20)
	}
	var netErr interface{ Timeout() bool }
	if errors.As(err, &netErr) && netErr.Timeout() {
		t.Errorf("the proxy stopped reading but kept the connection open: %v", err)
	}
	if alloc > 64<<20 {
		t.Errorf("the heap grew by %d MiB during the flood", alloc>>20)
	}
	if failed != 0 || total == 0 {
		t.Errorf("the well-behaved client had %d of %d requests fail during the flood", failed, total)
	}
}
