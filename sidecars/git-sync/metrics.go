package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics keeps kubernetes/git-sync's metric names (git_sync_count_total, git_sync_duration_seconds,
// git_sync_hook_run_count_total) so that existing dashboards keep working, and adds the published hash.
type metrics struct {
	syncs               *prometheus.CounterVec
	duration            *prometheus.SummaryVec
	hookRuns            *prometheus.CounterVec
	info                *prometheus.GaugeVec
	consecutiveFailures prometheus.Gauge
	lastSuccess         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "git_sync_count_total",
			Help: "Syncs completed, by status: success (a new commit was published), noop (nothing new) or error.",
		}, []string{"status"}),
		duration: prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name:       "git_sync_duration_seconds",
			Help:       "How long syncs took, by status.",
			Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
		}, []string{"status"}),
		hookRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "git_sync_hook_run_count_total",
			Help: "Hook calls completed, by hook (webhook, exechook) and status (success, error).",
		}, []string{"name", "status"}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "git_sync_info",
			Help: "Always 1; the hash label is the published commit.",
		}, []string{"hash"}),
		consecutiveFailures: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "git_sync_consecutive_failures",
			Help: "Failed syncs since the last successful one (GITSYNC_MAX_FAILURES is compared with it).",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "git_sync_last_success_timestamp_seconds",
			Help: "When the last successful sync (new commit or nothing new) finished, in Unix seconds.",
		}),
	}
	reg.MustRegister(m.syncs, m.duration, m.hookRuns, m.info, m.consecutiveFailures, m.lastSuccess)
	return m
}

// observe records one sync.
func (m *metrics) observe(status string, took time.Duration) {
	m.syncs.WithLabelValues(status).Inc()
	m.duration.WithLabelValues(status).Observe(took.Seconds())
}

// published replaces the hash label.
func (m *metrics) published(hash string) {
	m.info.Reset()
	m.info.WithLabelValues(hash).Set(1)
}
