package main

import (
	"log/slog"
	"sync/atomic"
	"time"
)

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
