package main

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus series, per shard where it matters.
type metrics struct {
	requests  *prometheus.CounterVec
	failures  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	ejections *prometheus.CounterVec
	inRing    *prometheus.GaugeVec
	clients   prometheus.Gauge
	// clientsRefused counts connections closed at once for MAX_CLIENT_CONNECTIONS.
	clientsRefused prometheus.Counter
	refused        *prometheus.CounterVec
	// reloads counts CONFIG_FILE reloads by result; remapped is the share of a sample of keys the last
	// applied reload moved to another shard (reload.go).
	reloads  *prometheus.CounterVec
	remapped prometheus.Gauge
	// commandCount and commandLatency are per command, for the requests sent to shards; commands holds
	// each command's children, by command id, once a request used them.
	commandCount   *prometheus.CounterVec
	commandLatency *prometheus.HistogramVec
	commands       []atomic.Pointer[commandMetrics]
}

// commandNames are the labels of the per-command metrics: the names of redis's command table and of
// memcache's commands, each given an id at init (commandID). A label therefore never comes from a
// client's bytes (the series stay bounded), and a request finds its command's metrics by index: no
// lookup, no allocation on the hot path.
var commandNames []string

func commandID(name string) int {
	commandNames = append(commandNames, name)
	return len(commandNames) - 1
}

// commandMetrics are one command's children, resolved once per command so that a request costs two
// atomic updates and no label lookup.
type commandMetrics struct {
	ok, failed prometheus.Counter
	latency    prometheus.Observer
}

// command returns the metrics of the command with that id (commandID); the first use creates its series.
func (m *metrics) command(id int) *commandMetrics {
	if cm := m.commands[id].Load(); cm != nil {
		return cm
	}
	name := commandNames[id]
	m.commands[id].CompareAndSwap(nil, &commandMetrics{
		ok: m.commandCount.WithLabelValues(name, "ok"), failed: m.commandCount.WithLabelValues(name, "error"),
		latency: m.commandLatency.WithLabelValues(name),
	})
	return m.commands[id].Load()
}

// observe counts one reply (failed: an error reply or no reply) after d nanoseconds.
func (cm *commandMetrics) observe(d int64, failed bool) {
	if cm == nil {
		return
	}
	if failed {
		cm.failed.Inc()
	} else {
		cm.ok.Inc()
	}
	cm.latency.Observe(float64(d) / 1e9)
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shard_ambassador_shard_requests_total", Help: "Requests answered by each shard.",
		}, []string{"shard"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shard_ambassador_shard_failures_total", Help: "Failed connections, writes, reads and timeouts per shard.",
		}, []string{"shard"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shard_ambassador_shard_request_duration_seconds", Help: "Time from sending a request to a shard to its reply.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"shard"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shard_ambassador_shard_ejections_total", Help: "Times each shard was ejected from the ring (auto_eject_hosts).",
		}, []string{"shard"}),
		inRing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shard_ambassador_shard_in_ring", Help: "1 when the shard takes keys, 0 while it is ejected.",
		}, []string{"shard"}),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shard_ambassador_client_connections", Help: "Open client connections.",
		}),
		clientsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shard_ambassador_client_connections_refused_total", Help: "Client connections refused because MAX_CLIENT_CONNECTIONS were open.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shard_ambassador_refused_commands_total", Help: "Commands refused because they cannot be sharded, by command (other: a name the protocol does not have).",
		}, []string{"command"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shard_ambassador_config_reloads_total", Help: "Reloads of CONFIG_FILE's shard list, by result: applied, unchanged or invalid (the running shards kept).",
		}, []string{"result"}),
		remapped: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shard_ambassador_config_reload_remapped_keys_ratio", Help: "Share of a sample of 10,000 keys that the last applied reload moved to another shard.",
		}),
	}
	m.commandCount = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shard_ambassador_commands_total", Help: "Requests sent to shards, by command and result: ok, or error (an error reply, a timeout or a failed connection).",
	}, []string{"command", "result"})
	m.commandLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "shard_ambassador_command_duration_seconds", Help: "Time from sending a request to a shard to its reply, by command.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"command"})
	m.commands = make([]atomic.Pointer[commandMetrics], len(commandNames))
	for _, r := range []string{"applied", "unchanged", "invalid"} {
		m.reloads.WithLabelValues(r)
	}
	reg.MustRegister(m.requests, m.failures, m.latency, m.ejections, m.inRing, m.clients, m.clientsRefused, m.refused, m.reloads, m.remapped, m.commandCount, m.commandLatency)
	return m
}

// shardMetrics are one shard's children, resolved once so the hot path does no label lookups.
type shardMetrics struct {
	requests  prometheus.Counter
	failures  prometheus.Counter
	latency   prometheus.Observer
	ejections prometheus.Counter
	inRing    prometheus.Gauge
}

func (m *metrics) forShard(name string) shardMetrics {
	return shardMetrics{
		requests:  m.requests.WithLabelValues(name),
		failures:  m.failures.WithLabelValues(name),
		latency:   m.latency.WithLabelValues(name),
		ejections: m.ejections.WithLabelValues(name),
		inRing:    m.inRing.WithLabelValues(name),
	}
}

func (s shardMetrics) observe(nanos int64) {
	s.requests.Inc()
	s.latency.Observe(time.Duration(nanos).Seconds())
}

func (s shardMetrics) failure() { s.failures.Inc() }
func (s shardMetrics) ejected() { s.ejections.Inc() }
func (s shardMetrics) setInRing(in bool) {
	if in {
		s.inRing.Set(1)
	} else {
		s.inRing.Set(0)
	}
}
