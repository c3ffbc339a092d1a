package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

func (s *sampler) scanCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scans
}

func (s *sampler) isActive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// TestSamplerSamplesOnlyWhileWanted: the first request waits for a table, later ones get the running
// sampler's latest, the sampler stops scanning when nobody asks, and a new request restarts it.
func TestSamplerSamplesOnlyWhileWanted(t *testing.T) {
	sc, err := newScanner("/proc")
	if err != nil {
		t.Fatal(err)
	}
	smp := newSampler(sc, 20*time.Millisecond, true)
	smp.idleAfter = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { smp.Run(ctx); close(done) }()

	first, err := smp.Table(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.Window <= 0 || len(first.Rows) == 0 {
		t.Fatalf("first table: window %v, %d rows", first.Window, len(first.Rows))
	}
	second, err := smp.Table(ctx)
	if err != nil || second.SampledAt.Before(first.SampledAt) {
		t.Fatalf("second table: %v, sampled %v before the first %v", err, second.SampledAt, first.SampledAt)
	}

	// Nobody asks: the sampler goes idle and stops scanning.
	for smp.isActive() {
		time.Sleep(10 * time.Millisecond)
	}
	idleScans := smp.scanCount()
	time.Sleep(10 * smp.window)
	if n := smp.scanCount(); n != idleScans {
		t.Fatalf("idle sampler scanned %d more times", n-idleScans)
	}

	// A request wakes it and gets a table sampled after the wake.
	asked := time.Now()
	third, err := smp.Table(ctx)
	if err != nil || third.SampledAt.Before(asked) {
		t.Fatalf("after idle: %v, table sampled at %v, asked at %v", err, third.SampledAt, asked)
	}

	cancel()
	<-done
	if _, err := smp.Table(context.Background()); !errors.Is(err, errStopped) {
		t.Fatalf("after stop: err = %v, want %v", err, errStopped)
	}
}

func TestSamplerRequestGivesUpWithItsContext(t *testing.T) {
	sc, err := newScanner("/proc")
	if err != nil {
		t.Fatal(err)
	}
	smp := newSampler(sc, time.Second, true) // Run is not started: nobody will answer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := smp.Table(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}
