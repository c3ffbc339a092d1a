package main

// Framing and headers: request smuggling defences, hop-by-hop headers, the request target passed unchanged,
// and plain HTTP sent to the HTTPS port.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHTTP1RequestSmugglingDefences: ambiguous framing never lets the app see a request whose answer the
// client does not get in order, nor reaches the app ambiguous; malformed requests are refused with 400 (501
// for a transfer coding) before they reach the app, and their connection is closed.
func TestHTTP1RequestSmugglingDefences(t *testing.T) {
	ca := newPKI(t, "test CA")
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
	for _, tc := range []struct{ name, attack string }{
		{"CL.TE", "POST /attack HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE.CL", fmt.Sprintf("POST /attack HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n0\r\n\r\n%s", len("0\r\n\r\n"+smuggled), smuggled)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := startRawApp(t, describeRequest)
			p := startProxy(t, ca, testConfig(t, ca, app.port(t)))
			c := dialH1(t, p)
			c.send(tc.attack + getRequest("/last"))
			// Read until the answer to /last or the end of the connection.
			var answered []string
			for len(answered) < 5 {
				resp, err := c.next("GET")
				if err != nil {
					break
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("reading response %d: %v", len(answered)+1, err)
				}
				if resp.StatusCode != 200 {
					if len(answered) > 0 || resp.StatusCode < 400 {
						t.Fatalf("response %d is %d %q after %q", len(answered)+1, resp.StatusCode, body, answered)
					}
					c.expectClosed("refusing an ambiguous request")
					break
				}
				answered = append(answered, string(body))
				if strings.HasPrefix(string(body), "GET /last ") {
					break
				}
			}
			requests, heads, _ := app.seen()
			t.Logf("the client got answers %q; the app saw %q", answered, requests)
			if !slices.Equal(requests, answered) {
				t.Errorf("the app answered %q but the client got %q: the connection desynchronised", requests, answered)
			}
			if len(answered) > 0 && answered[0] != "POST /attack 0" {
				t.Errorf("the app saw the attack as %q, want \"POST /attack 0\" (chunked framing wins over Content-Length)", answered[0])
			}
			for _, head := range heads {
				lower := strings.ToLower(head)
				if strings.Contains(lower, "\ncontent-length:") && strings.Contains(lower, "\ntransfer-encoding:") {
					t.Errorf("the proxy sent the app both Content-Length and Transfer-Encoding:\n%s", head)
				}
			}
		})
	}

	app := startRawApp(t, describeRequest)
	p := startProxy(t, ca, testConfig(t, ca, app.port(t)))
	for _, tc := range []struct{ name, request string }{
		{"two different Content-Lengths", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
		{"Content-Length with a sign", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello"},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n"},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: localhost\r\nHost: example.com\r\n\r\n"},
		{"space in a header name", "GET / HTTP/1.1\r\nHost: localhost\r\nX Bad: 1\r\n\r\n"},
		{"space before the colon", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"},
		{"Transfer-Encoding gzip, chunked", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"Transfer-Encoding identity", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello"},
		{"two Transfer-Encoding headers", "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialH1(t, p)
			c.send(tc.request)
			resp, err := c.next("GET")
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second)) // a refusal without a length ends with the connection
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("reading the %d refusal: %v", resp.StatusCode, err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
				t.Errorf("status %d, want 400 (or 501 for a transfer coding)", resp.StatusCode)
			}
			if !strings.Contains(tc.name, "Transfer-Encoding") && resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", resp.StatusCode)
			}
			// Where the next request would start is unknowable after a malformed one (RFC 9112 section 6.3).
			c.expectClosed("refusing a malformed request")
		})
	}
	if requests, _, _ := app.seen(); len(requests) > 0 {
		t.Errorf("malformed requests reached the app: %q", requests)
	}
}

