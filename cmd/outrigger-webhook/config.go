package main

import (
	"crypto/tls"
	"io"
	"strconv"

	"github.com/outrigger-dev/outrigger/internal/envflag"
	"github.com/outrigger-dev/outrigger/webhook/server"
)

// settings is the webhook's API: the one declaration of its ENV names and defaults (the root Dockerfile
// and README are checked against it).
func settings(o *server.Options, port, health, metrics *int, minTLS *string) envflag.Set {
	return envflag.Set{Program: "outrigger-webhook", Vars: []envflag.Var{
		{Env: "CONFIG_FILE", Default: "/etc/outrigger/config.yaml", Usage: `the injector's config file (reloaded when it changes; "" = built-in defaults only)`, Parse: envflag.String(&o.ConfigFile)},
		{Env: "CERT_DIR", Default: "/etc/outrigger/certs", Usage: "directory holding the serving certificate and key (reloaded when they change)", Parse: envflag.NonEmpty(&o.CertDir)},
		{Env: "CERT_NAME", Default: "tls.crt", Usage: "serving certificate file name in CERT_DIR", Parse: envflag.NonEmpty(&o.CertName)},
		{Env: "KEY_NAME", Default: "tls.key", Usage: "serving key file name in CERT_DIR", Parse: envflag.NonEmpty(&o.KeyName)},
		{Env: "LISTEN_HOST", Default: "", Usage: `address the webhook listens on ("" = all)`, Parse: envflag.String(&o.Host)},
		{Env: "WEBHOOK_PORT", Default: "9443", Usage: "HTTPS port for admission reviews (path /inject)", Parse: envflag.Port(port)},
		{Env: "MIN_TLS_VERSION", Default: "1.2", Usage: "lowest TLS version accepted: 1.2 or 1.3", Parse: envflag.OneOf(minTLS, "1.2", "1.3")},
		{Env: "HEALTH_PORT", Default: "8081", Usage: "plain-HTTP port for /healthz and /readyz", Parse: envflag.Port(health)},
		{Env: "METRICS_PORT", Default: "8080", Usage: "plain-HTTP port for /metrics (0 = off)", Parse: envflag.OptionalPort(metrics)},
		{Env: "POD_NAMESPACE", Default: "", Usage: "the injector's own namespace, never injected (set from the downward API)", Parse: envflag.String(&o.InjectorNamespace)},
	}}
}

func loadConfig(args []string, lookupEnv func(string) (string, bool), out io.Writer) (server.Options, error) {
	var o server.Options
	var port, health, metrics int
	var minTLS string
	if err := settings(&o, &port, &health, &metrics, &minTLS).Parse(args, lookupEnv, out); err != nil {
		return o, err
	}
	o.Port = port
	o.HealthAddr = ":" + strconv.Itoa(health)
	o.MetricsAddr = "0"
	if metrics != 0 {
		o.MetricsAddr = ":" + strconv.Itoa(metrics)
	}
	o.MinTLSVersion = tls.VersionTLS12
	if minTLS == "1.3" {
		o.MinTLSVersion = tls.VersionTLS13
	}
	return o, nil
}
