package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func startHTTPShard(t *testing.T, name string) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", name, r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"))
	})}
	go srv.Serve(ln)
	stop := func() { srv.Close() }
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

func TestHTTPShardsByURIAndHeader(t *testing.T) {
	var addrs []string
	stops := map[string]func(){}
	for _, n := range []string{"a", "b", "c"} {
		a, stop := startHTTPShard(t, n)
		addrs = append(addrs, a+":1 "+n)
		stops[n] = stop
	}
	cfg := configFor(t, map[string]string{"PROTOCOL": "http", "SHARDS": strings.Join(addrs, ","), "HTTP_KEY_HEADER": "X-Country", "TIMEOUT": "500ms"})
	addr := startAmbassador(t, cfg)
	r := ringOf(t, cfg)
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path, country string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if country != "" {
			req.Header.Set("X-Country", country)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	seen := map[string]bool{}
	for i := 0; i < 60; i++ {
		path := fmt.Sprintf("/item/%d?x=%d", i*7919, i)
		country := []string{"", "DE", "FR"}[i%3]
		want := cfg.Servers[r.Pick([]byte(country+path))].Name
		code, body := get(path, country)
		if code != 200 || !strings.HasPrefix(body, want+" "+path+" 127.0.0.1") {
			t.Fatalf("GET %s (X-Country %q) → %d %q, want shard %s", path, country, code, body, want)
		}
		seen[want] = true
	}
	if len(seen) != 3 {
		t.Errorf("60 requests reached %d shards, want 3", len(seen))
	}
	stops["b"]()
	for i := 0; i < 30; i++ {
		path := fmt.Sprintf("/after/%d", i*104729)
		shard := cfg.Servers[r.Pick([]byte(path))].Name
		code, body := get(path, "")
		if shard == "b" {
			if code != http.StatusBadGateway || !strings.Contains(body, "shard-ambassador: shard b:") {
				t.Errorf("GET %s on the dead shard → %d %q, want 502 naming shard b", path, code, body)
			}
		} else if code != 200 {
			t.Errorf("GET %s on live shard %s → %d %q", path, shard, code, body)
		}
	}
	client.CloseIdleConnections()
}
