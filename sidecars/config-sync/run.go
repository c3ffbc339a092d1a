package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/outrigger-dev/outrigger/internal/statusport"
)

// run syncs until ctx is done. It returns an error only for what stops it: a bad environment at start
// (no credentials, a RELOAD_COMMAND that does not exist, the status port taken) or the status server
// failing. Source, write and reload failures are logged, counted and retried instead.
func run(ctx context.Context, cfg *Config) error {
	log := cfg.logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
		// client-go's package-level messages in the same format. klog's logger is process-wide, so
		// only the binary's own run sets it; a test running several syncs in one process passes each
		// its logger and they would race on it.
		klog.SetSlogLogger(log)
	}
	// The informers log through the context's logger: each run's own.
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(log.Handler()))

	var src source
	if cfg.SourceDir != "" {
		src = &dirSource{dir: cfg.SourceDir, every: cfg.UpdateFrequency, log: log}
	} else {
		rc, err := restConfigFor(cfg)
		if err != nil {
			return err
		}
		namespace, err := namespaceFor(cfg)
		if err != nil {
			return err
		}
		client, err := coreV1Client(rc, version)
		if err != nil {
			return fmt.Errorf("creating the API client: %w", err)
		}
		src = newAPISource(client, namespace, cfg.ConfigMap, cfg.Secret, cfg.UpdateFrequency, log)
	}

	var reloaders []reloader
	if cfg.ReloadProcess != "" {
		reloaders = append(reloaders, &signalReloader{name: cfg.ReloadProcess, signal: cfg.ReloadSignal, procRoot: cfg.procRoot})
	}
	if cfg.ReloadURL != nil {
		h := newHTTPReloader(cfg)
		defer h.close()
		reloaders = append(reloaders, h)
	}
	if len(cfg.ReloadCommand) > 0 {
		if _, err := exec.LookPath(cfg.ReloadCommand[0]); err != nil {
			return fmt.Errorf("RELOAD_COMMAND: %w (the command must exist in this container; the image has nothing but config-sync)", err)
		}
		reloaders = append(reloaders, &commandReloader{
			argv: cfg.ReloadCommand, timeout: cfg.ReloadTimeout, retries: cfg.ReloadRetries,
			backoff: cfg.reloadBackoff, backoffLimit: cfg.reloadBackoffCap, targetDir: cfg.TargetDir,
		})
	}

	reg := statusport.NewRegistry()
	sy := &syncer{
		src:       src,
		dir:       &atomicDir{path: cfg.TargetDir, now: time.Now, grace: time.Second},
		reloaders: reloaders,
		debounce:  cfg.Debounce,
		maxDelay:  max(cfg.maxReloadDelay, cfg.Debounce),
		metrics:   newMetrics(reg),
		log:       log,
	}
	status := &statusport.Server{Addr: fmt.Sprintf(":%d", cfg.StatusPort), Ready: sy.ready, Registry: reg}
	var ln net.Listener = cfg.statusListener
	if ln == nil {
		var err error
		if ln, err = status.Listen(); err != nil {
			return err
		}
	}
	methods := make([]string, 0, len(reloaders))
	for _, r := range reloaders {
		methods = append(methods, r.method())
	}
	log.Info("config-sync starting", "version", version, "source", src.describe(), "dir", cfg.TargetDir,
		"reload", methods, "status", ln.Addr().String())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sy.run(ctx)
	}()
	err := status.Serve(ctx, ln)
	cancel()
	wg.Wait()
	log.Info("config-sync stopped")
	return err
}
