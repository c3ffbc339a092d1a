package main

// Bodies: chunked uploads, Expect: 100-continue, responses that have no body, large bodies back to back.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHTTP1ChunkedUpload: a chunked request body written by hand (chunk sizes in either case, a chunk
// extension, a trailer) reaches the app byte for byte.
func TestHTTP1ChunkedUpload(t *testing.T) {
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, http.HandlerFunc(bodyDigest))))
	data := randomBytes(71001)
	var req strings.Builder
	req.WriteString("POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n")
	fmt.Fprintf(&req, "1\r\n%s\r\n", data[:1])
	fmt.Fprintf(&req, "3e8;name=value\r\n%s\r\n", data[1:1001])
	fmt.Fprintf(&req, "%X\r\n%s\r\n", 70000, data[1001:])
	req.WriteString("0\r\nX-Checksum: c0ffee\r\n\r\n")
	c := dialH1(t, p)
	c.send(req.String())
	resp, body := c.response("POST")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, digestOf(data)+" ") {
		t.Fatalf("chunked upload: %d %q, want 200 %q", resp.StatusCode, body, digestOf(data))
	}
	if trailer := strings.TrimPrefix(body, digestOf(data)+" trailer="); trailer != "c0ffee" {
		t.Errorf("the app saw request trailer X-Checksum %q, want c0ffee", trailer)
	}
	c.get("/after")
}

// TestHTTP1ExpectContinue: a client that sends Expect: 100-continue gets 100 Continue, then sends its body
// and gets the app's answer; an app that refuses without reading the body answers before the upload; curl
// uploads with Expect: 100-continue.
func TestHTTP1ExpectContinue(t *testing.T) {
	app := http.NewServeMux()
	app.Handle("/", pathApp)
	app.HandleFunc("/upload", bodyDigest)
	app.HandleFunc("/refuse", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too big", http.StatusRequestEntityTooLarge)
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	data := randomBytes(100000)

	t.Run("raw", func(t *testing.T) {
		c := dialH1(t, p)
		c.send(fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(data)))
		// A functional wait: the client holds its body until the proxy says go on.
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := c.next("POST")
		if err != nil {
			t.Fatalf("waiting for 100 Continue: %v", err)
		}
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("got %d before sending the body, want 100 Continue", resp.StatusCode)
		}
		c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		c.send(string(data))
		for resp.StatusCode == http.StatusContinue {
			if resp, err = c.next("POST"); err != nil {
				t.Fatal(err)
			}
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(string(body), digestOf(data)+" ") {
			t.Fatalf("after 100 Continue: %d %q %v, want 200 %q", resp.StatusCode, body, err, digestOf(data))
		}
		c.get("/after")
	})
	t.Run("refused before the body", func(t *testing.T) {
		c := dialH1(t, p)
		c.send(fmt.Sprintf("POST /refuse HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(data)))
		resp, err := c.next("POST")
		if err != nil {
			t.Fatalf("waiting for the answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d, want the app's 413 without 100 Continue first", resp.StatusCode)
		}
	})
	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Fatalf("curl not found: run `make deps`")
		}
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "ca.crt"), ca.pem)
		writeFile(t, filepath.Join(dir, "body"), data)
		cmd := exec.Command(curl, "--http1.1", "--silent", "--show-error", "--fail", "--verbose",
			"--cacert", filepath.Join(dir, "ca.crt"), "--expect100-timeout", "10",
			"-H", "Expect: 100-continue", "--data-binary", "@"+filepath.Join(dir, "body"), p.url("/upload"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("curl: %v\n%s", err, stderr.String())
		}
		if !strings.HasPrefix(stdout.String(), digestOf(data)+" ") {
			t.Errorf("curl got %q, want %q", stdout.String(), digestOf(data))
		}
		if !strings.Contains(stderr.String(), "< HTTP/1.1 100 Continue") {
			t.Errorf("curl never got 100 Continue (it sent the body after its own time-out):\n%s", stderr.String())
		}
	})
}

// TestHTTP1ResponsesWithoutBody: HEAD, 204 and 304 responses carry no body bytes (the next response on the
// connection parses), and HEAD keeps the resource's Content-Length.
func TestHTTP1ResponsesWithoutBody(t *testing.T) {
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/sized":
			w.Header().Set("Content-Length", "1234")
			w.Write(make([]byte, 1234))
		case "/streamed":
			w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			w.Write([]byte("y"))
		case "/no-content":
			w.WriteHeader(http.StatusNoContent)
		case "/cached":
			w.Header().Set("ETag", `"v1"`)
			if r.Header.Get("If-None-Match") == `"v1"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "content")
		default:
			io.WriteString(w, r.URL.Path)
		}
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	c := dialH1(t, p)

	c.send("HEAD /sized HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, body := c.response("HEAD")
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != "1234" {
		t.Errorf("HEAD /sized: %d, Content-Length %q, body %q; want 200, 1234, none", resp.StatusCode, resp.Header.Get("Content-Length"), body)
	}
	c.send("HEAD /streamed HTTP/1.1\r\nHost: localhost\r\n\r\n")
	if resp, body := c.response("HEAD"); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD /streamed: %d %q", resp.StatusCode, body)
	}
	c.send(getRequest("/no-content"))
	if resp, body := c.response("GET"); resp.StatusCode != http.StatusNoContent || body != "" {
		t.Errorf("GET /no-content: %d %q, want 204 without body", resp.StatusCode, body)
	}
	c.send("GET /cached HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: \"v1\"\r\n\r\n")
	resp, body = c.response("GET")
	if resp.StatusCode != http.StatusNotModified || body != "" || resp.Header.Get("ETag") != `"v1"` {
		t.Errorf("conditional GET: %d %q ETag %q, want 304 without body, ETag \"v1\"", resp.StatusCode, body, resp.Header.Get("ETag"))
	}
	if got := c.get("/after"); got != "/after" {
		t.Errorf("GET after the bodiless responses: %q", got)
	}
}

// TestHTTP1LargeBodiesOnOneConnection: 8 MiB of known length and 8 MiB streamed without a length arrive
// intact on one connection, which then serves a small request.
func TestHTTP1LargeBodiesOnOneConnection(t *testing.T) {
	data := randomBytes(8 << 20)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/known":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data)
		case "/unknown":
			for rest := data; len(rest) > 0; rest = rest[min(len(rest), 64<<10):] {
				w.Write(rest[:min(len(rest), 64<<10)])
				w.(http.Flusher).Flush()
			}
		default:
			io.WriteString(w, "small")
		}
	})
	ca := newPKI(t, "test CA")
	p := startProxy(t, ca, testConfig(t, ca, upstream(t, app)))
	c := dialH1(t, p)
	for _, path := range []string{"/known", "/unknown"} {
		c.send(getRequest(path))
		resp, body := c.response("GET")
		if resp.StatusCode != 200 || digestOf([]byte(body)) != digestOf(data) {
			t.Fatalf("GET %s: %d, body %s, want %s", path, resp.StatusCode, digestOf([]byte(body)), digestOf(data))
		}
		if path == "/known" && resp.ContentLength != int64(len(data)) {
			t.Errorf("GET /known: Content-Length %d, want %d", resp.ContentLength, len(data))
		}
	}
	if got := c.get("/small"); got != "small" {
		t.Errorf("GET /small after the large bodies: %q", got)
	}
}
