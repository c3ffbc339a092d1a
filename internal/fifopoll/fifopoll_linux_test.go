//go:build linux

package fifopoll

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// TestFIFOConnIsANetConn runs x/net's net.Conn conformance suite (basic I/O of 1 MiB, which fills the
// socket and makes writes wait for room, ping-pong, racing reads and writes, past, present and future
// deadlines, a Close that ends a blocked read, concurrent methods) over a pair of loopback TCP
// connections both served by the FIFO poller, as the proxy's connections to clients and to the app are.
func TestFIFOConnIsANetConn(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, nil, err
		}
		defer ln.Close()
		a, b, err := fifoPair(ln)
		if err != nil {
			return nil, nil, nil, err
		}
		if _, ok := a.(*fifoConn); !ok {
			t.Fatalf("Wrap returned %T, want *fifoConn", a)
		}
		return a, b, func() { a.Close(); b.Close() }, nil
	})
}

// fifoPair dials ln and returns both ends of the connection, each served by the FIFO poller.
func fifoPair(ln net.Listener) (dialed, accepted net.Conn, err error) {
	acceptedCh := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acceptedCh <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	a := <-acceptedCh
	if a == nil {
		d.Close()
		return nil, nil, fmt.Errorf("accept on %s failed", ln.Addr())
	}
	return Wrap(d), Wrap(a), nil
}

// TestFIFOConnStreamEndsWithEOF streams to a reader through many fresh connection pairs, each closed by
// the writer after its data, and checks that every reader gets all of it and then the end. The end
// often arrives with the last data in one edge-triggered event; a reader that took a short read as
// "wait for the next event" then waited forever (about once in 10,000 streams before the fix; this test runs 20,000).
func TestFIFOConnStreamEndsWithEOF(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := make([]byte, 64<<10)
	for i := range want {
		want[i] = byte(i)
	}
	for i := 0; i < 20000; i++ {
		w, r, err := fifoPair(ln)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			io.CopyBuffer(struct{ io.Writer }{w}, bytes.NewReader(want), make([]byte, 1024))
			w.Close()
		}()
		r.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(struct{ io.Reader }{r})
		r.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("stream %d: got %d of %d bytes, err %v (a missed end of stream waits for the deadline)", i, len(got), len(want), err)
		}
	}
}
