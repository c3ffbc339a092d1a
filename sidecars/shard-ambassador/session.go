package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"syscall"
	"time"

	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// session is what the redis and memcache client handlers share: the client's read buffer, its pooled
// requests, its cached shard connections, and the batch cycle — parse every complete command the client
// has sent, dispatch them all, flush each shard connection once, wait for the last reply, write every
// reply in order with one flush. Pipelined commands therefore travel to the shards together.
//
// A batch of exactly one command for one shard (a client that does not pipeline) goes "direct": the
// shard connection's reader writes the reply to the client's connection itself, and this goroutine goes
// straight back to reading the client instead of sleeping until the reply comes and being woken for it.
// The next batch first settles: it waits until that reply is written, so replies stay in order.
type session struct {
	b    *backend
	p    *pool // the pool this batch routes over (refreshPool, between batches)
	conn net.Conn
	raw  syscall.RawConn // conn's descriptor, for writes that must not block a shard reader; nil: no direct replies
	slot int             // which of a shard's server_connections this client uses (keeps its commands in order)
	// errLine appends the protocol's error reply for a failed request (set by the protocol's handler).
	errLine func(dst []byte, err error) []byte

	rbuf []byte
	r, w int
	out  *bufio.Writer

	wt      *waiter
	reqs    []*request
	nreq    int
	sc      []*serverConn
	dirty   []*serverConn
	now     int64
	cmd     *commandMetrics // the command being dispatched: its requests count in its metrics
	quit    bool
	started bool // the current batch has begun (settled, waiter armed)
	direct  bool // a direct request's reply may still be on its way to the client
}

const maxBatch = 1024 // commands per batch: bounds the memory one client can hold

func newSession(b *backend, conn net.Conn, id int) session {
	s := session{
		b: b, conn: conn, slot: id % b.cfg.ServerConnections,
		rbuf: make([]byte, 16<<10), out: bufio.NewWriterSize(conn, 32<<10),
		wt: newWaiter(), p: b.pool.Load(),
	}
	s.sc = make([]*serverConn, len(s.p.shards))
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			s.raw = raw
		}
	}
	return s
}

// commandSlack is room in the read buffer beyond MAX_COMMAND_SIZE for a command's own framing (RESP
// headers, a memcache command line).
const commandSlack = 64 << 10

// errCommandTooLarge: one command does not fit in MAX_COMMAND_SIZE. The client gets an error reply and
// its connection is closed (the rest of the command cannot be skipped without reading it).
type errCommandTooLarge struct{ limit int64 }

func (e errCommandTooLarge) Error() string {
	return fmt.Sprintf("shard-ambassador: command larger than MAX_COMMAND_SIZE=%s; closing the connection", envflag.FormatSize(e.limit))
}

