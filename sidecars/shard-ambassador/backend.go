package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-dev/outrigger/internal/fifopoll"
	"github.com/outrigger-dev/outrigger/sidecars/shard-ambassador/ring"
)

// This file is the shard side of the proxy, shared by redis and memcache: a few long-lived connections
// per shard, each carrying the requests of many clients (as twemproxy does). Clients append encoded
// requests to a connection's write buffer. A client writes the buffer itself when the connection is idle;
// while replies are outstanding, requests queue up and the connection's reader hands the whole buffer to
// the connection's writer goroutine after each read, so that concurrent clients share one write (see
// claimFlush). One reader goroutine per connection matches replies to requests in FIFO order and either
// wakes the client or, for a client's lone request, writes the reply to the client itself (request.finish).
// A connection that fails or stops answering within the timeout is closed and every request waiting on
// it gets the error.

// shard is one backend server with its connection slots and its failure accounting.
type shard struct {
	index   int
	server  ring.Server
	backend *backend
	metrics shardMetrics

	mu         sync.Mutex
	conns      []*serverConn
	dialErr    error     // the last dial error, returned at once until retryDial
	retryDial  time.Time // no new dial before this (bounded backoff after a failed dial)
	backoff    time.Duration
	failures   int       // consecutive failures (twemproxy's failure_count)
	ejectedTil time.Time // zero when in the ring
	hadFailure atomic.Bool
}

// backend is the current pool of shards and its ring, replaced whole by a reload (reload.go) and its ring
// by an ejection, so that a client's batch always sees one pool: the shard indexes the ring gives are
// indexes of that pool's shards.
type backend struct {
	cfg     *Config
	parse   replyParser
	pool    atomic.Pointer[pool]
	metrics *metrics
	log     *slog.Logger
	wg      sync.WaitGroup // reader and watchdog goroutines
	ctx     context.Context
	dialer  net.Dialer
	// wrap serves each client and shard connection from the FIFO poller, or returns it as is
	// (FIFO_POLLER).
	wrap func(net.Conn) net.Conn

	ringMu  sync.Mutex // serialises ring rebuilds and reloads
	retired []*shard   // shards a reload took out, closed after a grace period (and at shutdown)
}

// pool is a set of shards and the ring over those of them that are live.
type pool struct {
	shards []*shard
	ring   *ring.Ring
}

// shards returns the current pool's shards (for status and maintenance, not for routing a batch).
func (b *backend) shards() []*shard { return b.pool.Load().shards }

func newBackend(ctx context.Context, cfg *Config, parse replyParser, m *metrics, log *slog.Logger) (*backend, error) {
	b := &backend{cfg: cfg, parse: parse, metrics: m, log: log, ctx: ctx}
	b.dialer.Timeout = cfg.Timeout
	b.wrap = func(c net.Conn) net.Conn { return c }
	if cfg.FIFOPoller {
		b.wrap = fifopoll.Wrap
	}
	var shards []*shard
	for i, s := range cfg.Servers {
		shards = append(shards, b.newShard(i, s))
	}
	b.pool.Store(&pool{shards: shards})
	if err := b.rebuild(time.Now()); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *backend) newShard(index int, s ring.Server) *shard {
	return &shard{index: index, server: s, backend: b, metrics: b.metrics.forShard(s.String()),
		conns: make([]*serverConn, b.cfg.ServerConnections)}
}

// rebuild makes a new ring from the current pool's shards that are not ejected at now.
func (b *backend) rebuild(now time.Time) error {
	b.ringMu.Lock()
	defer b.ringMu.Unlock()
	return b.rebuildLocked(b.pool.Load().shards, now)
}

// rebuildLocked stores a pool of shards with a ring over the live ones; ringMu is held.
func (b *backend) rebuildLocked(shards []*shard, now time.Time) error {
	live := make([]bool, len(shards))
	servers := make([]ring.Server, len(shards))
	for i, s := range shards {
		servers[i] = s.server
		s.mu.Lock()
		live[i] = s.ejectedTil.IsZero() || !now.Before(s.ejectedTil)
		if live[i] && !s.ejectedTil.IsZero() {
			s.ejectedTil = time.Time{}
			b.log.Info("shard back in the ring after the retry timeout", "shard", s.server.String())
		}
		s.mu.Unlock()
		s.metrics.setInRing(live[i])
	}
	r, err := ring.New(servers, live, b.cfg.hashFunc, b.cfg.Distribution, b.cfg.HashTag)
	if err != nil {
		return err
	}
	b.pool.Store(&pool{shards: shards, ring: r})
	return nil
}

