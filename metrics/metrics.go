// Package metrics owns statusbridge's Prometheus registry: webhook outcomes,
// event states, deliveries and attempt latency per target, outbox depth and
// age, mapping reloads, and the Go runtime. The other packages report through
// small interfaces they declare; *Metrics implements them all.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the collectors.
type Metrics struct {
	reg        *prometheus.Registry
	webhooks   *prometheus.CounterVec
	intakes    *prometheus.CounterVec // statusbridge_intake_total (intake.go)
	events     *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	reloads    *prometheus.CounterVec
	ack        prometheus.Histogram
	commit     prometheus.Histogram
	commitOps  prometheus.Histogram
	commitPgs  prometheus.Histogram
	committer  *prometheus.CounterVec
	circuit    *prometheus.GaugeVec
	outbox     *outboxCollector // nil: no outbox gauges

	sender      prometheus.Gauge
	mappingInfo *prometheus.GaugeVec
}

// OutboxStat is the backlog of one target.
type OutboxStat struct {
	Pending      int
	OldestCreate time.Time // zero when nothing is pending
}

// New registers every collector. outbox is read at each scrape (nil: no
// outbox gauges).
func New(outbox func() (map[string]OutboxStat, error)) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "statusbridge_webhooks_total",
		Help: "Webhook calls by outcome: accepted, duplicate, invalid, ignored, unauthorized, bad_request, too_large, store_error."}, []string{"outcome"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "statusbridge_events_total",
		Help: "Stored events by the state their decision gave them."}, []string{"state"})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "statusbridge_delivery_attempts_total",
		Help: "Delivery attempts by target and result: done, retry, dead, skipped, superseded."}, []string{"target", "result"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "statusbridge_delivery_attempt_seconds",
		Help: "Duration of delivery attempts by target.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"target"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "statusbridge_mapping_reloads_total",
		Help: "Mapping reloads by result: ok, failed."}, []string{"result"})
	fine := prometheus.ExponentialBuckets(0.00025, 2, 15) // 0.25 ms … 4 s
	m.ack = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "statusbridge_webhook_seconds",
		Help: "Time from a webhook's arrival in the handler to its answer, for webhooks stored (on disk) and answered 2xx.", Buckets: fine})
	m.commit = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "statusbridge_store_commit_seconds",
		Help: "Duration of each group commit (the transaction and its fsyncs).", Buckets: fine})
	m.commitOps = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "statusbridge_store_commit_writes",
		Help: "Writes (ingests and delivery records) per group commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)})
	m.commitPgs = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "statusbridge_store_commit_pages",
		Help: "Pages (4 KB each) written per group commit: the B-tree pages it dirtied and the meta page.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)})
	m.committer = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "statusbridge_store_committer_seconds_total",
		Help: "Where the bbolt group committer's time went, by part: idle (waiting for a first write), linger (waiting for more writes to share a commit), apply (running the writes: deciding, encoding, the puts), spill (bbolt encoding pages), sync (writing pages and their fdatasyncs), rest (the rest of the commit: beginning it, merging dedup keys, answering). The parts add up to the committer's wall time (idle is counted every 100 ms while it lasts)."},
		[]string{"part"})
	for _, part := range committerParts {
		m.committer.WithLabelValues(part) // every part's series from the start, at 0
	}
	m.sender = prometheus.NewGauge(prometheus.GaugeOpts{Name: "statusbridge_sender",
		Help: "1 on the replica that sends deliveries (the elected sender), else 0."})
	m.circuit = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "statusbridge_circuit_open",
		Help: "1 while the target's circuit breaker is open or half-open in this replica (its sends are paused), else 0."}, []string{"target"})
	m.mappingInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "statusbridge_mapping_info",
		Help: "Always 1; the version label is the mapping in force."}, []string{"version"})
	m.reg.MustRegister(m.webhooks, m.events, m.deliveries, m.latency, m.reloads, m.ack, m.commit, m.commitOps, m.commitPgs, m.committer, m.circuit,
		m.sender, m.mappingInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.registerIntake()
	if outbox != nil {
		m.outbox = &outboxCollector{read: outbox}
		m.reg.MustRegister(m.outbox)
	}
	return m
}

