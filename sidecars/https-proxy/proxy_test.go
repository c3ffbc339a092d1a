package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// seen is what the app saw of a request.
type seen struct {
	Proto, Host, Method, XFF, XFProto, XFHost string
}

func echoApp(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(seen{r.Proto, r.Host, r.Method, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host")})
}

func TestHTTP1AndHTTP2WithForwardedHeaders(t *testing.T) {
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, http.HandlerFunc(echoApp))))
	for _, tc := range []struct{ proto, inboundXFF, wantXFF string }{
		{"1.1", "", "127.0.0.1"},
		{"2", "", "127.0.0.1"},
		{"1.1", "203.0.113.7", "203.0.113.7, 127.0.0.1"},
	} {
		t.Run("HTTP/"+tc.proto+" XFF="+tc.inboundXFF, func(t *testing.T) {
			req, _ := http.NewRequest("GET", p.url("/hello"), nil)
			if tc.inboundXFF != "" {
				req.Header.Set("X-Forwarded-For", tc.inboundXFF)
			}
			req.Header.Set("X-Forwarded-Proto", "http") // a client's claim must not survive
			resp, err := p.client(tc.proto, nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if want := "HTTP/" + tc.proto; resp.Proto != want && !(tc.proto == "2" && resp.Proto == "HTTP/2.0") {
				t.Errorf("client spoke %s, want %s", resp.Proto, want)
			}
			var got seen
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			want := seen{Proto: "HTTP/1.1", Host: p.httpsAddr, Method: "GET", XFF: tc.wantXFF, XFProto: "https", XFHost: p.httpsAddr}
			if got != want {
				t.Errorf("the app saw %+v, want %+v", got, want)
			}
		})
	}
	if n := p.metric(`https_proxy_requests_total{code="200"}`); n != 3 {
		t.Errorf(`https_proxy_requests_total{code="200"} = %v, want 3`, n)
	}
}

func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl not found: run `make deps`")
	}
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, http.HandlerFunc(echoApp))))
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	writeFile(t, caFile, ca.pem)
	for _, tc := range []struct{ flag, wantVersion string }{{"--http1.1", "1.1"}, {"--http2", "2"}} {
		t.Run(tc.flag, func(t *testing.T) {
			out, err := exec.Command(curl, "--silent", "--show-error", "--fail", "--cacert", caFile, tc.flag,
				"--write-out", "\n%{http_version}", p.url("/curl")).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			text := strings.TrimSpace(string(out))
			body, version := text[:strings.LastIndex(text, "\n")+1], text[strings.LastIndex(text, "\n")+1:]
			if version != tc.wantVersion {
				t.Errorf("curl spoke HTTP/%s, want HTTP/%s", version, tc.wantVersion)
			}
			var got seen
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if got.XFProto != "https" || got.XFF != "127.0.0.1" || got.XFHost != p.httpsAddr {
				t.Errorf("the app saw %+v", got)
			}
		})
	}
}

func TestUpstreamDownIs502WithAClearBody(t *testing.T) {
	ca := newPKI(t, "test CA")
	down := freePort(t)
	p := startProxy(t, ca, testConfig(t, ca, down))
	resp, err := p.client("1.1", nil).Get(p.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	for _, want := range []string{"could not get a response from the app at 127.0.0.1:" + strconv.Itoa(down), "connection refused"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body %q lacks %q", body, want)
		}
	}
	if code, body := p.status("/readyz"); code != 503 || !strings.Contains(body, "does not accept connections") {
		t.Errorf("/readyz = %d %q, want 503 saying the app does not accept connections", code, body)
	}
	if n := p.metric("https_proxy_upstream_errors_total"); n != 1 {
		t.Errorf("https_proxy_upstream_errors_total = %v, want 1", n)
	}
	if n := p.metric(`https_proxy_requests_total{code="502"}`); n != 1 {
		t.Errorf(`https_proxy_requests_total{code="502"} = %v, want 1`, n)
	}
}

