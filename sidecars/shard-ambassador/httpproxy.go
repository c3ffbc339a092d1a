package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// newHTTPHandler shards HTTP requests: the key is the request URI (path and query), prefixed by the value
// of HTTP_KEY_HEADER when set, so that e.g. X-Country: DE and /cart land together (the book's
// shard(country(request.ip), request.path)). A shard that fails or times out gives 502 naming it.
func newHTTPHandler(b *backend) http.Handler {
	cfg := b.cfg
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConnsPerHost:   cfg.ServerConnections,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     false,
	}
	// HTTP shards are not reloaded (reload.go): the pool's shards stay these, its ring follows ejections.
	shards := b.shards()
	proxies := make([]*httputil.ReverseProxy, len(shards))
	for i, s := range shards {
		target := &url.URL{Scheme: "http", Host: s.server.Addr()}
		proxies[i] = &httputil.ReverseProxy{
			Transport: transport,
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Host = pr.In.Host
				pr.SetXForwarded()
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
					return // the client went away: not the shard's fault
				}
				s.recordFailure(err)
				http.Error(w, fmt.Sprintf("shard-ambassador: shard %s: %v", s.server, err), http.StatusBadGateway)
			},
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.RequestURI()
		if cfg.HTTPKeyHeader != "" {
			key = r.Header.Get(cfg.HTTPKeyHeader) + key
		}
		p := b.pool.Load()
		i := p.ring.Pick([]byte(key))
		if i < 0 {
			http.Error(w, "shard-ambassador: "+errNoLiveShard.Error(), http.StatusBadGateway)
			return
		}
		s := p.shards[i]
		start := time.Now()
		proxies[i].ServeHTTP(w, r)
		s.metrics.observe(int64(time.Since(start)))
		s.recordSuccessSoon()
	})
}
