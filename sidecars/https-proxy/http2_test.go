package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// HTTP/2 requests go through the same exchange as HTTP/1.x (http2.go); these are the behaviours that the
// HTTP/1.x tests prove on raw connections, seen from a real HTTP/2 client (Go's).

// TestHTTP2UpstreamDownIs502: the same 502 and body as over HTTP/1.1, counted once.
func TestHTTP2UpstreamDownIs502(t *testing.T) {
	ca := newPKI(t, "test CA")
	down := freePort(t)
	p := startProxy(t, ca, testConfig(t, ca, down))
	resp, err := p.client("2", nil).Get(p.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusBadGateway ||
		!strings.Contains(string(body), "could not get a response from the app at 127.0.0.1:"+strconv.Itoa(down)) {
		t.Errorf("got %s %d %q, want HTTP/2 502 naming the app's address", resp.Proto, resp.StatusCode, body)
	}
	if n := p.metric(`https_proxy_requests_total{code="502"}`); n != 1 {
		t.Errorf(`https_proxy_requests_total{code="502"} = %v, want 1`, n)
	}
	if n := p.metric("https_proxy_upstream_errors_total"); n != 1 {
		t.Errorf("https_proxy_upstream_errors_total = %v, want 1", n)
	}
}

// TestHTTP2ExpectContinue: a client that sends Expect: 100-continue gets its answer either way. Over
// HTTP/2, net/http's server answers Expect itself (it removes the header and sends 100 Continue when the
// body is first read), so unlike over HTTP/1.1 the app is not asked and the body is sent: an app that
// refuses it still gets its 413 to the client.
func TestHTTP2ExpectContinue(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d", len(body))
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	client := p.client("2", nil)
	client.Transport.(*http.Transport).ExpectContinueTimeout = 10 * time.Second
	for _, tc := range []struct{ path, want string }{{"/refuse", "413 too large\n"}, {"/take", "200 100000"}} {
		t.Run(tc.path, func(t *testing.T) {
			req, _ := http.NewRequest("POST", p.url(tc.path), bytes.NewReader(make([]byte, 100000)))
			req.Header.Set("Expect", "100-continue")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if s := fmt.Sprintf("%d %s", resp.StatusCode, got); resp.ProtoMajor != 2 || s != tc.want {
				t.Errorf("got %q over %s, want %q over HTTP/2", s, resp.Proto, tc.want)
			}
		})
	}
}

// TestHTTP2StaleUpstreamKeepAlive: as over HTTP/1.1 (TestHTTP1StaleUpstreamKeepAlive), an app that closes
// each kept-alive connection when the next request arrives on it costs the client nothing: the proxy
// sends those idempotent requests again on a fresh connection.
func TestHTTP2StaleUpstreamKeepAlive(t *testing.T) {
	app := closesReusedConnections(t)
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, app.port(t)))
	client := p.client("2", nil)
	for i := range 30 {
		path := "/n/" + strconv.Itoa(i)
		resp, err := client.Get(p.url(path))
		if err != nil {
			t.Fatalf("request %d of 30: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != path {
			t.Fatalf("request %d of 30: %d %q, want 200 %q", i+1, resp.StatusCode, body, path)
		}
	}
}

// TestHTTP2AppDiesMidResponse: an answer the app cuts short resets the client's stream (its read fails),
// instead of ending like a complete one; the connection goes on serving.
func TestHTTP2AppDiesMidResponse(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			io.WriteString(w, "ok")
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		partial := "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789"
		if r.URL.Path == "/chunked" {
			partial = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"
		}
		io.WriteString(conn, partial)
		time.Sleep(10 * time.Millisecond)
		conn.Close()
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	client := p.client("2", nil)
	for _, path := range []string{"/length", "/chunked"} {
		t.Run(path, func(t *testing.T) {
			resp, err := client.Get(p.url(path))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("got a complete %d response of %d bytes %q from an app that died mid-body", resp.StatusCode, len(body), body)
			}
			resp, err = client.Get(p.url("/ok"))
			if err != nil {
				t.Fatalf("the next request: %v", err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != "ok" {
				t.Errorf("the next request got %q", got)
			}
		})
	}
}

// TestHTTP2ClientCancelStopsTheApp: when the client resets its stream, during an endless download or
// while the app has not answered yet (a long poll), the app's request ends (its connection is closed);
// the client's connection goes on.
func TestHTTP2ClientCancelStopsTheApp(t *testing.T) {
	var stopped, silent atomic.Int64
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			time.Sleep(50 * time.Millisecond) // so that concurrent requests need connections of their own
			io.WriteString(w, "ok")
		case "/endless":
			defer stopped.Add(1)
			chunk := make([]byte, 16<<10)
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		case "/silent":
			silent.Add(1)
			select {
			case <-r.Context().Done():
				stopped.Add(1)
			case <-time.After(time.Minute):
			}
		}
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	client := p.client("2", nil)

	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url("/endless"), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 256<<10)); err != nil {
		t.Fatalf("reading the first 256 KiB: %v", err)
	}
	cancel()
	resp.Body.Close()
	eventually(t, "the app's download to end after the client reset its stream", func() bool { return stopped.Load() == 1 })

	// Idle app connections in the pool, which a cancelled request must not be retried on.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if resp, err := client.Get(p.url("/ok")); err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, "GET", p.url("/silent"), nil)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the long poll answered %d", resp.StatusCode)
	}
	eventually(t, "the app's long poll to end after the client reset its stream", func() bool { return stopped.Load() == 2 })
	time.Sleep(100 * time.Millisecond) // a retry, if there were one, would have reached the app by now
	if n := silent.Load(); n != 1 {
		t.Errorf("the app got the cancelled long poll %d times, want once", n)
	}

	if resp, err := client.Get(p.url("/ok")); err != nil {
		t.Errorf("the next request on the connection: %v", err)
	} else {
		resp.Body.Close()
	}
}

// TestHTTP2UploadOfUnknownLengthWithTrailers: a body sent without a length reaches the app whole, chunked,
// with the client's trailer after it.
func TestHTTP2UploadOfUnknownLengthWithTrailers(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %v %s", len(body), r.TransferEncoding, r.Trailer.Get("X-Sum"))
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("PUT", p.url("/upload"), pr)
	req.Trailer = http.Header{"X-Sum": nil}
	go func() {
		for range 64 {
			pw.Write(make([]byte, 4096))
		}
		req.Trailer.Set("X-Sum", "abc123")
		pw.Close()
	}()
	resp, err := p.client("2", nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "262144 [chunked] abc123"; resp.ProtoMajor != 2 || string(got) != want {
		t.Errorf("the app saw %q over %s, want %q", got, resp.Proto, want)
	}
}
