package main

import (
	"context"
	"errors"
	"sync"
	"time"
)

// sampler keeps the process table fresh while someone is looking, and costs nothing when nobody is.
//
// CPU% needs two snapshots one window apart. Paying the window on every request would make each request
// at least TOPZ_SAMPLE slow, and a background loop that never stops would scan /proc five times a second
// for nobody. So the loop is demand-driven: the first request after an idle period wakes it and waits one
// window for the first table; while requests keep coming (a dashboard refreshing, curl in a loop) it
// re-samples every window and a request is answered at once from the latest table, at most one window
// old; after idleAfter without requests it stops scanning until the next request.
type sampler struct {
	scanner   *scanner
	builder   *tableBuilder
	window    time.Duration
	idleAfter time.Duration

	wake chan struct{} // a request asks an idle loop to start; buffered, one pending wake is enough

	mu       sync.Mutex
	active   bool          // the loop is sampling and latest is from the current run
	latest   *Table        // the last table published, possibly from an earlier run
	err      error         // the last scan's error, nil after a good scan
	ready    chan struct{} // closed when the next table (or error) is published
	lastWant time.Time     // when a request last asked for a table
	scans    int           // detailed scans made, for tests and the metric
}

func newSampler(sc *scanner, window time.Duration, redact bool) *sampler {
	return &sampler{
		scanner:   sc,
		builder:   newTableBuilder(redact),
		window:    window,
		idleAfter: max(30*time.Second, 10*window),
		wake:      make(chan struct{}, 1),
		ready:     make(chan struct{}),
	}
}

// Table returns the current table: at once while the loop is active, else after waking it and waiting
// for its first table (one window). It fails when ctx ends first or when /proc cannot be listed.
func (s *sampler) Table(ctx context.Context) (*Table, error) {
	s.mu.Lock()
	s.lastWant = time.Now()
	if err := s.err; errors.Is(err, errStopped) {
		s.mu.Unlock()
		return nil, err
	}
	if s.active && s.latest != nil {
		t := s.latest
		s.mu.Unlock()
		return t, nil
	}
	ready := s.ready
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // a wake is already pending
	}
	select {
	case <-ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return s.latest, nil
}

// Ready reports the last scan's error, for /readyz.
func (s *sampler) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Run samples on demand until ctx ends, then fails the requests still waiting. It returns nil.
func (s *sampler) Run(ctx context.Context) error {
	defer s.publish(nil, errStopped)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
		if !s.sampleWhileWanted(ctx) {
			return nil
		}
	}
}

// sampleWhileWanted publishes a table every window until nobody has asked for idleAfter. It returns
// false when ctx ended.
func (s *sampler) sampleWhileWanted(ctx context.Context) bool {
	// The first snapshot only provides CPU times to subtract: no command lines or limits needed.
	prev, err := s.scanner.scan(false)
	if err != nil {
		s.publish(nil, err)
		return s.goIdle()
	}
	ticker := time.NewTicker(s.window)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-ticker.C:
		}
		cur, err := s.scanner.scan(true)
		if err != nil {
			s.publish(nil, err)
			return s.goIdle()
		}
		s.publish(s.builder.build(prev, cur), nil)
		prev = cur
		s.mu.Lock()
		idle := time.Since(s.lastWant) > s.idleAfter
		if idle {
			s.stopLocked()
		}
		s.mu.Unlock()
		if idle {
			return true
		}
	}
}

// publish makes t (or err) the current result and wakes the requests waiting for it.
func (s *sampler) publish(t *Table, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.latest, s.active, s.scans = t, true, s.scans+1
	}
	s.err = err
	close(s.ready)
	s.ready = make(chan struct{})
}

// goIdle stops after a failed scan; the next request retries.
func (s *sampler) goIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	return true
}

// stopLocked marks the loop idle. A wake sent before this point was sent while the loop was active and is
// served by tables already published, so it is dropped; any later request sees active=false and wakes it.
func (s *sampler) stopLocked() {
	s.active = false
	select {
	case <-s.wake:
	default:
	}
}

// errStopped answers the requests still waiting when the sampler stops.
var errStopped = errors.New("topz is shutting down")