func TestReadyzAndCertificateExpiryMetric(t *testing.T) {
	ca := newPKI(t, "test CA")
	cfg := testConfig(t, ca, upstream(t, http.HandlerFunc(echoApp)))
	p := startProxy(t, ca, cfg)
	if code, body := p.status("/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q, want 200", code, body)
	}
	leafCert, _ := tls.LoadX509KeyPair(cfg.CertificatePath, cfg.KeyPath)
	if got, want := p.metric("https_proxy_certificate_expiry_timestamp_seconds"), float64(leafCert.Leaf.NotAfter.Unix()); got != want {
		t.Errorf("expiry metric = %v, want %v", got, want)
	}

	expired := testConfig(t, ca, cfg.ProxyPort)
	old := ca.serverCert(t, time.Now().Add(-time.Minute))
	writeFile(t, expired.CertificatePath, old.certPEM)
	writeFile(t, expired.KeyPath, old.keyPEM)
	pe := startProxy(t, ca, expired)
	if code, body := pe.status("/readyz"); code != 503 || !strings.Contains(body, "expired") {
		t.Errorf("/readyz with an expired certificate = %d %q, want 503 saying it expired", code, body)
	}
}

// gate is closed by the test to let the app go on.
func waitGate(gate <-chan struct{}) bool {
	select {
	case <-gate:
		return true
	case <-time.After(20 * time.Second):
		return false
	}
}

// TestBodiesStream proves that neither direction is buffered: the client reads the first MiB of a
// download while the app still holds back the rest, and the app reads the first MiB of an upload before
// the client sends the rest.
func TestBodiesStream(t *testing.T) {
	const first, total = 1 << 20, 16 << 20
	var release, got1MiB chan struct{}
	app := http.NewServeMux()
	app.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(total))
		w.Write(make([]byte, first))
		w.(http.Flusher).Flush()
		if !waitGate(release) {
			return // the test failed: the first MiB never reached the client
		}
		w.Write(make([]byte, total-first))
	})
	app.HandleFunc("/trickle", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		w.Write([]byte("first"))
		w.(http.Flusher).Flush()
		if waitGate(release) {
			w.Write([]byte(" last"))
		}
	})
	app.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadFull(r.Body, make([]byte, first)); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		close(got1MiB)
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, first+n)
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	for _, proto := range []string{"1.1", "2"} {
		t.Run("download HTTP/"+proto, func(t *testing.T) {
			release = make(chan struct{})
			resp, err := p.client(proto, nil).Get(p.url("/download"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if _, err := io.ReadFull(resp.Body, make([]byte, first)); err != nil {
				t.Fatalf("reading the first MiB while the app holds the rest: %v", err)
			}
			close(release)
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || first+n != total {
				t.Fatalf("downloaded %d bytes (%v), want %d", first+n, err, total)
			}
		})
		t.Run("small writes HTTP/"+proto, func(t *testing.T) {
			// A few bytes, known length: they must not wait in the proxy's buffers for the rest.
			release = make(chan struct{})
			resp, err := p.client(proto, nil).Get(p.url("/trickle"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != "first" {
				t.Fatalf("first write: %q %v", got, err)
			}
			close(release)
			if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != " last" {
				t.Fatalf("rest: %q %v", rest, err)
			}
		})
		t.Run("upload HTTP/"+proto, func(t *testing.T) {
			got1MiB = make(chan struct{})
			body, w := io.Pipe()
			go func() {
				w.Write(make([]byte, first))
				if !waitGate(got1MiB) {
					w.CloseWithError(fmt.Errorf("the app never got the first MiB"))
					return
				}
				w.Write(make([]byte, total-first))
				w.Close()
			}()
			req, _ := http.NewRequest("POST", p.url("/upload"), body)
			resp, err := p.client(proto, nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if string(got) != strconv.Itoa(total) {
				t.Fatalf("the app got %s bytes, want %d", got, total)
			}
		})
	}
}

func TestWebSocketUpgradePassesThrough(t *testing.T) {
	app := http.NewServeMux()
	app.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		var msg string
		for websocket.Message.Receive(c, &msg) == nil {
			websocket.Message.Send(c, "echo: "+msg+" via "+c.Request().Header.Get("X-Forwarded-Proto"))
		}
	}))
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	wsCfg, err := websocket.NewConfig("wss://"+p.httpsAddr+"/ws", "https://"+p.httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	wsCfg.TlsConfig = &tls.Config{RootCAs: ca.pool()}
	ws, err := websocket.DialConfig(wsCfg)
	if err != nil {
		t.Fatalf("WebSocket handshake through the proxy: %v", err)
	}
	defer ws.Close()
	for _, msg := range []string{"one", "two"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatal(err)
		}
		if want := "echo: " + msg + " via https"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if n := p.metric(`https_proxy_requests_total{code="101"}`); n != 1 {
		t.Errorf(`https_proxy_requests_total{code="101"} = %v, want 1`, n)
	}
}

func TestOversizedHeadersRefused(t *testing.T) {
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, http.HandlerFunc(echoApp))))
	req, _ := http.NewRequest("GET", p.url("/"), nil)
	req.Header.Set("Cookie", strings.Repeat("x", maxHeaderBytes+8<<10))
	resp, err := p.client("1.1", nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a %d KiB header got %d, want 431", (maxHeaderBytes+8<<10)>>10, resp.StatusCode)
	}
}

