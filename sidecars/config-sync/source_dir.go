package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// source is where the configuration comes from: the Kubernetes API or a mounted directory.
type source interface {
	// describe names the source for logs and /readyz, e.g. "ConfigMap shop/web-config".
	describe() string
	// run follows the source until ctx is done, calling changed whenever snapshot may answer differently.
	run(ctx context.Context, changed func())
	// snapshot is the current content, or an error saying why there is none (the target is then left
	// as it is). A *sourceError classifies the error for the metrics.
	snapshot() (files, error)
}

// sourceError is a snapshot error with its reason label for config_sync_errors_total.
type sourceError struct {
	reason string // waiting, forbidden, missing, unreachable, invalid
	err    error
}

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// errorReason is the metric label of a snapshot error.
func errorReason(err error) string {
	var se *sourceError
	if errors.As(err, &se) {
		return se.reason
	}
	return "unreachable"
}

// dirSource follows a mounted ConfigMap (or Secret) volume: the kubelet swaps its ..data link when the
// object changes, which inotify reports as events on the directory.
type dirSource struct {
	dir   string
	every time.Duration // re-read period, in case an event is missed (e.g. a filesystem without inotify)
	log   *slog.Logger
}

func (s *dirSource) describe() string { return "directory " + s.dir }

func (s *dirSource) run(ctx context.Context, changed func()) {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Error("cannot watch the source directory; re-reading it periodically instead", "dir", s.dir, "every", s.every, "error", err)
	} else {
		defer watcher.Close()
	}
	watching := false
	watch := func() {
		if watcher == nil || watching {
			return
		}
		if err := watcher.Add(s.dir); err != nil {
			s.log.Warn("cannot watch the source directory yet; retrying", "dir", s.dir, "error", err)
			return
		}
		watching = true
		changed() // it may have appeared with content
	}
	watch()
	changed()
	ticker := time.NewTicker(s.every)
	defer ticker.Stop()
	var events chan fsnotify.Event
	var errs chan error
	if watcher != nil {
		events, errs = watcher.Events, watcher.Errors
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			// The kubelet's swap is a create of ..data (the rename) and removals; a plain directory gets
			// writes. Any of them may change the content: snapshot compares.
			changed()
			if ev.Name == s.dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				watching = false // the directory itself went away; add it again when it is back
			}
		case err, ok := <-errs:
			if !ok {
				return
			}
			s.log.Warn("watching the source directory", "dir", s.dir, "error", err)
			changed()
		case <-ticker.C:
			watch()
			changed()
		}
	}
}

// snapshot reads one consistent version. For the kubelet's layout it resolves ..data once and reads that
// version's directory (never changed once linked); if the kubelet removed it meanwhile it tries again.
// A plain directory is read as it is.
func (s *dirSource) snapshot() (files, error) {
	for attempt := 0; ; attempt++ {
		version, err := os.Readlink(filepath.Join(s.dir, dataDirName))
		if errors.Is(err, fs.ErrNotExist) {
			if _, statErr := os.Stat(s.dir); statErr != nil {
				return nil, &sourceError{reason: "missing", err: fmt.Errorf("reading SOURCE_DIR: %w", statErr)}
			}
			f, err := readTree(s.dir)
			if err != nil {
				return nil, &sourceError{reason: "unreachable", err: err}
			}
			return f, nil
		}
		if err != nil {
			return nil, &sourceError{reason: "unreachable", err: fmt.Errorf("reading SOURCE_DIR: %w", err)}
		}
		f, err := readTree(filepath.Join(s.dir, version))
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 4 {
			return nil, &sourceError{reason: "unreachable", err: err}
		}
	}
}
