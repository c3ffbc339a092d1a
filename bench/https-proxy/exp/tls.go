package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// handshakeConfig is the TLS configuration of new handshakes for one certificate (and client CA pool).
// Ciphers and curves are Go's defaults, which are the safe ones; HTTP/2 and HTTP/1.1 are offered by ALPN.
func handshakeConfig(cfg *Config, cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	c := &tls.Config{
		MinVersion:   cfg.tlsVersion(),
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	if clientCAs != nil {
		c.ClientCAs = clientCAs
		c.ClientAuth = tls.RequireAndVerifyClientCert
		if len(cfg.AllowedClientNames) > 0 {
			c.VerifyConnection = allowClientNames(cfg.AllowedClientNames)
		}
	}
	return c
}

// allowClientNames refuses a verified client certificate whose CN and DNS SANs are all outside names.
// It runs after the chain was verified against the client CA, so the names can be trusted.
func allowClientNames(names []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no client certificate")
		}
		leaf := cs.PeerCertificates[0]
		if slices.Contains(names, leaf.Subject.CommonName) {
			return nil
		}
		for _, dns := range leaf.DNSNames {
			if slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, dns) }) { // DNS names ignore case
				return nil
			}
		}
		return fmt.Errorf("client certificate %q (DNS names %v) is not in ALLOWED_CLIENT_NAMES", leaf.Subject.CommonName, leaf.DNSNames)
	}
}
