package stages

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/ingest"
)

// KafkaSources lists every configured topic with its cluster's dialer.
func KafkaSources(cfg config.Config, clientID string) ([]ingest.Source, error) {
	var sources []ingest.Source
	for _, ct := range cfg.Topics() {
		dialer, err := dialer(clientID, ct.Cluster)
		if err != nil {
			return nil, fmt.Errorf("kafka cluster %s: %w", ct.Cluster.Name, err)
		}
		format, err := decode.ParseFormat(ct.Topic.Format)
		if err != nil {
			return nil, fmt.Errorf("topic %s: %w", ct.Topic.Name, err)
		}
		sources = append(sources, ingest.Source{Cluster: ct.Cluster.Name, Brokers: ct.Cluster.Brokers, Dialer: dialer, Topic: ct.Topic.Name, Format: format})
	}
	return sources, nil
}

// IngestMetrics registers the consumer's metrics with every source's
// topic present from the start.
func IngestMetrics(reg prometheus.Registerer, sources []ingest.Source) *ingest.Metrics {
	im := ingest.NewMetrics(reg)
	topics := make([]string, 0, len(sources))
	for _, s := range sources {
		topics = append(topics, s.Topic)
	}
	im.InitTopics(topics)
	return im
}

// dialer builds a cluster's kafka-go dialer with its TLS and SASL settings.
func dialer(clientID string, cl *config.Cluster) (*kafka.Dialer, error) {
	tc, err := ingest.TLSConfig(ingest.TLSOptions(cl.TLS))
	if err != nil {
		return nil, err
	}
	mech, err := ingest.SASLMechanism(cl.SASL.Mechanism, cl.SASL.Username, cl.SASL.PasswordFile)
	if err != nil {
		return nil, err
	}
	return ingest.NewDialer(clientID, tc, mech), nil
}
