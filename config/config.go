// Package config is the detector's configuration: a YAML file parsed
// strictly, whose every default describes Wikimedia production, and which
// command-line flags may override.
package config

import (
	"reflect"
	"time"

	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
)

// Config is the whole configuration. Field names are the YAML keys.
type Config struct {
	Kafka    Kafka    `yaml:"kafka"`
	Pretrain Pretrain `yaml:"pretrain"`
	Wikis    Wikis    `yaml:"wikis"`
	Window   Window   `yaml:"window"`
	Detect   Detect   `yaml:"detect"`
	Alerting Alerting `yaml:"alerting"`
	// Classifier overrides the shared-data classification; empty keeps the
	// defaults of docs/domain.md section 2.
	Classifier Classifier `yaml:"classifier"`
	// Deploys are deploy markers known in advance (or from elsewhere).
	Deploys []DeployMarker `yaml:"deploys"`
	// DeployMarkers is the Kafka topic that carries the markers posted to
	// the deploys API, so every replica and every restart sees them.
	DeployMarkers DeployMarkers `yaml:"deploy_markers"`
}

// DefaultMarkerTopic is the default topic of deploy markers.
const DefaultMarkerTopic = "pretrain-detector.deploy-markers"

// DeployMarkers configures the marker topic. Kafka is the detector's only
// state: a marker posted to one replica is produced to this topic, and every
// replica reads the topic from now − window.length at start and follows it.
type DeployMarkers struct {
	// Topic is the marker topic; "" turns the topic (and with it the write
	// API) off.
	Topic string `yaml:"topic"`
	// Cluster names the kafka.clusters[] entry that holds the topic;
	// "" is the first cluster.
	Cluster string `yaml:"cluster"`
	// MaxAhead is how far after the time of the request a posted marker's
	// "at" may be (clocks differ a little; a deploy dated in the future
	// would be blamed for nothing yet).
	MaxAhead model.Duration `yaml:"max_ahead"`
}

// Kafka lists the clusters to read. Wikimedia keeps error logs and request
// logs on the logging clusters and Event Platform streams on jumbo.
type Kafka struct {
	Clusters []Cluster      `yaml:"clusters"`
	MaxWait  model.Duration `yaml:"max_wait"`  // long-poll bound: small so shutdown is quick
	MinBytes int            `yaml:"min_bytes"` // per fetch
	MaxBytes int            `yaml:"max_bytes"` // per fetch
	// TopicRecheck is how often topics are discovered again, so a topic
	// created after start is picked up.
	TopicRecheck model.Duration `yaml:"topic_recheck"`
	// MaxRecordBytes rejects larger records as oversize.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// MaxSkew rejects records whose own time is this far from their Kafka timestamp.
	MaxSkew model.Duration `yaml:"max_skew"`
	// MaxPartitionStall is how long a partition may be unreadable, or hold
	// the watermark back, before it is set aside so the others are
	// evaluated without it.
	MaxPartitionStall model.Duration `yaml:"max_partition_stall"`
}

// Cluster is one Kafka cluster and the topics read from it.
type Cluster struct {
	Name    string   `yaml:"name"`
	Brokers []string `yaml:"brokers"`
	TLS     TLS      `yaml:"tls"`
	SASL    SASL     `yaml:"sasl"`
	Topics  []Topic  `yaml:"topics"`
}

// TLS configures the connection to the brokers.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL configures authentication. The password is read from a file so it
// never sits in the config or the logs.
type SASL struct {
	Mechanism    string `yaml:"mechanism"` // "", "PLAIN", "SCRAM-SHA-512", "SCRAM-SHA-256"
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// AllowPlaintext lets PLAIN run without TLS, where the password
	// crosses the network in clear; without it that combination is refused.
	AllowPlaintext bool `yaml:"allow_plaintext"`
}

// Topic is a topic and the format of its records.
type Topic struct {
	Name   string `yaml:"name"`
	Format string `yaml:"format"` // mediawiki-log, httpd-accesslog, api-request, client-error, webrequest
}

