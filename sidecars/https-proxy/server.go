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

	"github.com/outrigger-dev/outrigger/internal/statusport"
)

// Limits against slow or hostile clients. There is no read or write timeout on whole requests: bodies
// stream for as long as they need (large uploads, downloads, WebSockets).
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	// upstreamDialTimeout bounds /readyz's check that the app accepts connections.
	upstreamDialTimeout = time.Second
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
func serve(ctx context.Context, cfg *Config, httpsLn, statusLn net.Listener, log *slog.Logger) error {
	reg := statusport.NewRegistry()
	m := newMetrics(reg)
	certs, err := newCertStore(cfg, m, log)
	if err != nil {
		return err
	}
	proxy, transport := newProxy(cfg, m, log)
	defer transport.CloseIdleConnections()

	srv := &http.Server{
		Handler: proxy,
		TLSConfig: &tls.Config{
			MinVersion:         cfg.tlsVersion(),
			GetConfigForClient: certs.configForClient,
		},
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnState: func(c net.Conn, state http.ConnState) {
			if tc, ok := c.(*tls.Conn); ok && state == http.StateClosed && !tc.ConnectionState().HandshakeComplete {
				m.handshakeFailures.Inc()
			}
		},
	}
	status := &statusport.Server{
		Registry: reg,
		Ready: func() error {
			if err := certs.ready(time.Now()); err != nil {
				return err
			}
			conn, err := net.DialTimeout("tcp", upstreamAddr(cfg), upstreamDialTimeout)
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
	statusErr := make(chan error, 1)
	wg.Go(func() { statusErr <- status.Serve(bgCtx, statusLn) })
	httpsErr := make(chan error, 1)
	wg.Go(func() { httpsErr <- srv.ServeTLS(httpsLn, "", "") })

	select {
	case err := <-httpsErr:
		return fmt.Errorf("serving HTTPS: %w", err)
	case err := <-statusErr:
		srv.Close()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "timeout", cfg.ShutdownTimeout)
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(drainCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("drain timed out; closing the remaining connections", "timeout", cfg.ShutdownTimeout)
		srv.Close()
		err = nil
	}
	if serveErr := <-httpsErr; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("serving HTTPS: %w", serveErr)
	}
	stopBackground()
	if statusErr := <-statusErr; statusErr != nil && err == nil {
		err = statusErr
	}
	return err
}
