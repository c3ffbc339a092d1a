package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"
	"time"
)

// A serving and a client certificate from the same CA complete a mutual TLS handshake over loopback, each
// side verifying the other against the CA; a second CA's client is refused.
func TestCertificatesCompleteAMutualHandshake(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.ServingCert(time.Time{}, "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	server, err := serving.TLS()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); c.Write([]byte("ok")); io.Copy(io.Discard, c) }()
		}
	}()
	other, err := NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ca   *CA
		want bool
	}{{ca, true}, {other, false}} {
		leaf, err := tc.ca.ClientCert("billing", []string{"system:masters"})
		if err != nil {
			t.Fatal(err)
		}
		client, err := leaf.TLS()
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{client}})
		ok := err == nil
		if ok {
			_, err = conn.Read(make([]byte, 2)) // TLS 1.3: a refused client certificate shows on the first read
			ok = err == nil
			conn.Close()
		}
		if ok != tc.want {
			t.Errorf("client of %s: handshake ok=%v (%v), want %v", tc.ca.Cert.Subject.CommonName, ok, err, tc.want)
		}
	}
	cert, err := ParseCert(serving.CertPEM)
	if err != nil || !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || cert.DNSNames[0] != "localhost" {
		t.Errorf("serving certificate %v %v: %v", cert.DNSNames, cert.IPAddresses, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"}); err != nil {
		t.Error(err)
	}
}
