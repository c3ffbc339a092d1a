package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"time"
)

// session is what the redis and memcache client handlers share: the client's read buffer, its pooled
// requests, its cached shard connections, and the batch cycle — parse every complete command the client
// has sent, dispatch them all, flush each shard connection once, wait for the last reply, write every
// reply in order with one flush. Pipelined commands therefore travel to the shards together.
type session struct {
	b    *backend
	conn net.Conn
	slot int // which of a shard's server_connections this client uses (keeps its commands in order)

	rbuf []byte
	r, w int
	out  *bufio.Writer

	wt      *waiter
	reqs    []*request
	nreq    int
	sc      []*serverConn
	dirty   []*serverConn
	claimed []*serverConn // the connections whose flush this client claimed
	now     int64
	quit    bool
}

const maxBatch = 1024 // commands per batch: bounds the memory one client can hold

func newSession(b *backend, conn net.Conn, id int) session {
	return session{
		b: b, conn: conn, slot: id % b.cfg.ServerConnections,
		rbuf: make([]byte, 16<<10), out: bufio.NewWriterSize(conn, 32<<10),
		wt: newWaiter(), sc: make([]*serverConn, len(b.shards)),
	}
}

// fill reads more client bytes, growing the buffer when a single command does not fit.
func (s *session) fill() error {
	if s.r == s.w {
		s.r, s.w = 0, 0
	} else if s.r > 0 {
		s.w = copy(s.rbuf, s.rbuf[s.r:s.w])
		s.r = 0
	}
	if s.w == len(s.rbuf) {
		if len(s.rbuf) >= maxBulkSize+(1<<20) {
			return fmt.Errorf("command larger than %d bytes", maxBulkSize)
		}
		s.rbuf = append(s.rbuf, make([]byte, len(s.rbuf))...)
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

// begin starts a batch.
func (s *session) begin() {
	s.nreq = 0
	s.wt.pending.Store(1)
	s.now = time.Now().UnixNano()
}

// newRequest returns a pooled request for this batch.
func (s *session) newRequest() *request {
	if s.nreq == len(s.reqs) {
		s.reqs = append(s.reqs, &request{})
	}
	r := s.reqs[s.nreq]
	s.nreq++
	r.err, r.reply, r.kind = nil, r.reply[:0], 0
	return r
}

// send queues data to shard i for req. An error (shard unreachable) is returned at once.
func (s *session) send(i int, req *request, data []byte) error {
	sc := s.sc[i]
	if sc == nil || sc.broken.Load() != nil {
		var err error
		if sc, err = s.b.shards[i].conn(s.slot); err != nil {
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
//
// Writes to a shard are coalesced across clients, as twemproxy's event loop does: a client that claims a
// connection's flush first yields once, so that the other clients the runtime has ready to run (their
// requests arrived in the same instant) append theirs, and then sends them all in one write. On loopback
// a write costs the whole TCP receive path, so one write per request (and one read per request in the
// shard) was the proxy's largest cost without pipelining; the yield costs far less than a write.
func (s *session) wait() {
	claimed := s.claimed[:0]
	for i, sc := range s.dirty {
		if sc.claimFlush() {
			claimed = append(claimed, sc)
		}
		s.dirty[i] = nil
	}
	s.dirty = s.dirty[:0]
	if len(claimed) > 0 {
		runtime.Gosched()
		for i, sc := range claimed {
			sc.writeOut()
			claimed[i] = nil
		}
	}
	s.claimed = claimed[:0]
	s.wt.complete()
	<-s.wt.done
}

// pick returns the shard index for key, or an error when no shard is live.
func pick(b *backend, key []byte) (int, error) {
	i := b.ring.Load().Pick(key)
	if i < 0 {
		return -1, errNoLiveShard
	}
	return i, nil
}

var errNoLiveShard = errors.New("no live shard: every shard is ejected")