// TestHTTP1HopByHopHeaders: connection-specific headers stop at the proxy both ways; end-to-end headers,
// repeated ones in order and empty ones, pass through unchanged.
func TestHTTP1HopByHopHeaders(t *testing.T) {
	headersAtApp := make(chan http.Header, 1)
	// Raw bytes: the app's own Connection header reaches the proxy exactly as written, whatever the proxy asked.
	app := startRawApp(t, func(conn net.Conn, _ int, req *http.Request, _ []byte) bool {
		headersAtApp <- req.Header
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: app secret\r\nX-Custom: from the app\r\n"+
			"Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/\r\nSet-Cookie: c=3\r\nX-Empty: \r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, app.port(t)))
	c := dialH1(t, p)
	c.send("GET /hop HTTP/1.1\r\nHost: localhost\r\n" +
		"Connection: keep-alive, X-Secret\r\nX-Secret: client secret\r\nKeep-Alive: timeout=5\r\n" +
		"Proxy-Connection: keep-alive\r\nUpgrade: websocket\r\n" +
		"X-Custom: from the client\r\nX-Multi: first\r\nX-Multi: second\r\nX-Multi: third\r\nX-Empty: \r\n\r\n")
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET /hop: %d %q", resp.StatusCode, body)
	}
	atApp := <-headersAtApp
	for _, name := range []string{"X-Secret", "Keep-Alive", "Proxy-Connection", "Upgrade"} {
		if v, ok := atApp[name]; ok {
			t.Errorf("the app got the hop-by-hop header %s: %q", name, v)
		}
	}
	if conn := atApp.Get("Connection"); strings.Contains(strings.ToLower(conn), "x-secret") {
		t.Errorf("the app got Connection: %s", conn)
	}
	for name, want := range map[string][]string{"X-Custom": {"from the client"}, "X-Multi": {"first", "second", "third"}, "X-Empty": {""}} {
		if got := atApp[name]; !slices.Equal(got, want) {
			t.Errorf("the app got %s %q, want %q", name, got, want)
		}
	}

	if v, ok := resp.Header["X-Internal"]; ok {
		t.Errorf("the client got X-Internal %q, which the app's Connection header names", v)
	}
	for name, want := range map[string][]string{
		"X-Custom": {"from the app"}, "Set-Cookie": {"a=1; Path=/", "b=2; Path=/", "c=3"}, "X-Empty": {""},
	} {
		if got := resp.Header[name]; !slices.Equal(got, want) {
			t.Errorf("the client got %s %q, want %q", name, got, want)
		}
	}
}

// TestHTTP1RequestTargetUnchanged: the request target reaches the app as the client wrote it (encoded
// characters, double slashes, query); an absolute-form target reaches it in origin form.
func TestHTTP1RequestTargetUnchanged(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]string{r.RequestURI, r.Host})
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	seenAt := func(t *testing.T, target string) (uri, host string) {
		t.Helper()
		c := dialH1(t, p)
		c.send("GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n")
		resp, body := c.response("GET")
		var got []string
		if err := json.Unmarshal([]byte(body), &got); resp.StatusCode != 200 || err != nil || len(got) != 2 {
			t.Fatalf("GET %s: %d %q", target, resp.StatusCode, body)
		}
		return got[0], got[1]
	}
	for _, target := range []string{
		"/a%2Fb/c%20d?x=1&y=%3D",
		"/%7Euser/caf%C3%A9?q=a+b&q=%2B",
		"//double//slash/",
		"/p?a=1;b=2",
	} {
		t.Run(target, func(t *testing.T) {
			uri, _ := seenAt(t, target)
			if uri != target {
				t.Errorf("the app got request target %q, want %q", uri, target)
			}
		})
	}
	t.Run("absolute form", func(t *testing.T) {
		uri, host := seenAt(t, "http://example.com/p?q=1")
		if uri != "/p?q=1" {
			t.Errorf("the app got request target %q, want /p?q=1", uri)
		}
		t.Logf("absolute-form target: the app saw Host %q", host)
	})
}

// TestHTTP1PlainHTTPToTheHTTPSPort: a client that forgot the "s" is told so, not left with a TLS alert
// it cannot read, and the failed handshake is counted.
func TestHTTP1PlainHTTPToTheHTTPSPort(t *testing.T) {
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, http.HandlerFunc(echoApp))))
	before := p.metric("https_proxy_tls_handshake_failures_total")
	resp, err := http.Get("http://" + p.httpsAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
		t.Errorf("plain HTTP to the HTTPS port: %d %q, want 400 saying HTTPS is needed", resp.StatusCode, body)
	}
	if after := p.metric("https_proxy_tls_handshake_failures_total"); after != before+1 {
		t.Errorf("https_proxy_tls_handshake_failures_total went from %v to %v, want one more", before, after)
	}
}
