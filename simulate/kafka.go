package simulate

import (
	"context"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// KafkaSink returns a Sink that writes each batch with w.WriteMessages,
// the topic set per message and the Kafka timestamp set to the event time.
// w must not set Topic (messages carry it). With a synchronous Writer the
// batch is written when the call returns, so Run may reuse its buffers; an
// Async Writer gets copies. For throughput give w a BatchSize of at least
// Config.BatchSize and a small BatchTimeout (kafka-go waits up to
// BatchTimeout, default 1 s, before sending a partial batch), and set
// RequiredAcks to RequireOne or RequireAll: with kafka-go's default
// RequireNone no request waits for the broker, so records of one partition
// can land out of event-time order. The Sink is not safe for concurrent
// use, which Run never needs.
func KafkaSink(w *kafka.Writer) Sink {
	var msgs []kafka.Message
	return func(ctx context.Context, batch []Record) error {
		if w.Topic != "" {
			return errors.New("kafka sink: the writer sets Topic; leave it empty, records carry their topic")
		}
		msgs = msgs[:0]
		for _, r := range batch {
			m := kafka.Message{Topic: r.Topic, Key: r.Key, Value: r.Value, Time: r.Time}
			if w.Async {
				m.Key = append([]byte(nil), r.Key...)
				m.Value = append([]byte(nil), r.Value...)
			}
			msgs = append(msgs, m)
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("writing %d records to kafka: %w", len(msgs), err)
		}
		clear(msgs) // do not pin the batch's buffers
		return nil
	}
}
