package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outrigger-dev/outrigger/internal/envflag"
	"github.com/outrigger-dev/outrigger/internal/statusport"
)

// run syncs until ctx is done (or once with GITSYNC_ONE_TIME). It returns an error when the repository
// cannot be prepared, when more than GITSYNC_MAX_FAILURES syncs fail in a row, or when a one-time sync or
// its hooks fail.
func run(ctx context.Context, cfg *Config) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// Checkouts are readable by the app's group (and by others, as git's defaults make them); with
	// GITSYNC_GROUP_WRITE also writable by the group.
	if cfg.GroupWrite {
		syscall.Umask(0o002)
	} else {
		syscall.Umask(0o022)
	}
	reg := statusport.NewRegistry()
	m := newMetrics(reg)
	g, err := newGitCommand(cfg)
	if err != nil {
		return err
	}
	s := &syncer{cfg: cfg, git: g, log: log}
	if err := s.prepare(ctx); err != nil {
		return err
	}

	var ready atomic.Bool
	status := &statusport.Server{Addr: net.JoinHostPort("", strconv.Itoa(cfg.StatusPort)), Registry: reg, Ready: func() error {
		if !ready.Load() {
			return errNoSync
		}
		return nil
	}}
	ln, err := status.Listen()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := status.Serve(ctx, ln); err != nil {
			log.Error("status port stopped", "err", err)
		}
	}()

	var runners []*hookRunner
	for _, h := range hooksOf(cfg, s) {
		backoff := cfg.WebhookBackoff
		if h.Name() == "exechook" {
			backoff = cfg.ExechookBackoff
		}
		runners = append(runners, newHookRunner(h, backoff, log, m))
	}

	trigger := make(chan os.Signal, 1)
	if cfg.Signal != 0 {
		signal.Notify(trigger, cfg.Signal)
		defer signal.Stop(trigger)
	}
	if !cfg.OneTime {
		for _, r := range runners {
			wg.Add(1)
			go func() { defer wg.Done(); r.Run(ctx) }()
		}
	}

	log.Info("starting", "repo", envflag.RedactURL(cfg.Repo), "ref", cfg.Ref, "root", cfg.Root, "link", cfg.Link, "period", cfg.Period)
	failures := 0
	first := true
	for {
		res, err := syncOnce(ctx, s, cfg.SyncTimeout, m)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil // shutting down
		case err != nil:
			failures++
			m.consecutiveFailures.Set(float64(failures))
			if cfg.OneTime {
				return err
			}
			if cfg.MaxFailures >= 0 && failures > cfg.MaxFailures {
				return fmt.Errorf("%d syncs failed in a row (GITSYNC_MAX_FAILURES=%d): %w", failures, cfg.MaxFailures, err)
			}
			log.Error("sync failed; the last good checkout stays published", "hash", s.current, "failures", failures, "err", err)
		default:
			failures = 0
			m.consecutiveFailures.Set(0)
			ready.Store(true)
			// The first sync after a start is a sync too: hooks learn the published commit even when it
			// was resumed, as kubernetes/git-sync does.
			if res.Changed || first {
				if res.Changed {
					log.Info("published a new commit", "hash", res.Hash, "recycled", res.Recycled)
				}
				m.published(res.Hash)
				if cfg.OneTime {
					return runHooksOnce(ctx, runners, res.Hash)
				}
				for _, r := range runners {
					r.Send(res.Hash)
				}
			}
			first = false
			if cfg.OneTime {
				return nil
			}
			spareCtx, cancel := context.WithTimeout(ctx, cfg.SyncTimeout)
			s.prepareSpare(spareCtx)
			cancel()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.Period):
		case <-trigger:
			log.Info("syncing on signal", "signal", cfg.SyncOnSignal)
		}
	}
}

// syncOnce runs one sync bounded by timeout and records it.
func syncOnce(ctx context.Context, s *syncer, timeout time.Duration, m *metrics) (syncResult, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := s.sync(ctx)
	status := "noop"
	switch {
	case err != nil:
		status = "error"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("sync took longer than GITSYNC_SYNC_TIMEOUT=%s: %w", timeout, err)
		}
	case res.Changed:
		status = "success"
	}
	m.observe(status, time.Since(start))
	if err == nil {
		m.lastSuccess.SetToCurrentTime()
	}
	return res, err
}

// hooksOf lists the configured hooks.
func hooksOf(cfg *Config, s *syncer) []hook {
	var hooks []hook
	if cfg.WebhookURL != "" {
		hooks = append(hooks, newWebhook(cfg))
	}
	if cfg.ExechookCommand != "" {
		hooks = append(hooks, &exechook{command: cfg.ExechookCommand, timeout: cfg.ExechookTimeout, worktree: s.worktree})
	}
	return hooks
}

// runHooksOnce calls every hook once (GITSYNC_ONE_TIME): the exit status tells whether they all succeeded.
func runHooksOnce(ctx context.Context, runners []*hookRunner, hash string) error {
	var errs []error
	for _, r := range runners {
		if err := r.Once(ctx, hash); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
