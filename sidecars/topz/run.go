package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/outrigger-dev/outrigger/internal/statusport"
)

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// run serves /topz, /healthz, /readyz and /metrics on cfg.Addr until ctx ends. It logs one line to log
// once listening (with the bound address).
func run(ctx context.Context, cfg Config, log io.Writer) error {
	sc, err := newScanner(procRoot)
	if err != nil {
		return err
	}
	collector, err := newProcessCollector(procRoot)
	if err != nil {
		return err
	}
	smp := newSampler(sc, cfg.Sample, cfg.Redact)
	reg := statusport.NewRegistry()
	if err := reg.Register(collector); err != nil {
		return fmt.Errorf("registering the process metrics: %w", err)
	}
	topz := newTopzHandler(smp, cfg.Sample)
	if err := reg.Register(refusedCounter(topz)); err != nil {
		return fmt.Errorf("registering the refusal metric: %w", err)
	}
	srv := &statusport.Server{
		Addr:     cfg.Addr,
		Ready:    smp.Ready,
		Registry: reg,
		Extra:    map[string]http.Handler{"/topz": topz},
	}
	ln, err := srv.Listen()
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "topz %s: serving /topz, /healthz, /readyz and /metrics on %s (sample %s, redact %t)\n",
		version, ln.Addr(), cfg.Sample, cfg.Redact)

	samplerCtx, stopSampler := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { smp.Run(samplerCtx) })
	err = srv.Serve(ctx, ln)
	stopSampler()
	wg.Wait()
	return err
}
