package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// clientCertHeaderName tells the app who the client is, once CLIENT_CA_PATH has verified the client's
// certificate (and ALLOWED_CLIENT_NAMES admitted it): the book's "authentication and authorization"
// for a legacy app that knows nothing of TLS. The format is Envoy's X-Forwarded-Client-Cert, which
// Istio's sidecars also send, so that apps (and their libraries) that already read it in a mesh read it
// here too. A value sent by the client itself never reaches the app, with or without client
// certificates: behind this proxy the app can trust the header.
const clientCertHeaderName = "X-Forwarded-Client-Cert"

// clientCertHeader returns the X-Forwarded-Client-Cert value for a connection whose client certificate
// was verified, or nil: Hash (SHA-256 of the certificate's DER, in hex), Subject (RFC 2253), and a URI=
// or DNS= pair per subject alternative name, e.g.
//
//	Hash=5a1b…;Subject="CN=billing,O=example";URI=spiffe://cluster.local/ns/a/sa/billing;DNS=billing.internal
func clientCertHeader(cs *tls.ConnectionState) []string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	cert := cs.VerifiedChains[0][0]
	sum := sha256.Sum256(cert.Raw)
	var b strings.Builder
	b.WriteString("Hash=")
	b.WriteString(hex.EncodeToString(sum[:]))
	b.WriteString(";Subject=")
	b.WriteString(clientCertValue(cert.Subject.String(), true))
	for _, u := range cert.URIs {
		b.WriteString(";URI=")
		b.WriteString(clientCertValue(u.String(), false))
	}
	for _, name := range cert.DNSNames {
		b.WriteString(";DNS=")
		b.WriteString(clientCertValue(name, false))
	}
	return []string{b.String()}
}

// clientCertValue writes one value of the header as Envoy does: double-quoted when asked or when it
// holds a separator (, ; =) or a quote, with \ and " escaped. Control bytes, which a header value cannot
// carry (a certificate's UTF8String name can), are written as \xHH inside quotes.
func clientCertValue(v string, quote bool) string {
	if !quote && !strings.ContainsAny(v, `,;="\`) && !hasControlByte(v) {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func hasControlByte(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return true
		}
	}
	return false
}

// setClientCert replaces whatever X-Forwarded-Client-Cert the client sent with the connection's own
// value (nil: none).
func setClientCert(h http.Header, value []string) {
	if value == nil {
		delete(h, clientCertHeaderName)
		return
	}
	h[clientCertHeaderName] = value
}
