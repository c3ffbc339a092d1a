package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outrigger-dev/outrigger/internal/testpki"
)

// tlsFiles writes ca.crt, tls.crt and tls.key for leaf into dir and returns their paths.
func tlsFiles(t *testing.T, dir string, ca *testpki.CA, leaf testpki.Leaf) (caFile, certFile, keyFile string) {
	t.Helper()
	if err := leaf.WriteFiles(dir, ca); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
}

// TestShardsOverTLS: a real redis-server that speaks only TLS and requires client certificates
// (tls-auth-clients yes, its default). With TLS, the CA and a client certificate the proxy serves SET and
// GET; without a client certificate, or verifying against another CA, every request fails with the
// handshake's reason naming the shard, and the start refuses a TLS file that is not there.
func TestShardsOverTLS(t *testing.T) {
	ca, err := testpki.NewCA("shard CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.ServingCert(time.Time{}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srvCA, srvCert, srvKey := tlsFiles(t, filepath.Join(t.TempDir(), "server"), ca, server)
	client, err := ca.ClientCert("shard-ambassador", nil)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile := tlsFiles(t, filepath.Join(t.TempDir(), "client"), ca, client)
	port := freePort(t)
	shard := startProcess(t, fmt.Sprintf("127.0.0.1:%d", port), needBinary(t, "redis-server"), "--port", "0", "--tls-port", strconv.Itoa(port),
		"--bind", "127.0.0.1", "--tls-cert-file", srvCert, "--tls-key-file", srvKey, "--tls-ca-cert-file", srvCA,
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", t.TempDir())

	env := func(extra map[string]string) map[string]string {
		e := map[string]string{"SHARDS": shard.addr + ":1", "TIMEOUT": "2s"}
		for k, v := range extra {
			e[k] = v
		}
		return e
	}
	c := dial(t, startAmbassador(t, proxyFor(t, env(map[string]string{"TLS": "true", "TLS_CA_FILE": caFile, "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile}))))
	if got := c.do("SET", "k", "over-tls"); got != "+OK" {
		t.Fatalf("over TLS, SET = %q", got)
	}
	if got := c.do("GET", "k"); got != "$over-tls" {
		t.Errorf("over TLS, GET = %q", got)
	}

	other, _ := testpki.NewCA("another CA")
	otherCA, _, _ := tlsFiles(t, filepath.Join(t.TempDir(), "other"), other, client)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no client certificate", map[string]string{"TLS": "true", "TLS_CA_FILE": caFile}, "shard " + shard.addr},
		{"another CA", map[string]string{"TLS": "true", "TLS_CA_FILE": otherCA, "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile}, "certificate signed by unknown authority"},
		{"plain TCP to a TLS port", nil, "shard " + shard.addr},
	} {
		got := dial(t, startAmbassador(t, proxyFor(t, env(tc.env)))).do("GET", "k")
		if !strings.HasPrefix(got, "-ERR shard-ambassador: shard ") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: GET = %q, want an error naming the shard with %q", tc.name, got, tc.want)
		}
		t.Logf("result: %s: %s", tc.name, got)
	}

	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"TLS": "true", "TLS_CA_FILE": filepath.Join(t.TempDir(), "missing.crt")}, "TLS_CA_FILE"},
		{map[string]string{"TLS": "true", "TLS_CERT_FILE": certFile}, "set both or neither"},
		{map[string]string{"TLS_CA_FILE": caFile}, "TLS=false"},
		{map[string]string{"TLS": "true", "PROTOCOL": "http"}, "PROTOCOL=http"},
	} {
		e := env(tc.env)
		_, err := loadConfig(nil, func(k string) (string, bool) { v, ok := e[k]; return v, ok }, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.env, err, tc.want)
		}
	}
}
