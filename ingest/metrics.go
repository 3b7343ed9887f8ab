package ingest

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/wikimedia/pretrain-detector/decode"
)

const (
	namespace = "detector"
	subsystem = "ingest"
)

// Metrics are the ingest counters, shared by every partition reader.
type Metrics struct {
	records    *prometheus.CounterVec
	bytes      *prometheus.CounterVec
	skipped    *prometheus.CounterVec
	rejected   *prometheus.CounterVec
	lag        *prometheus.GaugeVec
	partitions *prometheus.GaugeVec
	connected  *prometheus.GaugeVec
	missing    *prometheus.GaugeVec
	reconnects *prometheus.CounterVec
	lost       *prometheus.CounterVec
	stalled    *prometheus.GaugeVec
	lastRecord *prometheus.GaugeVec

	mu     sync.Mutex
	topics map[string]*partitionMetrics
}

// NewMetrics registers the ingest metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		records: f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "records_total",
			Help: "Kafka records read, by topic."}, []string{"topic"}),
		bytes: f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "bytes_total",
			Help: "Bytes of Kafka record values read, by topic."}, []string{"topic"}),
		skipped: f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "records_skipped_total",
			Help: "Well-formed records not counted, by topic and reason: filtered (canary events, non-error log levels and channels, non-MediaWiki lines) or no_wiki (internal hosts such as the jobrunners' RunSingleJob.php and health checks, fatals without wiki or server)."}, []string{"topic", "reason"}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "records_rejected_total",
			Help: "Malformed records counted and skipped, by topic and reason."}, []string{"topic", "reason"}),
		lag: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: "consumer_lag_records",
			Help: "Records between the newest read and the high-water mark, summed over partitions, by topic (last fetch of each partition)."}, []string{"topic"}),
		partitions: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: "partitions",
			Help: "Partitions being read, by topic."}, []string{"topic"}),
		connected: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: "partitions_connected",
			Help: "Partitions with an open connection to their leader, by topic; below detector_ingest_partitions while brokers are away."}, []string{"topic"}),
		missing: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: "topic_missing",
			Help: "1 when a configured topic does not exist (it is looked for again)."}, []string{"topic"}),
		reconnects: f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "reconnects_total",
			Help: "Partition connections re-established after an error, by topic."}, []string{"topic"}),
		lost: f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "records_lost_total",
			Help: "Offsets a partition skipped because its position left the log while it was away, by topic and reason: retention (deleted below the position; those records were never read) or truncation (the log ended below the position; reading resumes at its end)."}, []string{"topic", "reason"}),
		stalled: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: "partitions_stalled",
			Help: "Partitions set aside, by topic: unreadable or behind for longer than kafka.max_partition_stall, they no longer hold the watermark back."}, []string{"topic"}),
		lastRecord: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: "last_record_timestamp_seconds",
			Help: "Kafka timestamp of the newest record read, by topic (Unix seconds; 0 before the first record)."}, []string{"topic"}),
		topics: map[string]*partitionMetrics{},
	}
}

// Lost reasons, the label values of detector_ingest_records_lost_total.
const (
	lostRetention  = "retention"
	lostTruncation = "truncation"
)

// partitionMetrics holds a topic's label children, resolved once.
type partitionMetrics struct {
	records, bytes, reconnects prometheus.Counter
	skipped                    map[string]prometheus.Counter
	connected                  prometheus.Gauge
	rejected                   map[error]prometheus.Counter
	lag                        *lagSum
	lost                       map[string]prometheus.Counter

	newestMu   sync.Mutex
	newest     int64
	lastRecord *prometheus.GaugeVec
	topic      string
}

// observeNewest raises the topic's last-record gauge to ns (Unix ns).
func (p *partitionMetrics) observeNewest(ns int64) {
	p.newestMu.Lock()
	defer p.newestMu.Unlock()
	if ns > p.newest {
		p.newest = ns
		p.lastRecord.WithLabelValues(p.topic).Set(float64(ns) / 1e9)
	}
}

// lagSum keeps the topic gauge the sum of its partitions' lags.
type lagSum struct {
	g  prometheus.Gauge
	mu sync.Mutex
	by map[*partitionLag]float64
}

type partitionLag struct{ s *lagSum }

func (l *partitionLag) Set(v float64) {
	l.s.mu.Lock()
	l.s.by[l] = v
	sum := 0.0
	for _, x := range l.s.by {
		sum += x
	}
	l.s.mu.Unlock()
	l.s.g.Set(sum)
}

func (m *Metrics) forTopic(topic string) *partitionMetricsHandle {
	m.mu.Lock()
	defer m.mu.Unlock()
	pm, ok := m.topics[topic]
	if !ok {
		pm = &partitionMetrics{
			records:    m.records.WithLabelValues(topic),
			bytes:      m.bytes.WithLabelValues(topic),
			skipped:    map[string]prometheus.Counter{},
			reconnects: m.reconnects.WithLabelValues(topic),
			connected:  m.connected.WithLabelValues(topic),
			rejected:   map[error]prometheus.Counter{},
			lag:        &lagSum{g: m.lag.WithLabelValues(topic), by: map[*partitionLag]float64{}},
			lost: map[string]prometheus.Counter{
				lostRetention:  m.lost.WithLabelValues(topic, lostRetention),
				lostTruncation: m.lost.WithLabelValues(topic, lostTruncation),
			},
			lastRecord: m.lastRecord,
			topic:      topic,
		}
		for _, r := range decode.SkipReasons {
			pm.skipped[r] = m.skipped.WithLabelValues(topic, r)
		}
		for _, r := range decode.RejectReasons {
			pm.rejected[r] = m.rejected.WithLabelValues(topic, r.Error())
		}
		m.topics[topic] = pm
	}
	return &partitionMetricsHandle{partitionMetrics: pm, lag: &partitionLag{s: pm.lag}}
}

// partitionMetricsHandle is one partition's view: shared counters, own lag.
type partitionMetricsHandle struct {
	*partitionMetrics
	lag *partitionLag
}

func (p *partitionMetricsHandle) skip(err error) {
	if c, ok := p.skipped[decode.SkipReason(err)]; ok {
		c.Inc()
		return
	}
	p.skipped["filtered"].Inc()
}

func (p *partitionMetricsHandle) reject(err error) {
	if c, ok := p.rejected[err]; ok {
		c.Inc()
		return
	}
	p.rejected[decode.ErrInvalidJSON].Inc() // decoders return only known reasons; be safe
}

// InitTopics initialises per-topic series to 0 so they exist before the first record.
func (m *Metrics) InitTopics(topics []string) {
	for _, t := range topics {
		m.forTopic(t)
		m.partitions.WithLabelValues(t)
		m.missing.WithLabelValues(t)
		m.stalled.WithLabelValues(t)
		m.lastRecord.WithLabelValues(t) // 0 until the first record: rules ignore it
	}
}

func (m *Metrics) topicMissing(topic string, missing bool) {
	v := 0.0
	if missing {
		v = 1
	}
	m.missing.WithLabelValues(topic).Set(v)
}
