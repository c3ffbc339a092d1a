package httphead

// The common request and response heads, parsed without allocating (almost: one string per head).
//
// Why by hand: on a small keep-alive request net/http's parsers (http.ReadRequest, http.ReadResponse)
// were 15% of the proxy's CPU (25 allocations: a map, a string and a slice per header, a Request, a URL,
// a textproto.Reader...), and the goal is nginx's speed. No library parses an HTTP/1.1 head
// without allocating under net/http's rules: fasthttp's parser has its own (and its package brings
// compression libraries into the image), and two sets of rules on one connection are how request
// smuggling happens. So this file does not have rules of its own. It takes only heads made of bytes it
// fully understands — the whole head already read, CRLF line ends, an origin-form target without
// %-escapes, [A-Za-z0-9-] names, printable ASCII values, at most one Content-Length, no
// Transfer-Encoding, Trailer or line folding — and produces exactly what net/http would for them
// (FuzzRequestFastPath and FuzzResponseFastPath parse the same bytes both ways and compare). Everything
// else is declined without consuming a byte and goes to net/http's parser.
//
// The Request and Response it returns, their Header maps and the slices of header values are reused
// for the next head on the same connection: the HTTP/1.x loop is done with one exchange before it reads
// the next.

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// maxFastHeaders: a head with more header lines goes to net/http's parser.
const maxFastHeaders = 64

var endOfHead = []byte("\r\n\r\n")

// headFields is a reusable header map and the backing array of its values.
type headFields struct {
	header http.Header
	values []string
}

// peekHead returns the head at the start of br's buffer (up to and including its empty line) as one
// string, or false if the buffer does not hold a whole head yet. Nothing is consumed.
func peekHead(br *bufio.Reader) (string, bool) {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, endOfHead)
	if end < 0 {
		return "", false
	}
	return string(buf[:end+len(endOfHead)]), true
}

// parse reads header lines ("Name: value\r\n" ..., then "\r\n", which must end s) into a cleared map, as
// textproto's ReadMIMEHeader does: names canonicalized, values trimmed of spaces and tabs, values of a
// repeated name kept in order. It declines (false) anything outside the subset the file comment names.
func (f *headFields) parse(s string) bool {
	if f.header == nil {
		f.header = make(http.Header, 16)
		f.values = make([]string, 0, 16)
	}
	clear(f.header)
	f.values = f.values[:0]
	for n := 0; ; n++ {
		nl := strings.IndexByte(s, '\n')
		if nl < 1 || s[nl-1] != '\r' {
			return false // a bare LF (peekHead found the end, so there is a '\n')
		}
		line := s[:nl-1]
		s = s[nl+1:]
		if line == "" {
			return s == ""
		}
		if n == maxFastHeaders {
			return false
		}
		colon := strings.IndexByte(line, ':')
		if colon < 1 {
			return false
		}
		name, value := line[:colon], line[colon+1:]
		canonical, upper := true, true
		for i := 0; i < len(name); i++ {
			switch c := name[i]; {
			case 'a' <= c && c <= 'z':
				canonical = canonical && !upper
			case 'A' <= c && c <= 'Z':
				canonical = canonical && upper
			case '0' <= c && c <= '9' || c == '-':
			default:
				return false // other token bytes are valid, but rare: net/http decides
			}
			upper = name[i] == '-'
		}
		if !canonical {
			name = textproto.CanonicalMIMEHeaderKey(name)
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; (c < 0x20 && c != '\t') || c > 0x7e { // CR, other controls, obs-text
				return false
			}
		}
		value = strings.Trim(value, " \t")
		if vv := f.header[name]; vv != nil {
			f.header[name] = append(vv, value)
		} else {
			f.values = append(f.values, value)
			f.header[name] = f.values[len(f.values)-1 : len(f.values) : len(f.values)]
		}
	}
}

// framingOK reports whether the header leaves the message's framing to Content-Length alone, and
// applies net/http's Pragma rule (fixPragmaCacheControl).
func (f *headFields) framingOK() bool {
	h := f.header
	if h["Transfer-Encoding"] != nil || h["Trailer"] != nil || len(h["Content-Length"]) > 1 {
		return false
	}
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" && h["Cache-Control"] == nil {
		h["Cache-Control"] = []string{"no-cache"}
	}
	return true
}

// contentLength parses the one Content-Length value: -1 if there is none, false if it is not a plain
// number that fits (net/http refuses an empty or signed one, or one of 2^63 or more; this declines
// those and anything over 18 digits).
func (f *headFields) contentLength() (int64, bool) {
	cl := f.header["Content-Length"]
	if cl == nil {
		return -1, true
	}
	v := cl[0]
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, true
}

// shouldClose is net/http's rule for whether a message ends its connection.
func shouldClose(major, minor int, h http.Header) bool {
	hasClose := httpguts.HeaderValuesContainsToken(h["Connection"], "close")
	if major == 1 && minor == 0 {
		return hasClose || !httpguts.HeaderValuesContainsToken(h["Connection"], "keep-alive")
	}
	return hasClose
}

