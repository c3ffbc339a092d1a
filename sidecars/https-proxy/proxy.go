package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// upstreamAddr is the app's address: always loopback, as the sidecar shares the pod's network namespace.
func upstreamAddr(cfg *Config) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.ProxyPort))
}

// badGatewayMessage is the body of a 502, on HTTP/1.x (http1.go) and HTTP/2 (http2.go).
func badGatewayMessage(upstream string, err error) string {
	return fmt.Sprintf("502 Bad Gateway: https-proxy could not get a response from the app at %s: %v\n", upstream, err)
}

// rateLimitedLog logs at most one warning per interval, so that a stopped app under load does not flood
// the log; the metrics count every error.
type rateLimitedLog struct {
	log   *slog.Logger
	every time.Duration
	last  atomic.Int64
}

func (l *rateLimitedLog) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(l.every) || !l.last.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn(msg, args...)
}
