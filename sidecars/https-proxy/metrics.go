package main

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus metrics, served on the status port's /metrics.
type metrics struct {
	requests          *prometheus.CounterVec
	upstreamErrors    prometheus.Counter
	handshakeFailures prometheus.Counter
	certExpiry        prometheus.Gauge
	reloads           *prometheus.CounterVec

	// byCode caches requests' counter per status code: looking a label up costs more than the
	// increment, on every request.
	byCode [600]atomic.Pointer[prometheus.Counter]
}

// answered counts one answer with this status code.
func (m *metrics) answered(code int) {
	if code < 0 || code >= len(m.byCode) {
		m.requests.WithLabelValues(strconv.Itoa(code)).Inc()
		return
	}
	c := m.byCode[code].Load()
	if c == nil {
		counter := m.requests.WithLabelValues(strconv.Itoa(code))
		c = &counter
		m.byCode[code].Store(c)
	}
	(*c).Inc()
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "https_proxy_requests_total",
			Help: "Requests answered, by HTTP status code (the app's, or 502 when the app could not be reached).",
		}, []string{"code"}),
		upstreamErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "https_proxy_upstream_errors_total",
			Help: "Requests the app did not answer (connection refused, reset, ...), each answered with 502.",
		}),
		handshakeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "https_proxy_tls_handshake_failures_total",
			Help: "Connections closed before their TLS handshake completed (bad version, refused client certificate, plain HTTP, timeouts).",
		}),
		certExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "https_proxy_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the serving certificate in use, in Unix seconds.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "https_proxy_certificate_reloads_total",
			Help: "Loads of changed certificate files, by result (success, failure: the previous certificate stays in use).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.upstreamErrors, m.handshakeFailures, m.certExpiry, m.reloads)
	return m
}
