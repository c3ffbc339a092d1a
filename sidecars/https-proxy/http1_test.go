package main

// HTTP/1.x on the wire: what a client of an HTTP/1.1 reverse proxy expects from it, written as raw bytes over
// TLS (keep-alive, pipelining, HTTP/1.0, framing of bodies and of responses without one, request smuggling
// defences, hop-by-hop headers, the request target, upstream connection reuse and failures, shutdown). These
// tests describe behaviour, not the implementation: they must hold for net/http's server and for a
// hand-written connection loop alike.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"golang.org/x/net/websocket"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
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

// TestHTTP1ChunkedUpload: a chunked request body written by hand (chunk sizes in either case, a chunk
// extension, a trailer) reaches the app byte for byte.
func TestHTTP1ChunkedUpload(t *testing.T) {
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, http.HandlerFunc(bodyDigest))))
	data := randomBytes(71001)
	var req strings.Builder
	req.WriteString("POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n")
	fmt.Fprintf(&req, "1\r\n%s\r\n", data[:1])
	fmt.Fprintf(&req, "3e8;name=value\r\n%s\r\n", data[1:1001])
	fmt.Fprintf(&req, "%X\r\n%s\r\n", 70000, data[1001:])
	req.WriteString("0\r\nX-Checksum: c0ffee\r\n\r\n")
	c := dialH1(t, p)
	c.send(req.String())
	resp, body := c.response("POST")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, digestOf(data)+" ") {
		t.Fatalf("chunked upload: %d %q, want 200 %q", resp.StatusCode, body, digestOf(data))
	}
	if trailer := strings.TrimPrefix(body, digestOf(data)+" trailer="); trailer != "c0ffee" {
		t.Errorf("the app saw request trailer X-Checksum %q, want c0ffee", trailer)
	}
	c.get("/after")
}

// TestHTTP1ExpectContinue: a client that sends Expect: 100-continue gets 100 Continue, then sends its body
// and gets the app's answer; an app that refuses without reading the body answers before the upload; curl
// uploads with Expect: 100-continue.
func TestHTTP1ExpectContinue(t *testing.T) {
	app := http.NewServeMux()
	app.Handle("/", pathApp)
	app.HandleFunc("/upload", bodyDigest)
	app.HandleFunc("/refuse", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too big", http.StatusRequestEntityTooLarge)
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	data := randomBytes(100000)

	t.Run("raw", func(t *testing.T) {
		c := dialH1(t, p)
		c.send(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(data)))
		// A functional wait: the client holds its body until the proxy says go on.
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := c.next("POST")
		if err != nil {
			t.Fatalf("waiting for 100 Continue: %v", err)
		}
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("got %d before sending the body, want 100 Continue", resp.StatusCode)
		}
		c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		c.send(string(data))
		for resp.StatusCode == http.StatusContinue {
			if resp, err = c.next("POST"); err != nil {
				t.Fatal(err)
			}
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(string(body), digestOf(data)+" ") {
			t.Fatalf("after 100 Continue: %d %q %v, want 200 %q", resp.StatusCode, body, err, digestOf(data))
		}
		c.get("/after")
	})
	t.Run("refused before the body", func(t *testing.T) {
		c := dialH1(t, p)
		c.send(fmt.Sprintf("POST /refuse HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(data)))
		resp, err := c.next("POST")
		if err != nil {
			t.Fatalf("waiting for the answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d, want the app's 413 without 100 Continue first", resp.StatusCode)
		}
	})
	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Fatalf("curl not found: run `make deps`")
		}
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "ca.crt"), ca.pem)
		writeFile(t, filepath.Join(dir, "body"), data)
		cmd := exec.Command(curl, "--http1.1", "--silent", "--show-error", "--fail", "--verbose",
			"--cacert", filepath.Join(dir, "ca.crt"), "--expect100-timeout", "10",
			"-H", "Expect: 100-continue", "--data-binary", "@"+filepath.Join(dir, "body"), p.url("/upload"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("curl: %v\n%s", err, stderr.String())
		}
		if !strings.HasPrefix(stdout.String(), digestOf(data)+" ") {
			t.Errorf("curl got %q, want %q", stdout.String(), digestOf(data))
		}
		if !strings.Contains(stderr.String(), "< HTTP/1.1 100 Continue") {
			t.Errorf("curl never got 100 Continue (it sent the body after its own time-out):\n%s", stderr.String())
		}
	})
}

