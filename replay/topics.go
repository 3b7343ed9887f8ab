package replay

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/decode"
)

// TopicStats counts one topic's records.
type TopicStats struct {
	Cluster, Topic, Format string
	Partitions             int
	Records, Bytes         int64
	Rejected, Skipped      int64
}

// needBothKinds fails, in one line naming them, when every error-log topic
// or every request topic of cfg is missing. A kind the config lists no
// topic of at all is the operator's choice (a throughput benchmark reads
// an access log alone), not a missing topic.
func needBothKinds(cfg config.Config, missing []string) error {
	var errTopics, reqTopics []string
	errLeft, reqLeft := false, false
	for _, ct := range cfg.Topics() {
		f, err := decode.ParseFormat(ct.Topic.Format)
		if err != nil {
			return fmt.Errorf("topic %s: %w", ct.Topic.Name, err)
		}
		gone := slices.Contains(missing, ct.Topic.Name)
		if f.Requests() {
			reqTopics = append(reqTopics, ct.Topic.Name+" on kafka cluster "+ct.Cluster.Name)
			reqLeft = reqLeft || !gone
		} else {
			errTopics = append(errTopics, ct.Topic.Name+" on kafka cluster "+ct.Cluster.Name)
			errLeft = errLeft || !gone
		}
	}
	var lacks []string
	if len(errTopics) > 0 && !errLeft {
		lacks = append(lacks, "no error-log topic exists ("+strings.Join(errTopics, ", ")+")")
	}
	if len(reqTopics) > 0 && !reqLeft {
		lacks = append(lacks, "no request topic exists ("+strings.Join(reqTopics, ", ")+")")
	}
	if len(lacks) > 0 {
		return fmt.Errorf("nothing to compare: %s", strings.Join(lacks, "; "))
	}
	return nil
}

// topicStats reads the ingest counters back from the registry.
func topicStats(g prometheus.Gatherer, cfg config.Config) ([]TopicStats, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, fmt.Errorf("read ingest metrics: %w", err)
	}
	byTopic := map[string]map[string]float64{}
	for _, mf := range mfs {
		name, ok := strings.CutPrefix(mf.GetName(), "detector_ingest_")
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			var topic string
			for _, l := range m.GetLabel() {
				if l.GetName() == "topic" {
					topic = l.GetValue()
				}
			}
			if byTopic[topic] == nil {
				byTopic[topic] = map[string]float64{}
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			byTopic[topic][name] += v
		}
	}
	var out []TopicStats
	for _, ct := range cfg.Topics() {
		c := byTopic[ct.Topic.Name]
		out = append(out, TopicStats{
			Cluster: ct.Cluster.Name, Topic: ct.Topic.Name, Format: ct.Topic.Format,
			Partitions: int(c["partitions"]),
			Records:    int64(c["records_total"]), Bytes: int64(c["bytes_total"]),
			Rejected: int64(c["records_rejected_total"]), Skipped: int64(c["records_skipped_total"]),
		})
	}
	return out, nil
}
