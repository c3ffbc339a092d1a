package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
)

// tlsConfig is the client side of TLS to a shard whose host is serverName. The files are read anew for each
// connection (new connections are rare: SERVER_CONNECTIONS per shard, and a reconnect after a failure), so
// a rotated Secret is used from the next connection on, as AUTH_FILE is.
func (c *Config) tlsConfig(serverName string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS_CA_FILE=%q: %w", c.TLSCAFile, err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS_CA_FILE=%q: want PEM certificates, found none", c.TLSCAFile)
		}
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS_CERT_FILE=%q, TLS_KEY_FILE=%q: %w", c.TLSCertFile, c.TLSKeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// handshake makes nc a TLS connection to the shard at addr (its host is the name verified), within ctx.
func (b *backend) handshake(ctx context.Context, nc net.Conn, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	tc, err := b.cfg.tlsConfig(host)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(nc, tc)
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return conn, nil
}
