// Package webhook is Outrigger's admission edge: it decodes an AdmissionReview's pod, looks up the
// namespace in an informer cache, calls the pure injection core (webhook/inject), and answers with a JSON
// patch built from the typed pods over the parts injection may change (patchFor in patch.go, answered
// with admission.Patched), a denial that names every problem, or an error with the right HTTP code.
//
// It is mounted on controller-runtime's webhook server (TLS with certwatcher hot reload, panic recovery,
// body-size limits) by cmd/outrigger-webhook.
package webhook
