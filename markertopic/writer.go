package markertopic

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/segmentio/kafka-go"
)

// Writer produces markers to the topic.
type Writer struct {
	w         *kafka.Writer
	transport *kafka.Transport
	topic     string
	written   prometheus.Counter
	failed    prometheus.Counter
}

// NewWriter builds a Writer; its metrics go to o.Registry.
func NewWriter(o Options) (*Writer, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	t := o.transport()
	f := promauto.With(o.Registry)
	return &Writer{
		w: &kafka.Writer{
			Addr: kafka.TCP(o.Brokers...), Topic: o.Topic, Transport: t,
			Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
			// One marker at a time, answered to an HTTP client waiting for
			// it: no batching delay.
			BatchSize: 1, BatchTimeout: time.Millisecond, WriteTimeout: writeTimeout,
		},
		transport: t,
		topic:     o.Topic,
		written: f.NewCounter(prometheus.CounterOpts{Namespace: "detector", Subsystem: "markers", Name: "written_total",
			Help: "Deploy markers produced to the marker topic."}),
		failed: f.NewCounter(prometheus.CounterOpts{Namespace: "detector", Subsystem: "markers", Name: "write_errors_total",
			Help: "Deploy markers that could not be produced to the marker topic."}),
	}, nil
}

// Write produces m and returns once the brokers acknowledged it.
func (w *Writer) Write(ctx context.Context, m Marker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode marker: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	key := m.Scope + "/" + m.Group + "/" + m.Version
	if err := w.w.WriteMessages(ctx, kafka.Message{Key: []byte(key), Value: b, Time: time.Now()}); err != nil {
		w.failed.Inc()
		return fmt.Errorf("produce to marker topic %s: %w", w.topic, err)
	}
	w.written.Inc()
	return nil
}

// Close flushes and closes the writer's connections.
func (w *Writer) Close() error {
	err := w.w.Close()
	w.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close marker writer: %w", err)
	}
	return nil
}
