package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// syncer keeps the target directory in step with the source and tells the app after each new version:
// every change is written at once (so the files are never older than the source), and the reload waits
// until changes have been quiet for debounce, so a burst of changes gives one reload.
type syncer struct {
	src       source
	dir       *atomicDir
	reloaders []reloader
	// debounce is the quiet time before a reload; maxDelay bounds the wait under a continuous stream.
	debounce, maxDelay time.Duration
	metrics            *metrics
	log                *slog.Logger

	mu      sync.Mutex
	written bool   // a version was written or confirmed at least once: the app can start
	lastErr error  // why the last sync failed (nil after a success)
	logged  string // the failure last logged: its reason for source errors, else its message
}

// ready is nil once the target holds a configuration. Later source failures do not make it unready: the
// app keeps running on the last good files, and taking its pod out of service for a config outage would
// turn it into a traffic outage. They show in the logs and in config_sync_source_healthy instead.
func (s *syncer) ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written {
		return nil
	}
	if s.lastErr != nil {
		return fmt.Errorf("no configuration written to %s yet: %w", s.dir.path, s.lastErr)
	}
	return fmt.Errorf("no configuration written to %s yet: waiting for %s", s.dir.path, s.src.describe())
}

// run syncs until ctx is done.
func (s *syncer) run(ctx context.Context) {
	changes := make(chan struct{}, 1)
	changed := func() {
		select {
		case changes <- struct{}{}:
		default: // a sync is already due; it will read the latest state
		}
	}
	reloads := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.src.run(ctx, changed)
	}()
	go func() {
		defer wg.Done()
		s.reloadLoop(ctx, reloads)
	}()
	requestReload := func() {
		select {
		case reloads <- struct{}{}:
		default: // one is already queued: it will see the newest files
		}
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pendingSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
			if !s.syncOnce() {
				continue
			}
			if s.debounce == 0 {
				requestReload()
				continue
			}
			now := time.Now()
			if pendingSince.IsZero() {
				pendingSince = now
			}
			wait := s.debounce
			if deadline := pendingSince.Add(s.maxDelay); now.Add(wait).After(deadline) {
				wait = max(deadline.Sub(now), 0)
			}
			timer.Reset(wait)
		case <-timer.C:
			pendingSince = time.Time{}
			requestReload()
		}
	}
}

// syncOnce writes the source's current content if it differs from the target's. It reports whether a new
// version replaced an earlier one (the app has to be told).
func (s *syncer) syncOnce() bool {
	want, err := s.src.snapshot()
	if err != nil {
		s.failed(err, errorReason(err))
		return false
	}
	res, err := s.dir.write(want)
	if err != nil {
		s.failed(fmt.Errorf("writing %s: %w", s.dir.path, err), "write")
		// A version that was linked in before a cleanup step failed is still new to the app.
		return res.Changed && res.Replaced
	}
	now := time.Now()
	s.metrics.sourceHealthy.Set(1)
	s.metrics.lastSync.Set(float64(now.UnixNano()) / 1e9)
	s.mu.Lock()
	first, recovered := !s.written, s.lastErr != nil
	s.written, s.lastErr = true, nil
	s.mu.Unlock()
	if res.Changed {
		s.metrics.syncs.WithLabelValues("written").Inc()
		s.metrics.lastWrite.Set(float64(now.UnixNano()) / 1e9)
	} else {
		s.metrics.syncs.WithLabelValues("unchanged").Inc()
	}
	switch {
	case first:
		s.log.Info("configuration in place; ready", "dir", s.dir.path, "source", s.src.describe(), "files", names(want), "written", res.Changed)
	case res.Changed:
		s.log.Info("wrote a new version", "dir", s.dir.path, "files", names(want))
	case recovered:
		s.log.Info("source readable again; the files were already up to date", "source", s.src.describe())
	}
	return res.Changed && res.Replaced
}

// failed records a failed sync: counted every time, logged when its cause changes. The files in place
// are kept.
func (s *syncer) failed(err error, reason string) {
	var se *sourceError
	if errors.As(err, &se) && se.reason == "waiting" {
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		return // not an error: the first list has not completed yet
	}
	s.metrics.errors.WithLabelValues(reason).Inc()
	key := err.Error()
	if errors.As(err, &se) {
		// The same cause reaches us in several wordings (a failed list, a failed poll): one line per reason.
		key = se.reason
		s.metrics.sourceHealthy.Set(0)
	}
	s.mu.Lock()
	repeated := s.lastErr != nil && s.logged == key
	s.lastErr, s.logged = err, key
	written := s.written
	s.mu.Unlock()
	if repeated {
		return
	}
	if written {
		s.log.Error("cannot sync; keeping the last written configuration", "reason", reason, "error", err)
	} else {
		s.log.Error("cannot sync; not ready until a first configuration is written", "reason", reason, "error", err)
	}
}

// reloadLoop tells the app once per request, by every configured method in order. Requests that arrive
// meanwhile are merged into one more round.
func (s *syncer) reloadLoop(ctx context.Context, requests <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-requests:
		}
		for _, r := range s.reloaders {
			start := time.Now()
			if err := r.reload(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.metrics.reloads.WithLabelValues(r.method(), "failed").Inc()
				s.metrics.errors.WithLabelValues("reload").Inc()
				s.log.Error("telling the app to reload failed; it still runs on the previous configuration", "method", r.method(), "error", err)
				continue
			}
			s.metrics.reloads.WithLabelValues(r.method(), "ok").Inc()
			s.log.Info("told the app to reload", "method", r.method(), "took", time.Since(start).Round(time.Millisecond))
		}
	}
}

func names(f files) []string {
	out := make([]string, 0, len(f))
	for p := range f {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
