//go:build linux

package fifopoll

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
// Without patching the runtime, the proxy's TCP connections (to clients and to the app) leave Go's
// netpoller: Wrap moves the socket to a descriptor Go does not poll, registered with an epoll
// instance of our own, and one goroutine, fifoPoller.run, takes its events in epoll's order and wakes
// the waiting readers in that order: first ready, first served. Writers that find the socket full wait
// for the same poller; deadlines are timers of our own.
//
// It also saves a system call per wait. net.Conn.Read always tries read(2) first and waits only after
// EAGAIN; on a request/response connection that first try nearly always fails (the answer is not
// there yet). A fifoConn whose last read emptied the socket waits first, then reads once.
//
// If anything here fails (no epoll instance, no descriptor to spare), the connection is used as Go
// made it (Wrap returns it as is).

// maxFIFOEvents is how many events one epoll_wait takes; more are taken by the next, in order.
const maxFIFOEvents = 256

var (
	fifoOnce   sync.Once
	fifoShared *fifoPoller
)

// Wrap returns conn (a *net.TCPConn, which it then owns) served by the FIFO poller, or conn itself
// if it is not a TCP connection or the poller is unavailable.
func Wrap(conn net.Conn) net.Conn {
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
				c := p.conns[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]
				if c == nil {
					continue
				}
				if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					c.peerDone.Store(true) // before the reader is woken: see Read
				}
				if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					ready = append(ready, c)
				}
				// Every event also says whether there is room to write; a writer waits only after
				// a full socket, and room after that brings an event of its own.
				if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					c.notifyWriter()
				}
			}
			p.mu.Unlock()
			// A woken goroutine goes to the front of the run queue and pushes the one woken before it to
			// the back; so wake the second to the last in order, then the first.
			for _, c := range ready[min(1, len(ready)):] {
				c.notifyReader()
			}
			if len(ready) > 0 {
				ready[0].notifyReader()
			}
			clear(ready)
			if n < len(events) {
				return false
			}
		}
	})
	// Unreachable; if it were not, every reader and writer would wait forever: better to stop loudly.
	panic(fmt.Sprintf("fifopoll: the connection poller stopped: %v", err))
}

// wrap moves tc's socket to a new descriptor that only this poller watches, and closes tc (which
// removes the old descriptor from Go's netpoller; the socket lives on in the new one). Two epoll sets
// watching one socket would each queue every event, and Go's would wake nobody.
func (p *fifoPoller) wrap(tc *net.TCPConn) net.Conn {
	raw, err := tc.SyscallConn()
	if err != nil {
		return tc
	}
	fd, dupErr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || dupErr != nil {
		return tc
	}
	// O_NONBLOCK belongs to the socket, not the descriptor, and os.NewFile hands a non-blocking
	// descriptor to Go's netpoller: clear it while NewFile looks, then set it again (nothing reads or
	// writes tc meanwhile: it was just accepted or dialed).
	if unix.SetNonblock(fd, false) != nil {
		unix.Close(fd)
		return tc
	}
	f := os.NewFile(uintptr(fd), "tcp")
	fraw, err := f.SyscallConn()
	if err != nil || unix.SetNonblock(fd, true) != nil {
		raw.Control(func(s uintptr) { unix.SetNonblock(int(s), true) }) // for tc, through its own descriptor
		f.Close()
		return tc
	}
	c := &fifoConn{f: f, raw: fraw, p: p, laddr: tc.LocalAddr(), raddr: tc.RemoteAddr(),
		readReady: make(chan struct{}, 1), writeReady: make(chan struct{}, 1)}
	c.readSyscall, c.writeSyscall = c.readFD, c.writeFD
	c.readDeadline.wake, c.writeDeadline.wake = c.notifyReader, c.notifyWriter
	p.mu.Lock()
	p.nextID++
	c.id = p.nextID
	p.conns[c.id] = c
	p.mu.Unlock()
	// Edge-triggered: one event per arrival of data (or of the end, or of room to write after a full
	// socket), taken at most once. A socket already readable when added gets an event at once.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(c.id)), Pad: int32(uint32(c.id >> 32))}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.forget(c)
		f.Close()
		return tc
	}
	tc.Close()
	return c
}

func (p *fifoPoller) forget(c *fifoConn) {
	p.mu.Lock()
	delete(p.conns, c.id)
	p.mu.Unlock()
}

// fifoConn is a TCP connection on a descriptor that fifoPoller watches. Like any net.Conn, its
// methods may be called from several goroutines at once.
type fifoConn struct {
	f            *os.File        // the socket, which Go does not poll; its descriptor outlives a read or write in flight
	raw          syscall.RawConn // f's: reads and writes hold f open while they run
	p            *fifoPoller
	id           uint64
	laddr, raddr net.Addr

	// readReady and writeReady hold a token when an event arrived since the reader (writer) last took
	// one, or when Close or a deadline may end its wait.
	readReady, writeReady chan struct{}
	// peerDone: an event said the peer closed or reset the connection. That end arrives with no event
	// of its own when it came with the last data (edge-triggered: one event for both).
	peerDone      atomic.Bool
	closed        atomic.Bool
	closeOnce     sync.Once
	readDeadline  deadline
	writeDeadline deadline

	// readMu makes concurrent Reads take turns, as net.TCPConn's do; it guards drained (the last read
	// emptied the socket, so wait for an event before reading again) and readOnce's callback
	// (c.readFD, made once: a closure per call would allocate) with its arguments.
	readMu      sync.Mutex
	drained     bool
	readSyscall func(uintptr) bool
	readBuf     []byte
	readN       int
	readErr     error
	// writeMu does the same for Writes.
	writeMu      sync.Mutex
	writeSyscall func(uintptr) bool
	writeBuf     []byte
	writeN       int
	writeErr     error
}