// httpVersion parses the two versions the fast path takes.
func httpVersion(proto string) (minor int, ok bool) {
	switch proto {
	case "HTTP/1.1":
		return 1, true
	case "HTTP/1.0":
		return 0, true
	}
	return 0, false
}

// RequestParser parses a client's request heads.
type RequestParser struct {
	fields headFields
	req    http.Request
	url    url.URL
	body   fixedBody
}

// parse returns the request at the start of br's buffer, or false (nothing consumed) for net/http's
// parser to read it.
func (p *RequestParser) Parse(br *bufio.Reader) (*http.Request, bool) {
	s, ok := peekHead(br)
	if !ok {
		return nil, false
	}
	line, rest, _ := strings.Cut(s, "\r\n")
	method, line, _ := strings.Cut(line, " ")
	target, proto, _ := strings.Cut(line, " ")
	minor, ok := httpVersion(proto)
	if !ok || !fastMethod(method) || !fastTarget(target) || !p.fields.parse(rest) || !p.fields.framingOK() {
		return nil, false
	}
	h := p.fields.header
	hosts := h["Host"]
	if len(hosts) > 1 {
		return nil, false
	}
	host := ""
	if len(hosts) == 1 {
		host = hosts[0]
	}
	delete(h, "Host")
	n, ok := p.fields.contentLength()
	if !ok {
		return nil, false
	}
	n = max(n, 0) // a request without Content-Length has no body
	p.url = url.URL{}
	if strings.HasSuffix(target, "?") && strings.Count(target, "?") == 1 { // as url.ParseRequestURI
		p.url.Path, p.url.ForceQuery = target[:len(target)-1], true
	} else {
		p.url.Path, p.url.RawQuery, _ = strings.Cut(target, "?")
	}
	p.req = http.Request{
		Method: method, URL: &p.url, RequestURI: target, Host: host, Header: h,
		Proto: proto, ProtoMajor: 1, ProtoMinor: minor,
		ContentLength: n, Close: shouldClose(1, minor, h), Body: http.NoBody,
	}
	br.Discard(len(s))
	if n > 0 {
		p.body = fixedBody{r: br, n: n}
		p.req.Body = &p.body
	}
	return &p.req, true
}

// fastMethod: upper-case letters (tokens all); CONNECT, whose target is special, is left to net/http.
func fastMethod(m string) bool {
	if m == "" || len(m) > 20 || m == http.MethodConnect {
		return false
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return false
		}
	}
	return true
}

// fastTarget: origin-form, visible ASCII, no %-escapes: url.ParseRequestURI cannot refuse it and its
// Path is the target up to the query, unchanged.
func fastTarget(t string) bool {
	if t == "" || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c > '~' || c == '%' {
			return false
		}
	}
	return true
}

// ResponseParser parses an app's response heads.
type ResponseParser struct {
	fields headFields
	resp   http.Response
	body   fixedBody
}

// parse returns the final (2xx–5xx) response at the start of br's buffer to req, or false (nothing
// consumed) for net/http's parser to read it.
func (p *ResponseParser) Parse(br *bufio.Reader, req *http.Request) (*http.Response, bool) {
	s, ok := peekHead(br)
	if !ok {
		return nil, false
	}
	line, rest, _ := strings.Cut(s, "\r\n")
	proto, status, _ := strings.Cut(line, " ")
	minor, ok := httpVersion(proto)
	if !ok || len(status) < 3 || status[0] < '2' || status[0] > '5' || status[1] < '0' || status[1] > '9' ||
		status[2] < '0' || status[2] > '9' || (len(status) > 3 && status[3] != ' ') {
		return nil, false
	}
	for i := 3; i < len(status); i++ {
		if c := status[i]; (c < 0x20 && c != '\t') || c > 0x7e {
			return nil, false
		}
	}
	if !p.fields.parse(rest) || !p.fields.framingOK() {
		return nil, false
	}
	h := p.fields.header
	declared, ok := p.fields.contentLength()
	if !ok {
		return nil, false
	}
	code := int(status[0]-'0')*100 + int(status[1]-'0')*10 + int(status[2]-'0')
	n := declared // what net/http's ContentLength says
	switch {
	case req.Method == http.MethodHead:
	case code == http.StatusNoContent || code == http.StatusNotModified:
		n = 0
	case n < 0:
		return nil, false // delimited by the app closing the connection: net/http's reader
	}
	closeAfter := shouldClose(1, minor, h)
	if closeAfter && minor == 1 {
		delete(h, "Connection") // as net/http does for a response
	}
	p.resp = http.Response{
		Status: status, StatusCode: code, Proto: proto, ProtoMajor: 1, ProtoMinor: minor,
		Header: h, ContentLength: n, Close: closeAfter, Request: req, Body: http.NoBody,
	}
	br.Discard(len(s))
	if req.Method != http.MethodHead && n > 0 {
		p.body = fixedBody{r: br, n: n}
		p.resp.Body = &p.body
	}
	return &p.resp, true
}

// fixedBody reads a body of n bytes from r as net/http's body does: io.EOF with its last byte, and
// io.ErrUnexpectedEOF if the connection ends before it.
type fixedBody struct {
	r *bufio.Reader
	n int64
}

func (b *fixedBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if b.n == 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *fixedBody) Close() error { return nil }
