//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Why this file exists. Go's runtime starts the goroutines that one epoll_wait made ready in the
// reverse of epoll's order (runtime/netpoll_epoll.go pushes each onto the head of the list it hands to
// the scheduler), so under load the connection that has waited longest in a batch is served last.
// nginx serves a batch in epoll's order. On one saturated core that gave https-proxy a wider latency
// distribution than nginx's: a lower median but a p99 up to 25% higher (docs/performance.md). A build
// of the same proxy with that one runtime loop reversed had a p99 below nginx's.
//
// Without patching the runtime, reads of the proxy's TCP connections (to clients and to the app) wait
// on an epoll instance of our own instead; one goroutine, fifoPoller.run, takes its events in epoll's
// order and wakes the readers in that order: first ready, first served. Writes, deadlines' errors,
// Close and the rest stay with Go's netpoller.
//
// It also saves a system call per wait. net.Conn.Read always tries read(2) first and waits only after
// EAGAIN; on a request/response connection that first try nearly always fails (the answer is not
// there yet). A fifoConn whose last read emptied the socket waits first, then reads once.
//
// If the epoll instance cannot be made, connections are used unwrapped (fifoWrap returns them as is).

// maxFIFOEvents is how many events one epoll_wait takes; more are taken by the next, in order.
const maxFIFOEvents = 256

var (
	fifoOnce   sync.Once
	fifoShared *fifoPoller
)

// fifoWrap returns conn (a *net.TCPConn) with its reads served in readiness order, or conn itself if
// it is not a TCP connection or the poller is unavailable.
func fifoWrap(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	fifoOnce.Do(func() { fifoShared = newFIFOPoller() })
	if fifoShared == nil {
		return conn
	}
	return fifoShared.wrap(tc)
}

// fifoPoller owns the epoll instance; its goroutine blocks in Go's netpoller on the epoll descriptor
// itself (an epoll descriptor is readable while it has events), so an idle proxy costs nothing.
type fifoPoller struct {
	epfd int
	file *os.File // epfd as Go's netpoller knows it
	ep   syscall.RawConn

	mu     sync.Mutex
	conns  map[uint64]*fifoConn
	nextID uint64
}

func newFIFOPoller() *fifoPoller {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil
	}
	// A non-blocking descriptor given to os.NewFile is registered with Go's netpoller.
	f := os.NewFile(uintptr(epfd), "fifo-epoll")
	ep, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	p := &fifoPoller{epfd: epfd, file: f, ep: ep, conns: map[uint64]*fifoConn{}}
	go p.run()
	return p
}

