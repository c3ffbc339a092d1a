package main

// Temporary experiment knobs (deleted before the end): HPX_* env variables select variants.

import (
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func knob(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func knobInt(name string, def int) int {
	n, err := strconv.Atoi(knob(name, strconv.Itoa(def)))
	if err != nil {
		panic(err)
	}
	return n
}

var headerDelay = time.Duration(knobInt("HPX_HDELAY", int(10*time.Millisecond)))

// streamWriter flushes after each body write; headers go out with the first body bytes, or after
// headerDelay when the body is late.
type streamWriter struct {
	rw      http.ResponseWriter
	f       http.Flusher
	mu      sync.Mutex
	timer   *time.Timer
	pending bool // headers written, not flushed, no body yet
	done    bool
}

func (w *streamWriter) Unwrap() http.ResponseWriter { return w.rw }
func (w *streamWriter) Header() http.Header         { return w.rw.Header() }

func (w *streamWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rw.WriteHeader(code)
	if code >= 200 && !w.pending && w.timer == nil {
		w.pending = true
		w.timer = time.AfterFunc(headerDelay, w.lateHeaders)
	}
}

func (w *streamWriter) lateHeaders() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending && !w.done {
		w.pending = false
		w.f.Flush()
	}
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending {
		w.pending = false
		w.timer.Stop()
	}
	n, err := w.rw.Write(p)
	w.f.Flush()
	return n, err
}

func (w *streamWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending {
		return // headers alone: lateHeaders sends them if the body does not come first
	}
	w.f.Flush()
}

func (w *streamWriter) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// plainFlushWriter: FlushInterval 0 in the proxy, flush after each Write, no header flush.
type plainFlushWriter struct {
	http.ResponseWriter
	f http.Flusher
}

func (w *plainFlushWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
func (w *plainFlushWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.f.Flush()
	return n, err
}
func (w *plainFlushWriter) Flush() { w.f.Flush() }

var _ = net.Dial
