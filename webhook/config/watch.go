package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Store holds the current configuration and swaps it atomically on reload. Readers call Current on every
// request and never see a half-applied file.
type Store struct {
	path, namespace string
	current         atomic.Pointer[Config]
	lastData        atomic.Pointer[[]byte] // the bytes behind current, to skip reloads of an unchanged file
	// OnReload is called after every reload attempt with its error (nil on success), for logs and metrics.
	OnReload func(err error)
}

// NewStore loads path once; it fails if the first load fails (the webhook must not start without a config).
func NewStore(path, injectorNamespace string) (*Store, error) {
	s := &Store{path: path, namespace: injectorNamespace}
	if _, err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current is the configuration in force.
func (s *Store) Current() *Config { return s.current.Load() }

// Reload re-reads the file. If it is invalid, the previous configuration stays in force and the error is
// returned (as ghostunnel's certloader does: a bad reload never leaves the webhook without a config).
// An unchanged file is not reloaded (and OnReload is not called).
func (s *Store) Reload() error {
	changed, err := s.load()
	if (changed || err != nil) && s.OnReload != nil {
		s.OnReload(err)
	}
	return err
}

func (s *Store) load() (changed bool, err error) {
	var data []byte
	if s.path != "" {
		if data, err = os.ReadFile(s.path); err != nil {
			return false, fmt.Errorf("reading the config file: %w", err)
		}
	}
	if last := s.lastData.Load(); last != nil && bytes.Equal(*last, data) {
		return false, nil
	}
	cfg, err := Parse(data, s.namespace)
	if err != nil {
		return false, fmt.Errorf("config file %s: %w", s.path, err)
	}
	s.current.Store(cfg)
	s.lastData.Store(&data)
	return true, nil
}

// Watch reloads the file whenever its directory changes, until ctx is done. It watches the directory, not
// the file: a mounted ConfigMap is updated by swapping the `..data` symlink, which replaces the file the
// name points at without writing to it. Bursts of events are coalesced; a 30 s resync catches anything a
// watch might miss.
func (s *Store) Watch(ctx context.Context) error {
	if s.path == "" {
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching the config file: %w", err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("watching the config file's directory %s: %w", filepath.Dir(s.path), err)
	}
	resync := time.NewTicker(30 * time.Second)
	defer resync.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return nil
			}
			debounce = time.After(100 * time.Millisecond)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			if s.OnReload != nil {
				s.OnReload(fmt.Errorf("watching the config file: %w", err))
			}
		case <-debounce:
			debounce = nil
			_ = s.Reload()
		case <-resync.C:
			_ = s.Reload()
		}
	}
}
