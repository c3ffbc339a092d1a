package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/outrigger-dev/outrigger/internal/envflag"
	"github.com/outrigger-dev/outrigger/webhook/certs"
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
		{Env: "FAILURE_POLICY", Default: "Fail", Usage: "the failurePolicy the webhook is registered with (the chart sets it): Fail denies a pod whose namespace cannot be read, Ignore admits it without the namespace's defaults and says so", Parse: envflag.OneOf(&o.FailurePolicy, "Fail", "Ignore")},
		{Env: "POD_NAMESPACE", Default: "", Usage: "the injector's own namespace, never injected (set from the downward API)", Parse: envflag.String(&o.InjectorNamespace)},
		{Env: "CERT_MODE", Default: server.CertModeFiles, Usage: "where the serving certificate comes from: files (CERT_DIR, e.g. a Secret written by cert-manager) or self-managed (the webhook creates and rotates it in CERT_SECRET and keeps WEBHOOK_CONFIG_NAME's caBundle current)", Parse: envflag.OneOf(&o.CertMode, server.CertModeFiles, server.CertModeSelfManaged)},
		{Env: "CERT_SECRET", Default: "outrigger-webhook-tls", Usage: "self-managed: the Secret in POD_NAMESPACE holding the CA and the serving certificate; the Lease that elects the rotating replica has the same name", Parse: envflag.NonEmpty(&o.SelfManaged.SecretName)},
		{Env: "WEBHOOK_CONFIG_NAME", Default: "outrigger", Usage: "self-managed: the MutatingWebhookConfiguration whose caBundle is kept current", Parse: envflag.NonEmpty(&o.SelfManaged.WebhookConfigName)},
		{Env: "SERVICE_NAME", Default: "outrigger-webhook", Usage: "self-managed: the Service the API server calls; the serving certificate names <service>.<POD_NAMESPACE>.svc", Parse: envflag.NonEmpty(&o.ServiceName)},
		{Env: "CERT_EXTRA_SANS", Default: "", Usage: "self-managed: more DNS names or IP addresses for the serving certificate, comma-separated (e.g. when the API server calls the webhook by URL)", Parse: envflag.List(&o.CertExtraSANs)},
		{Env: "CA_VALIDITY", Default: "43800h", Usage: "self-managed: lifetime of a new CA (renewed after two thirds of it)", Parse: envflag.Duration(&o.SelfManaged.CAValidity, time.Hour)},
		{Env: "CERT_VALIDITY", Default: "2160h", Usage: "self-managed: lifetime of a new serving certificate (renewed after two thirds of it)", Parse: envflag.Duration(&o.SelfManaged.CertValidity, time.Minute)},
		{Env: "CHECK_NAMESPACE", Default: "", Usage: "check instead of serving: create a server-side dry-run pod asking for topz in this namespace; exit 0 if the API server returns it injected, else 1 (the chart's helm test)", Parse: envflag.String(&o.CheckNamespace)},
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
	if o.CertMode == server.CertModeSelfManaged && o.CheckNamespace == "" {
		var problems []error
		if o.InjectorNamespace == "" {
			problems = append(problems, errors.New(`invalid POD_NAMESPACE="": CERT_MODE=self-managed needs it (the namespace of CERT_SECRET; the chart sets it from the downward API)`))
		}
		if o.SelfManaged.CAValidity < o.SelfManaged.CertValidity {
			problems = append(problems, fmt.Errorf("invalid CA_VALIDITY=%q: want at least CERT_VALIDITY=%q (a CA outlives the certificates it signs)", o.SelfManaged.CAValidity, o.SelfManaged.CertValidity))
		}
		if len(problems) > 0 {
			return o, errors.Join(problems...)
		}
		o.SelfManaged.Namespace = o.InjectorNamespace
		o.SelfManaged.Names = append(certs.ServiceNames(o.ServiceName, o.InjectorNamespace), o.CertExtraSANs...)
	}
	return o, nil
}