// maintain brings ejected shards back when their retry timeout has passed.
func (b *backend) maintain(ctx context.Context) {
	if !b.cfg.AutoEjectHosts {
		return
	}
	tick := time.NewTicker(min(b.cfg.ServerRetryTimeout/4+time.Millisecond, time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due := false
			for _, s := range b.shards() {
				s.mu.Lock()
				if !s.ejectedTil.IsZero() && !now.Before(s.ejectedTil) {
					due = true
				}
				s.mu.Unlock()
			}
			if due {
				if err := b.rebuild(now); err != nil {
					b.log.Error("rebuilding the ring", "err", err)
				}
			}
		}
	}
}

// close closes every shard connection (failing what is still pending) and waits for their goroutines.
func (b *backend) close() {
	b.ringMu.Lock()
	all := append(append([]*shard(nil), b.pool.Load().shards...), b.retired...)
	b.ringMu.Unlock()
	for _, s := range all {
		s.mu.Lock()
		conns := append([]*serverConn(nil), s.conns...)
		s.mu.Unlock()
		for _, c := range conns {
			if c != nil {
				c.fail(errShuttingDown, false)
			}
		}
	}
	b.wg.Wait()
}

var errShuttingDown = errors.New("shard-ambassador is shutting down")

// reachable reports whether at least one shard is reachable: a live connection, or else a quick dial.
func (b *backend) reachable() error {
	shards := b.shards()
	for _, s := range shards {
		s.mu.Lock()
		for _, c := range s.conns {
			if c != nil && c.broken.Load() == nil {
				s.mu.Unlock()
				return nil
			}
		}
		s.mu.Unlock()
	}
	var errs []error
	for _, s := range shards {
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timeout)
		c, err := b.dialer.DialContext(ctx, "tcp", s.server.Addr())
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("no shard reachable: %w", errors.Join(errs...))
}

// recordFailure counts a failure of s and ejects it from the ring when the pool auto-ejects and the
// failure limit is reached (twemproxy's server_failure).
func (s *shard) recordFailure(err error) {
	s.metrics.failure()
	s.hadFailure.Store(true)
	b := s.backend
	s.mu.Lock()
	s.failures++
	eject := b.cfg.AutoEjectHosts && s.failures >= b.cfg.ServerFailureLimit && s.ejectedTil.IsZero()
	if eject {
		s.failures = 0
		s.ejectedTil = time.Now().Add(b.cfg.ServerRetryTimeout)
	}
	s.mu.Unlock()
	if eject {
		b.log.Warn("ejecting shard from the ring", "shard", s.server.String(), "for", b.cfg.ServerRetryTimeout, "err", err)
		s.metrics.ejected()
		if rerr := b.rebuild(time.Now()); rerr != nil {
			b.log.Error("rebuilding the ring", "err", rerr)
		}
	}
}

func (s *shard) recordSuccess() {
	s.mu.Lock()
	s.failures = 0
	s.mu.Unlock()
}

// conn returns the connection in slot i, dialling it (the host name resolved anew) when it is missing or
// broken. After a failed dial it returns that error at once until a short, bounded backoff has passed.
func (s *shard) conn(i int) (*serverConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[i]; c != nil && c.broken.Load() == nil {
		return c, nil
	}
	now := time.Now()
	if now.Before(s.retryDial) {
		return nil, s.dialErr
	}
	b := s.backend
	ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timeout)
	nc, err := b.dialer.DialContext(ctx, "tcp", s.server.Addr())
	if err == nil {
		nc = b.wrap(nc)
	}
	if err == nil && b.cfg.TLS {
		var tc net.Conn
		if tc, err = b.handshake(ctx, nc, s.server.Addr()); err != nil {
			nc.Close()
		} else {
			nc = tc
		}
	}
	cancel()
	if err == nil {
		if aerr := b.authenticate(nc); aerr != nil {
			nc.Close()
			err = aerr
		}
	}
	if err != nil {
		s.backoff = min(max(2*s.backoff, 10*time.Millisecond), time.Second)
		s.retryDial = time.Now().Add(s.backoff)
		s.dialErr = fmt.Errorf("shard %s: connecting: %w", s.server, err)
		s.mu.Unlock()
		s.recordFailure(err)
		s.mu.Lock()
		return nil, s.dialErr
	}
	s.backoff, s.retryDial, s.dialErr = 0, time.Time{}, nil
	c := &serverConn{shard: s, conn: nc, closed: make(chan struct{}), wake: make(chan struct{}, 1)}
	s.conns[i] = c
	b.wg.Add(3)
	go c.readLoop()
	go c.writeLoop()
	go c.watchdog()
	return c, nil
}

