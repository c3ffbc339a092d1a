package main

// Connections: keep-alive and pipelining from clients, HTTP/1.0, reuse of the app's connections, and what
// the proxy does when the app closes or dies and when the client leaves.

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTP1KeepAliveReusesUpstreamConnections: 100 requests on one client connection all succeed, and the
// proxy reuses its connections to the app instead of opening one per request.
func TestHTTP1KeepAliveReusesUpstreamConnections(t *testing.T) {
	port, appConns := countingUpstream(t, pathApp)
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, port))
	c := dialH1(t, p)
	for i := range 100 {
		path := "/req/" + strconv.Itoa(i)
		if got := c.get(path); got != path {
			t.Fatalf("request %d: body %q, want %q", i, got, path)
		}
	}
	if n := appConns.Load(); n >= 10 {
		t.Errorf("the app accepted %d connections for 100 keep-alive requests, want a few reused ones", n)
	}
}

// TestHTTP1Pipelining: requests written at once on one connection are answered in order, bodies included,
// even when the first takes longest.
func TestHTTP1Pipelining(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			time.Sleep(50 * time.Millisecond) // a proxy answering out of order would answer the next ones first
		case "/echo-body":
			io.Copy(w, r.Body)
			return
		}
		io.WriteString(w, r.URL.Path)
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	c := dialH1(t, p)
	c.send(getRequest("/slow") +
		"POST /echo-body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello" +
		getRequest("/three"))
	for i, want := range []string{"/slow", "hello", "/three"} {
		resp, body := c.response([]string{"GET", "POST", "GET"}[i])
		if resp.StatusCode != 200 || body != want {
			t.Errorf("pipelined response %d: %d %q, want 200 %q", i+1, resp.StatusCode, body, want)
		}
	}
	c.get("/after")
}

// TestHTTP1HTTP10Clients: an HTTP/1.0 request without Host is answered and its connection closed; with
// Connection: keep-alive the connection serves a second request; a response of unknown length reaches an
// HTTP/1.0 client unchunked, delimited by the end of the connection.
func TestHTTP1HTTP10Clients(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
			return
		}
		io.WriteString(w, r.URL.Path)
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))

	t.Run("no keep-alive", func(t *testing.T) {
		c := dialH1(t, p)
		c.send("GET /ten HTTP/1.0\r\n\r\n")
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != "/ten" {
			t.Fatalf("HTTP/1.0 GET: %d %q, want 200 \"/ten\"", resp.StatusCode, body)
		}
		c.expectClosed("an HTTP/1.0 response without keep-alive")
	})
	t.Run("keep-alive", func(t *testing.T) {
		c := dialH1(t, p)
		for _, path := range []string{"/a", "/b"} {
			c.send("GET " + path + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			resp, body := c.response("GET")
			if resp.StatusCode != 200 || body != path {
				t.Fatalf("HTTP/1.0 keep-alive GET %s: %d %q", path, resp.StatusCode, body)
			}
			if resp.Close {
				t.Fatalf("HTTP/1.0 keep-alive GET %s: the response does not keep the connection alive (headers %v)", path, resp.Header)
			}
		}
	})
	t.Run("unknown length", func(t *testing.T) {
		c := dialH1(t, p)
		c.send("GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != "part0;part1;part2;" {
			t.Fatalf("HTTP/1.0 GET of a streamed body: %d %q", resp.StatusCode, body)
		}
		if len(resp.TransferEncoding) > 0 {
			t.Errorf("an HTTP/1.0 client got Transfer-Encoding %v, which HTTP/1.0 does not have", resp.TransferEncoding)
		}
		c.expectClosed("a response of unknown length to HTTP/1.0")
	})
}

// TestHTTP1ConnectionCloseFromClient: a request with Connection: close gets a response saying so, then the
// proxy closes the connection.
func TestHTTP1ConnectionCloseFromClient(t *testing.T) {
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, pathApp)))
	c := dialH1(t, p)
	c.get("/first")
	c.send("GET /last HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || body != "/last" {
		t.Fatalf("GET with Connection: close: %d %q", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Errorf("the response lacks Connection: close (headers %v)", resp.Header)
	}
	c.expectClosed("a response to Connection: close")
}

