package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/outrigger-dev/outrigger/sidecars/https-proxy/httphead"
)

// Keep-alive connections to the app, as net/http's Transport kept them (MaxIdleConnsPerHost 1024,
// IdleConnTimeout 30s) but without its two goroutines and channel hand-offs per request: the HTTP/1.x
// path (http1.go) takes a connection, writes the request, reads the answer on its own goroutine and puts
// the connection back.
const (
	upstreamConnectTimeout = 5 * time.Second
	maxIdleUpstreamConns   = 1024
	upstreamIdleTimeout    = 30 * time.Second
	upstreamBufferSize     = 4 << 10
	upstreamTCPKeepAlive   = 30 * time.Second
	staleCheckAfterIdleFor = 500 * time.Millisecond
)

// upstreamConn is one plain-HTTP connection to the app with its buffers.
type upstreamConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	// idleSince is when the connection was last put back; zero for a new connection.
	idleSince time.Time
	// fast parses the common response heads without net/http's allocations (package httphead).
	fast httphead.ResponseParser
}

// readResponse reads the head of the app's next answer to req; its body follows on c.r.
func (c *upstreamConn) readResponse(req *http.Request) (*http.Response, error) {
	if _, err := c.r.Peek(1); err != nil { // wait for the answer to start
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // closed before answering: what http.ReadResponse says
		}
		return nil, err
	}
	if resp, ok := c.fast.Parse(c.r, req); ok {
		return resp, nil
	}
	return http.ReadResponse(c.r, req)
}

// upstreamPool hands out keep-alive connections to the app, newest first (the one least likely to have
// been closed by the app's own idle timeout), dialling when none is idle.
type upstreamPool struct {
	addr   string
	dialer net.Dialer
	// wrap serves each dialled connection from the FIFO poller, or returns it as is (FIFO_POLLER).
	wrap func(net.Conn) net.Conn

	mu     sync.Mutex
	idle   []*upstreamConn
	closed bool
}

func newUpstreamPool(addr string, wrap func(net.Conn) net.Conn) *upstreamPool {
	return &upstreamPool{addr: addr, wrap: wrap, dialer: net.Dialer{Timeout: upstreamConnectTimeout, KeepAlive: upstreamTCPKeepAlive}}
}

// get returns an idle connection (reused true) or a new one. An idle connection that sat unused for a
// while is first checked for a close by the app, which is the usual way a keep-alive connection dies;
// the caller still retries an idempotent request once on a fresh connection if a reused one fails.
func (p *upstreamPool) get(ctx context.Context) (c *upstreamConn, reused bool, err error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			c, err := p.dial(ctx)
			return c, false, err
		}
		c = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if idle := time.Since(c.idleSince); idle > upstreamIdleTimeout || (idle > staleCheckAfterIdleFor && c.closedByApp()) {
			c.conn.Close()
			continue
		}
		return c, true, nil
	}
}

func (p *upstreamPool) dial(ctx context.Context) (*upstreamConn, error) {
	conn, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	conn = p.wrap(conn)
	return &upstreamConn{conn: conn, r: bufio.NewReaderSize(conn, upstreamBufferSize), w: bufio.NewWriterSize(conn, upstreamBufferSize)}, nil
}

// put returns a connection whose last response was read to its end; the pool closes it when full or
// shut down.
func (p *upstreamPool) put(c *upstreamConn) {
	c.idleSince = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdleUpstreamConns || c.r.Buffered() > 0 {
		p.mu.Unlock()
		c.conn.Close() // bytes the app sent unasked (Buffered) would be read as the next answer
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// closeIdleOlderThan closes connections idle for longer than age (all of them for age 0).
func (p *upstreamPool) closeIdleOlderThan(age time.Duration) {
	now := time.Now()
	p.mu.Lock()
	var expired []*upstreamConn
	p.idle = slices.DeleteFunc(p.idle, func(c *upstreamConn) bool {
		if now.Sub(c.idleSince) >= age {
			expired = append(expired, c)
			return true
		}
		return false
	})
	p.mu.Unlock()
	for _, c := range expired {
		c.conn.Close()
	}
}

// expireIdle closes connections idle for longer than upstreamIdleTimeout until ctx is done, then closes
// them all and refuses new ones.
func (p *upstreamPool) expireIdle(ctx context.Context) {
	tick := time.NewTicker(upstreamIdleTimeout / 2)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			p.closeIdleOlderThan(upstreamIdleTimeout)
		case <-ctx.Done():
			p.mu.Lock()
			p.closed = true
			p.mu.Unlock()
			p.closeIdleOlderThan(0)
			return
		}
	}
}

// closedByApp reports whether the app closed (or reset) this idle connection, or sent bytes nobody asked
// for, without blocking: a non-blocking MSG_PEEK of the socket (net.Conn has no way to ask).
func (c *upstreamConn) closedByApp() bool {
	if c.r.Buffered() > 0 {
		return true
	}
	sc, ok := c.conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	usable := false
	var probe [1]byte
	if err := raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), probe[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		usable = n <= 0 && errors.Is(err, syscall.EAGAIN) // nothing to read: open and quiet
		return true
	}); err != nil {
		return true
	}
	return !usable
}

// isStaleConnError reports whether err, on a reused connection before any byte of the answer arrived,
// looks like the app having closed the connection while it sat idle: then the request was not seen
// and can be sent again on a fresh connection.
func isStaleConnError(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && !opErr.Timeout()
}

// upstreamAddr is the app's address: always loopback, as the sidecar shares the pod's network namespace.
func upstreamAddr(cfg *Config) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.ProxyPort))
}

// badGatewayMessage is the body of a 502, on HTTP/1.x (http1.go) and HTTP/2 (http2.go).
func badGatewayMessage(upstream string, err error) string {
	return fmt.Sprintf("502 Bad Gateway: https-proxy could not get a response from the app at %s: %v\n", upstream, err)
}
