package main

import "github.com/prometheus/client_golang/prometheus"

// metrics are config-sync's Prometheus metrics (beside the Go and process collectors).
type metrics struct {
	syncs         *prometheus.CounterVec
	reloads       *prometheus.CounterVec
	errors        *prometheus.CounterVec
	lastSync      prometheus.Gauge
	lastWrite     prometheus.Gauge
	sourceHealthy prometheus.Gauge
}

// errorReasons are the values of config_sync_errors_total's reason label.
var errorReasons = []string{"forbidden", "missing", "unreachable", "invalid", "write", "reload"}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "config_sync_syncs_total",
			Help: "Successful syncs of the target directory: result=written (a new version was linked in) or unchanged.",
		}, []string{"result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "config_sync_reloads_total",
			Help: "Times the app was told to reload, by method (signal, http, command) and result (ok, failed).",
		}, []string{"method", "result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "config_sync_errors_total",
			Help: "Errors by reason: forbidden (RBAC), missing (object deleted), unreachable, invalid (keys), write, reload.",
		}, []string{"reason"}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "config_sync_last_sync_timestamp_seconds",
			Help: "Unix time the target directory was last confirmed in step with the source.",
		}),
		lastWrite: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "config_sync_last_write_timestamp_seconds",
			Help: "Unix time a new version was last written to the target directory.",
		}),
		sourceHealthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "config_sync_source_healthy",
			Help: "1 when the last read of the source succeeded, 0 while it fails (the last good files stay in place).",
		}),
	}
	reg.MustRegister(m.syncs, m.reloads, m.errors, m.lastSync, m.lastWrite, m.sourceHealthy)
	for _, r := range []string{"written", "unchanged"} {
		m.syncs.WithLabelValues(r)
	}
	for _, r := range errorReasons {
		m.errors.WithLabelValues(r)
	}
	return m
}
