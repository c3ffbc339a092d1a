package main

// One request on its way to the app and back, whichever protocol the client speaks: the request head and
// body written to a pooled app connection, interim answers passed on, the head of the final answer read
// (package httphead or net/http's parser). The HTTP/1.x loop (http1.go) and the HTTP/2 handler (http2.go)
// each write the answer to their client their own way.

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
	"sync"
	"time"
)

// client is what an exchange needs of the side that faces the client: an HTTP/1.x connection or an
// HTTP/2 stream.
type client interface {
	// bodyBuffered is how many bytes of the request body have arrived but not been read yet (0 when
	// unknown): a body already here is sent inline, and the app connection is flushed when none is.
	bodyBuffered() int
	// sendContinue lets a client that sent Expect: 100-continue send its body.
	sendContinue() error
	// sendInterim passes an informational answer (103 Early Hints...) on.
	sendInterim(resp *http.Response) error
	// stopBody makes a read of the request body that waits for the client return at once.
	stopBody()
	// using records the app connection the exchange is using (nil: none), for a forced shutdown or a
	// client that goes away to close it.
	using(up *upstreamConn)
}

// exchange is one request on its way to the app and back.
type exchange struct {
	client client
	pool   *upstreamPool
	req    *http.Request
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

// roundTrip writes the request to an app connection (and starts its body) and reads the head of the
// answer, passing interim 1xx answers on to the client. A request without a body and with an
// idempotent method is sent again, once per stale connection, when a reused connection turns out to have
// been closed by the app (as net/http's Transport does).
func (x *exchange) roundTrip() (*http.Response, error) {
	replayable := x.req.Body == http.NoBody && isIdempotent(x.req)
	for {
		up, reused, err := x.pool.get(x.req.Context())
		if err != nil {
			return nil, err
		}
		x.up, x.bodySent = up, nil
		x.client.using(up)
		if err = writeRequestHead(up.w, x.req, x.target, x.chunked); err == nil {
			if x.req.Body == http.NoBody || x.expectContinue {
				err = up.w.Flush()
			} else {
				x.startBody()
			}
		}
		var resp *http.Response
		informed := false
		if err == nil {
			resp, informed, err = x.readResponseHead()
		}
		if err == nil {
			return resp, nil
		}
		up.conn.Close()
		x.client.using(nil)
		if x.bodySent != nil {
			x.client.stopBody() // the copy may be waiting for the client: stop it
			if bodyErr := <-x.bodySent; errors.As(bodyErr, new(clientBodyError)) {
				err = bodyErr
			}
		}
		// A request whose client is gone is not sent again: its failure is the closed connection, not a
		// stale one (an HTTP/2 stream reset closes the app connection it was using).
		if !reused || !replayable || informed || !isStaleConnError(err) || x.req.Context().Err() != nil {
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
func (x *exchange) startBody() {
	done := make(chan error, 1)
	x.bodySent = done
	if !x.chunked && x.req.ContentLength <= int64(x.client.bodyBuffered()) {
		done <- x.copyRequestBody()
		return
	}
	go func() { done <- x.copyRequestBody() }()
}

func (x *exchange) copyRequestBody() error {
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
		if x.client.bodyBuffered() == 0 { // about to wait for the client: send the app what we have
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
func (x *exchange) waitBody() bool {
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
	x.client.stopBody()
	<-x.bodySent
	return false
}

// continueTimeout is how long the app has to answer Expect: 100-continue before the body is sent
// anyway (an app that ignores Expect), as net/http's Transport's ExpectContinueTimeout.
const continueTimeout = time.Second

// readResponseHead reads the app's answer up to its body. Interim answers are passed on to the client
// (100 Continue, 103 Early Hints...); a 100 Continue, or the app's silence for continueTimeout, starts
// a body that waited for it.
func (x *exchange) readResponseHead() (resp *http.Response, informed bool, err error) {
	up := x.up
	if x.expectContinue {
		up.conn.SetReadDeadline(time.Now().Add(continueTimeout))
		_, err := up.r.Peek(1)
		up.conn.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) { // the app did not answer Expect: go on
			informed = true
			if err := x.client.sendContinue(); err != nil {
				return nil, informed, err
			}
			x.startBody()
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
				if err := x.client.sendContinue(); err != nil {
					return nil, informed, err
				}
				x.startBody()
			}
			continue // a 100 nobody asked for (or a second one) is dropped
		}
		removeHopHeaders(resp.Header)
		if err := x.client.sendInterim(resp); err != nil {
			return nil, informed, clientBodyError{err}
		}
	}
}

// streamAnswer copies the body of the app's answer to dst and sends what arrived (flush) whenever reading
// more would wait for the app, before the first byte too: headers and a small body leave together, a
// late body does not hold the headers back, and a slow or endless one reaches the client as the app
// writes it (nginx's proxy_buffering off). It reports whether the app's body was read to its end and
// whether the client took everything (false stops the copy at once).
func streamAnswer(up *upstreamConn, resp *http.Response, dst io.Writer, flush func() error) (appOK, clientOK bool) {
	remaining := resp.ContentLength
	if up.r.Buffered() == 0 && remaining != 0 && flush() != nil { // the body is not here yet
		return false, false
	}
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	for {
		n, err := resp.Body.Read(*buf)
		if n > 0 {
			if _, werr := dst.Write((*buf)[:n]); werr != nil {
				return false, false
			}
			remaining -= int64(n)
		}
		if err == io.EOF {
			return true, true
		}
		if err != nil {
			return false, true // the app broke off
		}
		if up.r.Buffered() == 0 && remaining != 0 && flush() != nil { // about to wait for the app
			return false, false
		}
	}
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
