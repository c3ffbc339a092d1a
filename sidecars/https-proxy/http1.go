package main

// The HTTP/1.x side of the proxy. One goroutine per client connection reads each request under net/http's
// rules (http.ReadRequest, with the checks net/http's server adds; the common heads through fasthead.go,
// which reads them as net/http would without its allocations), forwards it to the app on a pooled
// keep-alive connection (upstream.go), reads the answer the same way and copies it back, streaming
// bodies both ways.
//
// Why not http.Server + httputil.ReverseProxy, which the HTTP/2 side still uses: on a small keep-alive
// request they cost 2.1–2.7× nginx's CPU (docs/performance.md). http.Transport hands every request to two
// goroutines of its own through channels, ReverseProxy clones headers and contexts, and the server starts
// a background read per request. This loop keeps net/http's parsers and framing rules and drops the
// hand-offs; only a request with a body that is not already buffered gets a second goroutine, so that
// the body and the answer can flow at the same time.

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
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
	// fast parses the common request heads without net/http's allocations (fasthead.go).
	fast requestFastPath
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
	req, ok := c.fast.parse(c.br) // the whole head is here: no read, no deadline needed
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
	if code, reason := validateRequest(req); code != 0 {
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

// exchange is one request on its way to the app and back.
type exchange struct {
	req *http.Request
	// target is the request target for the app (origin-form).
	target string
	// chunked: the request body keeps its chunked framing (its length is unknown).
	chunked bool
	// expectContinue: the client waits for 100 Continue before it sends its body; the app is asked
	// the same question, so that it can refuse a body it does not want before it is sent.
	expectContinue bool
	up             *upstreamConn
	// bodySent receives the result of sending the request body; nil while the body has not started.
	bodySent <-chan error
}

// forward sends one request to the app and its answer to the client. It reports whether the client
// connection can carry another request.
func (c *http1Conn) forward(req *http.Request) bool {
	hasBody := req.Body != http.NoBody
	if hasBody || req.Header["Upgrade"] != nil {
		c.setReadDeadline(time.Time{}) // bodies and upgraded streams take as long as they take
	}
	x := &c.exchange // reused: the previous exchange, and its body copy, are over
	*x = exchange{req: req, target: req.RequestURI, chunked: len(req.TransferEncoding) > 0}
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
	teTrailers := httpguts.HeaderValuesContainsToken(req.Header["Te"], "trailers")
	removeHopHeaders(req.Header)
	if teTrailers {
		req.Header["Te"] = []string{"trailers"}
	}
	if upgrade != "" {
		req.Header["Connection"] = []string{"Upgrade"}
		req.Header["Upgrade"] = []string{upgrade}
	}
	c.forwardedHost[0] = req.Host
	setForwarded(req.Header, c.clientIP, c.forwardedHost[:])
	setClientCert(req.Header, c.clientCert)
	if hasBody && !x.chunked {
		req.Header["Content-Length"] = []string{strconv.FormatInt(req.ContentLength, 10)}
	}
	if req.URL.IsAbs() { // absolute-form: the app gets origin-form; req.Host is the URL's host
		x.target = req.URL.RequestURI()
	}

	resp, err := c.roundTrip(x)
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
	bodyOK := !bodyUnsent && c.waitBody(x)
	if bodyComplete && bodyOK && !resp.Close {
		c.f.upstream.put(x.up)
	} else {
		x.up.conn.Close()
	}
	return clientOK && bodyOK && !closeAfter
}

// roundTrip writes the request to an app connection (and starts its body) and reads the head of the
// answer, passing interim 1xx answers on to the client. A request without a body and with an
// idempotent method is sent again, once per stale connection, when a reused connection turns out to have
// been closed by the app (as net/http's Transport does).
func (c *http1Conn) roundTrip(x *exchange) (*http.Response, error) {
	replayable := x.req.Body == http.NoBody && isIdempotent(x.req)
	for {
		up, reused, err := c.f.upstream.get(x.req.Context())
		if err != nil {
			return nil, err
		}
		x.up, x.bodySent = up, nil
		c.up.Store(up)
		if err = writeRequestHead(up.w, x.req, x.target, x.chunked); err == nil {
			if x.req.Body == http.NoBody || x.expectContinue {
				err = up.w.Flush()
			} else {
				c.startBody(x)
			}
		}
		var resp *http.Response
		informed := false
		if err == nil {
			resp, informed, err = c.readResponseHead(x)
		}
		if err == nil {
			return resp, nil
		}
		up.conn.Close()
		c.up.Store(nil)
		if x.bodySent != nil {
			c.setReadDeadline(longAgo) // the copy may be waiting for the client: stop it
			if bodyErr := <-x.bodySent; errors.As(bodyErr, new(clientBodyError)) {
				err = bodyErr
			}
		}
		if !reused || !replayable || informed || !isStaleConnError(err) {
			return nil, err
		}
	}
}

// isIdempotent is net/http's Transport's rule for sending a request again.
func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header["Idempotency-Key"] != nil || req.Header["X-Idempotency-Key"] != nil
}

// writeRequestHead writes the request line and header for the app; chunked bodies keep their framing.
func writeRequestHead(w *bufio.Writer, req *http.Request, target string, chunked bool) error {
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(target)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(req.Host)
	w.WriteString("\r\n")
	if chunked {
		w.WriteString("Transfer-Encoding: chunked\r\n")
		if len(req.Trailer) > 0 {
			w.WriteString("Trailer: " + strings.Join(sortedKeys(req.Trailer), ", ") + "\r\n")
		}
	}
	writeHeader(w, req.Header)
	_, err := w.WriteString("\r\n")
	return err
}