// TestHTTP1ResponsesWithoutBody: HEAD, 204 and 304 responses carry no body bytes (the next response on the
// connection parses), and HEAD keeps the resource's Content-Length.
func TestHTTP1ResponsesWithoutBody(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sized":
			w.Header().Set("Content-Length", "1234")
			w.Write(make([]byte, 1234))
		case "/streamed":
			w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			w.Write([]byte("y"))
		case "/no-content":
			w.WriteHeader(http.StatusNoContent)
		case "/cached":
			w.Header().Set("ETag", `"v1"`)
			if r.Header.Get("If-None-Match") == `"v1"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "content")
		default:
			io.WriteString(w, r.URL.Path)
		}
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	c := dialH1(t, p)

	c.send("HEAD /sized HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, body := c.response("HEAD")
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != "1234" {
		t.Errorf("HEAD /sized: %d, Content-Length %q, body %q; want 200, 1234, none", resp.StatusCode, resp.Header.Get("Content-Length"), body)
	}
	c.send("HEAD /streamed HTTP/1.1\r\nHost: localhost\r\n\r\n")
	if resp, body := c.response("HEAD"); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD /streamed: %d %q", resp.StatusCode, body)
	}
	c.send(getRequest("/no-content"))
	if resp, body := c.response("GET"); resp.StatusCode != http.StatusNoContent || body != "" {
		t.Errorf("GET /no-content: %d %q, want 204 without body", resp.StatusCode, body)
	}
	c.send("GET /cached HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: \"v1\"\r\n\r\n")
	resp, body = c.response("GET")
	if resp.StatusCode != http.StatusNotModified || body != "" || resp.Header.Get("ETag") != `"v1"` {
		t.Errorf("conditional GET: %d %q ETag %q, want 304 without body, ETag \"v1\"", resp.StatusCode, body, resp.Header.Get("ETag"))
	}
	if got := c.get("/after"); got != "/after" {
		t.Errorf("GET after the bodiless responses: %q", got)
	}
}

// TestHTTP1RequestSmugglingDefences: ambiguous framing never lets the app see a request whose answer the
// client does not get in order, nor reaches the app ambiguous; malformed requests are refused with 400 (501
// for a transfer coding) before they reach the app, and their connection is closed.
func TestHTTP1RequestSmugglingDefences(t *testing.T) {
	ca := newPKI(t, "test CA")
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
	for _, tc := range []struct{ name, attack string }{
		{"CL.TE", "POST /attack HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE.CL", fmt.Sprintf("POST /attack HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n0\r\n\r\n%s", len("0\r\n\r\n"+smuggled), smuggled)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := startRawApp(t, describeRequest)
			p := startProxy(t, ca, testConfig(t, ca, app.port(t)))
			c := dialH1(t, p)
			c.send(tc.attack + getRequest("/last"))
			// Read until the answer to /last or the end of the connection.
			var answered []string
			for len(answered) < 5 {
				resp, err := c.next("GET")
				if err != nil {
					break
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("reading response %d: %v", len(answered)+1, err)
				}
				if resp.StatusCode != 200 {
					if len(answered) > 0 || resp.StatusCode < 400 {
						t.Fatalf("response %d is %d %q after %q", len(answered)+1, resp.StatusCode, body, answered)
					}
					c.expectClosed("refusing an ambiguous request")
					break
				}
				answered = append(answered, string(body))
				if strings.HasPrefix(string(body), "GET /last ") {
					break
				}
			}
			requests, heads, _ := app.seen()
			t.Logf("the client got answers %q; the app saw %q", answered, requests)
			if !slices.Equal(requests, answered) {
				t.Errorf("the app answered %q but the client got %q: the connection desynchronised", requests, answered)
			}
			if len(answered) > 0 && answered[0] != "POST /attack 0" {
				t.Errorf("the app saw the attack as %q, want \"POST /attack 0\" (chunked framing wins over Content-Length)", answered[0])
			}
			for _, head := range heads {
				lower := strings.ToLower(head)
				if strings.Contains(lower, "\ncontent-length:") && strings.Contains(lower, "\ntransfer-encoding:") {
					t.Errorf("the proxy sent the app both Content-Length and Transfer-Encoding:\n%s", head)
				}
			}
		})
	}

	app := startRawApp(t, describeRequest)
	p := startProxy(t, ca, testConfig(t, ca, app.port(t)))
	for _, tc := range []struct{ name, request string }{
		{"two different Content-Lengths", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"Content-Length with a sign", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello"},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n"},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: localhost\r\nHost: example.com\r\n\r\n"},
		{"space in a header name", "GET / HTTP/1.1\r\nHost: localhost\r\nX Bad: 1\r\n\r\n"},
		{"space before the colon", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{"Transfer-Encoding gzip, chunked", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"Transfer-Encoding identity", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"},
		{"two Transfer-Encoding headers", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH1(t, p)
			c.send(tc.request)
			resp, err := c.next("GET")
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // a refusal without a length ends with the connection
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("reading the %d refusal: %v", resp.StatusCode, err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
				t.Errorf("status %d, want 400 (or 501 for a transfer coding)", resp.StatusCode)
			}
			if !strings.Contains(tc.name, "Transfer-Encoding") && resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
			// Where the next request would start is unknowable after a malformed one (RFC 9112 section 6.3).
			c.expectClosed("refusing a malformed request")
		})
	}
	if requests, _, _ := app.seen(); len(requests) > 0 {
		t.Errorf("malformed requests reached the app: %q", requests)
	}
}

// TestHTTP1HopByHopHeaders: connection-specific headers stop at the proxy both ways; end-to-end headers,
// repeated ones in order and empty ones, pass through unchanged.
func TestHTTP1HopByHopHeaders(t *testing.T) {
	headersAtApp := make(chan http.Header, 1)
	// Raw bytes: the app's own Connection header reaches the proxy exactly as written, whatever the proxy asked.
	app := startRawApp(t, func(conn net.Conn, _ int, req *http.Request, _ []byte) bool {
		headersAtApp <- req.Header
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: app secret\r\nX-Custom: from the app\r\n"+
			"Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/\r\nSet-Cookie: c=3\r\nX-Empty: \r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, app.port(t)))
	c := dialH1(t, p)
	c.send("GET /hop HTTP/1.1\r\nHost: localhost\r\n" +
		"Connection: keep-alive, X-Secret\r\nX-Secret: client secret\r\nKeep-Alive: timeout=5\r\n" +
		"Proxy-Connection: keep-alive\r\nUpgrade: websocket\r\n" +
		"X-Custom: from the client\r\nX-Multi: first\r\nX-Multi: second\r\nX-Multi: third\r\nX-Empty: \r\n\r\n")
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET /hop: %d %q", resp.StatusCode, body)
	}
	atApp := <-headersAtApp
	for _, name := range []string{"X-Secret", "Keep-Alive", "Proxy-Connection", "Upgrade"} {
		if v, ok := atApp[name]; ok {
			t.Errorf("the app got the hop-by-hop header %s: %q", name, v)
		}
	}
	if conn := atApp.Get("Connection"); strings.Contains(strings.ToLower(conn), "x-secret") {
		t.Errorf("the app got Connection: %s", conn)
	}
	for name, want := range map[string][]string{"X-Custom": {"from the client"}, "X-Multi": {"first", "second", "third"}, "X-Empty": {""}} {
		if got := atApp[name]; !slices.Equal(got, want) {
			t.Errorf("the app got %s %q, want %q", name, got, want)
		}
	}

	if v, ok := resp.Header["X-Internal"]; ok {
		t.Errorf("the client got X-Internal %q, which the app's Connection header names", v)
	}
	for name, want := range map[string][]string{
		"X-Custom": {"from the app"}, "Set-Cookie": {"a=1; Path=/", "b=2; Path=/", "c=3"}, "X-Empty": {""},
	} {
		if got := resp.Header[name]; !slices.Equal(got, want) {
			t.Errorf("the client got %s %q, want %q", name, got, want)
		}
	}
}

// TestHTTP1RequestTargetUnchanged: the request target reaches the app as the client wrote it (encoded
// characters, double slashes, query); an absolute-form target reaches it in origin form.
func TestHTTP1RequestTargetUnchanged(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]string{r.RequestURI, r.Host})
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	seenAt := func(t *testing.T, target string) (uri, host string) {
		t.Helper()
		c := dialH1(t, p)
		c.send("GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n")
		resp, body := c.response("GET")
		var got []string
		if err := json.Unmarshal([]byte(body), &got); resp.StatusCode != 200 || err != nil || len(got) != 2 {
			t.Fatalf("GET %s: %d %q", target, resp.StatusCode, body)
		}
		return got[0], got[1]
	}
	for _, target := range []string{
		"/a%2Fb/c%20d?x=1&y=%3D",
		"/%7Euser/caf%C3%A9?q=a+b&q=%2B",
		"//double//slash/",
		"/p?a=1;b=2",
	} {
		t.Run(target, func(t *testing.T) {
			uri, _ := seenAt(t, target)
			if uri != target {
				t.Errorf("the app got request target %q, want %q", uri, target)
			}
		})
	}
	t.Run("absolute form", func(t *testing.T) {
		uri, host := seenAt(t, "http://example.com/p?q=1")
		if uri != "/p?q=1" {
			t.Errorf("the app got request target %q, want /p?q=1", uri)
		}
		t.Logf("absolute-form target: the app saw Host %q", host)
	})
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

// TestHTTP1LargeBodiesOnOneConnection: 8 MiB of known length and 8 MiB streamed without a length arrive
// intact on one connection, which then serves a small request.
func TestHTTP1LargeBodiesOnOneConnection(t *testing.T) {
	data := randomBytes(8 << 20)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/known":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data)
		case "/unknown":
			for rest := data; len(rest) > 0; rest = rest[min(len(rest), 64<<10):] {
				w.Write(rest[:min(len(rest), 64<<10)])
				w.(http.Flusher).Flush()
			}
		default:
			io.WriteString(w, "small")
		}
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	c := dialH1(t, p)
	for _, path := range []string{"/known", "/unknown"} {
		c.send(getRequest(path))
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || digestOf([]byte(body)) != digestOf(data) {
			t.Fatalf("GET %s: %d, body %s, want %s", path, resp.StatusCode, digestOf([]byte(body)), digestOf(data))
		}
		if path == "/known" && resp.ContentLength != int64(len(data)) {
			t.Errorf("GET /known: Content-Length %d, want %d", resp.ContentLength, len(data))
		}
	}
	if got := c.get("/small"); got != "small" {
		t.Errorf("GET /small after the large bodies: %q", got)
	}
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

// TestHTTP1GracefulShutdown: on shutdown an idle keep-alive connection is closed, a request in flight
// completes and its connection then closes, serve returns nil, and new connections are refused.
func TestHTTP1GracefulShutdown(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/held" {
			close(held)
			if !waitGate(release) {
				return
			}
			io.WriteString(w, "held, then answered")
			return
		}
		io.WriteString(w, r.URL.Path)
	})
	ca := newPKI(t, "test CA")
	p, cancel, served := startStoppableProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	idle := dialH1(t, p)
	idle.get("/idle")
	busy := dialH1(t, p)
	busy.send(getRequest("/held"))
	if !waitGate(held) {
		t.Fatal("the held request never reached the app")
	}

	cancel()
	idle.expectClosed("shutdown began (an idle keep-alive connection)")
	close(release)
	resp, body := busy.response("GET")
	if resp.StatusCode != 200 || body != "held, then answered" {
		t.Fatalf("the request in flight at shutdown: %d %q", resp.StatusCode, body)
	}
	busy.expectClosed("the last response of the drain")
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return after the drain")
	}
	if conn, err := net.Dial("tcp", p.httpsAddr); err == nil {
		conn.Close()
		t.Errorf("a new connection was accepted after serve returned")
	}
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

// TestHTTP1ShutdownClosesWebSockets: an upgraded connection can last for hours, so a drain closes it at
// once (its client reconnects to another pod) instead of holding the pod's termination for it.
func TestHTTP1ShutdownClosesWebSockets(t *testing.T) {
	app := http.NewServeMux()
	app.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		var msg string
		for websocket.Message.Receive(c, &msg) == nil {
			websocket.Message.Send(c, "echo: "+msg)
		}
	}))
	ca := newPKI(t, "test CA")
	cfg := testConfig(t, ca, upstream(t, app))
	cfg.ShutdownTimeout = time.Minute // longer than the test waits: only closing at once passes
	p, cancel, served := startStoppableProxy(t, ca, cfg)
	wsCfg, err := websocket.NewConfig("wss://"+p.httpsAddr+"/ws", "https://"+p.httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	wsCfg.TlsConfig = &tls.Config{RootCAs: ca.pool(), NextProtos: []string{"http/1.1"}}
	ws, err := websocket.DialConfig(wsCfg)
	if err != nil {
		t.Fatalf("WebSocket handshake through the proxy: %v", err)
	}
	defer ws.Close()
	var got string
	if err := websocket.Message.Send(ws, "hi"); err != nil || websocket.Message.Receive(ws, &got) != nil || got != "echo: hi" {
		t.Fatalf("before the shutdown: sent %v, got %q", err, got)
	}
	cancel()
	ws.SetReadDeadline(time.Now().Add(20 * time.Second)) // a safety net, not a timing assertion
	if err := websocket.Message.Receive(ws, &got); err == nil {
		t.Fatalf("the WebSocket still delivered %q after the shutdown began", got)
	} else if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatal("the shutdown left the WebSocket open")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve waited for the WebSocket instead of closing it")
	}
}

// TestHTTP1PlainHTTPToTheHTTPSPort: a client that forgot the "s" is told so, not left with a TLS alert
// it cannot read, and the failed handshake is counted.
func TestHTTP1PlainHTTPToTheHTTPSPort(t *testing.T) {
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, http.HandlerFunc(echoApp))))
	before := p.metric("https_proxy_tls_handshake_failures_total")
	resp, err := http.Get("http://" + p.httpsAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
		t.Errorf("plain HTTP to the HTTPS port: %d %q, want 400 saying HTTPS is needed", resp.StatusCode, body)
	}
	if after := p.metric("https_proxy_tls_handshake_failures_total"); after != before+1 {
		t.Errorf("https_proxy_tls_handshake_failures_total went from %v to %v, want one more", before, after)
	}
}
