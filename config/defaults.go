package config

import (
	"time"

	"github.com/prometheus/common/model"

	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/window"
)

// Default returns the configuration that describes Wikimedia production.
// It is the one list of the detector's defaults. The few a stage also
// needs when a test builds it by hand (the window's sizes, the decoders'
// limits and Pretrain's names) are written once, as the stage's exported
// constants, and read here, so no value has two copies to keep equal.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Clusters: []Cluster{{
				Name: "logging-eqiad",
				Brokers: []string{
					"kafka-logging1001.eqiad.wmnet:9092",
					"kafka-logging1002.eqiad.wmnet:9092",
					"kafka-logging1003.eqiad.wmnet:9092",
				},
				Topics: []Topic{
					{Name: "k8s-mw-eqiad", Format: "mediawiki-log"},
					{Name: "k8s-mw-codfw", Format: "mediawiki-log"},
					{Name: "mediawiki.httpd.accesslog", Format: "httpd-accesslog"},
				},
			}},
			MaxWait:           model.Duration(ingest.DefaultMaxWait),
			MinBytes:          ingest.DefaultMinBytes,
			MaxBytes:          ingest.DefaultMaxBytes,
			TopicRecheck:      model.Duration(ingest.DefaultTopicRecheck),
			MaxRecordBytes:    decode.DefaultMaxRecordBytes,
			MaxSkew:           model.Duration(decode.DefaultMaxSkew),
			MaxPartitionStall: model.Duration(ingest.DefaultMaxPartitionStall),
		},
		Pretrain: Pretrain{
			Cohort:            []string{"testwiki"},
			ServergroupPrefix: decode.DefaultPretrainServergroupPrefix,
			Deployment:        decode.DefaultPretrainDeployment,
		},
		Window: Window{
			Bucket:           model.Duration(window.DefaultBucket),
			Length:           model.Duration(window.DefaultLength),
			Lateness:         model.Duration(30 * time.Second),
			CacheBytes:       window.DefaultCacheBytes,
			CatalogueEntries: window.DefaultCatalogueEntries,
			CatalogueBytes:   window.DefaultCatalogueBytes,
		},
		Detect: Detect{
			Alpha:         1e-3,
			Margin:        1.5,
			MinPrePeriod:  model.Duration(30 * time.Minute),
			MinBuckets:    3,
			MinDistinct:   3,
			Attribution:   model.Duration(time.Hour),
			ResolveAfter:  model.Duration(15 * time.Minute),
			AnomalyWindow: model.Duration(15 * time.Minute),
			LeakMinEvents: 3,
		},
		Alerting: Alerting{
			ResendDelay: model.Duration(time.Minute),
			RunbookURL:  "https://wikitech.wikimedia.org/wiki/Pretrain/Detector#<kind>",
			// Release Engineering owns Pretrain and the detector.
			Team: "releng",
		},
		DeployMarkers: DeployMarkers{
			Topic:    DefaultMarkerTopic,
			MaxAhead: model.Duration(5 * time.Minute),
		},
	}
}
