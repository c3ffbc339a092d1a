// Command testapp is the "app" of the node tests (e2e/node): a tiny static HTTP server, built FROM scratch
// by the tests' setup as localhost/outrigger/e2e-app:0.1.0.
//
//	GET /        "hello from <name>", then one line per -check URL: what it answered when the app started
//	GET /healthz 200, or 503 while -gate is closed
//	POST /open   opens the gate (/healthz answers 200 from then on)
//	GET /files/  the files under -files, if set (also a "dumb HTTP" git server for a bare repository)
//	GET /config  the -config file as the app last read it (at start, on SIGHUP or POST /reload), and how
//	             many times it reloaded
//	POST /reload reads the -config file again
//	GET /resolve?name=N  N's addresses from the pod's resolver (cluster DNS), one per line
//	GET /kube    the API server's /version through the kubernetes Service, verified with the pod's
//	             service account CA and authenticated with its token
//	GET|PUT /kv/{key}  with -kv: the key's value through the cache at -kv-addr (redis or memcache)
//	GET /shard/… "<name> <request URI>": which shard of an HTTP-sharded service answered
//
// -exit-after makes it a Job's work: it serves, then exits 0 after the duration.
//
// -check records whether a native sidecar was already serving when the kubelet started the app, which is
// what the sidecar's startupProbe is meant to guarantee; -gate makes a sidecar whose startupProbe fails
// until the test opens it.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
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
	configPath := flag.String("config", "", "config file the app reads at start and reloads on SIGHUP or POST /reload")
	exitAfter := flag.Duration("exit-after", 0, "exit 0 after this long (a Job's work); 0 serves until SIGTERM")
	kv := flag.String("kv", "", "serve GET and PUT /kv/{key} through a cache at -kv-addr speaking this protocol: redis or memcache")
	kvAddr := flag.String("kv-addr", "127.0.0.1:6379", "the cache's address (the shard-ambassador on localhost)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if *exitAfter > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *exitAfter)
		defer cancel()
	}

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
	conf := &config{path: *configPath}
	conf.load()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			conf.load()
		}
	}()
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) { conf.write(w) })
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		conf.load()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /resolve", func(w http.ResponseWriter, r *http.Request) {
		addrs, err := net.DefaultResolver.LookupHost(r.Context(), r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, strings.Join(addrs, "\n"))
	})
	mux.HandleFunc("GET /kube", func(w http.ResponseWriter, r *http.Request) {
		status, body, err := kubeVersion(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "%d %s", status, body)
	})
	// What a hostile app sharing the pod's PID namespace would try: another container's process's
	// environment, and a file of its root through /proc/<pid>/root. It reports what it could read (a byte
	// count, never the bytes) or the kernel's error.
	mux.HandleFunc("GET /pry", func(w http.ResponseWriter, r *http.Request) {
		process, file := r.URL.Query().Get("process"), r.URL.Query().Get("file")
		pid, err := findProcess(process)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, "pid %d (%s)\n", pid, process)
		for _, path := range []string{fmt.Sprintf("/proc/%d/environ", pid), fmt.Sprintf("/proc/%d/root%s", pid, file)} {
			if data, err := os.ReadFile(path); err != nil {
				fmt.Fprintf(w, "%s: %v\n", path, err)
			} else {
				fmt.Fprintf(w, "%s: read %d bytes\n", path, len(data))
			}
		}
	})
	if *kv != "" {
		store := kvStore{protocol: *kv, addr: *kvAddr}
		mux.HandleFunc("GET /kv/{key}", store.handle)
		mux.HandleFunc("PUT /kv/{key}", store.handle)
	}
	mux.HandleFunc("GET /shard/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s\n", *name, r.URL.RequestURI())
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

// config is the app's config file as it last read it.
type config struct {
	path    string
	mu      sync.Mutex
	content string
	reloads int
}

func (c *config) load() {
	if c.path == "" {
		return
	}
	data, err := os.ReadFile(c.path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.content = "error: " + err.Error()
	} else {
		c.content = string(data)
	}
	c.reloads++
}

func (c *config) write(w http.ResponseWriter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(w, "loads: %d\n%s", c.reloads, c.content)
}

// findProcess returns the PID of the first process whose command name is name.
func findProcess(name string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == name {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process named %q in this PID namespace", name)
}

// kubeVersion asks the API server for /version as a pod does: the kubernetes Service's name, the service
// account's CA and token.
func kubeVersion(ctx context.Context) (int, string, error) {
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	ca, err := os.ReadFile(sa + "ca.crt")
	if err != nil {
		return 0, "", err
	}
	token, err := os.ReadFile(sa + "token")
	if err != nil {
		return 0, "", err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://kubernetes.default.svc/version", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body), err
}
