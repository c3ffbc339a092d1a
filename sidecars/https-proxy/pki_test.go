package main

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/testpki"
)

// pki is a throwaway certificate authority (internal/testpki) with helpers that fail the test.
type pki struct {
	ca  *testpki.CA
	pem []byte
}

func newPKI(t testing.TB, name string) *pki {
	t.Helper()
	ca, err := testpki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca: ca, pem: ca.PEM}
}

func (p *pki) pool() *x509.CertPool { return p.ca.Pool() }

// leaf is an issued certificate.
type leaf struct {
	certPEM, keyPEM []byte
	serial          *big.Int
}

// serverCert issues a serving certificate for 127.0.0.1 and localhost, valid until notAfter.
func (p *pki) serverCert(t testing.TB, notAfter time.Time) leaf {
	t.Helper()
	l, err := p.ca.ServingCert(notAfter, "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return leaf{l.CertPEM, l.KeyPEM, l.Serial}
}

// clientCert issues a client certificate with this CN and DNS SANs.
func (p *pki) clientCert(t testing.TB, cn string, dns ...string) tls.Certificate {
	t.Helper()
	l := p.issue(t, clientTemplate(cn, dns...))
	c, err := tls.X509KeyPair(l.certPEM, l.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *pki) issue(t testing.TB, tmpl *x509.Certificate) leaf {
	t.Helper()
	l, err := p.ca.Issue(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	return leaf{l.CertPEM, l.KeyPEM, l.Serial}
}

func clientTemplate(cn string, dns ...string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    dns,
		NotAfter:    time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

func parseLeaf(certPEM []byte) (*x509.Certificate, error) { return testpki.ParseCert(certPEM) }
