// Package statusport serves a sidecar's plain-HTTP status port: /healthz (the process is alive),
// /readyz (the sidecar can do its job, as its Ready func decides) and /metrics (Prometheus).
//
// Every sidecar has the same three endpoints with the same semantics, so that the catalog can give each the
// same probes; this package keeps them identical instead of five hand-written copies.
package statusport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the status port. The zero Ready means always ready.
type Server struct {
	// Addr is the listen address, e.g. ":9801".
	Addr string
	// Ready returns nil when the sidecar is ready, or an error saying why not (shown in the /readyz body).
	Ready func() error
	// Registry holds the sidecar's metrics; NewRegistry gives one with the Go and process collectors.
	Registry *prometheus.Registry
	// Extra handlers mounted beside the standard three (e.g. topz mounts /topz on the same port).
	Extra map[string]http.Handler
}

// NewRegistry returns a registry with the standard Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler returns the mux with /healthz, /readyz, /metrics and the extra handlers.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.Ready != nil {
			if err := s.Ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	reg := s.Registry
	if reg == nil {
		reg = NewRegistry()
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	for path, h := range s.Extra {
		mux.Handle(path, h)
	}
	return readOnly(mux)
}

// readOnly answers 405 to anything but GET and HEAD: the status port only reports.
func readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method "+r.Method+" not allowed: the status port accepts GET and HEAD", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Listen binds Addr now, so that a port conflict is reported at start, before Serve.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return nil, fmt.Errorf("status port: listening on %s: %w", s.Addr, err)
	}
	return ln, nil
}

// Serve serves on ln until ctx is done, then shuts down within 5 seconds. It returns nil after a clean
// shutdown and the server's error otherwise.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("status port: %w", err)
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(shutdownCtx)
		if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
			err = serveErr
		}
		return err
	}
}
