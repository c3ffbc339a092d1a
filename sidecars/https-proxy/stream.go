package main

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// lateHeaderDelay is how long the response headers wait for the first bytes of the body before they
// are sent on their own (an app that answers headers first and computes the body later).
const lateHeaderDelay = 10 * time.Millisecond

// streamingWriter is the ResponseWriter the reverse proxy of HTTP/2 connections copies the app's
// response into (HTTP/1.x connections do the same in http1.go's writeResponse, without a timer). It sends
// every write of the body to the client at once — what ReverseProxy's FlushInterval -1 (nginx:
// proxy_buffering off) does, so a slow, endless or known-length response reaches the client as the
// app produces it — but it does not send the headers on their own when the body follows: they leave
// with the body's first bytes, in the same TLS record and system call, or alone after lateHeaderDelay
// if the app is slow to send a body.
//
// Why not FlushInterval -1: it flushes the headers from a timer goroutine as soon as they are
// written, so nearly every response costs two TLS records and two write calls instead of one; that
// was 20% of the proxy's CPU per small keep-alive request (docs/performance.md).
//
// Upgrades (Hijack), deadlines and the rest of http.ResponseController reach the server's writer
// through Unwrap.
type streamingWriter struct {
	http.ResponseWriter
	flusher interface{ FlushError() error }

	// mu serializes the late-header timer with the handler's writes and flushes.
	mu sync.Mutex
	// timer is set by the first final WriteHeader (only ever written by the handler's goroutine).
	timer *time.Timer
	// pending: headers written but not flushed, and no body bytes yet.
	pending bool
	// done: the handler returned; the timer must not touch the response any more.
	done bool
	// unwritten is how much of the declared Content-Length the body still lacks (-1: unknown).
	unwritten int64
}

// newStreamingWriter wraps w, or returns nil when w cannot flush (net/http's HTTP/1 and HTTP/2
// writers always can).
func newStreamingWriter(w http.ResponseWriter) *streamingWriter {
	f, ok := w.(interface{ FlushError() error })
	if !ok {
		return nil
	}
	return &streamingWriter{ResponseWriter: w, flusher: f, unwritten: -1}
}

// Unwrap lets http.ResponseController find the server's writer (Hijack for upgrades, deadlines).
func (w *streamingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Header returns the header map. Touched after WriteHeader, it is the handler adding trailers: the
// timer is stopped first so that a late flush never reads the map while the handler writes it (the
// headers then leave with the body or at the end of the response).
func (w *streamingWriter) Header() http.Header {
	if w.timer != nil {
		w.mu.Lock()
		w.stopTimer()
		w.mu.Unlock()
	}
	return w.ResponseWriter.Header()
}

// WriteHeader writes the status and headers into the server's buffer. A final status (not 1xx,
// which the server sends at once) starts the late-header timer.
func (w *streamingWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
	if code < 200 || w.timer != nil || w.done {
		return
	}
	if n, err := strconv.ParseInt(w.ResponseWriter.Header().Get("Content-Length"), 10, 64); err == nil && n >= 0 {
		w.unwritten = n
	}
	w.pending = true
	w.timer = time.AfterFunc(lateHeaderDelay, w.flushLateHeaders)
}

// Write sends p to the client at once, with the headers if they have not left yet. The write that
// completes a body of known length is not flushed: the handler returns right after it and the server
// then sends the end of the response with it (for HTTP/2 the end of the stream rides on the last DATA
// frame instead of an extra empty one).
func (w *streamingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopTimer()
	n, err := w.ResponseWriter.Write(p)
	if err != nil {
		return n, err
	}
	if w.unwritten >= 0 {
		if w.unwritten -= int64(n); w.unwritten <= 0 {
			return n, nil
		}
	}
	return n, w.flusher.FlushError()
}

// FlushError sends what is buffered, except headers alone: they wait for the body (or the timer).
// ReverseProxy asks for that flush right after the headers of a response of unknown length.
func (w *streamingWriter) FlushError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending {
		return nil
	}
	return w.flusher.FlushError()
}

// Flush is FlushError for http.Flusher.
func (w *streamingWriter) Flush() { _ = w.FlushError() }

// flushLateHeaders runs on the timer's goroutine: the body did not start within lateHeaderDelay.
func (w *streamingWriter) flushLateHeaders() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending && !w.done {
		w.pending = false
		_ = w.flusher.FlushError() // a failed write shows again on the handler's next one
	}
}

// finish is called when the handler returns: the server finishes the response from here.
func (w *streamingWriter) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.stopTimer()
}

// stopTimer cancels a pending late-header flush; mu is held.
func (w *streamingWriter) stopTimer() {
	if w.pending {
		w.pending = false
		w.timer.Stop()
	}
}
