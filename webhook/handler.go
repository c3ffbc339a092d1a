package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/outrigger-dev/outrigger/webhook/config"
	"github.com/outrigger-dev/outrigger/webhook/inject"
)

// Injector is the admission handler for pods.
type Injector struct {
	// Config returns the configuration in force (it is reloaded behind this function).
	Config func() *config.Config
	// Namespaces looks up the pod's namespace; nil means namespace defaults are not used.
	Namespaces NamespaceLookup
	// Metrics records decisions; nil records nothing.
	Metrics *Metrics
	// Log gets one line per denial or error (never the pod's content).
	Log logr.Logger
	// FailClosed is true under failurePolicy Fail: a pod whose namespace cannot be read is denied rather
	// than admitted without the namespace's default sidecars, which the user chose Fail to prevent. Under
	// Ignore (false) it is admitted, and the warning says what it lacks.
	FailClosed bool
}

var _ admission.Handler = (*Injector)(nil)

// Handle implements admission.Handler.
func (i *Injector) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, res := i.handle(ctx, req)
	if i.Metrics != nil {
		i.Metrics.observe(resp, res, time.Since(start))
	}
	if !resp.Allowed {
		msg := ""
		if resp.Result != nil {
			msg = resp.Result.Message
		}
		i.Log.Info("pod not admitted", "uid", req.UID, "namespace", req.Namespace, "name", req.Name, "reason", msg)
	}
	return resp
}

func (i *Injector) handle(ctx context.Context, req admission.Request) (admission.Response, *inject.Result) {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("outrigger injects Pods only, got %s %s (check the rules of the MutatingWebhookConfiguration)", req.Kind.Group+"/"+req.Kind.Version, req.Kind.Kind)), nil
	}
	if req.Operation != admissionv1.Create {
		return admission.Allowed("outrigger injects on CREATE only"), nil
	}
	if len(req.Object.Raw) == 0 {
		return admission.Errored(http.StatusBadRequest, errors.New("the admission request has no object")), nil
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err)), nil
	}
	in := inject.Input{Pod: &pod, Namespace: req.Namespace, Config: i.Config()}
	var warnings []string
	if i.Namespaces != nil {
		labels, annotations, err := i.Namespaces.Lookup(ctx, req.Namespace)
		if err != nil && !needsNamespace(in) {
			err = nil // nothing the namespace says could change this pod: never injected here, or opted out
		}
		if err != nil && i.FailClosed {
			return admission.Denied(fmt.Sprintf("outrigger: namespace %s could not be read (%v), so its default sidecars are unknown; "+
				"the pod is refused under failurePolicy Fail (check that the webhook may get, list and watch namespaces)", req.Namespace, err)), nil
		}
		if err != nil {
			// failurePolicy Ignore: injection still happens from the pod's own annotations and the cluster
			// defaults, and the user is told what the pod may lack.
			warnings = append(warnings, fmt.Sprintf("outrigger: namespace %s could not be read (%v); the pod is admitted under failurePolicy Ignore without its namespace's default sidecars", req.Namespace, err))
		}
		in.NamespaceLabels, in.NamespaceAnnotations = labels, annotations
	}
	res, err := inject.Inject(in)
	var denied *inject.DeniedError
	switch {
	case errors.As(err, &denied):
		return admission.Denied(denied.Error()), nil
	case err != nil:
		return admission.Errored(http.StatusInternalServerError, err), nil
	}
	warnings = append(warnings, res.Warnings...)
	if !res.Changed {
		return admission.Allowed("").WithWarnings(warnings...), res
	}
	patch, err := patchFor(&pod, res.Pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("computing the patch: %w", err)), res
	}
	resp := admission.Patched("", patch...)
	return resp.WithWarnings(warnings...), res
}

// needsNamespace reports whether the namespace's labels and annotations could change what in's pod gets:
// not in a namespace the config never injects, nor for a pod that opts out of everything
// (outrigger.dev/inject: none). Any other pod may take sidecars or parameter values from its namespace.
func needsNamespace(in inject.Input) bool {
	if excluded, _ := in.Config.Excluded(in.Namespace); excluded {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(in.Pod.Annotations[inject.AnnotationInject])) {
	case "none", "false":
		return false
	}
	return true
}
