package httphead

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"testing"
)

// The fast path (httphead.go) must never take a head that net/http would refuse or read differently:
// these fuzz targets parse the same bytes both ways and compare everything the proxy uses, bodies and
// the bytes after them included. `go test` runs the seeds; `make fuzz` explores for a while.

var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
	"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n\r\n", // wrk
	"GET /a/b?c=d&e HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.14.1\r\nAccept: */*\r\n\r\n",
	"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
	"POST /short HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
	"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\nExpect: 100-continue\r\n\r\n1234567",
	"GET / HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nhost: h\r\nx-lower-case: yes\r\nX-DUP: 1\r\nx-dup: 2\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX-Spaces: \t padded value \t \r\nX-Empty:\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\nCache-Control: max-age=1\r\n\r\n",
	"GET /? HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /a?? HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET //double/slash#frag HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n",
	// Declined (net/http decides):
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\nHost: h\n\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX-Bare: a\rb\r\n\r\n",
	"GET /%41 HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET http://example.com/x HTTP/1.1\r\nHost: other\r\n\r\n",
	"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
	"get / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
	"GET / HTTP/1.1\r\nX_Under: x\r\n\r\n",
	"GET / HTTP/1.1\r\nX-Utf8: caf\xc3\xa9\r\n\r\n",
	"GET / HTTP/1.1\r\n Leading: space\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\n",
	"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n",
}

func FuzzRequestFastPath(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := readerOver(data)
		var p RequestParser
		got, ok := p.Parse(br)
		if !ok {
			untouched(t, data, br)
			return
		}
		wantBr := readerOver(data)
		want, err := http.ReadRequest(wantBr)
		if err != nil {
			t.Fatalf("fast path took %q, net/http refuses it: %v", data, err)
		}
		sameFields(t, fmt.Sprintf("%q", data), []field{
			{"Method", got.Method, want.Method},
			{"RequestURI", got.RequestURI, want.RequestURI},
			{"Proto", got.Proto, want.Proto},
			{"ProtoMajor", got.ProtoMajor, want.ProtoMajor},
			{"ProtoMinor", got.ProtoMinor, want.ProtoMinor},
			{"Host", got.Host, want.Host},
			{"Header", got.Header, want.Header},
			{"ContentLength", got.ContentLength, want.ContentLength},
			{"Close", got.Close, want.Close},
			{"TransferEncoding", got.TransferEncoding, want.TransferEncoding},
			{"Trailer", got.Trailer, want.Trailer},
			{"NoBody", got.Body == http.NoBody, want.Body == http.NoBody},
			{"URL.Scheme", got.URL.Scheme, want.URL.Scheme},
			{"URL.Opaque", got.URL.Opaque, want.URL.Opaque},
			{"URL.Host", got.URL.Host, want.URL.Host},
			{"URL.User", got.URL.User, want.URL.User},
			{"URL.Path", got.URL.Path, want.URL.Path},
			{"URL.RawQuery", got.URL.RawQuery, want.URL.RawQuery},
			{"URL.ForceQuery", got.URL.ForceQuery, want.URL.ForceQuery},
			{"URL.IsAbs", got.URL.IsAbs(), want.URL.IsAbs()},
		})
		gotCode, gotReason := Validate(got)
		wantCode, wantReason := Validate(want)
		if gotCode != wantCode || gotReason != wantReason {
			t.Fatalf("%q: validateRequest says %d %q, for net/http's %d %q", data, gotCode, gotReason, wantCode, wantReason)
		}
		sameBodyAndRest(t, data, got.Body, br, want.Body, wantBr)
	})
}

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 09:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
	"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 500 Internal  Server\tError\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
	// Declined (net/http decides):
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n\r\nuntil the app closes",
	"HTTP/1.1 100 Continue\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
	"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
	"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 +20 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-Folded: a\r\n\tb\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
	"HTTP/2 200\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
}

func FuzzResponseFastPath(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add(false, []byte(s))
		f.Add(true, []byte(s))
	}
	f.Fuzz(func(t *testing.T, head bool, data []byte) {
		req := &http.Request{Method: http.MethodGet}
		if head {
			req.Method = http.MethodHead
		}
		br := readerOver(data)
		var p ResponseParser
		got, ok := p.Parse(br, req)
		if !ok {
			untouched(t, data, br)
			return
		}
		wantBr := readerOver(data)
		want, err := http.ReadResponse(wantBr, req)
		if err != nil {
			t.Fatalf("fast path took %q (%s), net/http refuses it: %v", data, req.Method, err)
		}
		sameFields(t, fmt.Sprintf("%q (%s)", data, req.Method), []field{
			{"Status", got.Status, want.Status},
			{"StatusCode", got.StatusCode, want.StatusCode},
			{"Proto", got.Proto, want.Proto},
			{"ProtoMajor", got.ProtoMajor, want.ProtoMajor},
			{"ProtoMinor", got.ProtoMinor, want.ProtoMinor},
			{"Header", got.Header, want.Header},
			{"ContentLength", got.ContentLength, want.ContentLength},
			{"Close", got.Close, want.Close},
			{"TransferEncoding", got.TransferEncoding, want.TransferEncoding},
			{"Trailer", got.Trailer, want.Trailer},
			{"NoBody", got.Body == http.NoBody, want.Body == http.NoBody},
			{"Request", got.Request, want.Request},
		})
		sameBodyAndRest(t, data, got.Body, br, want.Body, wantBr)
	})
}

