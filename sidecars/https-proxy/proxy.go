package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// upstreamAddr is the app's address: always loopback, as the sidecar shares the pod's network namespace.
func upstreamAddr(cfg *Config) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.ProxyPort))
}

// newProxy returns the HTTP/2 side's reverse-proxy handler to the app and its transport (closed by the
// caller at shutdown). HTTP/1.x connections do not come here: the frontend serves them (http1.go).
//
// Bodies stream both ways: request bodies are passed to the app as they arrive, and every write of the
// response is sent to the client at once by streamingWriter (stream.go), so a slow or endless response
// reaches the client as the app produces it, whether or not its length is known. Upgrade requests
// (WebSocket) pass through.
func newProxy(cfg *Config, m *metrics, log *slog.Logger) (http.Handler, *http.Transport) {
	target := &url.URL{Scheme: "http", Host: upstreamAddr(cfg)}
	transport := &http.Transport{
		Proxy:       nil, // the app is local: never route to it through HTTP_PROXY
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		// Keep-alive connections to the app: enough idle ones that a busy proxy does not reconnect per request.
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       30 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Pass Accept-Encoding and compressed bodies through untouched.
		DisableCompression: true,
		// Read/write buffers stay at 4 KiB per connection: bigger ones would not speed up large bodies
		// (writes larger than the buffer go straight through) and 1024 idle connections would hold them all.
	}
	errorLog := &rateLimitedLog{log: log, every: time.Second}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // the app sees the Host the client asked for (also in X-Forwarded-Host)
			// Keep the chain from proxies in front of us (an ingress); SetXForwarded appends the client's address.
			if prior := r.In.Header["X-Forwarded-For"]; len(prior) > 0 {
				r.Out.Header["X-Forwarded-For"] = prior
			}
			r.SetXForwarded()
			setClientCert(r.Out.Header, clientCertHeader(r.In.TLS))
		},
		Transport: transport,
		// 0: ReverseProxy adds no flushing of its own for responses of known length; streamingWriter
		// flushes every write. For responses of unknown length and event streams ReverseProxy flushes
		// anyway (-1), through streamingWriter.FlushError.
		FlushInterval: 0,
		BufferPool:    bufferPool{},
		ModifyResponse: func(resp *http.Response) error {
			m.answered(resp.StatusCode)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away: there is nobody to answer, and the app is not at fault
			}
			m.upstreamErrors.Inc()
			m.answered(http.StatusBadGateway)
			errorLog.warn("the app did not answer", "upstream", target.Host, "method", r.Method, "path", r.URL.Path, "err", err)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, badGatewayMessage(target.Host, err))
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := newStreamingWriter(w)
		if sw == nil {
			rp.ServeHTTP(w, r)
			return
		}
		defer sw.finish()
		rp.ServeHTTP(sw, r)
	})
	return handler, transport
}

// badGatewayMessage is the body of a 502, on HTTP/2 (here) and HTTP/1.x (http1.go).
func badGatewayMessage(upstream string, err error) string {
	return fmt.Sprintf("502 Bad Gateway: https-proxy could not get a response from the app at %s: %v\n", upstream, err)
}

// bufferPool reuses ReverseProxy's copy buffers instead of allocating 32 KiB per request.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// rateLimitedLog logs at most one warning per interval, so that a stopped app under load does not flood
// the log; the metrics count every error.
type rateLimitedLog struct {
	log   *slog.Logger
	every time.Duration
	last  atomic.Int64
}

func (l *rateLimitedLog) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(l.every) || !l.last.CompareAndSwap(last, now) {
		return
	}
	l.log.Warn(msg, args...)
}
