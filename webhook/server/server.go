// Package server runs the webhook: a controller-runtime manager with the webhook server (TLS 1.2+,
// serving certificate hot-reloaded from CertDir by certwatcher, or in CertModeSelfManaged served from a
// Secret the webhook rotates itself, see package certs), health and readiness probes, Prometheus
// metrics, a metadata-only namespace informer, and the config file watcher. The webhook is stateless:
// every replica serves; in CertModeSelfManaged one replica at a time (a Lease) rotates the certificates.
package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/outrigger-dev/outrigger/webhook"
	"github.com/outrigger-dev/outrigger/webhook/certs"
	"github.com/outrigger-dev/outrigger/webhook/config"
)

// GC defaults for the webhook binary (GOGC or GOMEMLIMIT in the environment win; see internal/gcdefaults):
// the webhook allocates per review over a small live heap, and GOGC=400 took its p99 at 1,000 reviews/s
// from 2.5 ms to 0.6 ms (docs/performance.md). The limit stays below the chart's 256Mi memory limit.
const (
	DefaultGOGC        = 400
	DefaultMemoryLimit = 192 << 20
)

// Path is where the webhook serves admission reviews.
const Path = "/inject"

// Certificate modes (Options.CertMode).
const (
	// CertModeFiles serves CertDir/CertName and CertDir/KeyName, reloaded when they change (a Secret
	// volume written by cert-manager or by the user).
	CertModeFiles = "files"
	// CertModeSelfManaged creates, rotates and serves the certificates in a Secret (package certs).
	CertModeSelfManaged = "self-managed"
)

// Options configure Run.
type Options struct {
	ConfigFile        string
	InjectorNamespace string
	CertDir           string
	CertName, KeyName string
	Host              string
	Port              int
	HealthAddr        string
	MetricsAddr       string
	MinTLSVersion     uint16
	// CertMode is CertModeFiles ("" means it) or CertModeSelfManaged.
	CertMode string
	// SelfManaged configures CertModeSelfManaged (its Log is set by Run).
	SelfManaged certs.Options
	// ServiceName and CertExtraSANs are the settings behind SelfManaged.Names.
	ServiceName   string
	CertExtraSANs []string
	// FailurePolicy is the webhook configuration's failurePolicy, Fail or Ignore: what to do when a pod's
	// namespace cannot be read (see webhook.Injector.FailClosed).
	FailurePolicy string
	// CheckNamespace, when set, makes Run check injection once in that namespace instead of serving.
	CheckNamespace string
	// RESTConfig reaches the API server (for namespaces); nil means ctrl.GetConfig (KUBECONFIG or in-cluster).
	RESTConfig *rest.Config
	Log        logr.Logger
}

// Run serves until ctx is done. It returns an error if the config file, the certificates or the API server
// configuration are unusable at start; later config reload failures keep the previous config.
func Run(ctx context.Context, o Options) error {
	if o.CheckNamespace != "" {
		return CheckInjection(ctx, o.RESTConfig, o.CheckNamespace, o.Log)
	}
	store, err := config.NewStore(o.ConfigFile, o.InjectorNamespace)
	if err != nil {
		return err
	}
	restCfg := o.RESTConfig
	if restCfg == nil {
		if restCfg, err = ctrl.GetConfig(); err != nil {
			return fmt.Errorf("finding the API server (KUBECONFIG or in-cluster): %w", err)
		}
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	nsMeta := &metav1.PartialObjectMetadata{}
	nsMeta.SetGroupVersionKind(webhook.NamespaceGVK)
	minTLS := o.MinTLSVersion
	if minTLS == 0 {
		minTLS = tls.VersionTLS12
	}
	tlsOpts := []func(*tls.Config){func(c *tls.Config) { c.MinVersion = minTLS }}
	var rotator *certs.Rotator
	switch o.CertMode {
	case "", CertModeFiles:
	case CertModeSelfManaged:
		sm := o.SelfManaged
		sm.Log = o.Log
		if rotator, err = certs.New(restCfg, sm); err != nil {
			return err
		}
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = rotator.GetCertificate })
	default:
		return fmt.Errorf("certificate mode %q: want %s or %s", o.CertMode, CertModeFiles, CertModeSelfManaged)
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 o.Log,
		HealthProbeBindAddress: o.HealthAddr,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsAddr},
		Cache:                  cache.Options{ByObject: map[client.Object]cache.ByObject{nsMeta: {}}},
		WebhookServer: crwebhook.NewServer(crwebhook.Options{
			Host: o.Host, Port: o.Port, CertDir: o.CertDir, CertName: o.CertName, KeyName: o.KeyName,
			TLSOpts: tlsOpts,
		}),
	})
	if err != nil {
		return fmt.Errorf("creating the webhook manager: %w", err)
	}
	m := webhook.NewMetrics(metrics.Registry)
	store.OnReload = func(err error) {
		m.ObserveReload(err)
		if err != nil {
			o.Log.Error(err, "config reload failed; the previous config stays in force")
			return
		}
		o.Log.Info("config reloaded", "file", o.ConfigFile)
	}
	injector := &webhook.Injector{
		Config:     store.Current,
		Namespaces: webhook.CachedNamespaces{Cache: mgr.GetCache(), API: mgr.GetAPIReader()},
		Metrics:    m,
		Log:        o.Log.WithName("inject"),
		FailClosed: o.FailurePolicy != "Ignore",
	}
	mgr.GetWebhookServer().Register(Path, &admission.Webhook{Handler: injector, RecoverPanic: ptr(true)})

	// Namespaces are read from an informer; the replica is ready once it has synced, so that the first pods
	// it admits get their namespace's defaults.
	var namespacesSynced atomic.Bool
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if _, err := mgr.GetCache().GetInformer(ctx, nsMeta); err != nil {
			return fmt.Errorf("starting the namespace informer: %w", err)
		}
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return ctx.Err()
		}
		namespacesSynced.Store(true)
		<-ctx.Done()
		return nil
	})); err != nil {
		return err
	}
	if err := mgr.Add(manager.RunnableFunc(store.Watch)); err != nil {
		return err
	}
	if rotator != nil {
		if err := mgr.Add(rotator); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("certificate", func(*http.Request) error { return rotator.Ready() }); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("namespaces", func(*http.Request) error {
		if !namespacesSynced.Load() {
			return fmt.Errorf("namespace informer not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}
	o.Log.Info("serving", "port", o.Port, "path", Path, "certMode", o.CertMode, "certDir", o.CertDir, "config", o.ConfigFile)
	return mgr.Start(ctx)
}

func ptr[T any](v T) *T { return &v }
