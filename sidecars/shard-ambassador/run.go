package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/outrigger-dev/outrigger/internal/statusport"
	"golang.org/x/net/netutil"
)

// run serves until ctx is done, then closes every client and shard connection.
func run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := statusport.NewRegistry()
	m := newMetrics(reg)
	var parse replyParser
	switch cfg.Protocol {
	case "redis":
		parse = parseRedisReply
	case "memcache":
		parse = parseMemcacheReply
	}
	b, err := newBackend(ctx, cfg, parse, m, log)
	if err != nil {
		return err
	}
	for _, s := range cfg.Servers {
		rctx, rcancel := context.WithTimeout(ctx, cfg.Timeout)
		if _, err := net.DefaultResolver.LookupHost(rctx, s.Host); err != nil {
			log.Warn("shard's host does not resolve yet; it is resolved again on every connection attempt", "shard", s.String(), "err", err)
		}
		rcancel()
	}
	status := &statusport.Server{Addr: fmt.Sprintf(":%d", cfg.StatusPort), Ready: b.reachable, Registry: reg}
	sln, err := status.Listen()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		sln.Close()
		return fmt.Errorf("listening for %s clients on %s: %w", cfg.Protocol, cfg.Listen, err)
	}
	log.Info("serving", "protocol", cfg.Protocol, "listen", ln.Addr().String(), "shards", len(cfg.Servers),
		"hash", cfg.Hash, "distribution", cfg.Distribution, "hash_tag", cfg.HashTag, "status_port", cfg.StatusPort,
		"gomaxprocs", runtime.GOMAXPROCS(0))

	var wg sync.WaitGroup
	statusErr := make(chan error, 1)
	wg.Add(2)
	go func() { defer wg.Done(); statusErr <- status.Serve(ctx, sln) }()
	go func() { defer wg.Done(); b.maintain(ctx) }()
	if cfg.ConfigFile != "" && cfg.Protocol != "http" {
		wg.Add(1)
		go func() { defer wg.Done(); b.watchConfig(ctx, cfg.configPoll) }()
	}

	var serveErr error
	if cfg.Protocol == "http" {
		// HTTP clients over the limit wait to be accepted (net/http's server cannot answer before it
		// reads a request), as nginx's worker_connections makes them.
		serveErr = serveHTTPClients(ctx, netutil.LimitListener(ln, cfg.MaxClients), b)
	} else {
		serveErr = serveTCPClients(ctx, ln, b, m, log)
	}
	cancel()
	b.close()
	wg.Wait()
	if err := <-statusErr; err != nil && serveErr == nil {
		serveErr = err
	}
	return serveErr
}

func serveHTTPClients(ctx context.Context, ln net.Listener, b *backend) error {
	srv := &http.Server{
		Handler:           newHTTPHandler(b),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10,
		IdleTimeout:       120 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving http clients: %w", err)
	case <-ctx.Done():
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		err := srv.Shutdown(sctx)
		<-errc
		return err
	}
}

// serveTCPClients accepts redis or memcache clients until ctx is done, then closes them and waits.
func serveTCPClients(ctx context.Context, ln net.Listener, b *backend, m *metrics, log *slog.Logger) error {
	var (
		mu      sync.Mutex
		clients = map[net.Conn]struct{}{}
		wg      sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range clients {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	serve := serveRedis
	if b.cfg.Protocol == "memcache" {
		serve = serveMemcache
	}
	var acceptErr error
	for id := 0; ; id++ {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				acceptErr = fmt.Errorf("accepting clients: %w", err)
			}
			break
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			conn.Close()
			break
		}
		if len(clients) >= b.cfg.MaxClients {
			mu.Unlock()
			m.clientsRefused.Inc()
			refuseClient(conn, b.cfg)
			continue
		}
		conn = b.wrap(conn)
		clients[conn] = struct{}{}
		mu.Unlock()
		m.clients.Inc()
		wg.Add(1)
		go func(conn net.Conn, id int) {
			defer wg.Done()
			err := serve(b, m, newSession(b, conn, id))
			if err != nil && ctx.Err() == nil && !isClosed(err) {
				log.Debug("client connection ended", "client", conn.RemoteAddr().String(), "err", err)
			}
			conn.Close()
			mu.Lock()
			delete(clients, conn)
			mu.Unlock()
			m.clients.Dec()
		}(conn, id)
	}
	if ctx.Err() == nil {
		ln.Close()
	}
	mu.Lock()
	for c := range clients {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	return acceptErr
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// refuseClient answers a client over MAX_CLIENT_CONNECTIONS the way its server would (redis:
// "ERR max number of clients reached"; memcached: a SERVER_ERROR line) and closes it, without waiting
// on a client that does not read.
func refuseClient(conn net.Conn, cfg *Config) {
	msg := "-ERR max number of clients reached (shard-ambassador: MAX_CLIENT_CONNECTIONS=" + strconv.Itoa(cfg.MaxClients) + ")\r\n"
	if cfg.Protocol == "memcache" {
		msg = "SERVER_ERROR too many open connections (shard-ambassador: MAX_CLIENT_CONNECTIONS=" + strconv.Itoa(cfg.MaxClients) + ")\r\n"
	}
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(conn, msg)
	conn.Close()
}