func (c *fifoConn) notifyReader() { notify(c.readReady) }
func (c *fifoConn) notifyWriter() { notify(c.writeReady) }

func notify(ready chan struct{}) {
	select {
	case ready <- struct{}{}:
	default:
	}
}

func (c *fifoConn) Read(b []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if err := c.usable(&c.readDeadline); err != nil {
			return 0, c.opError("read", err)
		}
		if len(b) == 0 {
			return 0, nil
		}
		if c.drained {
			<-c.readReady
			c.drained = false
			continue // closed, or the deadline passed, meanwhile?
		}
		c.readBuf = b
		err := c.raw.Read(c.readSyscall)
		n, rerr := c.readN, c.readErr
		c.readBuf, c.readErr = nil, nil
		switch {
		case err != nil: // f closed
			return 0, c.opError("read", net.ErrClosed)
		case rerr == unix.EAGAIN:
			c.drained = true
		case rerr != nil:
			return 0, c.opError("read", os.NewSyscallError("read", rerr))
		case n == 0:
			return 0, io.EOF
		default:
			// A short read took all the data there was: the next arrival brings an event. A full
			// one may have left more, and the end of the stream may be next (a read returning 0,
			// or an error) with its event already taken: both bring none, so read again first.
			c.drained = n < len(b) && !c.peerDone.Load()
			return n, nil
		}
	}
}

func (c *fifoConn) readFD(fd uintptr) bool {
	for {
		c.readN, c.readErr = unix.Read(int(fd), c.readBuf)
		if c.readErr != unix.EINTR {
			return true
		}
	}
}

// Write writes all of b, waiting for room when the socket is full, or fails.
func (c *fifoConn) Write(b []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	written := 0
	for {
		if err := c.usable(&c.writeDeadline); err != nil {
			return written, c.opError("write", err)
		}
		if len(b) == 0 {
			return 0, nil
		}
		c.writeBuf = b[written:]
		err := c.raw.Write(c.writeSyscall)
		n, werr := c.writeN, c.writeErr
		c.writeBuf, c.writeErr = nil, nil
		switch {
		case err != nil:
			return written, c.opError("write", net.ErrClosed)
		case werr == unix.EAGAIN:
			<-c.writeReady
		case werr != nil:
			return written, c.opError("write", os.NewSyscallError("write", werr))
		default:
			if written += n; written == len(b) {
				return written, nil
			}
		}
	}
}

func (c *fifoConn) writeFD(fd uintptr) bool {
	for {
		c.writeN, c.writeErr = unix.Write(int(fd), c.writeBuf)
		if c.writeErr != unix.EINTR {
			return true
		}
	}
}

// usable reports why no I/O may start: the connection is closed, or d has passed.
func (c *fifoConn) usable(d *deadline) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	if d.passed.Load() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// opError wraps err as net.Conn's methods do.
func (c *fifoConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

func (c *fifoConn) LocalAddr() net.Addr  { return c.laddr }
func (c *fifoConn) RemoteAddr() net.Addr { return c.raddr }

func (c *fifoConn) SetDeadline(t time.Time) error {
	c.readDeadline.set(t)
	c.writeDeadline.set(t)
	return nil
}

func (c *fifoConn) SetReadDeadline(t time.Time) error  { c.readDeadline.set(t); return nil }
func (c *fifoConn) SetWriteDeadline(t time.Time) error { c.writeDeadline.set(t); return nil }

func (c *fifoConn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.raw.Control(func(fd uintptr) { unix.EpollCtl(c.p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
		c.p.forget(c)
		c.closed.Store(true)
	})
	if !first {
		return c.opError("close", net.ErrClosed)
	}
	err := c.f.Close()
	c.readDeadline.stop()
	c.writeDeadline.stop()
	c.notifyReader()
	c.notifyWriter()
	if err != nil {
		return c.opError("close", err)
	}
	return nil
}

// SyscallConn gives the socket to code that inspects it (upstreamConn.closedByApp's MSG_PEEK).
func (c *fifoConn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// deadline is one direction's deadline: passed is set, and wake called, by a timer armed when the
// deadline is set (at most once a second per connection in this proxy), not per wait.
type deadline struct {
	passed atomic.Bool
	wake   func()

	mu    sync.Mutex
	t     time.Time
	timer *time.Timer
}

// set records t; a waiter is woken at once, to find t passed or wait again.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.t = t
	d.passed.Store(!t.IsZero() && !time.Now().Before(t))
	switch {
	case t.IsZero() || d.passed.Load():
		if d.timer != nil {
			d.timer.Stop()
		}
	case d.timer == nil:
		d.timer = time.AfterFunc(time.Until(t), d.fired)
	default:
		d.timer.Reset(time.Until(t))
	}
	d.wake()
}

// fired runs when the timer does. A deadline moved meanwhile is judged by its own time; one not yet
// reached by the wall clock (a deadline without a monotonic reading, a clock stepped back) re-arms.
func (d *deadline) fired() {
	d.mu.Lock()
	if d.t.IsZero() {
		d.mu.Unlock()
		return
	}
	if left := time.Until(d.t); left > 0 {
		d.timer.Reset(left)
		d.mu.Unlock()
		return
	}
	d.passed.Store(true)
	d.mu.Unlock()
	d.wake()
}

func (d *deadline) stop() {
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
}
