package main

// Shutdown: in-flight requests finish, idle connections and WebSockets are closed.

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// TestHTTP1GracefulShutdown: on shutdown an idle keep-alive connection is closed, a request in flight
// completes and its connection then closes, serve returns nil, and new connections are refused.
func TestHTTP1GracefulShutdown(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/held" {
			close(held)
			if !waitGate(release) {
				return
			}
			io.WriteString(w, "held, then answered")
			return
		}
		io.WriteString(w, r.URL.Path)
	})
	ca := newPKI(t, "test CA")
	p, cancel, served := startStoppableProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	idle := dialH1(t, p)
	idle.get("/idle")
	busy := dialH1(t, p)
	busy.send(getRequest("/held"))
	if !waitGate(held) {
		t.Fatal("the held request never reached the app")
	}

	cancel()
	idle.expectClosed("shutdown began (an idle keep-alive connection)")
	close(release)
	resp, body := busy.response("GET")
	if resp.StatusCode != 200 || body != "held, then answered" {
		t.Fatalf("the request in flight at shutdown: %d %q", resp.StatusCode, body)
	}
	busy.expectClosed("the last response of the drain")
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not return after the drain")
	}
	if conn, err := net.Dial("tcp", p.httpsAddr); err == nil {
		conn.Close()
		t.Errorf("a new connection was accepted after serve returned")
	}
}

// TestHTTP1ShutdownClosesWebSockets: an upgraded connection can last for hours, so a drain closes it at
// once (its client reconnects to another pod) instead of holding the pod's termination for it.
func TestHTTP1ShutdownClosesWebSockets(t *testing.T) {
	app := http.NewServeMux()
	app.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		var msg string
		for websocket.Message.Receive(c, &msg) == nil {
			websocket.Message.Send(c, "echo: "+msg)
		}
	}))
	ca := newPKI(t, "test CA")
	cfg := testConfig(t, ca, upstream(t, app))
	cfg.ShutdownTimeout = time.Minute // longer than the test waits: only closing at once passes
	p, cancel, served := startStoppableProxy(t, ca, cfg)
	wsCfg, err := websocket.NewConfig("wss://"+p.httpsAddr+"/ws", "https://"+p.httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	wsCfg.TlsConfig = &tls.Config{RootCAs: ca.pool(), NextProtos: []string{"http/1.1"}}
	ws, err := websocket.DialConfig(wsCfg)
	if err != nil {
		t.Fatalf("WebSocket handshake through the proxy: %v", err)
	}
	defer ws.Close()
	var got string
	if err := websocket.Message.Send(ws, "hi"); err != nil || websocket.Message.Receive(ws, &got) != nil || got != "echo: hi" {
		t.Fatalf("before the shutdown: sent %v, got %q", err, got)
	}
	cancel()
	ws.SetReadDeadline(time.Now().Add(20 * time.Second)) // a safety net, not a timing assertion
	if err := websocket.Message.Receive(ws, &got); err == nil {
		t.Fatalf("the WebSocket still delivered %q after the shutdown began", got)
	} else if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatal("the shutdown left the WebSocket open")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve waited for the WebSocket instead of closing it")
	}
}
