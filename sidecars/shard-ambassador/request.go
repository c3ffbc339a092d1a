package main

import (
	"sync/atomic"
)

// request is one command sent to one shard and, when done, its raw reply or an error.
type request struct {
	reply  []byte
	err    error
	waiter *waiter
	sentAt int64 // unix nanoseconds
	// kind tells a protocol's reply parser what reply shape to expect (memcache: a retrieval or one line).
	kind byte
	// cmd counts the request in its command's metrics (nil: not counted).
	cmd *commandMetrics

	// state decides, once, who finishes the request: the client goroutine (requestDone: the reply is
	// copied into reply and the client is woken) or the shard reader (requestDirect: the reply is written
	// to client's connection by whoever receives it, and the client goroutine is never woken).
	state  atomic.Int32
	client *session // with requestDirect: whose connection the reply goes to
}

const (
	requestPending int32 = iota
	requestDirect        // the client asked for its reply to be written straight to its connection
	requestDone          // finished the ordinary way, before or instead of going direct
)

// finish completes req with its reply or err. reply may be a slice of the caller's read buffer: it is
// copied (or written out) before finish returns.
func (r *request) finish(reply []byte, err error) {
	if r.state.CompareAndSwap(requestPending, requestDone) {
		if err != nil {
			r.err = err
		} else {
			r.reply = append(r.reply[:0], reply...)
		}
		r.waiter.complete()
		return
	}
	r.client.writeDirect(r, reply, err)
}

// waiter counts a client's outstanding requests and wakes the client when the last one completes.
// The client holds one extra count while it dispatches, so done fires exactly once per batch.
type waiter struct {
	pending atomic.Int32
	done    chan struct{}
}

func newWaiter() *waiter { return &waiter{done: make(chan struct{}, 1)} }

func (w *waiter) complete() {
	if w.pending.Add(-1) == 0 {
		w.done <- struct{}{}
	}
}

// replyParser returns the length of the complete reply at the start of buf, 0 when more bytes are needed,
// or an error when the shard sent something that is not a reply to req. scan carries its progress
// through an incomplete reply between calls (always made with buf starting at that same reply), so
// that a large reply arriving in many reads is scanned once in all, not from its start at every read.
type replyParser func(buf []byte, req *request, scan *replyScan) (int, error)

// replyScan is where a replyParser stopped in an incomplete reply.
type replyScan struct {
	pos  int     // bytes of the reply already scanned: whole elements (RESP) or VALUE blocks (memcache)
	open []int64 // RESP: for each array being scanned, its elements still to come (innermost last)
}

// fifo is a queue of requests in the order they were written to the shard.
type fifo struct {
	items []*request
	head  int
}

func (q *fifo) push(r *request) {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	q.items = append(q.items, r)
}

func (q *fifo) peek(out []*request) int { return copy(out, q.items[q.head:]) }

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) pop(n int) {
	clear(q.items[q.head : q.head+n])
	q.head += n
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head > len(q.items)/2 {
		k := copy(q.items, q.items[q.head:])
		clear(q.items[k:])
		q.items, q.head = q.items[:k], 0
	}
}

func (q *fifo) oldest() int64 {
	if q.head < len(q.items) {
		return q.items[q.head].sentAt
	}
	return 0
}

func (q *fifo) drain() []*request {
	out := append([]*request(nil), q.items[q.head:]...)
	clear(q.items)
	q.items, q.head = nil, 0
	return out
}