// Pretrain identifies the Pretrain cohort. Pretrain traffic is identified
// by namespace or servergroup, never by version (docs/domain.md section 1).
type Pretrain struct {
	Cohort            []string `yaml:"cohort"`             // dbnames served by Pretrain
	ServergroupPrefix string   `yaml:"servergroup_prefix"` // php.servergroup prefix
	Deployment        string   `yaml:"deployment"`         // Kubernetes namespace / labels.deployment
}

// Wikis says where the wiki map comes from.
type Wikis struct {
	// MediaWikiConfigDir is a path to an operations/mediawiki-config
	// checkout; empty uses the map built into the binary.
	MediaWikiConfigDir string `yaml:"mediawiki_config_dir"`
}

// Window sizes the in-memory windows.
type Window struct {
	Bucket           model.Duration `yaml:"bucket"`
	Length           model.Duration `yaml:"length"`
	Lateness         model.Duration `yaml:"lateness"`
	CacheBytes       int            `yaml:"cache_bytes"`
	CatalogueEntries int            `yaml:"catalogue_entries"`
	CatalogueBytes   int            `yaml:"catalogue_bytes"`
}

// Detect tunes the tests. Defaults follow docs/methods.md.
type Detect struct {
	Alpha          float64        `yaml:"alpha"`             // family-wise level for paging findings
	Margin         float64        `yaml:"margin"`            // rho0: practical significance, a rate ratio
	MinPrePeriod   model.Duration `yaml:"min_pre_period"`    // baseline needed before a deploy to call anything new
	MinBuckets     int            `yaml:"min_buckets"`       // burst guard: buckets with the signal
	MinDistinct    int            `yaml:"min_distinct"`      // burst guard: distinct requests
	Attribution    model.Duration `yaml:"attribution"`       // how long after a deploy an onset can be blamed on it
	ResolveAfter   model.Duration `yaml:"resolve_after"`     // quiet time before a firing finding resolves (hysteresis)
	AnomalyWindow  model.Duration `yaml:"anomaly_window"`    // recent span tested for wiki anomalies
	LeakMinEvents  int            `yaml:"leak_min_events"`   // Pretrain events for a foreign wiki that make a leak
	ShareDataWikis []string       `yaml:"shared_data_wikis"` // extra wikis that share data with the cohort
}

// Alerting configures the Alertmanager sink.
type Alerting struct {
	ResendDelay  model.Duration `yaml:"resend_delay"`
	RunbookURL   string         `yaml:"runbook_url"`
	DashboardURL string         `yaml:"dashboard_url"`
	// Alertmanagers are sets of Alertmanagers with the HTTP client settings
	// of each, as in Prometheus's alerting.alertmanagers: the place for
	// credentials, which --alertmanager.url refuses.
	Alertmanagers []AlertmanagerSet `yaml:"alertmanagers"`
	// Team is the team label of every finding alert: Wikimedia's
	// Alertmanager routes on team and severity, as for every other alert.
	Team string `yaml:"team"`
	// ExternalLabels are static labels added to every finding alert (a
	// site, an environment). They cannot set the labels a finding sets.
	ExternalLabels map[string]string `yaml:"external_labels"`
}

// FindingLabels are the label names package alert sets from a finding, plus
// replay, which a replay sets: alerting.external_labels may not use them.
var FindingLabels = []string{"alertname", "severity", "kind", "cohort", "finding_id", "fingerprint", "wikis", "replay"}

// Labels are the static labels of every finding alert: the team and the
// external labels.
func (a Alerting) Labels() map[string]string {
	out := make(map[string]string, len(a.ExternalLabels)+1)
	for k, v := range a.ExternalLabels {
		out[k] = v
	}
	out["team"] = a.Team
	return out
}

// DefaultAlertmanagerTimeout bounds each POST to an Alertmanager.
const DefaultAlertmanagerTimeout = 10 * time.Second