// serverConn is one connection to a shard, shared by many clients.
type serverConn struct {
	shard  *shard
	conn   net.Conn
	broken atomic.Pointer[error]
	closed chan struct{}

	mu      sync.Mutex
	wbuf    []byte
	wspare  []byte
	queue   fifo // requests written or waiting in wbuf, oldest first
	unsent  int  // how many of queue's requests are still in wbuf
	writing bool // a client or writeLoop is writing wbuf out
	wake    chan struct{}
}

// enqueue appends req's encoded bytes to the write buffer (claimFlush says who sends them). It fails at
// once when the connection is broken.
func (c *serverConn) enqueue(req *request, data []byte) error {
	c.mu.Lock()
	if e := c.broken.Load(); e != nil {
		c.mu.Unlock()
		return *e
	}
	c.wbuf = append(c.wbuf, data...)
	c.queue.push(req)
	c.unsent++
	c.mu.Unlock()
	return nil
}

// claimFlush makes the caller the writer of the buffered requests, unless there is nothing to send or it
// is already being sent, or requests written earlier still wait for their replies: then the reader hands
// the buffer to writeLoop when the next replies come, so that every request that arrived meanwhile, from
// any client, goes out in one write. (On loopback a write costs the whole TCP receive path, in the proxy
// and again in the shard: one write per request was the proxy's largest cost without pipelining. This is
// twemproxy's batching — requests queue while the connection is busy — without a per-request hand-off.)
// A claimer must call writeOut.
func (c *serverConn) claimFlush() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writing || len(c.wbuf) == 0 || c.broken.Load() != nil || c.queue.len() > c.unsent {
		return false
	}
	c.writing = true
	return true
}

// handOffWrites is called by the reader before each read: what clients queued behind the requests in
// flight is given to writeLoop (the reader itself must never block on a write: a shard that stops
// reading until its replies are read, as memcached does, would deadlock it).
func (c *serverConn) handOffWrites() {
	c.mu.Lock()
	kick := !c.writing && len(c.wbuf) > 0 && c.broken.Load() == nil
	if kick {
		c.writing = true
	}
	c.mu.Unlock()
	if kick {
		c.wake <- struct{}{} // never blocks: one claim at a time, and writeLoop takes each before writing
	}
}

// writeLoop writes what handOffWrites hands it.
func (c *serverConn) writeLoop() {
	defer c.shard.backend.wg.Done()
	for {
		select {
		case <-c.closed:
			return
		case <-c.wake:
			c.writeOut()
		}
	}
}

// writeOut writes the buffered requests until the buffer is empty, so that bytes appended meanwhile by
// other clients go out with the next write; only the claimer calls it.
func (c *serverConn) writeOut() {
	c.mu.Lock()
	for len(c.wbuf) > 0 && c.broken.Load() == nil {
		buf := c.wbuf
		c.wbuf = c.wspare[:0]
		c.unsent = 0
		c.mu.Unlock()
		_, err := c.conn.Write(buf)
		c.mu.Lock()
		c.wspare = buf[:0]
		if err != nil {
			c.writing = false
			c.mu.Unlock()
			c.fail(fmt.Errorf("shard %s: writing: %w", c.shard.server, err), true)
			return
		}
	}
	c.writing = false
	c.mu.Unlock()
}

