package main

// The HTTP/2 side of the proxy. net/http's server reads the frames of connections that chose h2 and hands
// each request to http2Proxy.ServeHTTP, which sends it to the app through the same exchange as HTTP/1.x
// (exchange.go: the keep-alive pool, Expect: 100-continue, interim answers, trailers, the retry on a
// stale app connection) and copies the answer back through the server's ResponseWriter.
//
// Why not httputil.ReverseProxy over http.Transport, which this side used before: the Transport's two
// goroutines per app connection and its channel hand-offs, ReverseProxy's copies and the timer that held
// headers back for a body cost a third of an HTTP/2 request's CPU (docs/performance.md), and the
// Transport kept a second pool of app connections beside the HTTP/1.x one.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// http2Proxy is the HTTP/2 server's handler.
type http2Proxy struct{ f *frontend }

func (p *http2Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := p.f
	if r.Method == http.MethodConnect {
		refuseStream(w, http.StatusMethodNotAllowed, "CONNECT is not proxied")
		return
	}
	s := &http2Stream{w: w, r: r}
	hasBody := r.ContentLength != 0 // net/http's server gives every request a Body; -1: length unknown
	if !hasBody {
		r.Body = http.NoBody
	}
	x := &exchange{client: s, pool: f.upstream, req: r, target: r.RequestURI, chunked: hasBody && r.ContentLength < 0}
	if !strings.HasPrefix(x.target, "/") {
		x.target = r.URL.RequestURI()
	}
	// net/http's server answers Expect: 100-continue itself (it removes the header and sends 100 Continue
	// when the body is first read), so the app cannot be asked before the body comes, as over HTTP/1.x.
	if r.Header["Expect"] != nil {
		refuseStream(w, http.StatusExpectationFailed, "only Expect: 100-continue is supported")
		return
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	forwardHeader(r.Header, "", []string{ip}, []string{r.Host}, clientCertHeader(r.TLS))
	if hasBody && !x.chunked {
		r.Header["Content-Length"] = []string{strconv.FormatInt(r.ContentLength, 10)}
	}

	resp, err := x.roundTrip()
	if err != nil {
		s.release()
		if errors.As(err, new(clientBodyError)) || r.Context().Err() != nil {
			return // the client went away: there is nobody to answer, and the app is not at fault
		}
		s.badGateway(f, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols { // HTTP/2 has no upgrades; the app must not switch
		s.release()
		x.up.conn.Close()
		s.badGateway(f, errors.New("the app switched protocols on an HTTP/2 request"))
		return
	}
	f.m.answered(resp.StatusCode) // before the client can see the answer (and read the metrics)
	bodyComplete, clientOK := s.writeResponse(x.up, resp)
	bodyOK := x.waitBody() // a body always starts with the request here: there is no Expect to wait on
	if s.release() && bodyComplete && bodyOK && !resp.Close {
		f.upstream.put(x.up)
	} else {
		x.up.conn.Close()
	}
	if !bodyComplete && clientOK {
		// The app broke off its answer: reset the stream, so that the client does not take a short body
		// for a whole one (net/http's server recovers this panic and sends RST_STREAM).
		panic(http.ErrAbortHandler)
	}
}

// http2Stream is one HTTP/2 request as the exchange's client.
type http2Stream struct {
	w http.ResponseWriter
	r *http.Request
	// stop unregisters the callback that closes the app connection when the request's context ends
	// (the client reset the stream or went away, or a forced shutdown).
	stop func() bool
}

func (s *http2Stream) bodyBuffered() int { return 0 }

// sendContinue has nothing to do: net/http's server sends 100 Continue when the body is first read.
func (s *http2Stream) sendContinue() error { return nil }

func (s *http2Stream) sendInterim(resp *http.Response) error {
	h := s.w.Header()
	for name, values := range resp.Header {
		h[name] = values
	}
	s.w.WriteHeader(resp.StatusCode)
	clear(h) // the final answer's header starts empty
	return nil
}

// stopBody: closing the request body makes a read waiting for the client return.
func (s *http2Stream) stopBody() { s.r.Body.Close() }

// using closes up if the request's context ends while the exchange uses it.
func (s *http2Stream) using(up *upstreamConn) {
	s.release()
	if up != nil {
		s.stop = context.AfterFunc(s.r.Context(), func() { up.conn.Close() })
	}
}

// release ends using's watch and reports whether the connection is untouched by it (and so can go back
// to the pool).
func (s *http2Stream) release() bool {
	untouched := true
	if s.stop != nil {
		untouched = s.stop()
		s.stop = nil
	}
	return untouched
}

// writeResponse sends the app's answer to the client, its body streamed as over HTTP/1.x
// (streamAnswer). The app's trailers follow the body. It
// reports whether the app's body was read to its end and whether the client took all of it.
func (s *http2Stream) writeResponse(up *upstreamConn, resp *http.Response) (bodyComplete, clientOK bool) {
	removeHopHeaders(resp.Header)
	h := s.w.Header()
	for name, values := range resp.Header {
		h[name] = values
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		h["Trailer"] = []string{strings.Join(sortedKeys(resp.Trailer), ", ")}
	}
	s.w.WriteHeader(resp.StatusCode)
	if s.r.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		return true, true
	}
	flush := func() error { return nil }
	if f, ok := s.w.(interface{ FlushError() error }); ok { // net/http's HTTP/2 ResponseWriter always is
		flush = f.FlushError
	}
	if appOK, clientOK := streamAnswer(up, resp, s.w, flush); !appOK || !clientOK {
		return appOK, clientOK
	}
	for name, values := range resp.Trailer {
		if len(resp.Trailer) != announced {
			name = http.TrailerPrefix + name // trailers the app did not announce
		}
		h[name] = values
	}
	return true, true
}

// badGateway answers 502 for an app that could not be reached or broke off before answering.
func (s *http2Stream) badGateway(f *frontend, err error) {
	f.m.upstreamErrors.Inc()
	f.m.answered(http.StatusBadGateway)
	f.errorLog.warn("the app did not answer", "upstream", f.upstreamAddr, "method", s.r.Method, "path", s.r.URL.Path, "err", err)
	h := s.w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	s.w.WriteHeader(http.StatusBadGateway)
	io.WriteString(s.w, badGatewayMessage(f.upstreamAddr, err))
}

// refuseStream answers a request the proxy will not pass on, as the HTTP/1.x side does.
func refuseStream(w http.ResponseWriter, code int, reason string) {
	http.Error(w, fmt.Sprintf("%d %s: %s", code, http.StatusText(code), reason), code)
}
