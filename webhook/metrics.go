package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/outrigger-dev/outrigger/webhook/inject"
)

// Metrics are the webhook's Prometheus metrics: every decision is visible.
type Metrics struct {
	requests   *prometheus.CounterVec
	injections *prometheus.CounterVec
	skips      *prometheus.CounterVec
	denials    prometheus.Counter
	latency    prometheus.Histogram
	reloads    *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (controller-runtime's metrics.Registry in
// the webhook binary).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_admission_requests_total",
			Help: "Admission requests by outcome: injected, unchanged, denied or error.",
		}, []string{"outcome"}),
		injections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_injections_total",
			Help: "Sidecars injected, by sidecar.",
		}, []string{"sidecar"}),
		skips: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_skips_total",
			Help: "Pods or sidecars not injected, by reason.",
		}, []string{"reason"}),
		denials: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outrigger_denials_total",
			Help: "Pods denied because of their Outrigger annotations.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outrigger_admission_duration_seconds",
			Help:    "Time to answer an admission request, from decoded request to response.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1},
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outrigger_config_reloads_total",
			Help: "Config file reloads by result: success or failure (a failure keeps the previous config).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.injections, m.skips, m.denials, m.latency, m.reloads)
	return m
}

// ObserveReload counts a config reload.
func (m *Metrics) ObserveReload(err error) {
	if err != nil {
		m.reloads.WithLabelValues("failure").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
}

func (m *Metrics) observe(resp admission.Response, res *inject.Result, took time.Duration) {
	m.latency.Observe(took.Seconds())
	switch {
	case resp.Result != nil && resp.Result.Code >= 400 && resp.Result.Code != 403:
		m.requests.WithLabelValues("error").Inc()
	case !resp.Allowed:
		m.requests.WithLabelValues("denied").Inc()
		m.denials.Inc()
	case res != nil && len(res.Injected()) > 0:
		m.requests.WithLabelValues("injected").Inc()
	default:
		m.requests.WithLabelValues("unchanged").Inc()
	}
	if res == nil {
		return
	}
	for _, d := range res.Decisions {
		switch d.Action {
		case inject.ActionInjected:
			m.injections.WithLabelValues(d.Sidecar).Inc()
		case inject.ActionSkipped:
			m.skips.WithLabelValues(d.Reason).Inc()
		}
	}
}