// fill reads more client bytes, growing the buffer when a single command does not fit, up to
// MAX_COMMAND_SIZE (and its framing).
func (s *session) fill() error {
	if s.r == s.w {
		s.r, s.w = 0, 0
	} else if s.r > 0 {
		s.w = copy(s.rbuf, s.rbuf[s.r:s.w])
		s.r = 0
	}
	if s.w == len(s.rbuf) {
		limit := int(s.b.cfg.MaxCommandSize) + commandSlack
		if len(s.rbuf) >= limit {
			return errCommandTooLarge{s.b.cfg.MaxCommandSize}
		}
		s.rbuf = append(s.rbuf, make([]byte, min(len(s.rbuf), limit-len(s.rbuf)))...)
	}
	n, err := s.conn.Read(s.rbuf[s.w:])
	s.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// refreshPool takes the backend's current pool for the next batch; it reports whether the shards changed
// (a reload), when the per-shard state is sized anew. Called between batches only: every index a batch
// routes with is an index of one pool's shards.
func (s *session) refreshPool() bool {
	p := s.b.pool.Load()
	if p == s.p {
		return false
	}
	changed := !slices.Equal(p.shards, s.p.shards)
	s.p = p
	if changed {
		s.sc = make([]*serverConn, len(p.shards))
	}
	return changed
}

// start begins a batch, once, when its first complete command is there: it first settles the previous
// direct request (its reply must reach the client before anything that follows).
func (s *session) start() {
	if s.started {
		return
	}
	s.settle()
	s.started = true
	s.nreq = 0
	s.wt.pending.Store(1)
	s.now = time.Now().UnixNano()
}

// end closes the batch; the next command starts a new one.
func (s *session) end() { s.started = false }

// settle waits until the reply of the last direct request has been written to the client.
func (s *session) settle() {
	if s.direct {
		<-s.wt.done
		s.direct = false
	}
}

// newRequest returns a pooled request for this batch.
func (s *session) newRequest() *request {
	if s.nreq == len(s.reqs) {
		s.reqs = append(s.reqs, &request{})
	}
	r := s.reqs[s.nreq]
	s.nreq++
	if cap(r.reply) > 1<<20 { // do not keep a huge reply's memory for the client's lifetime
		r.reply = nil
	}
	r.err, r.reply, r.kind, r.client, r.cmd = nil, r.reply[:0], 0, nil, s.cmd
	r.state.Store(requestPending)
	return r
}

// send queues data to shard i for req. An error (shard unreachable) is returned at once.
func (s *session) send(i int, req *request, data []byte) error {
	sc := s.sc[i]
	if sc == nil || sc.broken.Load() != nil {
		var err error
		if sc, err = s.p.shards[i].conn(s.slot); err != nil {
			return err
		}
		s.sc[i] = sc
	}
	req.waiter, req.sentAt = s.wt, s.now
	s.wt.pending.Add(1)
	if err := sc.enqueue(req, data); err != nil {
		s.wt.pending.Add(-1)
		return err
	}
	for _, d := range s.dirty {
		if d == sc {
			return nil
		}
	}
	s.dirty = append(s.dirty, sc)
	return nil
}

// wait sends the batch to the shards and returns when every request of it has a reply or an error.
func (s *session) wait() {
	s.flushDirty()
	s.wt.complete()
	<-s.wt.done
}

// sendDirect sends the batch's only request so that its reply is written straight to the client by
// whoever receives it; false when the reply has already come the ordinary way (another client's write
// carried the request): then the caller waits and writes the reply as for any batch.
func (s *session) sendDirect(req *request) bool {
	if s.raw == nil {
		return false
	}
	req.client = s
	if !req.state.CompareAndSwap(requestPending, requestDirect) {
		return false
	}
	s.direct = true
	s.flushDirty()
	s.wt.complete() // the batch's own count: the request's completion now signals settle
	return true
}

// flushDirty sends what the batch queued on each shard connection, or leaves it to be sent with the
// requests of other clients (see claimFlush).
func (s *session) flushDirty() {
	for i, sc := range s.dirty {
		if sc.claimFlush() {
			sc.writeOut()
		}
		s.dirty[i] = nil
	}
	s.dirty = s.dirty[:0]
}

// writeDirect writes a direct request's reply (or its error) to the client and completes it. It runs on
// the goroutine that received the reply — usually a shard connection's reader, shared by many clients —
// so it never blocks: what the client's socket cannot take at once (a large reply, a client that does
// not read) is written by a goroutine of its own. A failed write is dropped: the client is gone, and its
// goroutine learns that from its next read.
func (s *session) writeDirect(r *request, reply []byte, err error) {
	if err != nil {
		r.err = err
		r.reply = s.errLine(r.reply[:0], err)
		reply = r.reply
	}
	n, werr := s.writeNow(reply)
	if werr != nil || n == len(reply) {
		r.waiter.complete()
		return
	}
	r.reply = append(r.reply[:0], reply[n:]...) // reply may be the reader's buffer, or r.reply itself
	go func() {
		s.conn.Write(r.reply)
		r.waiter.complete()
	}()
}

// writeNow writes as much of b as the client's socket takes without waiting.
func (s *session) writeNow(b []byte) (n int, err error) {
	rerr := s.raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			k, e := syscall.Write(int(fd), b[n:])
			if e == syscall.EINTR {
				continue
			}
			if e != nil {
				if e != syscall.EAGAIN {
					err = e
				}
				break
			}
			if k <= 0 {
				break
			}
			n += k
		}
		return true // never wait for the socket to drain
	})
	if err == nil {
		err = rerr
	}
	return n, err
}

// pick returns the shard index in p for key, or an error when no shard is live.
func pick(p *pool, key []byte) (int, error) {
	i := p.ring.Pick(key)
	if i < 0 {
		return -1, errNoLiveShard
	}
	return i, nil
}

var errNoLiveShard = errors.New("no live shard: every shard is ejected")
