package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"
)

// reloader tells the app that its configuration changed.
type reloader interface {
	// method is the metric label: signal, http or command.
	method() string
	// reload tells the app once (with retries where they make sense) and says what failed.
	reload(ctx context.Context) error
}

// signalReloader sends a signal to every process whose command name is name. The pod must share its
// process namespace, and the kernel must let us signal it (same UID, or CAP_KILL).
type signalReloader struct {
	name     string
	signal   syscall.Signal
	procRoot string
}

func (r *signalReloader) method() string { return "signal" }

func (r *signalReloader) reload(context.Context) error {
	pids, err := r.find()
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("sending %s: no process named %q found (does the pod set shareProcessNamespace: true?)", signalString(r.signal), r.name)
	}
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, r.signal); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("sending %s to %s (pid %d): %w (a different user needs CAP_KILL)", signalString(r.signal), r.name, pid, err))
		}
	}
	return errors.Join(errs...)
}

// find lists the processes named r.name: their comm (the kernel's name, cut to 15 bytes) or the base name
// of their argv[0]. This process is never one of them.
func (r *signalReloader) find() ([]int, error) {
	fs, err := procfs.NewFS(r.procRoot)
	if err != nil {
		return nil, fmt.Errorf("reading processes from %s: %w", r.procRoot, err)
	}
	procs, err := fs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("listing processes in %s: %w", r.procRoot, err)
	}
	const commLen = 15 // TASK_COMM_LEN - 1
	self := os.Getpid()
	var pids []int
	for _, p := range procs {
		if p.PID == self {
			continue
		}
		comm, err := p.Comm()
		if err != nil {
			continue // it exited meanwhile
		}
		match := comm == r.name || (len(r.name) > commLen && comm == r.name[:commLen])
		if !match {
			if argv, err := p.CmdLine(); err == nil && len(argv) > 0 {
				match = filepath.Base(argv[0]) == r.name
			}
		}
		if match {
			pids = append(pids, p.PID)
		}
	}
	return pids, nil
}

func signalString(s syscall.Signal) string {
	if name := unix.SignalName(s); name != "" {
		return name
	}
	return fmt.Sprintf("signal %d", int(s))
}

// retrying runs attempt once and then up to retries more times while it fails, pausing with a doubling,
// capped backoff. It returns the last error, or ctx's error when ctx ends first.
func retrying(ctx context.Context, retries int, first, limit time.Duration, attempt func(context.Context) error) error {
	backoff := wait.Backoff{Duration: first, Factor: 2, Jitter: 0.1, Steps: retries, Cap: limit}
	for try := 0; ; try++ {
		err := attempt(ctx)
		if err == nil {
			return nil
		}
		if try >= retries {
			if retries > 0 {
				return fmt.Errorf("%w (gave up after %d attempts)", err, try+1)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (stopped retrying: %w)", err, ctx.Err())
		case <-time.After(backoff.Step()):
		}
	}
}

// httpReloader requests a URL; any 2xx answer is success.
type httpReloader struct {
	url                   *url.URL
	httpMethod            string
	timeout               time.Duration
	retries               int
	backoff, backoffLimit time.Duration
	client                *http.Client
}

func newHTTPReloader(cfg *Config) *httpReloader {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns, transport.MaxIdleConnsPerHost = 1, 1
	return &httpReloader{
		url: cfg.ReloadURL, httpMethod: cfg.ReloadMethod, timeout: cfg.ReloadTimeout, retries: cfg.ReloadRetries,
		backoff: cfg.reloadBackoff, backoffLimit: cfg.reloadBackoffCap,
		client: &http.Client{Transport: transport},
	}
}

func (r *httpReloader) method() string { return "http" }

// redacted is the URL without credentials and query, for logs and errors.
func redacted(u *url.URL) string {
	return u.Scheme + "://" + u.Host + u.Path
}

func (r *httpReloader) reload(ctx context.Context) error {
	return retrying(ctx, r.retries, r.backoff, r.backoffLimit, func(ctx context.Context) error {
		reqCtx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(reqCtx, r.httpMethod, r.url.String(), nil)
		if err != nil {
			return fmt.Errorf("building the reload request: %w", err)
		}
		req.Header.Set("User-Agent", "outrigger-config-sync")
		resp, err := r.client.Do(req)
		if err != nil {
			var uerr *url.Error
			if errors.As(err, &uerr) {
				err = uerr.Err // its message repeats the whole URL, credentials included
			}
			return fmt.Errorf("%s %s: %w", r.httpMethod, redacted(r.url), err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("%s %s: answered %s, want 2xx: %q", r.httpMethod, redacted(r.url), resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	})
}

func (r *httpReloader) close() { r.client.CloseIdleConnections() }

// commandReloader runs a command (no shell); exit status 0 is success.
type commandReloader struct {
	argv                  []string
	timeout               time.Duration
	retries               int
	backoff, backoffLimit time.Duration
	targetDir             string
}

func (r *commandReloader) method() string { return "command" }

func (r *commandReloader) reload(ctx context.Context) error {
	return retrying(ctx, r.retries, r.backoff, r.backoffLimit, func(ctx context.Context) error {
		runCtx, cancel := context.WithTimeout(ctx, r.timeout)
		defer cancel()
		cmd := exec.CommandContext(runCtx, r.argv[0], r.argv[1:]...)
		cmd.Env = append(os.Environ(), "TARGET_DIR="+r.targetDir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = time.Second
		if err := cmd.Run(); err != nil {
			if runCtx.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("no exit within RELOAD_TIMEOUT=%s: %w", r.timeout, err)
			}
			tail := out.Bytes()
			if len(tail) > 512 {
				tail = tail[len(tail)-512:]
			}
			return fmt.Errorf("running RELOAD_COMMAND %q: %w: %q", strings.Join(r.argv, " "), err, strings.TrimSpace(string(tail)))
		}
		return nil
	})
}