// field is one thing both parsers read: what the fast path made of it and what net/http did.
type field struct {
	name      string
	got, want any
}

func sameFields(t *testing.T, input string, fields []field) {
	t.Helper()
	for _, f := range fields {
		if !reflect.DeepEqual(f.got, f.want) {
			t.Fatalf("%s: %s is %#v, net/http reads %#v", input, f.name, f.got, f.want)
		}
	}
}

// readerSize is the proxy's client buffer (readerSize in http1.go): the parser sees what one
// read of that size brings.
const readerSize = 4 << 10

// untouched fails unless a declined head left br as it was, for net/http's parser to read.
func untouched(t *testing.T, data []byte, br *bufio.Reader) {
	t.Helper()
	if want := min(len(data), readerSize); br.Buffered() != want {
		t.Fatalf("declined %q but consumed %d bytes", data, want-br.Buffered())
	}
}

// readerOver is a connection's reader after its first read, as the proxy parses from.
func readerOver(data []byte) *bufio.Reader {
	br := bufio.NewReaderSize(bytes.NewReader(data), readerSize)
	br.Peek(1)
	return br
}

// sameBodyAndRest reads both bodies and then what follows them on both readers, and fails unless
// they agree byte for byte and on how the body ended (io.ErrUnexpectedEOF when it is cut short).
func sameBodyAndRest(t *testing.T, data []byte, gotBody io.Reader, gotBr *bufio.Reader, wantBody io.Reader, wantBr *bufio.Reader) {
	t.Helper()
	got, gotErr := io.ReadAll(gotBody)
	want, wantErr := io.ReadAll(wantBody)
	if !bytes.Equal(got, want) || !errors.Is(gotErr, wantErr) && !errors.Is(wantErr, gotErr) {
		t.Fatalf("%q: body %q (%v), net/http reads %q (%v)", data, got, gotErr, want, wantErr)
	}
	gotRest, _ := io.ReadAll(gotBr)
	wantRest, _ := io.ReadAll(wantBr)
	if !bytes.Equal(gotRest, wantRest) {
		t.Fatalf("%q: %q follows the message, net/http leaves %q", data, gotRest, wantRest)
	}
}

// The fast path must take what clients and apps usually send, or it saves nothing: wrk's and curl's
// requests, a browser's, an upload, and typical app answers, each with at most one allocation (the
// head's string).
func TestFastPathTakesCommonHeads(t *testing.T) {
	browser := "GET /index.html?q=1 HTTP/1.1\r\nHost: app.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Connection: keep-alive\r\nCookie: session=abc123; theme=dark\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n" +
		"Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\nPriority: u=0, i\r\n\r\n"
	// what readerOver itself allocates (the bufio.Reader, its buffer, the bytes.Reader)
	readerAllocs := testing.AllocsPerRun(10, func() { readerOver([]byte("x")) })
	for _, s := range []string{requestSeeds[1], requestSeeds[2], browser, "POST /api HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"} {
		var p RequestParser
		if _, ok := p.Parse(readerOver([]byte(s))); !ok {
			t.Errorf("request %q went to net/http's parser", s)
			continue
		}
		data := []byte(s)
		if allocs := testing.AllocsPerRun(100, func() { p.Parse(readerOver(data)) }); allocs > 1+readerAllocs {
			t.Errorf("request %q: %.0f allocations, want at most one", s, allocs-readerAllocs)
		}
	}
	get := &http.Request{Method: http.MethodGet}
	for _, s := range []string{responseSeeds[1], responseSeeds[2], responseSeeds[5], "HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 0\r\n\r\n"} {
		var p ResponseParser
		if _, ok := p.Parse(readerOver([]byte(s)), get); !ok {
			t.Errorf("response %q went to net/http's parser", s)
			continue
		}
		data := []byte(s)
		if allocs := testing.AllocsPerRun(100, func() { p.Parse(readerOver(data), get) }); allocs > 1+readerAllocs {
			t.Errorf("response %q: %.0f allocations, want at most one", s, allocs-readerAllocs)
		}
	}
}
