package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Real peers for the tests: redis-server, memcached and nutcracker from Debian, on 127.0.0.1 ports.

func TestMain(m *testing.M) {
	// The FIFO poller's one goroutine lives as long as the process, as in the binary.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/outrigger-dev/outrigger/internal/fifopoll.(*fifoPoller).run"))
}

func needBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		t.Fatalf("%s not found: run `make deps`", name)
	}
	return p
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// peer is a server process the test started.
type peer struct {
	cmd  *exec.Cmd
	addr string
	port int
	args []string
}

func startProcess(t testing.TB, addr string, bin string, args ...string) *peer {
	t.Helper()
	p := &peer{addr: addr, args: append([]string{bin}, args...)}
	_, ps, _ := net.SplitHostPort(addr)
	p.port, _ = strconv.Atoi(ps)
	p.start(t)
	t.Cleanup(p.stop)
	return p
}

func (p *peer) start(t testing.TB) {
	t.Helper()
	p.cmd = exec.Command(p.args[0], p.args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.args[0], err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s: %v", p.args[0], p.addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop kills the process and waits for it (a killed shard, or cleanup).
func (p *peer) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.cmd = nil
	}
}

func startRedis(t testing.TB) *peer {
	bin := needBinary(t, "redis-server")
	port := freePort(t)
	return startProcess(t, fmt.Sprintf("127.0.0.1:%d", port), bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", t.TempDir())
}

func startMemcached(t testing.TB, host string, port int) *peer {
	bin := needBinary(t, "memcached")
	if port == 0 {
		port = freePort(t)
	}
	return startProcess(t, net.JoinHostPort(host, strconv.Itoa(port)), bin, "-l", host, "-p", strconv.Itoa(port), "-U", "0", "-u", "root", "-m", "64", "-t", "1")
}

// startNutcracker runs nutcracker with yaml (which must listen on the returned port's address).
func startNutcracker(t testing.TB, listen string, yaml string) *peer {
	bin := needBinary(t, "nutcracker")
	dir := t.TempDir()
	conf := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return startProcess(t, listen, bin, "-c", conf, "-s", strconv.Itoa(freePort(t)), "-o", filepath.Join(dir, "nc.log"))
}

// startAmbassador runs the proxy in-process with cfg and returns its client address.
func startAmbassador(t testing.TB, cfg *Config) string {
	t.Helper()
	addr, _ := startAmbassadorStoppable(t, cfg)
	return addr
}

// startAmbassadorStoppable also returns a func that stops the proxy and waits for run to return.
func startAmbassadorStoppable(t testing.TB, cfg *Config) (string, func()) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	if cfg.StatusPort == 0 {
		cfg.StatusPort = freePort(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- run(ctx, cfg, log) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", cfg.Listen, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return cfg.Listen, stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("shard-ambassador did not listen on %s: %v", cfg.Listen, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// configFor builds a validated Config from ENV-style settings.
func configFor(t testing.TB, env map[string]string) *Config {
	t.Helper()
	cfg, err := loadConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatalf("config %v: %v", env, err)
	}
	return cfg
}

// conn is a raw client connection for pipelined tests.
type conn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return &conn{t: t, c: c, r: bufio.NewReaderSize(c, 64<<10)}
}

func (c *conn) send(b []byte) {
	c.t.Helper()
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readReply reads one RESP reply and returns it as text: "+OK", "-ERR ...", ":3", "$foo" ("$nil" for
// a missing value) or "*[a b]" for arrays.
func (c *conn) readReply() string {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch line[0] {
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "$nil"
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			c.t.Fatalf("read: %v", err)
		}
		return "$" + string(buf[:n])
	case '*':
		n, _ := strconv.Atoi(line[1:])
		var items []string
		for i := 0; i < n; i++ {
			items = append(items, c.readReply())
		}
		return "*[" + strings.Join(items, " ") + "]"
	}
	return line
}

// do sends one command and returns its reply.
func (c *conn) do(args ...string) string {
	c.t.Helper()
	c.send(resp(args...))
	return c.readReply()
}

func resp(args ...string) []byte {
	b := appendArrayHeader(nil, len(args))
	for _, a := range args {
		b = appendBulk(b, []byte(a))
	}
	return b
}

// readLine reads one memcache line without \r\n.
func (c *conn) readLine() string {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(line, "\r\n")
}

// mcGet sends a get/gets line and returns key → value, and whether the reply ended with END.
func (c *conn) mcGet(line string) (map[string]string, []string, string) {
	c.t.Helper()
	c.send([]byte(line + "\r\n"))
	values := map[string]string{}
	var order []string
	for {
		l := c.readLine()
		if !strings.HasPrefix(l, "VALUE ") {
			return values, order, l
		}
		f := strings.Fields(l)
		n, _ := strconv.Atoi(f[3])
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			c.t.Fatal(err)
		}
		values[f[1]] = string(buf[:n])
		order = append(order, f[1])
	}
}

// startSilentServer accepts connections and reads everything, but never answers.
func startSilentServer(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
