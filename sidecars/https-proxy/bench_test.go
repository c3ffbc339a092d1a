package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkKeepAlive is the in-process view of the keep-alive path (bench/https-proxy/run.sh is the
// one against nginx): HTTP/1.1 GETs over TLS keep-alive connections through serve to an app answering
// 1 KiB. The app and the clients are raw sockets that parse only what they must, so that allocs/op and
// a CPU profile (-cpuprofile) are almost all the proxy's own. cpu-ns/op is the process's CPU time (user
// + system, proxy + clients + app) per request, which other load on the machine skews less than ns/op:
//
//	go test -run '^$' -bench KeepAlive -benchmem -cpuprofile cpu.out ./sidecars/https-proxy/
func BenchmarkKeepAlive(b *testing.B) {
	const bodyBytes = 1024
	ca := newPKI(b, "bench CA")
	p := startProxy(b, ca, testConfig(b, ca, cannedApp(b, bodyBytes)))
	request := []byte("GET /bench HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	b.SetParallelism(4) // several connections per core, as under wrk
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	defer func() { b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := tls.Dial("tcp", p.httpsAddr, &tls.Config{RootCAs: ca.pool(), NextProtos: []string{"http/1.1"}})
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		for pb.Next() {
			if _, err := conn.Write(request); err != nil {
				b.Error(err)
				return
			}
			if n, err := readResponse(br); err != nil || n != bodyBytes {
				b.Errorf("response: %d body bytes, %v; want %d", n, err, bodyBytes)
				return
			}
		}
	})
}

// cpuTime is the user + system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cannedApp serves the same bodyBytes-long 200 response to every request on 127.0.0.1, keeping
// connections alive, until the benchmark ends; it returns its port.
func cannedApp(b *testing.B, bodyBytes int) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	response := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
		bodyBytes, bytes.Repeat([]byte("x"), bodyBytes))
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := readHeader(br); err != nil {
						return
					}
					if _, err := c.Write(response); err != nil {
						return
					}
				}
			})
		}
	})
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return portOf(b, ln.Addr().String())
}

// readHeader reads one request or response header, up to its empty line, and returns the
// Content-Length it gave (0 if none).
func readHeader(br *bufio.Reader) (contentLength int, err error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			return contentLength, nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			if contentLength, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, err
			}
		}
	}
}

// readResponse reads one HTTP/1.1 response with a Content-Length and returns the body's length.
func readResponse(br *bufio.Reader) (int, error) {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return 0, fmt.Errorf("status line %q", status)
	}
	n, err := readHeader(br)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errors.New("no Content-Length")
	}
	_, err = io.CopyN(io.Discard, br, int64(n))
	return n, err
}
