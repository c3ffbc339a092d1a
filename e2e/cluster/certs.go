package cluster

import (
	"time"

	"github.com/outrigger-dev/outrigger/internal/testpki"
)

// ServingCert writes a new CA-signed serving certificate (tls.crt, tls.key) for hosts into dir and returns
// the CA certificate (PEM), for a webhook configuration's caBundle. The API server reaches local webhooks
// by URL, so hosts is usually 127.0.0.1.
func ServingCert(dir string, hosts ...string) (caPEM []byte, err error) {
	ca, err := testpki.NewCA("outrigger-e2e-ca")
	if err != nil {
		return nil, err
	}
	leaf, err := ca.ServingCert(time.Time{}, hosts...)
	if err != nil {
		return nil, err
	}
	if err := leaf.WriteFiles(dir, nil); err != nil {
		return nil, err
	}
	return ca.PEM, nil
}

// writeClientCert writes a new CA (ca.crt) and a client certificate signed by it (tls.crt, tls.key) for the
// user cn in group org into dir.
func writeClientCert(dir, cn, org string) error {
	ca, err := testpki.NewCA("outrigger-e2e-kubelet-client-ca")
	if err != nil {
		return err
	}
	leaf, err := ca.ClientCert(cn, []string{org})
	if err != nil {
		return err
	}
	return leaf.WriteFiles(dir, ca)
}
