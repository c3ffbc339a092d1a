package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/outrigger-dev/outrigger/internal/appprobe"
	"github.com/outrigger-dev/outrigger/internal/fifopoll"
	"github.com/outrigger-dev/outrigger/internal/statusport"
)

// Limits against slow or hostile clients. There is no read or write timeout on whole requests: bodies
// stream for as long as they need (large uploads, downloads, WebSockets).
//
// readHeaderTimeout is a variable only so that the slowloris test need not wait 10 s per round.
var readHeaderTimeout = 10 * time.Second

const (
	idleTimeout    = 120 * time.Second
	maxHeaderBytes = 64 << 10
	// readyzDialTimeout bounds /readyz's check that the app accepts connections.
	readyzDialTimeout = time.Second
)

// run binds both ports (so that a conflict is reported at start) and serves until ctx is done.
func run(ctx context.Context, cfg *Config) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	gogc, memoryLimit := tuneRuntime(os.LookupEnv)
	httpsAddr := net.JoinHostPort(cfg.ListenHost, strconv.Itoa(cfg.ListenPort))
	httpsLn, err := net.Listen("tcp", httpsAddr)
	if err != nil {
		return fmt.Errorf("listening for HTTPS on %s: %w", httpsAddr, err)
	}
	defer httpsLn.Close()
	statusLn, err := (&statusport.Server{Addr: net.JoinHostPort(cfg.ListenHost, strconv.Itoa(cfg.StatusPort))}).Listen()
	if err != nil {
		return err
	}
	defer statusLn.Close()
	log.Info("https-proxy starting", "version", version, "listen", httpsLn.Addr().String(), "upstream", upstreamAddr(cfg),
		"status", statusLn.Addr().String(), "minTLS", cfg.MinTLSVersion, "mTLS", cfg.ClientCAPath != "", "GOGC", gogc, "GOMEMLIMIT", memoryLimit)
	return serve(ctx, cfg, httpsLn, statusLn, log)
}

// serve proxies HTTPS from httpsLn to the app and serves the status port on statusLn until ctx is done,
// then stops accepting and drains in-flight requests for up to cfg.ShutdownTimeout. It returns an error
// when the certificate does not load at start or a server fails; nil after a clean shutdown.
//
// The frontend (frontend.go) accepts and handshakes every connection and serves HTTP/1.x itself;
// connections that chose HTTP/2 go on to net/http's server and its handler (http2.go).
func serve(ctx context.Context, cfg *Config, httpsLn, statusLn net.Listener, log *slog.Logger) error {
	reg := statusport.NewRegistry()
	m := newMetrics(reg)
	certs, err := newCertStore(cfg, m, log)
	if err != nil {
		return err
	}
	wrap := connWrapper(cfg)
	front := &frontend{
		tlsConfig: &tls.Config{
			MinVersion:         cfg.tlsVersion(),
			GetConfigForClient: certs.configForClient,
		},
		h2:           newConnQueue(httpsLn.Addr()),
		upstream:     newUpstreamPool(upstreamAddr(cfg), wrap),
		wrap:         wrap,
		upstreamAddr: upstreamAddr(cfg),
		m:            m,
		errorLog:     &rateLimitedLog{log: log, every: time.Second},
		handshakeLog: &rateLimitedLog{log: log, every: time.Second},
		conns:        map[*http1Conn]struct{}{},
	}
	h2 := &http.Server{
		Handler:           &http2Proxy{f: front},
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
	}
	h2.Protocols.SetHTTP2(true)
	status := &statusport.Server{
		Registry: reg,
		Extra:    map[string]http.Handler{appprobe.Prefix: newAppProbeHandler(cfg.AppProbes, upstreamAddr(cfg), statusLn.Addr().(*net.TCPAddr).Port)},
		Ready: func() error {
			if err := certs.ready(time.Now()); err != nil {
				return err
			}
			conn, err := net.DialTimeout("tcp", upstreamAddr(cfg), readyzDialTimeout)
			if err != nil {
				return fmt.Errorf("the app at %s does not accept connections: %w", upstreamAddr(cfg), err)
			}
			return conn.Close()
		},
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	bgCtx, stopBackground := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopBackground(); wg.Wait() }() // nothing outlives serve
	wg.Go(func() { certs.watch(bgCtx, hup) })
	wg.Go(func() { front.upstream.expireIdle(bgCtx) })
	statusErr := make(chan error, 1)
	wg.Go(func() { statusErr <- status.Serve(bgCtx, statusLn) })
	h2Err := make(chan error, 1)
	wg.Go(func() { h2Err <- h2.Serve(front.h2) })
	httpsErr := make(chan error, 1)
	wg.Go(func() { httpsErr <- front.serve(httpsLn) })

	// stopNow closes everything at once: a server failed.
	stopNow := func() {
		httpsLn.Close()
		h2.Close()
		closed, cancel := context.WithCancel(context.Background())
		cancel()
		front.shutdown(closed)
	}
	select {
	case err := <-httpsErr:
		stopNow()
		return fmt.Errorf("serving HTTPS: %w", err)
	case err := <-h2Err:
		stopNow()
		return fmt.Errorf("serving HTTP/2: %w", err)
	case err := <-statusErr:
		stopNow()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "timeout", cfg.ShutdownTimeout)
	httpsLn.Close() // stop accepting; the frontend's accept loop ends
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	h2Drained := make(chan error, 1)
	go func() { h2Drained <- h2.Shutdown(drainCtx) }()
	err = errors.Join(front.shutdown(drainCtx), <-h2Drained)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("drain timed out; closed the remaining connections", "timeout", cfg.ShutdownTimeout)
		h2.Close()
		err = nil
	}
	if serveErr := <-httpsErr; !errors.Is(serveErr, net.ErrClosed) && err == nil {
		err = fmt.Errorf("serving HTTPS: %w", serveErr)
	}
	if serveErr := <-h2Err; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("serving HTTP/2: %w", serveErr)
	}
	stopBackground()
	if statusErr := <-statusErr; statusErr != nil && err == nil {
		err = statusErr
	}
	return err
}

// connWrapper is what serves the proxy's TCP connections: the FIFO poller (internal/fifopoll), or Go's
// netpoller as net gives them when FIFO_POLLER=false.
func connWrapper(cfg *Config) func(net.Conn) net.Conn {
	if cfg.FIFOPoller {
		return fifopoll.Wrap
	}
	return func(c net.Conn) net.Conn { return c }
}