// run delivers events until the process ends. The callback drains the epoll instance and returns
// false, which makes RawConn.Read wait for the descriptor to become readable again; Read itself returns
// only if the descriptor were closed, which nothing does.
func (p *fifoPoller) run() {
	events := make([]unix.EpollEvent, maxFIFOEvents)
	ready := make([]*fifoConn, 0, maxFIFOEvents)
	err := p.ep.Read(func(uintptr) bool {
		for {
			n, err := unix.EpollWait(p.epfd, events, 0)
			if err == unix.EINTR {
				continue
			}
			if n <= 0 {
				return false
			}
			ready = ready[:0]
			p.mu.Lock()
			for _, ev := range events[:n] {
				if c := p.conns[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; c != nil {
					ready = append(ready, c)
				}
			}
			p.mu.Unlock()
			// A woken goroutine goes to the front of the run queue and pushes the one woken before it to
			// the back; so wake the second to the last in order, then the first.
			for _, c := range ready[min(1, len(ready)):] {
				c.notify()
			}
			if len(ready) > 0 {
				ready[0].notify()
			}
			clear(ready)
			if n < len(events) {
				return false
			}
		}
	})
	// Unreachable; if it were not, every reader would wait forever: better to stop loudly.
	panic(fmt.Sprintf("https-proxy: the read poller stopped: %v", err))
}

func (p *fifoPoller) wrap(tc *net.TCPConn) net.Conn {
	raw, err := tc.SyscallConn()
	if err != nil {
		return tc
	}
	c := &fifoConn{Conn: tc, raw: raw, p: p, ready: make(chan struct{}, 1)}
	c.readSyscall = c.readFD
	p.mu.Lock()
	p.nextID++
	c.id = p.nextID
	p.conns[c.id] = c
	p.mu.Unlock()
	var addErr error
	err = raw.Control(func(fd uintptr) {
		// Edge-triggered: one event per arrival of data (or of the end), which a reader takes at most
		// once. A socket already readable when added gets an event at once.
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(c.id)), Pad: int32(uint32(c.id >> 32))}
		addErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || addErr != nil {
		p.forget(c)
		return tc
	}
	return c
}

func (p *fifoPoller) forget(c *fifoConn) {
	p.mu.Lock()
	delete(p.conns, c.id)
	p.mu.Unlock()
}

// fifoConn is a TCP connection whose reads wait for fifoPoller's events. Like any net.Conn, its
// methods may be called from several goroutines at once.
type fifoConn struct {
	net.Conn // the *net.TCPConn: writes, addresses and deadlines for writes go straight to it
	raw      syscall.RawConn
	p        *fifoPoller
	id       uint64

	// ready holds a token when an event arrived since the reader last took one, or when Close or the
	// read deadline may end its wait.
	ready     chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
	// deadlinePassed is set by deadlineTimer when the read deadline passes, which also puts a token in
	// ready; the timer is armed when the deadline is set (at most once a second per connection in this
	// proxy), not per wait.
	deadlinePassed atomic.Bool
	deadlineMu     sync.Mutex
	readDeadline   time.Time
	deadlineTimer  *time.Timer

	// readMu makes concurrent Reads take turns, as net.TCPConn's do; it guards drained: the last read
	// emptied the socket, so wait for an event before reading again.
	readMu  sync.Mutex
	drained bool
	// readSyscall (c.readFD), readBuf, readN and readErr: readOnce's callback and its arguments.
	readSyscall func(uintptr) bool
	readBuf     []byte
	readN       int
	readErr     error
}

func (c *fifoConn) notify() {
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

func (c *fifoConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if c.drained {
			if err := c.wait(); err != nil {
				return 0, c.readError(err)
			}
		}
		n, err := c.readOnce(b)
		switch {
		case err == unix.EAGAIN:
			c.drained = true
		case err != nil:
			c.drained = false // an error or the end repeats without waiting
			return 0, c.readError(err)
		case n == 0:
			c.drained = false
			return 0, io.EOF
		default:
			// A short read took all there was: the next arrival brings an event. A full one may
			// have left more, which brings none.
			c.drained = n < len(b)
			return n, nil
		}
	}
}

// readOnce is one read(2), made through RawConn so that a concurrent Close cannot reuse the descriptor
// under it; RawConn also reports a closed connection or a passed read deadline (set on the TCPConn too).
// The callback is c.readSyscall, made once, with its arguments in c (under readMu): a closure per call
// would cost allocations on every read.
func (c *fifoConn) readOnce(b []byte) (int, error) {
	c.readBuf = b
	rawErr := c.raw.Read(c.readSyscall)
	n, err := c.readN, c.readErr
	c.readBuf, c.readErr = nil, nil
	if rawErr != nil {
		if oe, ok := rawErr.(*net.OpError); ok {
			return 0, oe.Err
		}
		return 0, rawErr
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (c *fifoConn) readFD(fd uintptr) bool {
	for {
		c.readN, c.readErr = unix.Read(int(fd), c.readBuf)
		if c.readErr != unix.EINTR {
			return true
		}
	}
}

// wait takes the ready token, blocking until an event, the read deadline or Close.
func (c *fifoConn) wait() error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	if c.deadlinePassed.Load() {
		return os.ErrDeadlineExceeded
	}
	<-c.ready
	return nil
}

// readError wraps err as net.Conn.Read does: an *net.OpError around an *os.SyscallError for errnos.
func (c *fifoConn) readError(err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError("read", errno)
	}
	return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

func (c *fifoConn) SetDeadline(t time.Time) error {
	err := c.Conn.SetDeadline(t)
	c.setReadDeadline(t)
	return err
}

func (c *fifoConn) SetReadDeadline(t time.Time) error {
	err := c.Conn.SetReadDeadline(t)
	c.setReadDeadline(t)
	return err
}

// setReadDeadline records t and arms the timer that ends a wait when t passes; a reader already
// waiting is woken now, to wait again under the new deadline or find it passed.
func (c *fifoConn) setReadDeadline(t time.Time) {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	c.readDeadline = t
	c.deadlinePassed.Store(!t.IsZero() && !time.Now().Before(t))
	switch {
	case t.IsZero():
		if c.deadlineTimer != nil {
			c.deadlineTimer.Stop()
		}
	case c.deadlineTimer == nil:
		c.deadlineTimer = time.AfterFunc(time.Until(t), c.deadlineFired)
	default:
		c.deadlineTimer.Reset(time.Until(t))
	}
	c.notify()
}

// deadlineFired runs when the timer does; a deadline moved meanwhile (a timer reset while firing) is
// judged by its own time.
func (c *fifoConn) deadlineFired() {
	c.deadlineMu.Lock()
	passed := !c.readDeadline.IsZero() && !time.Now().Before(c.readDeadline)
	c.deadlinePassed.Store(passed)
	c.deadlineMu.Unlock()
	if passed {
		c.notify()
	}
}

func (c *fifoConn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.raw.Control(func(fd uintptr) { unix.EpollCtl(c.p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
		c.p.forget(c)
		c.closed.Store(true)
	})
	err := c.Conn.Close()
	if first {
		c.deadlineMu.Lock()
		if c.deadlineTimer != nil {
			c.deadlineTimer.Stop()
		}
		c.deadlineMu.Unlock()
		c.notify()
	}
	return err
}

// SyscallConn gives the socket to code that inspects it (upstreamConn.closedByApp's MSG_PEEK).
func (c *fifoConn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }
