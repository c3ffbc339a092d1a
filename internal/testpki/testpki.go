// Package testpki issues throwaway certificates: a CA and the serving and client certificates it signs,
// for tests and for the local cluster (the webhook's serving certificate, the API server's client
// certificate for the kubelet). It is the one place outside webhook/certs (the production rotator) that
// creates certificates, so that every test PKI has the same key type (ECDSA P-256), PEM encodings (PKCS #8
// keys) and validity window.
//
// It returns errors rather than taking a testing.TB, so that the cluster library and make demo can use it
// without linking testing.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority valid from an hour ago for a day.
type CA struct {
	Cert *x509.Certificate
	// PEM is Cert, PEM-encoded: a caBundle, a ca.crt, a client's root.
	PEM []byte
	key crypto.Signer
}

// NewCA creates a CA whose certificate has the common name name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// Pool is a certificate pool holding the CA only.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Leaf is an issued certificate and its key, PEM-encoded.
type Leaf struct {
	CertPEM, KeyPEM []byte
	Serial          *big.Int
}

// TLS is the leaf as a tls.Certificate.
func (l Leaf) TLS() (tls.Certificate, error) { return tls.X509KeyPair(l.CertPEM, l.KeyPEM) }

// WriteFiles writes the leaf as tls.crt and tls.key (mode 0600) into dir, creating it, and with ca.crt too
// when ca is not nil: the layout of a kubernetes.io/tls Secret mounted as a volume.
func (l Leaf) WriteFiles(dir string, ca *CA) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := map[string][]byte{"tls.crt": l.CertPEM, "tls.key": l.KeyPEM}
	if ca != nil {
		files["ca.crt"] = ca.PEM
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Issue signs tmpl with a new key. It sets the serial number and the key usage; NotBefore defaults to two
// hours ago and NotAfter to a day from now.
func (ca *CA) Issue(tmpl *x509.Certificate) (Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Leaf{}, err
	}
	if tmpl.SerialNumber, err = randomSerial(); err != nil {
		return Leaf{}, err
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-2 * time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return Leaf{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Leaf{}, err
	}
	return Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Serial:  tmpl.SerialNumber,
	}, nil
}

// ServingCert issues a server certificate for hosts (IP addresses and DNS names; the first is also the
// common name), valid until notAfter (zero: a day).
func (ca *CA) ServingCert(notAfter time.Time, hosts ...string) (Leaf, error) {
	if len(hosts) == 0 {
		return Leaf{}, errors.New("a serving certificate needs a host")
	}
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: hosts[0]}, NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.Issue(tmpl)
}

// ClientCert issues a client certificate for the common name cn in the organizations orgs (Kubernetes
// reads them as the user's groups), with DNS SANs dns.
func (ca *CA) ClientCert(cn string, orgs []string, dns ...string) (Leaf, error) {
	return ca.Issue(&x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: orgs}, DNSNames: dns,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

// ParseCert reads the first certificate of certPEM.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
}
