package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// tlsState is one consistent load of the files: the serving certificate and, with mTLS, the client CA.
// It is never modified after it is stored; a reload stores a new one.
type tlsState struct {
	// config is what new handshakes use (returned by GetConfigForClient).
	config *tls.Config
	leaf   *x509.Certificate
	// The raw files, to notice that a reload changed nothing.
	certPEM, keyPEM, caPEM []byte
}

// certStore holds the current tlsState and replaces it when the files change. A failed reload keeps the
// old state: new handshakes go on with the last good certificate, and the failure is logged and counted.
// Open connections keep the certificate they were established with.
type certStore struct {
	cfg     *Config
	metrics *metrics
	log     *slog.Logger
	current atomic.Pointer[tlsState]
}

// debounce groups the burst of events one rotation makes (kubelet: new directory, two files, the ..data
// swap, the removal of the old directory; cp: the certificate, then the key) into one reload.
const debounce = 100 * time.Millisecond

// newCertStore loads the files once; it fails when they do not load, so that a bad mount is reported at start.
func newCertStore(cfg *Config, m *metrics, log *slog.Logger) (*certStore, error) {
	s := &certStore{cfg: cfg, metrics: m, log: log}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// configForClient is tls.Config.GetConfigForClient: every handshake takes the state current at that moment.
func (s *certStore) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	return s.current.Load().config, nil
}

// reload reads the files and, when they differ from the current state and form a valid certificate,
// stores the new state. On error the old state stays.
func (s *certStore) reload() error {
	certPEM, err := os.ReadFile(s.cfg.CertificatePath)
	if err != nil {
		return s.failed(fmt.Errorf("reading CERTIFICATE_PATH: %w", err))
	}
	keyPEM, err := os.ReadFile(s.cfg.KeyPath)
	if err != nil {
		return s.failed(fmt.Errorf("reading KEY_PATH: %w", err))
	}
	var caPEM []byte
	if s.cfg.ClientCAPath != "" {
		if caPEM, err = os.ReadFile(s.cfg.ClientCAPath); err != nil {
			return s.failed(fmt.Errorf("reading CLIENT_CA_PATH: %w", err))
		}
	}
	if old := s.current.Load(); old != nil && bytes.Equal(old.certPEM, certPEM) && bytes.Equal(old.keyPEM, keyPEM) && bytes.Equal(old.caPEM, caPEM) {
		return nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return s.failed(fmt.Errorf("loading the key pair %s and %s: %w", s.cfg.CertificatePath, s.cfg.KeyPath, err))
	}
	var clientCAs *x509.CertPool
	if s.cfg.ClientCAPath != "" {
		clientCAs = x509.NewCertPool()
		if !clientCAs.AppendCertsFromPEM(caPEM) {
			return s.failed(fmt.Errorf("loading CLIENT_CA_PATH %s: no PEM certificate in it", s.cfg.ClientCAPath))
		}
	}
	st := &tlsState{config: handshakeConfig(s.cfg, cert, clientCAs), leaf: cert.Leaf, certPEM: certPEM, keyPEM: keyPEM, caPEM: caPEM}
	s.current.Store(st)
	s.metrics.certExpiry.Set(float64(st.leaf.NotAfter.Unix()))
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.log.Info("certificate loaded", "subject", st.leaf.Subject.String(), "dnsNames", st.leaf.DNSNames,
		"serial", st.leaf.SerialNumber.Text(16), "notAfter", st.leaf.NotAfter.UTC().Format(time.RFC3339),
		"clientCA", s.cfg.ClientCAPath != "")
	return nil
}

func (s *certStore) failed(err error) error {
	s.metrics.reloads.WithLabelValues("failure").Inc()
	return err
}

// watch reloads on file events in the directories holding the files (this sees Kubernetes' atomic
// ..data symlink swap, which never touches tls.crt itself), on SIGHUP (hup) and every PollInterval, until
// ctx is done. Without inotify (e.g. its limits are exhausted) it still polls.
func (s *certStore) watch(ctx context.Context, hup <-chan os.Signal) {
	var events <-chan fsnotify.Event
	var watchErrors <-chan error
	if w, err := fsnotify.NewWatcher(); err != nil {
		s.log.Warn("cannot watch the certificate files; polling only", "interval", s.cfg.PollInterval, "err", err)
	} else {
		defer w.Close()
		for _, dir := range s.dirs() {
			if err := w.Add(dir); err != nil {
				s.log.Warn("cannot watch a certificate directory; polling it", "dir", dir, "interval", s.cfg.PollInterval, "err", err)
			}
		}
		events, watchErrors = w.Events, w.Errors
	}
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	reload := func(why string) {
		if err := s.reload(); err != nil {
			s.log.Error("certificate reload failed; still serving the previous certificate", "trigger", why, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if ev.Op != fsnotify.Chmod {
				settle.Reset(debounce)
			}
		case err := <-watchErrors:
			s.log.Warn("certificate watch error", "err", err)
		case <-settle.C:
			reload("file change")
		case <-hup:
			reload("SIGHUP")
		case <-poll.C:
			reload("poll")
		}
	}
}

// dirs lists the directories to watch, each once.
func (s *certStore) dirs() []string {
	var dirs []string
	for _, p := range []string{s.cfg.CertificatePath, s.cfg.KeyPath, s.cfg.ClientCAPath} {
		if p == "" {
			continue
		}
		if d := filepath.Dir(p); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// ready reports whether the current certificate is valid now: an expired certificate makes every
// client refuse the handshake, so the pod should not get traffic.
func (s *certStore) ready(now time.Time) error {
	leaf := s.current.Load().leaf
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("the certificate %s expired at %s", s.cfg.CertificatePath, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