// Targets names the configured targets: each one's outbox and breaker
// gauges exist from the start and read 0 until something is pending or its
// breaker opens, and they stay (at 0) once its backlog drains.
func (m *Metrics) Targets(names []string) {
	for _, t := range names {
		m.circuit.WithLabelValues(t).Set(0)
	}
	if m.outbox != nil {
		m.outbox.mu.Lock()
		m.outbox.targets = append([]string(nil), names...)
		m.outbox.mu.Unlock()
	}
}

// SetCircuitOpen shows whether a target's circuit breaker is open (its
// sends paused, until a probe succeeds) in this replica.
func (m *Metrics) SetCircuitOpen(target string, open bool) {
	v := 0.0
	if open {
		v = 1
	}
	m.circuit.WithLabelValues(target).Set(v)
}

// Handler serves /metrics. A collector that fails (the outbox gauges while
// the database is down) is left out of that scrape and the rest is served,
// so an outage does not hide every other metric.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Webhook counts a webhook call's outcome.
func (m *Metrics) Webhook(outcome string) { m.webhooks.WithLabelValues(outcome).Inc() }

// Stored records how long a stored webhook took to be answered.
func (m *Metrics) Stored(d time.Duration) { m.ack.Observe(d.Seconds()) }

// Commit records one group commit: how many writes it held, how many pages
// it wrote (0: not known, not observed) and how long it took.
func (m *Metrics) Commit(writes, pages int, d time.Duration) {
	m.commit.Observe(d.Seconds())
	m.commitOps.Observe(float64(writes))
	if pages > 0 {
		m.commitPgs.Observe(float64(pages))
	}
}

// Committer adds one group commit's share of the bbolt committer's time, by
// part (statusbridge_store_committer_seconds_total).
func (m *Metrics) Committer(idle, linger, apply, spill, sync, rest time.Duration) {
	for i, d := range [len(committerParts)]time.Duration{idle, linger, apply, spill, sync, rest} {
		if d > 0 { // a counter only grows: a negative time (a clock step) is dropped
			m.committer.WithLabelValues(committerParts[i]).Add(d.Seconds())
		}
	}
}

// committerParts label statusbridge_store_committer_seconds_total, in the
// order of Committer's arguments.
var committerParts = [...]string{"idle", "linger", "apply", "spill", "sync", "rest"}

// Event counts a stored event's state.
func (m *Metrics) Event(state string) { m.events.WithLabelValues(state).Inc() }

// Attempt counts a delivery attempt (or a skip/supersede without one) and its duration.
func (m *Metrics) Attempt(target, result string, d time.Duration) {
	m.deliveries.WithLabelValues(target, result).Inc()
	if d > 0 {
		m.latency.WithLabelValues(target).Observe(d.Seconds())
	}
}

// Reload counts a mapping reload.
func (m *Metrics) Reload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("failed").Inc()
	}
}

// SetSender records whether this replica is the one that sends.
func (m *Metrics) SetSender(sending bool) { m.sender.Set(boolValue(sending)) }

// SetMappingVersion records the mapping version in force (the only series
// of statusbridge_mapping_info).
func (m *Metrics) SetMappingVersion(v string) {
	m.mappingInfo.Reset()
	m.mappingInfo.WithLabelValues(v).Set(1)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

type outboxCollector struct {
	read    func() (map[string]OutboxStat, error)
	mu      sync.Mutex
	targets []string // configured: always reported, 0 when nothing is pending
}

var (
	depthDesc = prometheus.NewDesc("statusbridge_outbox_depth", "Deliveries not yet finished, by target.", []string{"target"}, nil)
	ageDesc   = prometheus.NewDesc("statusbridge_outbox_oldest_pending_seconds", "Age of the oldest unfinished delivery, by target.", []string{"target"}, nil)
)

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- depthDesc; ch <- ageDesc }

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.read()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(depthDesc, err)
		return
	}
	now := time.Now()
	c.mu.Lock()
	for _, t := range c.targets {
		if _, ok := stats[t]; !ok {
			if stats == nil {
				stats = map[string]OutboxStat{}
			}
			stats[t] = OutboxStat{}
		}
	}
	c.mu.Unlock()
	for target, s := range stats {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(s.Pending), target)
		age := 0.0
		if !s.OldestCreate.IsZero() {
			age = now.Sub(s.OldestCreate).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, age, target)
	}
}
