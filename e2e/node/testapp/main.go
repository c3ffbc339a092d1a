// Command testapp is the "app" of the node tests (e2e/node): a tiny static HTTP server, built FROM scratch
// by the tests' setup as localhost/outrigger/e2e-app:0.1.0.
//
//	GET /        "hello from <name>", then one line per -check URL: what it answered when the app started
//	GET /healthz 200, or 503 while -gate is closed
//	POST /open   opens the gate (/healthz answers 200 from then on)
//	GET /files/  the files under -files, if set (also a "dumb HTTP" git server for a bare repository)
//
// -check records whether a native sidecar was already serving when the kubelet started the app, which is
// what the sidecar's startupProbe is meant to guarantee; -gate makes a sidecar whose startupProbe fails
// until the test opens it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8000", "address to serve on")
	name := flag.String("name", "the e2e app", "name in the greeting")
	gate := flag.Bool("gate", false, "answer /healthz with 503 until POST /open")
	check := flag.String("check", "", "comma list of URLs to GET once at start; / reports what they answered")
	files := flag.String("files", "", "directory served read-only under /files/")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	var atStart strings.Builder
	for _, url := range strings.Split(*check, ",") {
		if url != "" {
			fmt.Fprintf(&atStart, "at start: GET %s -> %s\n", url, probe(url))
		}
	}
	var open atomic.Bool
	open.Store(!*gate)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n%s", *name, atStart.String())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !open.Load() {
			http.Error(w, "gate closed", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /open", func(w http.ResponseWriter, r *http.Request) {
		open.Store(true)
		w.WriteHeader(http.StatusNoContent)
	})
	if *files != "" {
		mux.Handle("GET /files/", http.StripPrefix("/files/", http.FileServer(http.Dir(*files))))
	}
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

// probe GETs url once and returns its status code, or the error.
func probe(url string) string {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "error: " + err.Error()
	}
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode)
}
