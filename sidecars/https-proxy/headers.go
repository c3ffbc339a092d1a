package main

import (
	"bufio"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// removeHopHeaders deletes the hop-by-hop headers from h (RFC 9110 §7.6.1: they apply to one
// connection and are not passed on; the list httputil.ReverseProxy removes), and those the Connection
// header names.
func removeHopHeaders(h http.Header) {
	for _, field := range h["Connection"] {
		for name := range strings.SplitSeq(field, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	// One pass over the few names a message has, rather than a map deletion per hop-by-hop name.
	for name := range h {
		switch name {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Te", "Trailer", "Transfer-Encoding", "Upgrade":
			delete(h, name)
		}
	}
}

// upgradeType returns the protocol a request or response asks to switch to ("websocket"), or "".
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// forwardHeader turns a client's request header into the app's: hop-by-hop headers removed (but
// "TE: trailers" kept, and the upgrade asked for, if any), X-Forwarded-* set, and X-Forwarded-Client-Cert
// replaced by clientCert (nil: removed).
func forwardHeader(h http.Header, upgrade string, clientIP, host, clientCert []string) {
	teTrailers := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	removeHopHeaders(h)
	if teTrailers {
		h["Te"] = teTrailersValue
	}
	if upgrade != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{upgrade}
	}
	setForwarded(h, clientIP, host)
	setClientCert(h, clientCert)
}

var teTrailersValue = []string{"trailers"}

// setForwarded tells the app who asked and how, as ReverseProxy's SetXForwarded does: the client's
// address is appended to the X-Forwarded-For chain of proxies in front of us; the client's own claims of
// Forwarded, X-Forwarded-Host and X-Forwarded-Proto are replaced. clientIP is the connection's
// X-Forwarded-For value when no proxy is in front ([]string{ip}, shared by its requests: header
// values are only read once set); host is the X-Forwarded-Host value ([]string{req.Host}).
func setForwarded(h http.Header, clientIP, host []string) {
	delete(h, "Forwarded")
	if prior := h["X-Forwarded-For"]; len(prior) > 0 {
		h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + clientIP[0]}
	} else {
		h["X-Forwarded-For"] = clientIP
	}
	h["X-Forwarded-Host"] = host
	h["X-Forwarded-Proto"] = forwardedProto
}

var forwardedProto = []string{"https"}

// writeHeader writes h as header lines. Unlike http.Header.Write it does not sort the names (a fifth of
// the proxy's own CPU on a small request went there) and does not rewrite values: both parsers that
// filled h (http.ReadRequest, http.ReadResponse) refuse CR, LF and other control bytes in values and
// trim them, and names are checked tokens. Values of one name keep their order.
func writeHeader(w *bufio.Writer, h http.Header) {
	for name, values := range h {
		for _, v := range values {
			w.WriteString(name)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
}
