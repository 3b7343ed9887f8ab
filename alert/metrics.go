package alert

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

const (
	namespace         = "detector"
	subsystem         = "notifications"
	alertmanagerLabel = "alertmanager"
)

// metrics are the notifier's instruments, named and labelled as
// Prometheus's own notifier names its.
type metrics struct {
	sent          *prometheus.CounterVec
	errors        *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	dropped       prometheus.Counter
	queueLength   prometheus.GaugeFunc
	queueCapacity prometheus.Gauge
}

// amMetrics are one Alertmanager's label children, resolved once so the send
// path does no label lookups and every series exists (at 0) from the start.
type amMetrics struct {
	sent    prometheus.Counter
	errors  prometheus.Counter
	latency prometheus.Observer
}

// newMetrics creates the instruments and registers them with reg (nil: not
// registered). A registration error (say, a second notifier on one registry)
// is returned rather than panicked on.
func newMetrics(reg prometheus.Registerer, queueLen func() float64) (*metrics, error) {
	r := &errRegisterer{reg: reg}
	f := promauto.With(r)
	if reg == nil {
		f = promauto.With(nil)
	}
	m := &metrics{
		sent: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "sent_total",
			Help: "Total number of alerts sent to an Alertmanager and accepted by it.",
		}, []string{alertmanagerLabel}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "errors_total",
			Help: "Total number of alerts in send attempts to an Alertmanager that failed, counted per attempt.",
		}, []string{alertmanagerLabel}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "latency_seconds",
			Help:    "Latency of POST requests to an Alertmanager.",
			Buckets: prometheus.DefBuckets,
		}, []string{alertmanagerLabel}),
		dropped: f.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "dropped_total",
			Help: "Total number of alerts dropped, oldest first, because the queue was full.",
		}),
		queueLength: f.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "queue_length",
			Help: "Number of alerts waiting in the queue.",
		}, queueLen),
		queueCapacity: f.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "queue_capacity",
			Help: "Capacity of the alert queue.",
		}),
	}
	if r.err != nil {
		return nil, fmt.Errorf("register notifier metrics: %w", r.err)
	}
	return m, nil
}

// errRegisterer turns promauto's panic on a failed registration into an
// error kept for the caller.
type errRegisterer struct {
	reg prometheus.Registerer
	err error
}

func (r *errRegisterer) Register(c prometheus.Collector) error {
	err := r.reg.Register(c)
	r.err = errors.Join(r.err, err)
	return err
}

func (r *errRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c) // kept in r.err
	}
}

func (r *errRegisterer) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// forAlertmanager resolves, and so initialises to 0, one Alertmanager's series.
func (m *metrics) forAlertmanager(label string) amMetrics {
	return amMetrics{
		sent:    m.sent.WithLabelValues(label),
		errors:  m.errors.WithLabelValues(label),
		latency: m.latency.WithLabelValues(label),
	}
}