// TestHTTP1StaleUpstreamKeepAlive: the app answers with keep-alive but closes each connection when the next
// request arrives on it (its idle time-out fired as the request came), half the time with a FIN, half with a
// reset. The reused connection fails before any response; the proxy retries these idempotent requests on a
// fresh connection, as net/http's Transport does, so the client sees every one succeed.
func TestHTTP1StaleUpstreamKeepAlive(t *testing.T) {
	app := closesReusedConnections(t)
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, app.port(t)))
	c := dialH1(t, p)
	for i := range 50 {
		path := "/n/" + strconv.Itoa(i)
		c.send(getRequest(path))
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != path {
			t.Fatalf("request %d of 50: %d %q, want 200 %q", i+1, resp.StatusCode, body, path)
		}
	}
	requests, _, accepted := app.seen()
	t.Logf("the app accepted %d connections and read %d requests for 50", accepted, len(requests))
}

// TestHTTP1AppClosesItsConnection: an app answering Connection: close does not end the client's
// connection; the proxy opens a new one to the app for the next request.
func TestHTTP1AppClosesItsConnection(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, r.URL.Path)
	})
	port, appConns := countingUpstream(t, app)
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, port))
	c := dialH1(t, p)
	for i := range 5 {
		path := "/close/" + strconv.Itoa(i)
		c.send(getRequest(path))
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || body != path {
			t.Fatalf("request %d: %d %q, want 200 %q", i+1, resp.StatusCode, body, path)
		}
		if resp.Close {
			t.Fatalf("request %d: the app's Connection: close reached the client", i+1)
		}
	}
	if n := appConns.Load(); n != 5 {
		t.Errorf("the app accepted %d connections for 5 requests it closed, want 5", n)
	}
}

// TestHTTP1AppDiesMidResponse: a response the app cuts short is not passed off as complete: the client's
// read fails (or it gets a 502); the next connection works.
func TestHTTP1AppDiesMidResponse(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var partial string
		switch r.URL.Path {
		case "/length":
			partial = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789"
		case "/chunked":
			partial = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"
		default:
			io.WriteString(w, "ok")
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		io.WriteString(conn, partial)
		time.Sleep(10 * time.Millisecond) // lets the proxy pass the start on before the end of the connection
		conn.Close()
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	for _, path := range []string{"/length", "/chunked"} {
		t.Run(path, func(t *testing.T) {
			c := dialH1(t, p)
			c.send(getRequest(path))
			resp, err := c.next("GET")
			if err != nil {
				t.Logf("the proxy closed the connection without a response: %v", err)
			} else {
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusBadGateway:
				case err == nil:
					t.Errorf("got a complete %d response of %d bytes %q from an app that died mid-body", resp.StatusCode, len(body), body)
				default:
					t.Logf("status %d, %d body bytes, then %v", resp.StatusCode, len(body), err)
				}
			}
			if got := dialH1(t, p).get("/ok"); got != "ok" {
				t.Errorf("the next connection got %q", got)
			}
		})
	}
}

// TestHTTP1ClientDisconnectStopsTheApp: when the client goes away during an endless download, the app's
// request is cancelled (its context ends or its writes fail).
func TestHTTP1ClientDisconnectStopsTheApp(t *testing.T) {
	var stopped atomic.Bool
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer stopped.Store(true)
		chunk := make([]byte, 16<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	c := dialH1(t, p)
	c.send(getRequest("/endless"))
	resp, err := c.next("GET")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 256<<10)); err != nil {
		t.Fatalf("reading the first 256 KiB: %v", err)
	}
	c.conn.Close()
	eventually(t, "the app's request to end after the client disconnected", stopped.Load)
}

// TestHTTP1RequestsMetric: https_proxy_requests_total counts HTTP/1.1 requests by the app's status code.
func TestHTTP1RequestsMetric(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "ok")
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	c := dialH1(t, p)
	for _, path := range []string{"/ok", "/missing", "/ok", "/missing", "/ok"} {
		c.send(getRequest(path))
		c.response("GET")
	}
	for code, want := range map[string]float64{"200": 3, "404": 2} {
		sample := `https_proxy_requests_total{code="` + code + `"}`
		eventually(t, sample+" to count the requests", func() bool { return p.metric(sample) >= want })
		if got := p.metric(sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
}
