package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// hook is told about each new commit. Do must be idempotent: a failed call is retried.
type hook interface {
	Name() string
	Do(ctx context.Context, hash string) error
}

// webhook calls an HTTP endpoint with the commit hash in the Gitsync-Hash header (kubernetes/git-sync's
// contract), and fails unless the response has the expected status (0 accepts any).
type webhook struct {
	url, method   string
	successStatus int
	client        *http.Client
}

func newWebhook(cfg *Config) *webhook {
	return &webhook{url: cfg.WebhookURL, method: cfg.WebhookMethod, successStatus: cfg.WebhookSuccessStatus,
		client: &http.Client{Timeout: cfg.WebhookTimeout}}
}

func (w *webhook) Name() string { return "webhook" }

func (w *webhook) Do(ctx context.Context, hash string) error {
	req, err := http.NewRequestWithContext(ctx, w.method, w.url, nil)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", envflag.RedactURL(w.url), err)
	}
	req.Header.Set("Gitsync-Hash", hash)
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s %s: %w", w.method, envflag.RedactURL(w.url), err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if w.successStatus != 0 && resp.StatusCode != w.successStatus {
		return fmt.Errorf("webhook %s %s: status %d, want %d (GITSYNC_WEBHOOK_SUCCESS_STATUS)", w.method, envflag.RedactURL(w.url), resp.StatusCode, w.successStatus)
	}
	return nil
}

// exechook runs a command (no shell, no arguments, as kubernetes/git-sync does) in the new checkout, with
// GITSYNC_HASH in its environment.
type exechook struct {
	command  string
	timeout  time.Duration
	worktree func(hash string) string
}

func (e *exechook) Name() string { return "exechook" }

func (e *exechook) Do(ctx context.Context, hash string) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.command)
	cmd.Dir = e.worktree(hash)
	cmd.Env = append(os.Environ(), "GITSYNC_HASH="+hash)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("exechook %s: %w: %s", e.command, err, lastLines(string(out), 3))
	}
	return nil
}

// maxHookBackoff bounds the doubling wait between retries of a failed hook.
const maxHookBackoff = time.Minute

// hookRunner delivers each published hash to one hook, in the background so that a slow hook never
// delays a sync. A failed call is retried with a doubling backoff (bounded by maxHookBackoff) until it
// succeeds or a newer hash supersedes it: the hook is told the latest commit, once, and may miss a
// commit that was replaced while an earlier call was still running.
type hookRunner struct {
	hook    hook
	backoff time.Duration
	log     *slog.Logger
	metrics *metrics

	mu     sync.Mutex
	latest string
	wake   chan struct{}
}

func newHookRunner(h hook, backoff time.Duration, log *slog.Logger, m *metrics) *hookRunner {
	return &hookRunner{hook: h, backoff: backoff, log: log, metrics: m, wake: make(chan struct{}, 1)}
}

// Send hands hash to the runner without blocking.
func (r *hookRunner) Send(hash string) {
	r.mu.Lock()
	r.latest = hash
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *hookRunner) pending() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest
}

// Run delivers hashes until ctx is done.
func (r *hookRunner) Run(ctx context.Context) {
	var done string
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		}
		wait := r.backoff
		for hash := r.pending(); hash != done; hash = r.pending() {
			if err := r.Once(ctx, hash); err == nil {
				done = hash
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			case <-r.wake: // a newer hash: try it at once
			}
			wait = min(2*wait, max(r.backoff, maxHookBackoff))
		}
	}
}

// Once calls the hook once for hash, and logs and counts the outcome.
func (r *hookRunner) Once(ctx context.Context, hash string) error {
	err := r.hook.Do(ctx, hash)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("hook failed", "hook", r.hook.Name(), "hash", hash, "err", err)
		}
		r.metrics.hookRuns.WithLabelValues(r.hook.Name(), "error").Inc()
		return err
	}
	r.log.Info("hook done", "hook", r.hook.Name(), "hash", hash)
	r.metrics.hookRuns.WithLabelValues(r.hook.Name(), "success").Inc()
	return nil
}