// fail breaks the connection once: it is closed and every pending request gets err.
func (c *serverConn) fail(err error, count bool) {
	c.mu.Lock()
	if !c.broken.CompareAndSwap(nil, &err) {
		c.mu.Unlock()
		return
	}
	pending := c.queue.drain()
	c.wbuf = nil
	c.mu.Unlock()
	close(c.closed)
	c.conn.Close()
	now := time.Now().UnixNano()
	for _, r := range pending {
		r.cmd.observe(now-r.sentAt, true)
		r.finish(nil, err)
	}
	if count {
		c.shard.recordFailure(err)
	}
}

// readLoop reads replies and hands each to the oldest pending request.
func (c *serverConn) readLoop() {
	defer c.shard.backend.wg.Done()
	parse := c.shard.backend.parse
	var scan replyScan // where the parser stopped in an incomplete reply: it resumes there, not at its start
	buf := make([]byte, 16<<10)
	r, w := 0, 0
	var heads [64]*request
	var ends [64]int
	for {
		// Parse every complete reply in the buffer, in groups of up to 64 (one lock per group).
		for r < w {
			c.mu.Lock()
			n := c.queue.peek(heads[:])
			c.mu.Unlock()
			if n == 0 {
				c.fail(fmt.Errorf("shard %s: unexpected data with no request pending: %.40q", c.shard.server, buf[r:w]), true)
				return
			}
			k, at := 0, r
			for k < n {
				size, err := parse(buf[at:w], heads[k], &scan)
				if err != nil {
					c.fail(fmt.Errorf("shard %s: %w", c.shard.server, err), true)
					return
				}
				if size == 0 {
					break
				}
				at += size
				ends[k] = at
				k++
			}
			if k == 0 {
				break
			}
			c.mu.Lock()
			if c.broken.Load() != nil { // fail() already answered them
				c.mu.Unlock()
				return
			}
			c.queue.pop(k)
			c.mu.Unlock()
			now := time.Now().UnixNano()
			start := r
			for i := 0; i < k; i++ {
				req := heads[i]
				c.shard.metrics.observe(now - req.sentAt)
				req.cmd.observe(now-req.sentAt, errorReply(buf[start:ends[i]]))
				req.finish(buf[start:ends[i]], nil)
				start = ends[i]
				heads[i] = nil
			}
			r = start
		}
		if r == w {
			r, w = 0, 0
			if len(buf) > 1<<20 { // a huge reply has gone: do not keep its buffer
				buf = make([]byte, 16<<10)
			}
		} else if w == len(buf) {
			if r > 0 {
				w = copy(buf, buf[r:w])
				r = 0
			} else {
				buf = append(buf, make([]byte, len(buf))...)
			}
		}
		c.handOffWrites()
		n, err := c.conn.Read(buf[w:])
		w += n
		if err != nil {
			if c.broken.Load() == nil {
				c.fail(fmt.Errorf("shard %s: reading: %w", c.shard.server, err), true)
			}
			return
		}
		if n > 0 {
			c.shard.recordSuccessSoon()
		}
	}
}

// errorReply reports whether a shard's reply is an error: redis's "-ERR …", memcache's ERROR,
// CLIENT_ERROR and SERVER_ERROR lines.
func errorReply(b []byte) bool {
	return len(b) > 0 && b[0] == '-' || bytes.HasPrefix(b, []byte("ERROR")) || bytes.HasPrefix(b, []byte("CLIENT_ERROR")) || bytes.HasPrefix(b, []byte("SERVER_ERROR"))
}

// recordSuccessSoon resets the failure count on the first reply after failures, cheaply.
func (s *shard) recordSuccessSoon() {
	if s.hadFailure.Load() {
		s.hadFailure.Store(false)
		s.recordSuccess()
	}
}

// watchdog fails the connection when its oldest request has waited longer than the timeout.
func (c *serverConn) watchdog() {
	defer c.shard.backend.wg.Done()
	timeout := c.shard.backend.cfg.Timeout
	tick := time.NewTicker(max(timeout/4, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-c.shard.backend.ctx.Done():
			c.fail(errShuttingDown, false)
			return
		case now := <-tick.C:
			c.mu.Lock()
			oldest := c.queue.oldest()
			c.mu.Unlock()
			if oldest != 0 && now.UnixNano()-oldest > int64(timeout) {
				c.fail(fmt.Errorf("shard %s: no reply within the timeout of %s", c.shard.server, timeout), true)
				return
			}
		}
	}
}