// TestHeadersLeaveBeforeALateBody: an app that sends its headers and computes the body later (long
// polls, event streams, slow downloads) gets its headers to the client without waiting for the body.
func TestHeadersLeaveBeforeALateBody(t *testing.T) {
	release := make(chan struct{})
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("length") == "known" {
			w.Header().Set("Content-Length", "4")
		} else {
			w.Header().Set("Content-Type", "text/event-stream")
		}
		w.WriteHeader(http.StatusAccepted)
		w.(http.Flusher).Flush()
		if waitGate(release) {
			w.Write([]byte("done"))
		}
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	defer close(release)
	for _, proto := range []string{"1.1", "2"} {
		for _, length := range []string{"known", "unknown"} {
			t.Run("HTTP/"+proto+" "+length+" length", func(t *testing.T) {
				got := make(chan *http.Response, 1)
				client := p.client(proto, nil)
				go func() {
					resp, err := client.Get(p.url("/?length=" + length))
					if err != nil {
						t.Error(err)
						close(got)
						return
					}
					got <- resp
				}()
				select {
				case resp, ok := <-got:
					if !ok {
						return
					}
					// The body is still held by the app: closing may not wait for it.
					go resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						t.Errorf("status %d, want 202", resp.StatusCode)
					}
				case <-time.After(15 * time.Second):
					t.Fatal("the headers never reached the client while the app held the body back")
				}
			})
		}
	}
}

// TestTrailersPassThrough: trailers the app sends after the body reach the client.
func TestTrailersPassThrough(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Write([]byte("payload"))
		w.Header().Set("X-Checksum", "c0ffee")
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	for _, proto := range []string{"1.1", "2"} {
		t.Run("HTTP/"+proto, func(t *testing.T) {
			resp, err := p.client(proto, nil).Get(p.url("/"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || string(body) != "payload" {
				t.Fatalf("body %q, %v", body, err)
			}
			if got := resp.Trailer.Get("X-Checksum"); got != "c0ffee" {
				t.Errorf("trailer X-Checksum = %q, want c0ffee (trailers %v)", got, resp.Trailer)
			}
		})
	}
}

// TestEarlyHintsPassThrough: a 103 Early Hints the app sends before its answer reaches the client.
func TestEarlyHintsPassThrough(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Write([]byte("page"))
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	for _, proto := range []string{"1.1", "2"} {
		t.Run("HTTP/"+proto, func(t *testing.T) {
			var hints []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", p.url("/"), nil)
			resp, err := p.client(proto, nil).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			want := []string{"103 </style.css>; rel=preload; as=style"}
			if resp.StatusCode != 200 || string(body) != "page" || !slices.Equal(hints, want) {
				t.Errorf("got %d %q after hints %q; want 200 \"page\" after %q", resp.StatusCode, body, hints, want)
			}
			if link := resp.Header.Get("Link"); link != "" {
				t.Errorf("the final response kept the hint's Link header %q", link)
			}
		})
	}
}

// FIFO_POLLER=false: connections stay Go's own, and the proxy serves both protocols as before.
func TestWithoutTheFIFOPoller(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	for _, on := range []bool{true, false} {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		wrapped := connWrapper(&Config{FIFOPoller: on})(conn)
		if _, own := wrapped.(*net.TCPConn); own == on {
			t.Errorf("FIFO_POLLER=%v: the connection is a %T", on, wrapped)
		}
		wrapped.Close()
	}

	ca := newPKI(t, "test CA")
	cfg := testConfig(t, ca, upstream(t, http.HandlerFunc(echoApp)))
	cfg.FIFOPoller = false
	p := startProxy(t, ca, cfg)
	for _, proto := range []string{"1.1", "2"} {
		resp, err := p.client(proto, nil).Get(p.url("/plain"))
		if err != nil {
			t.Fatalf("HTTP/%s: %v", proto, err)
		}
		var got seen
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || got.XFProto != "https" || got.Method != "GET" {
			t.Errorf("HTTP/%s: the app saw %+v (%v)", proto, got, err)
		}
	}
}
