package certs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Options configure a Rotator.
type Options struct {
	// Namespace holds the Secret and the Lease (the webhook's own namespace).
	Namespace string
	// SecretName is the Secret holding the CA and the serving certificate. It must exist (the chart
	// creates it empty): the rotator may update it, not create it.
	SecretName string
	// LeaseName is the leader-election Lease; "" means SecretName. The chart creates it, so that the
	// rotator needs no right to create Leases (and uninstalling removes it).
	LeaseName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose webhooks' caBundle is kept current.
	WebhookConfigName string
	// Names are the serving certificate's DNS names or IP addresses; the first is its common name.
	Names []string
	// CAValidity and CertValidity are the lifetimes of new CAs and serving certificates; each is renewed
	// when two thirds of its lifetime have passed.
	CAValidity, CertValidity time.Duration
	// PropagationDelay is how long a new CA must have been in the caBundle before a serving certificate
	// signed by it is issued; 0 means 10 s.
	PropagationDelay time.Duration
	// Identity names this replica in the Lease; "" means the host name and a random suffix.
	Identity string
	Log      logr.Logger
}

// ServiceNames are the names the API server uses for a webhook behind Service svc in namespace ns.
func ServiceNames(svc, ns string) []string {
	return []string{svc + "." + ns + ".svc", svc + "." + ns, svc}
}

// Rotator keeps the certificates in the Secret current (while it leads) and serves the Secret's serving
// certificate (always). It is a controller-runtime Runnable that runs on every replica: leader election
// is its own, for rotation only.
type Rotator struct {
	opts    Options
	policy  policy
	client  kubernetes.Interface
	current atomic.Pointer[servedCert]
	kick    chan struct{}
	log     logr.Logger
}

type servedCert struct {
	cert    *tls.Certificate
	certPEM []byte
}

// New checks o and returns a Rotator talking to the API server at cfg. Its error lists every bad option.
func New(cfg *rest.Config, o Options) (*Rotator, error) {
	if o.LeaseName == "" {
		o.LeaseName = o.SecretName
	}
	if o.PropagationDelay == 0 {
		o.PropagationDelay = 10 * time.Second
	}
	if o.Identity == "" {
		host, _ := os.Hostname()
		suffix := make([]byte, 4)
		_, _ = rand.Read(suffix)
		o.Identity = host + "_" + hex.EncodeToString(suffix)
	}
	var problems []error
	for _, f := range []struct{ field, value string }{
		{"namespace", o.Namespace}, {"secret name", o.SecretName}, {"lease name", o.LeaseName}, {"webhook configuration name", o.WebhookConfigName},
	} {
		if errs := validation.IsDNS1123Subdomain(f.value); len(errs) > 0 {
			problems = append(problems, fmt.Errorf("self-managed certificates: %s %q: want a Kubernetes object name (%s)", f.field, f.value, strings.Join(errs, "; ")))
		}
	}
	if len(o.Names) == 0 {
		problems = append(problems, errors.New("self-managed certificates: no name for the serving certificate"))
	}
	if o.CertValidity < time.Minute || o.CAValidity < o.CertValidity {
		problems = append(problems, fmt.Errorf("self-managed certificates: CA validity %s and serving certificate validity %s: want at least 1m each, and the CA's at least the serving certificate's", o.CAValidity, o.CertValidity))
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("self-managed certificates: creating the API client: %w", err)
	}
	return &Rotator{
		opts:   o,
		policy: policy{names: o.Names, caValidity: o.CAValidity, certValidity: o.CertValidity, propagationDelay: o.PropagationDelay},
		client: cs,
		kick:   make(chan struct{}, 1),
		log:    o.Log.WithName("certs").WithValues("secret", o.Namespace+"/"+o.SecretName),
	}, nil
}

// NeedLeaderElection tells controller-runtime to run the Rotator on every replica: every replica serves
// the certificate; only the Lease holder rotates.
func (r *Rotator) NeedLeaderElection() bool { return false }

// GetCertificate serves the Secret's serving certificate (for tls.Config). It fails until the Secret holds
// one: the TLS handshake fails and the replica is not ready.
func (r *Rotator) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := r.current.Load(); c != nil {
		return c.cert, nil
	}
	return nil, fmt.Errorf("no serving certificate yet in Secret %s/%s", r.opts.Namespace, r.opts.SecretName)
}

// Ready reports whether a serving certificate is loaded.
func (r *Rotator) Ready() error {
	_, err := r.GetCertificate(nil)
	return err
}

