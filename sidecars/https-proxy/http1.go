package main

// The HTTP/1.x side of the proxy. One goroutine per client connection reads each request under net/http's
// rules (http.ReadRequest, with the checks net/http's server adds; the common heads through package httphead,
// which reads them as net/http would without its allocations), forwards it to the app on a pooled
// keep-alive connection through an exchange (exchange.go), reads the answer the same way and copies it
// back, streaming bodies both ways.
//
// Why not http.Server + httputil.ReverseProxy: on a small keep-alive request they cost 2.1–2.7× nginx's
// CPU (docs/performance.md). http.Transport hands every request to two goroutines of its own through
// channels, ReverseProxy clones headers and contexts, and the server starts a background read per
// request. This loop keeps net/http's parsers and framing rules and drops the hand-offs; only a request
// with a body that is not already buffered gets a second goroutine, so that the body and the answer can
// flow at the same time.

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-dev/outrigger/sidecars/https-proxy/httphead"
)

// clientBufferSize is the read and write buffer of each client connection, as in net/http's server.
const clientBufferSize = 4 << 10

// longAgo, as a deadline, makes a blocked read return at once.
var longAgo = time.Unix(1, 0)

var (
	clientReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, clientBufferSize) }}
	clientWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, clientBufferSize) }}
)

// http1Conn is one client connection.
type http1Conn struct {
	f   *frontend
	raw net.Conn
	// idle: no request is being read or answered (guarded by f.mu).
	idle bool
	// up is the app connection the current request uses, for a forced shutdown to close.
	up atomic.Pointer[upstreamConn]

	tc *tls.Conn
	// clientIP is the client's address as an X-Forwarded-For value; clientCert the
	// X-Forwarded-Client-Cert value of its verified certificate (nil: none).
	clientIP, clientCert []string
	limit                headerLimit
	br                   *bufio.Reader
	bw                   *bufio.Writer
	// fast parses the common request heads without net/http's allocations (package httphead).
	fast httphead.RequestParser
	// readDeadline is the read deadline set on tc (zero: none).
	readDeadline time.Time
	// exchange is the current request's; forwardedHost its X-Forwarded-Host value.
	exchange      exchange
	forwardedHost [1]string
}

