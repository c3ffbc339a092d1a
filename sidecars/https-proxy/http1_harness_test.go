package main

// HTTP/1.x on the wire: what a client of an HTTP/1.1 reverse proxy expects from it, written as raw bytes over
// TLS. These tests describe behaviour, not the implementation: they must hold for net/http's server and for
// a hand-written connection loop alike. This file holds their harness: a client that writes HTTP/1.x by
// hand, and apps that count connections or answer with raw bytes. The tests are by concern:
// http1_connections_test.go (keep-alive, pipelining, HTTP/1.0, upstream reuse and failures),
// http1_bodies_test.go (framing of bodies and of responses without one), http1_framing_test.go (request
// smuggling defences, hop-by-hop headers, the request target) and http1_shutdown_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// h1Conn is one client TLS connection to the proxy that speaks HTTP/1.x written by hand.
type h1Conn struct {
	t    testing.TB
	conn *tls.Conn
	br   *bufio.Reader
}

// dialH1 opens a TLS connection to the proxy with ALPN http/1.1, closed at the test's end.
func dialH1(t testing.TB, p *runningProxy) *h1Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", p.httpsAddr, &tls.Config{RootCAs: p.ca.pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("TLS handshake with the proxy: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if proto := conn.ConnectionState().NegotiatedProtocol; proto != "http/1.1" {
		t.Fatalf("ALPN chose %q, want http/1.1", proto)
	}
	// A safety net so that a proxy that never answers fails the test instead of hanging it (not a timing assertion).
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return &h1Conn{t: t, conn: conn, br: bufio.NewReader(conn)}
}

func (c *h1Conn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("writing %.60q: %v", s, err)
	}
}

// next reads the next response (a 1xx too) to a request with this method, without its body.
func (c *h1Conn) next(method string) (*http.Response, error) {
	return http.ReadResponse(c.br, &http.Request{Method: method})
}

// response reads the next response to a request with this method and its whole body.
func (c *h1Conn) response(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := c.next(method)
	if err != nil {
		c.t.Fatalf("reading the response to a %s: %v", method, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.t.Fatalf("reading the body of a %d response to a %s: %v", resp.StatusCode, method, err)
	}
	return resp, string(body)
}

// get sends a GET for path and returns the 200 response's body.
func (c *h1Conn) get(path string) string {
	c.t.Helper()
	c.send(getRequest(path))
	resp, body := c.response("GET")
	if resp.StatusCode != 200 {
		c.t.Fatalf("GET %s: status %d (%q), want 200", path, resp.StatusCode, body)
	}
	return body
}

// expectClosed fails unless the proxy closes the connection: the next read ends (EOF or reset) instead of
// bringing bytes. The deadline only bounds the wait for a connection wrongly left open.
func (c *h1Conn) expectClosed(after string) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := c.br.ReadByte()
	if err == nil {
		c.t.Fatalf("after %s: got %q, want the proxy to close the connection", after, b)
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		c.t.Fatalf("after %s: the proxy left the connection open, want it closed", after)
	}
}

func getRequest(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n"
}

// pathApp answers every request with its path.
var pathApp = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })

// countingUpstream is upstream() that also counts the connections the app accepted.
func countingUpstream(t testing.TB, h http.Handler) (port int, conns *atomic.Int64) {
	conns = new(atomic.Int64)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return portOf(t, srv.Listener.Addr().String()), conns
}

// rawApp is an app on 127.0.0.1 served by hand with http.ReadRequest, for what httptest cannot do: show the
// exact header bytes the proxy sent, and misbehave on purpose. serve answers the nth request (from 0) of a
// connection, its body read, by writing raw bytes to conn; it returns false to close the connection.
type rawApp struct {
	ln    net.Listener
	serve func(conn net.Conn, nth int, req *http.Request, body []byte) (keepOpen bool)
	wg    sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	open     map[net.Conn]bool
	accepted int
	requests []string // "METHOD request-target body-length", in order
	heads    []string // each request's header block exactly as received
}

func startRawApp(t testing.TB, serve func(conn net.Conn, nth int, req *http.Request, body []byte) bool) *rawApp {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &rawApp{ln: ln, serve: serve, open: map[net.Conn]bool{}}
	a.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			a.mu.Lock()
			if a.closed {
				a.mu.Unlock()
				conn.Close()
				return
			}
			a.accepted++
			a.open[conn] = true
			a.mu.Unlock()
			a.wg.Go(func() { a.handle(conn) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		a.mu.Lock()
		a.closed = true
		for conn := range a.open {
			conn.Close()
		}
		a.mu.Unlock()
		a.wg.Wait()
	})
	return a
}

func (a *rawApp) port(t testing.TB) int { return portOf(t, a.ln.Addr().String()) }

// countingReader counts the bytes read through it.
type countingReader struct {
	r   io.Reader
	buf bytes.Buffer
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.buf.Write(p[:n])
	return n, err
}

func (a *rawApp) handle(conn net.Conn) {
	defer func() {
		conn.Close()
		a.mu.Lock()
		delete(a.open, conn)
		a.mu.Unlock()
	}()
	raw := &countingReader{r: conn}
	br := bufio.NewReader(raw)
	for nth := 0; ; nth++ {
		start := raw.buf.Len() - br.Buffered()
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		head := string(raw.buf.Bytes()[start : raw.buf.Len()-br.Buffered()])
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		a.mu.Lock()
		a.requests = append(a.requests, fmt.Sprintf("%s %s %d", req.Method, req.RequestURI, len(body)))
		a.heads = append(a.heads, head)
		a.mu.Unlock()
		if !a.serve(conn, nth, req, body) {
			return
		}
	}
}

func (a *rawApp) seen() (requests, heads []string, accepted int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.requests), slices.Clone(a.heads), a.accepted
}

// describeRequest answers "METHOD request-target body-length", keeping the connection open.
func describeRequest(conn net.Conn, _ int, req *http.Request, body []byte) bool {
	text := fmt.Sprintf("%s %s %d", req.Method, req.RequestURI, len(body))
	fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(text), text)
	return true
}

// bodyDigest answers "length sha256 trailer=X-Checksum" of the request body.
func bodyDigest(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%d %x trailer=%s", n, h.Sum(nil), r.Trailer.Get("X-Checksum"))
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return strconv.Itoa(len(b)) + " " + hex.EncodeToString(sum[:])
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{'h', 't', 't', 'p', '1'}).Read(b)
	return b
}

// closesReusedConnections is an app that answers a connection's first request (GET /n/<i>, with the
// path as its body) with keep-alive, then closes the connection when the next request arrives on it: with
// a FIN for an even i, a reset for an odd one.
func closesReusedConnections(t testing.TB) *rawApp {
	return startRawApp(t, func(conn net.Conn, nth int, req *http.Request, body []byte) bool {
		if nth == 0 {
			fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
			return true
		}
		if n, _ := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/n/")); n%2 == 1 {
			conn.(*net.TCPConn).SetLinger(0) // close with a reset
		}
		return false
	})
}

// startStoppableProxy is startProxy with the stop in the test's hands: cancel starts the shutdown, and
// served delivers serve's result once.
func startStoppableProxy(t testing.TB, ca *pki, cfg *Config) (p *runningProxy, cancel context.CancelFunc, served <-chan error) {
	t.Helper()
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	statusLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- serve(ctx, cfg, httpsLn, statusLn, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})
	return &runningProxy{t: t, ca: ca, cfg: cfg, httpsAddr: httpsLn.Addr().String(), statusAddr: statusLn.Addr().String()}, cancel, done
}
