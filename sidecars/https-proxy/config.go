package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/outrigger-dev/outrigger/internal/appprobe"
	"github.com/outrigger-dev/outrigger/internal/envflag"
)

// Config is the validated configuration of one https-proxy process.
type Config struct {
	// ProxyPort is the app's plain-HTTP port on 127.0.0.1.
	ProxyPort int
	// ListenPort is the HTTPS port.
	ListenPort int
	// CertificatePath and KeyPath are the PEM certificate chain and private key, reloaded when they change.
	CertificatePath string
	KeyPath         string
	// ClientCAPath, when set, turns on client-certificate authentication against that PEM CA bundle.
	ClientCAPath string
	// AllowedClientNames, when set, restricts client certificates to these CNs or DNS SANs.
	AllowedClientNames []string
	// MinTLSVersion is "1.2" or "1.3".
	MinTLSVersion string
	// StatusPort serves /healthz, /readyz and /metrics over plain HTTP.
	StatusPort int
	// FIFOPoller serves the TCP connections from the proxy's own epoll poller, in readiness order
	// (internal/fifopoll); false leaves them to Go's netpoller.
	FIFOPoller bool
	// AppProbes are the app's probes the injector pointed at the status port (appprobe.StatusPath), each
	// repeated to the app on 127.0.0.1:ProxyPort.
	AppProbes appprobe.Set

	// Not settings: fixed here, overridden by tests.

	// ListenHost is the address both ports bind to ("" = every interface, as a pod needs).
	ListenHost string
	// PollInterval re-reads the certificate files even without a file event (a safety net for
	// filesystems without inotify).
	PollInterval time.Duration
	// ShutdownTimeout bounds the drain of in-flight requests after SIGTERM.
	ShutdownTimeout time.Duration
}

// settings is the one declaration of the ENV API: names, defaults, usage lines and parsers.
func settings(c *Config) envflag.Set {
	return envflag.Set{Program: "https-proxy", Vars: []envflag.Var{
		{Env: "PROXY_PORT", Default: "8000", Usage: "the app's plain-HTTP port on 127.0.0.1 that requests are proxied to", Parse: envflag.Port(&c.ProxyPort)},
		{Env: "LISTEN_PORT", Default: "8443", Usage: "the HTTPS port the proxy listens on (HTTP/1.1 and HTTP/2)", Parse: envflag.Port(&c.ListenPort)},
		{Env: "CERTIFICATE_PATH", Default: "/etc/https-proxy/tls/tls.crt", Usage: "PEM certificate chain, reloaded when it changes (Secret updates) or on SIGHUP, keeping the old one if the new files do not load", Parse: envflag.NonEmpty(&c.CertificatePath)},
		{Env: "KEY_PATH", Default: "/etc/https-proxy/tls/tls.key", Usage: "PEM private key of the certificate, reloaded with it", Parse: envflag.NonEmpty(&c.KeyPath)},
		{Env: "CLIENT_CA_PATH", Default: "", Usage: "PEM CA bundle (e.g. ca.crt from tls-secret); when set, clients must present a certificate it signed (mTLS)", Parse: envflag.String(&c.ClientCAPath)},
		{Env: "ALLOWED_CLIENT_NAMES", Default: "", Usage: "comma list of client certificate CNs or DNS SANs allowed (empty: any the CA signed)", Parse: envflag.List(&c.AllowedClientNames)},
		{Env: "MIN_TLS_VERSION", Default: "1.2", Usage: "lowest TLS version accepted: 1.2 or 1.3", Parse: envflag.OneOf(&c.MinTLSVersion, "1.2", "1.3")},
		{Env: "FIFO_POLLER", Default: "true", Usage: "serve connections in readiness order from the proxy's own epoll poller (Linux; a lower p99 under load); false leaves them to Go's netpoller", Parse: envflag.Bool(&c.FIFOPoller), Switch: true},
		{Env: "STATUS_PORT", Default: "9801", Usage: "plain-HTTP port for /healthz, /readyz and /metrics (the probes use 9801: each sidecar of a pod has its own status port)", Parse: envflag.Port(&c.StatusPort)},
		{Env: "APP_PROBES", Default: "", Usage: "set by the injector: the app's probes on PROXY_PORT it pointed at /app-health/<container>/<kind> of the status port, as JSON; each is repeated to the app on 127.0.0.1", Parse: appProbes(&c.AppProbes)},
	}}
}

func appProbes(p *appprobe.Set) func(string) error {
	return func(s string) (err error) {
		*p, err = appprobe.Parse(s)
		return err
	}
}

// loadConfig parses flags and ENV, then checks the settings against each other. It returns flag.ErrHelp
// after printing the help to out, and otherwise every problem joined, one line each.
func loadConfig(args []string, lookupEnv func(string) (string, bool), out io.Writer) (*Config, error) {
	c := &Config{PollInterval: 30 * time.Second, ShutdownTimeout: 20 * time.Second}
	if err := settings(c).Parse(args, lookupEnv, out); err != nil {
		return nil, err
	}
	var problems []error
	if len(c.AllowedClientNames) > 0 && c.ClientCAPath == "" {
		problems = append(problems, fmt.Errorf("invalid ALLOWED_CLIENT_NAMES=%q: needs CLIENT_CA_PATH, the CA that signs client certificates", strings.Join(c.AllowedClientNames, ",")))
	}
	if c.ListenPort == c.StatusPort {
		problems = append(problems, fmt.Errorf("invalid STATUS_PORT=\"%d\": it is also LISTEN_PORT; want two different ports", c.StatusPort))
	}
	if c.ListenPort == c.ProxyPort {
		problems = append(problems, fmt.Errorf("invalid PROXY_PORT=\"%d\": it is also LISTEN_PORT (the proxy would call itself); want the app's port", c.ProxyPort))
	}
	if c.StatusPort == c.ProxyPort {
		problems = append(problems, fmt.Errorf("invalid PROXY_PORT=\"%d\": it is also STATUS_PORT; want the app's port", c.ProxyPort))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return c, nil
}

// tlsVersion maps MIN_TLS_VERSION to crypto/tls's constant (validated by settings).
func (c *Config) tlsVersion() uint16 {
	if c.MinTLSVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}