// Start watches the Secret and the webhook configuration (each by name: the RBAC rules can name them),
// serves the Secret's certificate, and campaigns for the Lease; while it holds the Lease it rotates.
// It returns when ctx is done, or an error if the watches cannot start.
func (r *Rotator) Start(ctx context.Context) error {
	byName := func(name string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		})
	}
	secrets := informers.NewSharedInformerFactoryWithOptions(r.client, 10*time.Minute,
		informers.WithNamespace(r.opts.Namespace), byName(r.opts.SecretName))
	webhooks := informers.NewSharedInformerFactoryWithOptions(r.client, 10*time.Minute, byName(r.opts.WebhookConfigName))
	secretInformer := secrets.Core().V1().Secrets().Informer()
	if _, err := secretInformer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.load(obj); r.wake() },
		UpdateFunc: func(_, obj any) { r.load(obj); r.wake() },
	}); err != nil {
		return fmt.Errorf("watching Secret %s/%s: %w", r.opts.Namespace, r.opts.SecretName, err)
	}
	webhookInformer := webhooks.Admissionregistration().V1().MutatingWebhookConfigurations().Informer()
	if _, err := webhookInformer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.wake() },
		UpdateFunc: func(_, _ any) { r.wake() },
	}); err != nil {
		return fmt.Errorf("watching MutatingWebhookConfiguration %s: %w", r.opts.WebhookConfigName, err)
	}
	secrets.Start(ctx.Done())
	webhooks.Start(ctx.Done())
	defer secrets.Shutdown()
	defer webhooks.Shutdown()

	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: r.opts.Namespace, Name: r.opts.LeaseName},
		Client:     r.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: r.opts.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Name: "outrigger-cert-rotation", Lock: lock, ReleaseOnCancel: true,
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					r.log.Info("rotating certificates: this replica holds the lease", "lease", r.opts.LeaseName, "identity", r.opts.Identity)
					r.rotateWhileLeading(ctx)
				},
				OnStoppedLeading: func() { r.log.Info("no longer holding the lease", "identity", r.opts.Identity) },
			},
		})
		if err != nil {
			return fmt.Errorf("self-managed certificates: leader election: %w", err)
		}
		le.Run(ctx) // returns when the lease is lost or ctx is done; then campaign again
	}
	return nil
}

func (r *Rotator) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// load serves the Secret's certificate if it changed; a bad one is logged and the previous one kept.
func (r *Rotator) load(obj any) {
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	certPEM, keyPEM := sec.Data[KeyCert], sec.Data[KeyKey]
	if len(certPEM) == 0 {
		return
	}
	if cur := r.current.Load(); cur != nil && bytes.Equal(cur.certPEM, certPEM) {
		return
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		r.log.Error(err, "the Secret's serving certificate is unusable; the previous one stays in use")
		return
	}
	r.current.Store(&servedCert{cert: &pair, certPEM: certPEM})
	r.log.Info("serving certificate loaded", "serial", pair.Leaf.SerialNumber.Text(16), "issuer", pair.Leaf.Issuer.String(), "notAfter", pair.Leaf.NotAfter)
}

// rotateWhileLeading reconciles at every change of the Secret or the webhook configuration, at the next
// renewal time, and at least every 10 minutes; failures are retried with a backoff of up to a minute.
func (r *Rotator) rotateWhileLeading(ctx context.Context) {
	backoff := time.Second
	for {
		next, err := r.reconcile(ctx)
		wait := time.Until(next)
		if err != nil {
			r.log.Error(err, "certificate rotation failed; retrying", "in", backoff)
			wait, backoff = backoff, min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
		}
		wait = min(max(wait, 0), 10*time.Minute)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-r.kick:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// reconcile makes one pass: bring the Secret up to date, then the caBundle. It returns when to look again.
func (r *Rotator) reconcile(ctx context.Context) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	secrets := r.client.CoreV1().Secrets(r.opts.Namespace)
	sec, err := secrets.Get(ctx, r.opts.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return time.Time{}, fmt.Errorf("secret %s/%s not found: it must exist (the chart creates it empty)", r.opts.Namespace, r.opts.SecretName)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("reading Secret %s/%s: %w", r.opts.Namespace, r.opts.SecretName, err)
	}
	configs := r.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	wh, err := configs.Get(ctx, r.opts.WebhookConfigName, metav1.GetOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", r.opts.WebhookConfigName, err)
	}
	var bundles [][]byte
	for _, w := range wh.Webhooks {
		bundles = append(bundles, w.ClientConfig.CABundle)
	}
	state := clone(sec.Data, sec.Annotations)
	out, err := r.policy.apply(state, bundles, time.Now())
	if err != nil {
		return time.Time{}, err
	}
	for _, reason := range out.reasons {
		r.log.Info(reason)
	}
	if out.changed {
		sec.Data, sec.Annotations = state.data, state.annotations
		if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{FieldManager: "outrigger-webhook"}); err != nil {
			return time.Time{}, fmt.Errorf("updating Secret %s/%s: %w", r.opts.Namespace, r.opts.SecretName, err)
		}
	}
	if err := r.publishBundle(ctx, wh, desiredBundle(state)); err != nil {
		return time.Time{}, err
	}
	return out.recheck, nil
}

// publishBundle sets every webhook's caBundle of wh to bundle (nothing to do if they hold it already).
func (r *Rotator) publishBundle(ctx context.Context, wh *admissionregistrationv1.MutatingWebhookConfiguration, bundle []byte) error {
	if bundle == nil {
		return nil
	}
	changed := false
	for i := range wh.Webhooks {
		if !bytes.Equal(wh.Webhooks[i].ClientConfig.CABundle, bundle) {
			wh.Webhooks[i].ClientConfig.CABundle = bundle
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if _, err := r.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, wh, metav1.UpdateOptions{FieldManager: "outrigger-webhook"}); err != nil {
		return fmt.Errorf("updating the caBundle of MutatingWebhookConfiguration %s: %w", wh.Name, err)
	}
	r.log.Info("caBundle updated", "webhookConfiguration", wh.Name)
	return nil
}