// serve runs the handshake, then either passes the connection to the HTTP/2 server or serves its
// HTTP/1.x requests until it closes.
func (c *http1Conn) serve() {
	tc, err := c.f.handshake(c.raw)
	if err != nil {
		c.raw.Close()
		c.f.untrack(c)
		return
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol == "h2" {
		c.f.untrack(c)
		if !c.f.h2.push(tc) {
			tc.Close()
		}
		return
	}
	defer c.f.untrack(c)
	defer tc.Close()
	c.tc = tc
	ip, _, _ := net.SplitHostPort(c.raw.RemoteAddr().String())
	c.clientIP = []string{ip}
	c.clientCert = clientCertHeader(&cs)
	c.limit.r = tc
	c.br = clientReaders.Get().(*bufio.Reader)
	c.br.Reset(&c.limit)
	c.bw = clientWriters.Get().(*bufio.Writer)
	c.bw.Reset(tc)
	defer func() {
		c.br.Reset(nil)
		clientReaders.Put(c.br)
		c.bw.Reset(nil)
		clientWriters.Put(c.bw)
	}()
	for c.next() {
	}
}

// next reads and answers one request; false when the connection is done.
func (c *http1Conn) next() bool {
	if c.br.Buffered() == 0 {
		// The idle deadline moves forward at most once a second: a timer change on every request costs
		// more than closing an idle connection a second early.
		if now := time.Now(); c.readDeadline.IsZero() || c.readDeadline.Before(now.Add(idleTimeout-time.Second)) {
			c.setReadDeadline(now.Add(idleTimeout))
		}
		if _, err := c.br.Peek(1); err != nil {
			return false // closed by the client, idle timeout, or closed by a shutdown
		}
	}
	if !c.f.setIdle(c, false) {
		return false
	}
	req, ok := c.fast.Parse(c.br) // the whole head is here: no read, no deadline needed
	if !ok {
		var err error
		if req, err = c.readRequest(); err != nil {
			switch {
			case errors.Is(err, errHeaderTooLarge):
				c.refuse(http.StatusRequestHeaderFieldsTooLarge, "request header too large")
			case isTimeoutOrClosed(err):
			case strings.Contains(err.Error(), "unsupported transfer encoding"):
				c.refuse(http.StatusNotImplemented, err.Error())
			default:
				c.refuse(http.StatusBadRequest, err.Error())
			}
			return false
		}
	}
	if code, reason := httphead.Validate(req); code != 0 {
		c.refuse(code, reason)
		return false
	}
	if !c.forward(req) {
		return false
	}
	return c.f.setIdle(c, true)
}

var errHeaderTooLarge = errors.New("request header too large")

// readRequest reads a request with net/http's parser, within readHeaderTimeout and maxHeaderBytes.
func (c *http1Conn) readRequest() (*http.Request, error) {
	c.setReadDeadline(time.Now().Add(readHeaderTimeout))
	c.limit.arm(maxHeaderBytes + clientBufferSize)
	req, err := http.ReadRequest(c.br)
	if c.limit.disarm() {
		return nil, errHeaderTooLarge
	}
	return req, err
}

// setReadDeadline sets the client connection's read deadline and remembers it.
func (c *http1Conn) setReadDeadline(t time.Time) {
	c.readDeadline = t
	c.tc.SetReadDeadline(t)
}

// forward sends one request to the app and its answer to the client. It reports whether the client
// connection can carry another request.
func (c *http1Conn) forward(req *http.Request) bool {
	hasBody := req.Body != http.NoBody
	if hasBody || req.Header["Upgrade"] != nil {
		c.setReadDeadline(time.Time{}) // bodies and upgraded streams take as long as they take
	}
	x := &c.exchange // reused: the previous exchange, and its body copy, are over
	*x = exchange{client: c, pool: c.f.upstream, req: req, target: req.RequestURI, chunked: len(req.TransferEncoding) > 0}
	if expect := req.Header["Expect"]; expect != nil {
		if len(expect) != 1 || !strings.EqualFold(expect[0], "100-continue") {
			c.refuse(http.StatusExpectationFailed, "only Expect: 100-continue is supported")
			return false
		}
		x.expectContinue = hasBody && req.ProtoAtLeast(1, 1)
		if !x.expectContinue {
			delete(req.Header, "Expect")
		}
	}
	if req.Method == http.MethodConnect {
		c.refuse(http.StatusMethodNotAllowed, "CONNECT is not proxied")
		return false
	}

	upgrade := upgradeType(req.Header)
	c.forwardedHost[0] = req.Host
	forwardHeader(req.Header, upgrade, c.clientIP, c.forwardedHost[:], c.clientCert)
	if hasBody && !x.chunked {
		req.Header["Content-Length"] = []string{strconv.FormatInt(req.ContentLength, 10)}
	}
	if req.URL.IsAbs() { // absolute-form: the app gets origin-form; req.Host is the URL's host
		x.target = req.URL.RequestURI()
	}

	resp, err := x.roundTrip()
	if err != nil {
		var clientErr clientBodyError
		if errors.As(err, &clientErr) {
			return false // the client broke off its request body: nobody is waiting for an answer
		}
		c.badGateway(req, err, hasBody) // an unsent request body may still be on the connection: close it
		return !hasBody
	}
	defer c.up.Store(nil)

	if resp.StatusCode == http.StatusSwitchingProtocols {
		c.f.m.answered(resp.StatusCode)
		// An upgraded connection can last for hours: a shutdown closes it at once, as an idle one,
		// rather than wait for it, and its client reconnects elsewhere.
		if c.f.setIdle(c, true) {
			c.tunnel(x.up, req, resp, upgrade)
		} else {
			x.up.conn.Close()
		}
		return false
	}
	// A body never sent (the app answered Expect: 100-continue with a final status) may still be on its
	// way from the client, and the app may still expect it: neither connection can be trusted again.
	bodyUnsent := hasBody && x.bodySent == nil
	closeAfter := req.Close || bodyUnsent || c.f.draining.Load()
	c.f.m.answered(resp.StatusCode) // before the client can see the answer (and read the metrics)
	bodyComplete, clientOK := c.writeResponse(x.up, req, resp, &closeAfter)
	bodyOK := !bodyUnsent && x.waitBody()
	if bodyComplete && bodyOK && !resp.Close {
		c.f.upstream.put(x.up)
	} else {
		x.up.conn.Close()
	}
	return clientOK && bodyOK && !closeAfter
}

// The HTTP/1.x connection is the exchange's client (exchange.go).

func (c *http1Conn) bodyBuffered() int { return c.br.Buffered() }

// sendContinue tells the client to send its body.
func (c *http1Conn) sendContinue() error {
	c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	if err := c.bw.Flush(); err != nil {
		return clientBodyError{err}
	}
	return nil
}

func (c *http1Conn) sendInterim(resp *http.Response) error {
	writeStatusLine(c.bw, resp)
	writeHeader(c.bw, resp.Header)
	c.bw.WriteString("\r\n")
	return c.bw.Flush()
}

// stopBody: a read deadline in the past makes the body copy's read return.
func (c *http1Conn) stopBody() { c.setReadDeadline(longAgo) }

func (c *http1Conn) using(up *upstreamConn) { c.up.Store(up) }

// writeStatusLine writes "HTTP/1.1 <code> <reason>", keeping the app's reason phrase.
func writeStatusLine(w *bufio.Writer, resp *http.Response) {
	w.WriteString("HTTP/1.1 ")
	w.WriteString(resp.Status)
	if len(resp.Status) == 3 { // the app sent no reason phrase
		w.WriteByte(' ')
		w.WriteString(http.StatusText(resp.StatusCode))
	}
	w.WriteString("\r\n")
}

// writeResponse sends the app's answer to the client, streaming its body: what arrived is sent as soon
// as reading more would wait for the app (nginx's proxy_buffering off), so the headers and a small body
// leave in one TLS record. A body of unknown length goes chunked (with the app's trailers), or
// delimited by closing the connection for an HTTP/1.0 client. It reports whether the app's body was
// read to its end and whether the client took all of it; *closeAfter is set when the connection must
// close after this answer.
func (c *http1Conn) writeResponse(up *upstreamConn, req *http.Request, resp *http.Response, closeAfter *bool) (bodyComplete, clientOK bool) {
	removeHopHeaders(resp.Header)
	noBody := req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	chunked := false
	if !noBody && resp.ContentLength < 0 {
		if req.ProtoAtLeast(1, 1) {
			chunked = true
		} else {
			*closeAfter = true
		}
	}
	writeStatusLine(c.bw, resp)
	switch {
	case *closeAfter:
		c.bw.WriteString("Connection: close\r\n")
	case !req.ProtoAtLeast(1, 1):
		c.bw.WriteString("Connection: keep-alive\r\n")
	}
	if chunked {
		c.bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(resp.Trailer) > 0 {
			c.bw.WriteString("Trailer: " + strings.Join(sortedKeys(resp.Trailer), ", ") + "\r\n")
		}
	}
	writeHeader(c.bw, resp.Header)
	c.bw.WriteString("\r\n")
	if noBody {
		return true, c.bw.Flush() == nil
	}

	var dst io.Writer = c.bw
	var chunks io.WriteCloser
	if chunked {
		chunks = httputil.NewChunkedWriter(c.bw)
		dst = chunks
	}
	appOK, clientOK := streamAnswer(up, resp, dst, c.bw.Flush)
	if !clientOK {
		return false, false
	}
	if !appOK { // the app broke off: the client must not take a short body for a whole one
		c.bw.Flush()
		*closeAfter = true
		return false, false
	}
	if chunked {
		chunks.Close()
		resp.Trailer.Write(c.bw)
		c.bw.WriteString("\r\n")
	}
	return true, c.bw.Flush() == nil
}

// tunnel passes an upgraded connection (WebSocket) through in both directions until either side closes.
func (c *http1Conn) tunnel(up *upstreamConn, req *http.Request, resp *http.Response, asked string) {
	defer up.conn.Close()
	if got := upgradeType(resp.Header); asked == "" || !strings.EqualFold(got, asked) {
		c.badGateway(req, fmt.Errorf("the app switched protocols to %q, but the client asked for %q", got, asked), true)
		return
	}
	upgrade := resp.Header.Get("Upgrade")
	removeHopHeaders(resp.Header)
	resp.Header["Connection"] = []string{"Upgrade"}
	resp.Header["Upgrade"] = []string{upgrade}
	writeStatusLine(c.bw, resp)
	writeHeader(c.bw, resp.Header)
	c.bw.WriteString("\r\n")
	if c.bw.Flush() != nil {
		return
	}
	c.setReadDeadline(time.Time{})
	done := make(chan struct{}, 2)
	go func() { io.Copy(up.conn, c.br); done <- struct{}{} }() // bytes the client sent early go first
	go func() { io.Copy(c.tc, up.r); done <- struct{}{} }()
	<-done
	// One side closed: close both, which ends the other copy.
	up.conn.Close()
	c.tc.Close()
	<-done
}

// badGateway answers 502 for an app that could not be reached or broke off before answering.
func (c *http1Conn) badGateway(req *http.Request, err error, closeAfter bool) {
	c.f.m.upstreamErrors.Inc()
	c.f.m.answered(http.StatusBadGateway)
	c.f.errorLog.warn("the app did not answer", "upstream", c.f.upstreamAddr, "method", req.Method, "path", req.URL.Path, "err", err)
	c.writePlain(http.StatusBadGateway, badGatewayMessage(c.f.upstreamAddr, err), closeAfter)
}

// refuse answers a request the proxy will not pass on, and the connection closes after it.
func (c *http1Conn) refuse(code int, reason string) {
	c.writePlain(code, fmt.Sprintf("%d %s: %s\n", code, http.StatusText(code), reason), true)
}

func (c *http1Conn) writePlain(code int, body string, closeAfter bool) {
	c.tc.SetWriteDeadline(time.Now().Add(readHeaderTimeout)) // a client that reads nothing must not hold us
	defer c.tc.SetWriteDeadline(time.Time{})
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: %d\r\n", code, http.StatusText(code), len(body))
	if closeAfter || c.f.draining.Load() {
		c.bw.WriteString("Connection: close\r\n")
	}
	c.bw.WriteString("\r\n")
	c.bw.WriteString(body)
	c.bw.Flush()
}

// isTimeoutOrClosed: the client went quiet or away while sending a request header; nobody to answer.
func isTimeoutOrClosed(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || (errors.As(err, &ne) && ne.Timeout())
}

// headerLimit caps how much of a request header is read from the client (MaxHeaderBytes), as
// net/http's server does; it reads through unlimited for bodies.
type headerLimit struct {
	r         io.Reader
	remaining int64
	armed     bool
}

func (l *headerLimit) Read(p []byte) (int, error) {
	if !l.armed {
		return l.r.Read(p)
	}
	if l.remaining <= 0 {
		return 0, errors.New("request header too large")
	}
	if int64(len(p)) > l.remaining {
		p = p[:l.remaining]
	}
	n, err := l.r.Read(p)
	l.remaining -= int64(n)
	return n, err
}

func (l *headerLimit) arm(n int64) { l.armed, l.remaining = true, n }

// disarm lifts the limit and reports whether it was reached.
func (l *headerLimit) disarm() bool {
	hit := l.armed && l.remaining <= 0
	l.armed = false
	return hit
}

func sortedKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
