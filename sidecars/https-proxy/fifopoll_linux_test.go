//go:build linux

package main

import (
	"net"
	"testing"

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
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			accepted <- c
		}()
		dialed, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		a, b := fifoWrap(dialed), fifoWrap(<-accepted)
		if _, ok := a.(*fifoConn); !ok {
			t.Fatalf("fifoWrap returned %T, want *fifoConn", a)
		}
		return a, b, func() { a.Close(); b.Close() }, nil
	})
}
