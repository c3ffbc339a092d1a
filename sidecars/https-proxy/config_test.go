package main

import (
	"bytes"
	"errors"
	"flag"
	"reflect"
	"strings"
	"testing"

	"github.com/outrigger-dev/outrigger/webhook/catalog/catalogtest"
)

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestLoadConfigDefaultsAndOverrides(t *testing.T) {
	c, err := loadConfig(nil, lookup(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ProxyPort != 8000 || c.ListenPort != 8443 || c.StatusPort != 9801 || c.MinTLSVersion != "1.2" ||
		c.CertificatePath != "/etc/https-proxy/tls/tls.crt" || c.KeyPath != "/etc/https-proxy/tls/tls.key" || c.ClientCAPath != "" || !c.FIFOPoller {
		t.Errorf("defaults: %+v", c)
	}
	c, err = loadConfig([]string{"--proxy-port=3000"}, lookup(map[string]string{
		"PROXY_PORT": "5000", "CLIENT_CA_PATH": "/ca.crt", "ALLOWED_CLIENT_NAMES": " billing, api.internal ,", "MIN_TLS_VERSION": "1.3",
	}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ProxyPort != 3000 || !reflect.DeepEqual(c.AllowedClientNames, []string{"billing", "api.internal"}) || c.tlsVersion() != 0x0304 {
		t.Errorf("overrides: %+v", c)
	}
}

func TestLoadConfigRefusesBadValues(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want []string // one line each
	}{
		{map[string]string{"PROXY_PORT": "abc"}, []string{`invalid PROXY_PORT="abc": want a port number from 1 to 65535`}},
		{map[string]string{"LISTEN_PORT": "70000", "STATUS_PORT": "-1"}, []string{
			`invalid LISTEN_PORT="70000": want a port number from 1 to 65535`,
			`invalid STATUS_PORT="-1": want a port number from 1 to 65535`}},
		{map[string]string{"MIN_TLS_VERSION": "1.1"}, []string{`invalid MIN_TLS_VERSION="1.1": want one of 1.2, 1.3`}},
		{map[string]string{"CERTIFICATE_PATH": " "}, []string{`invalid CERTIFICATE_PATH=" ": must be set`}},
		{map[string]string{"ALLOWED_CLIENT_NAMES": "billing"}, []string{`invalid ALLOWED_CLIENT_NAMES="billing": needs CLIENT_CA_PATH`}},
		{map[string]string{"STATUS_PORT": "8443"}, []string{`invalid STATUS_PORT="8443": it is also LISTEN_PORT`}},
		{map[string]string{"PROXY_PORT": "8443"}, []string{`invalid PROXY_PORT="8443": it is also LISTEN_PORT`}},
	} {
		_, err := loadConfig(nil, lookup(tc.env), nil)
		if err == nil {
			t.Errorf("%v: accepted", tc.env)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(tc.want) {
			t.Errorf("%v: %d lines, want %d:\n%v", tc.env, len(lines), len(tc.want), err)
			continue
		}
		for i, want := range tc.want {
			if !strings.HasPrefix(lines[i], want) {
				t.Errorf("%v: line %q, want it to start with %q", tc.env, lines[i], want)
			}
		}
	}
}

func TestHelpListsEveryEnv(t *testing.T) {
	var out bytes.Buffer
	if _, err := loadConfig([]string{"--help"}, lookup(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, v := range settings(&Config{}).Vars {
		if !strings.Contains(out.String(), v.Env) {
			t.Errorf("--help lacks %s", v.Env)
		}
	}
}

// TestAPIAgreement keeps the Dockerfile, the README and the injector's catalog in step with settings.
func TestAPIAgreement(t *testing.T) {
	for _, p := range catalogtest.Problems(".", "https-proxy", settings(&Config{})) {
		t.Error(p)
	}
}
