package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// frontend accepts the HTTPS connections. It runs each TLS handshake itself, then hands a connection
// that chose HTTP/2 (ALPN "h2") to net/http's server through h2, and serves an HTTP/1.x connection on
// the same goroutine (http1.go). It tracks its HTTP/1.x connections so that a shutdown closes the idle
// ones at once and waits for the busy ones to finish their request.
type frontend struct {
	tlsConfig *tls.Config
	h2        *connQueue
	upstream  *upstreamPool
	// wrap serves each accepted connection from the FIFO poller, or returns it as is (FIFO_POLLER).
	wrap func(net.Conn) net.Conn
	// upstreamAddr names the app in 502 answers.
	upstreamAddr string
	m            *metrics
	// errorLog reports apps that did not answer; handshakeLog, failed handshakes (each at most once a
	// second: the metrics count every one).
	errorLog     *rateLimitedLog
	handshakeLog *rateLimitedLog

	mu       sync.Mutex
	conns    map[*http1Conn]struct{}
	draining atomic.Bool
	wg       sync.WaitGroup
}

// serve accepts connections until ln is closed.
func (f *frontend) serve(ln net.Listener) error {
	var backoff time.Duration
	for {
		raw, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors or similar: wait as net/http's server does, rather than spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				f.errorLog.warn("accepting a connection failed; retrying", "err", err, "retryIn", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		raw = f.wrap(raw)
		c := &http1Conn{f: f, raw: raw}
		if !f.track(c) {
			raw.Close()
			continue
		}
		go c.serve()
	}
}

// track registers a new connection, idle (no request read yet); false once draining.
func (f *frontend) track(c *http1Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.draining.Load() {
		return false
	}
	c.idle = true
	f.conns[c] = struct{}{}
	f.wg.Add(1)
	return true
}

// untrack forgets a connection that its goroutine closed or handed to the HTTP/2 server.
func (f *frontend) untrack(c *http1Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	f.wg.Done()
}

// setIdle marks c as waiting for its next request (idle true) or reading one; false once draining, when
// an idle connection must close instead.
func (f *frontend) setIdle(c *http1Conn, idle bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.draining.Load() {
		return false
	}
	c.idle = idle
	return true
}

// shutdown stops new requests: idle connections close now, busy ones after their current response
// (which says Connection: close). It waits for them until ctx is done, then closes what remains
// (with their connections to the app, so that nothing stays blocked) and returns ctx's error.
func (f *frontend) shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.draining.Store(true)
	for c := range f.conns {
		if c.idle {
			c.raw.Close()
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	f.mu.Lock()
	for c := range f.conns {
		c.raw.Close()
		if up := c.up.Load(); up != nil {
			up.conn.Close()
		}
	}
	f.mu.Unlock()
	<-done
	return ctx.Err()
}

// handshake runs the TLS handshake within readHeaderTimeout. A failure is counted; a client that spoke
// plain HTTP to the HTTPS port is told so, as net/http's server does.
func (f *frontend) handshake(raw net.Conn) (*tls.Conn, error) {
	tc := tls.Server(raw, f.tlsConfig)
	raw.SetDeadline(time.Now().Add(readHeaderTimeout))
	if err := tc.Handshake(); err != nil {
		f.m.handshakeFailures.Inc()
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader) {
			io.WriteString(rh.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
			err = errors.New("the client sent a plain-HTTP request to the HTTPS port")
		}
		// Not logged: EOF, a client that closed before a word (TCP probes); ErrClosed, a handshake a
		// shutdown cut short.
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			f.handshakeLog.warn("TLS handshake failed", "client", raw.RemoteAddr().String(), "err", err)
		}
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	return tc, nil
}

// looksLikeHTTP reports whether a TLS record header is the start of a plain-HTTP request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// connQueue is a net.Listener whose connections are pushed to it: the frontend passes its handshaken
// HTTP/2 connections to net/http's server through one (the server skips a handshake already done and
// serves ALPN's protocol).
type connQueue struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// push hands c to the server; false if the listener is closed (c is then the caller's to close).
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.conns <- c:
		return true
	case <-q.closed:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