// AlertmanagerSet is Alertmanagers sharing one HTTP client configuration:
// prometheus/common's HTTPClientConfig inline (tls_config, basic_auth with
// password_file, authorization or bearer_token_file, proxy_url, ...), as
// in Prometheus's alertmanager_config.
type AlertmanagerSet struct {
	// URLs are base URLs, http[s]://host:port[/prefix], without user info.
	URLs    []string       `yaml:"urls"`
	Timeout model.Duration `yaml:"timeout"`

	HTTPClientConfig promconfig.HTTPClientConfig `yaml:",inline"`
}

// UnmarshalYAML starts from the defaults of prometheus/common's HTTP client
// (redirects followed, HTTP/2) and this package's timeout. It takes the
// older unmarshal-function form so the strict decoding (unknown keys are
// errors) reaches inside.
func (s *AlertmanagerSet) UnmarshalYAML(unmarshal func(any) error) error {
	*s = AlertmanagerSet{Timeout: model.Duration(DefaultAlertmanagerTimeout), HTTPClientConfig: promconfig.DefaultHTTPClientConfig}
	type plain AlertmanagerSet
	return unmarshal((*plain)(s))
}

// Classifier extends the shared-data classification.
type Classifier struct {
	Channels map[string]string `yaml:"channels"`
	Paths    []PathRule        `yaml:"paths"`
}

// PathRule maps a substring of a trace frame or origin file to a class.
type PathRule struct {
	Contains string `yaml:"contains"`
	Class    string `yaml:"class"`
}

// DeployMarker is a deploy known from configuration.
type DeployMarker struct {
	Scope   string    `yaml:"scope"` // pretrain or train
	Group   string    `yaml:"group"`
	Version string    `yaml:"version"`
	At      time.Time `yaml:"at"`
}

// MarkerCluster is the cluster that holds the marker topic, nil when the
// topic is off.
func (c *Config) MarkerCluster() *Cluster {
	if c.DeployMarkers.Topic == "" || len(c.Kafka.Clusters) == 0 {
		return nil
	}
	for i := range c.Kafka.Clusters {
		if c.Kafka.Clusters[i].Name == c.DeployMarkers.Cluster {
			return &c.Kafka.Clusters[i]
		}
	}
	return &c.Kafka.Clusters[0]
}

// Topics returns every configured topic with its cluster.
func (c *Config) Topics() []ClusterTopic {
	var out []ClusterTopic
	for i := range c.Kafka.Clusters {
		for _, t := range c.Kafka.Clusters[i].Topics {
			out = append(out, ClusterTopic{Cluster: &c.Kafka.Clusters[i], Topic: t})
		}
	}
	return out
}

// ClusterTopic is a topic and the cluster it lives on.
type ClusterTopic struct {
	Cluster *Cluster
	Topic   Topic
}

// OverrideBrokers points every cluster at the given brokers, as the
// --kafka.brokers flag does: with one cluster it replaces its brokers; with
// several, all topics are read from the given brokers.
func (c *Config) OverrideBrokers(brokers []string) {
	if len(brokers) == 0 {
		return
	}
	for i := range c.Kafka.Clusters {
		c.Kafka.Clusters[i].Brokers = append([]string(nil), brokers...)
	}
}

// Changes lists the top-level sections that differ between two
// configurations: those a reload applies (deploys) and those that need a
// restart (all others: the readers, window, detector and notifier are
// built from them at start).
func Changes(old, cur Config) (live, restart []string) {
	ov, cv := reflect.ValueOf(old), reflect.ValueOf(cur)
	t := ov.Type()
	for i := range t.NumField() {
		if reflect.DeepEqual(ov.Field(i).Interface(), cv.Field(i).Interface()) {
			continue
		}
		name := t.Field(i).Tag.Get("yaml")
		if name == "deploys" {
			live = append(live, name)
		} else {
			restart = append(restart, name)
		}
	}
	return live, restart
}