// clientBodyError is a failure to read the request body from the client (gone, or bad chunking).
type clientBodyError struct{ err error }

func (e clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e clientBodyError) Unwrap() error { return e.err }

// startBody sends the request body to the app: at once when it is already buffered (the common small
// POST), otherwise from a goroutine, so that an app that answers while it reads (an echo, a stream)
// never waits on us. x.bodySent receives the result.
func (c *http1Conn) startBody(x *exchange) {
	done := make(chan error, 1)
	x.bodySent = done
	if !x.chunked && x.req.ContentLength <= int64(c.br.Buffered()) {
		done <- c.copyRequestBody(x)
		return
	}
	go func() { done <- c.copyRequestBody(x) }()
}

func (c *http1Conn) copyRequestBody(x *exchange) error {
	up, req := x.up, x.req
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	var dst io.Writer = up.w
	var chunks io.WriteCloser
	if x.chunked {
		chunks = httputil.NewChunkedWriter(up.w)
		dst = chunks
	}
	for {
		n, err := req.Body.Read(*buf)
		if n > 0 {
			if _, werr := dst.Write((*buf)[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			up.conn.Close() // the app must not take half a body for a whole one
			return clientBodyError{err}
		}
		if c.br.Buffered() == 0 { // about to wait for the client: send the app what we have
			if err := up.w.Flush(); err != nil {
				return err
			}
		}
	}
	if x.chunked {
		chunks.Close() // the last chunk; then trailers and the end of the message
		if err := req.Trailer.Write(up.w); err != nil {
			return err
		}
		up.w.WriteString("\r\n")
	}
	return up.w.Flush()
}

// bodyGrace is how long waitBody lets a request body finish after the answer was sent: the app usually
// read the whole body before it answered, and the copy only has to return from its last write.
const bodyGrace = time.Second

// waitBody waits for the request body to be sent after the answer was. An app may also answer before it
// read the whole body (a 413, an early 401): then, after bodyGrace, the copy is stopped (both
// connections close) rather than waited for, since the client may still be sending. It reports whether
// the body went through.
func (c *http1Conn) waitBody(x *exchange) bool {
	if x.bodySent == nil {
		return true
	}
	select {
	case err := <-x.bodySent:
		return err == nil
	default:
	}
	grace := time.NewTimer(bodyGrace)
	defer grace.Stop()
	select {
	case err := <-x.bodySent:
		return err == nil
	case <-grace.C:
	}
	x.up.conn.Close()
	c.setReadDeadline(longAgo)
	<-x.bodySent
	return false
}

// continueTimeout is how long the app has to answer Expect: 100-continue before the body is sent
// anyway (an app that ignores Expect), as net/http's Transport's ExpectContinueTimeout.
const continueTimeout = time.Second

// readResponseHead reads the app's answer up to its body. Interim answers are passed on to the client
// (100 Continue, 103 Early Hints...); a 100 Continue, or the app's silence for continueTimeout, starts
// a body that waited for it.
func (c *http1Conn) readResponseHead(x *exchange) (resp *http.Response, informed bool, err error) {
	up := x.up
	if x.expectContinue {
		up.conn.SetReadDeadline(time.Now().Add(continueTimeout))
		_, err := up.r.Peek(1)
		up.conn.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) { // the app did not answer Expect: go on
			informed = true
			if err := c.writeContinue(); err != nil {
				return nil, informed, err
			}
			c.startBody(x)
		} else if err != nil {
			return nil, informed, err
		}
	}
	for {
		resp, err := up.readResponse(x.req)
		if err != nil {
			return nil, informed, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, informed, nil
		}
		informed = true
		if resp.StatusCode == http.StatusContinue {
			if x.expectContinue && x.bodySent == nil {
				if err := c.writeContinue(); err != nil {
					return nil, informed, err
				}
				c.startBody(x)
			}
			continue // a 100 nobody asked for (or a second one) is dropped
		}
		removeHopHeaders(resp.Header)
		writeStatusLine(c.bw, resp)
		writeHeader(c.bw, resp.Header)
		c.bw.WriteString("\r\n")
		if err := c.bw.Flush(); err != nil {
			return nil, informed, clientBodyError{err}
		}
	}
}

// writeContinue tells the client to send its body.
func (c *http1Conn) writeContinue() error {
	c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	if err := c.bw.Flush(); err != nil {
		return clientBodyError{err}
	}
	return nil
}

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

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

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

	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	var dst io.Writer = c.bw
	var chunks io.WriteCloser
	if chunked {
		chunks = httputil.NewChunkedWriter(c.bw)
		dst = chunks
	}
	remaining := resp.ContentLength
	if up.r.Buffered() == 0 && remaining != 0 { // the body is not here yet: the headers go ahead of it
		if c.bw.Flush() != nil {
			return false, false
		}
	}
	for {
		n, err := resp.Body.Read(*buf)
		if n > 0 {
			if _, werr := dst.Write((*buf)[:n]); werr != nil {
				return false, false
			}
			remaining -= int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil { // the app broke off: the client must not take a short body for a whole one
			c.bw.Flush()
			*closeAfter = true
			return false, false
		}
		if up.r.Buffered() == 0 && remaining != 0 { // about to wait for the app: send what we have
			if c.bw.Flush() != nil {
				return false, false
			}
		}
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
