// Package config is the detector's configuration: a YAML file parsed
// strictly, whose every default describes Wikimedia production, and which
// command-line flags may override.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/wikimedia/pretrain-detector/window"
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

// labelNameRe is a Prometheus label name; names starting with __ are
// reserved for Prometheus's own use.
var labelNameRe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// labelValueOK accepts what Alertmanager keeps as is: non-empty printable
// text of at most 256 bytes.
func labelValueOK(v string) bool {
	if v == "" || len(v) > 256 {
		return false
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
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

// Default returns the configuration that describes Wikimedia production.
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
			MaxWait:           model.Duration(250 * time.Millisecond),
			MinBytes:          1,
			MaxBytes:          16 << 20,
			TopicRecheck:      model.Duration(time.Minute),
			MaxRecordBytes:    1 << 20,
			MaxSkew:           model.Duration(time.Hour),
			MaxPartitionStall: model.Duration(2 * time.Minute),
		},
		Pretrain: Pretrain{
			Cohort:            []string{"testwiki"},
			ServergroupPrefix: "kube-mw-pretrain",
			Deployment:        "mw-pretrain",
		},
		Window: Window{
			Bucket:           model.Duration(10 * time.Second),
			Length:           model.Duration(2 * time.Hour),
			Lateness:         model.Duration(30 * time.Second),
			CacheBytes:       64 << 20,
			CatalogueEntries: 100000,
			CatalogueBytes:   64 << 20,
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

// Load reads and validates a config file. Keys absent from the file keep
// their defaults; unknown keys are errors.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config file: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	c.resolvePaths(filepath.Dir(path))
	return c, nil
}

// Parse parses YAML over the defaults and validates the result.
func Parse(b []byte) (Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty file is all defaults: yaml.v3 reports it as io.EOF.
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, yamlError(err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

var yamlFieldRe = regexp.MustCompile(`field (\S+) not found in type config\.(\w+)`)

// yamlError rewrites yaml.v3's type-oriented messages into ones naming the
// offending key, which is what a person editing the file needs.
func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("parse: %w", err)
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := yamlFieldRe.FindStringSubmatch(e); m != nil {
			e = strings.Replace(e, m[0], fmt.Sprintf("unknown field %q in %s", m[1], sectionName(m[2])), 1)
		}
		msgs = append(msgs, e)
	}
	return errors.New(strings.Join(msgs, "; "))
}

func sectionName(typ string) string {
	switch typ {
	case "Config":
		return "the top level"
	case "Cluster":
		return "kafka.clusters[]"
	case "Topic":
		return "kafka.clusters[].topics[]"
	case "DeployMarker":
		return "deploys[]"
	case "PathRule":
		return "classifier.paths[]"
	case "AlertmanagerSet", "plain":
		return "alerting.alertmanagers[]"
	case "DeployMarkers":
		return "deploy_markers"
	}
	return strings.ToLower(typ)
}

func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range c.Kafka.Clusters {
		cl := &c.Kafka.Clusters[i]
		abs(&cl.TLS.CAFile)
		abs(&cl.TLS.CertFile)
		abs(&cl.TLS.KeyFile)
		abs(&cl.SASL.PasswordFile)
	}
	abs(&c.Wikis.MediaWikiConfigDir)
	for i := range c.Alerting.Alertmanagers {
		c.Alerting.Alertmanagers[i].HTTPClientConfig.SetDirectory(dir)
	}
}

// Formats are the record formats the detector decodes.
var formats = map[string]bool{"mediawiki-log": true, "httpd-accesslog": true, "api-request": true, "client-error": true, "webrequest": true}

// Validate checks values that parse but make no sense. Each error names the field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("field %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Kafka.Clusters) == 0 {
		bad("kafka.clusters", "at least one cluster is required")
	}
	names := map[string]bool{}
	for i, cl := range c.Kafka.Clusters {
		f := fmt.Sprintf("kafka.clusters[%d]", i)
		if cl.Name == "" {
			bad(f+".name", "must not be empty")
		} else if names[cl.Name] {
			bad(f+".name", "duplicate cluster %q", cl.Name)
		}
		names[cl.Name] = true
		if len(cl.Brokers) == 0 {
			bad(f+".brokers", "at least one broker is required")
		}
		for j, b := range cl.Brokers {
			if !strings.Contains(b, ":") {
				bad(fmt.Sprintf("%s.brokers[%d]", f, j), "%q is not host:port", b)
			}
		}
		if len(cl.Topics) == 0 {
			bad(f+".topics", "at least one topic is required")
		}
		for j, t := range cl.Topics {
			if t.Name == "" {
				bad(fmt.Sprintf("%s.topics[%d].name", f, j), "must not be empty")
			}
			if !formats[t.Format] {
				bad(fmt.Sprintf("%s.topics[%d].format", f, j), "unknown format %q (want mediawiki-log, httpd-accesslog, api-request, client-error or webrequest)", t.Format)
			}
		}
		switch cl.SASL.Mechanism {
		case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			bad(f+".sasl.mechanism", "unknown mechanism %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", cl.SASL.Mechanism)
		}
		if cl.SASL.Mechanism != "" && (cl.SASL.Username == "" || cl.SASL.PasswordFile == "") {
			bad(f+".sasl", "username and password_file are required with a mechanism")
		}
		if (cl.TLS.CertFile == "") != (cl.TLS.KeyFile == "") {
			bad(f+".tls", "cert_file and key_file go together")
		}
		if cl.SASL.Mechanism == "PLAIN" && !cl.TLS.Enabled && !cl.SASL.AllowPlaintext {
			bad(f+".sasl.mechanism", "PLAIN without tls.enabled sends the password in clear; enable TLS, use SCRAM, or set sasl.allow_plaintext: true")
		}
	}
	if c.DeployMarkers.Topic != "" {
		if c.DeployMarkers.Cluster != "" && !names[c.DeployMarkers.Cluster] {
			bad("deploy_markers.cluster", "no kafka.clusters[] entry is named %q", c.DeployMarkers.Cluster)
		}
		for _, ct := range c.Topics() {
			if ct.Topic.Name == c.DeployMarkers.Topic && (c.DeployMarkers.Cluster == "" || c.DeployMarkers.Cluster == ct.Cluster.Name) {
				bad("deploy_markers.topic", "%q is also a log topic", c.DeployMarkers.Topic)
			}
		}
	}
	if c.DeployMarkers.MaxAhead < 0 || c.DeployMarkers.MaxAhead > model.Duration(time.Hour) {
		bad("deploy_markers.max_ahead", "must be between 0 and 1h")
	}
	if c.Kafka.MaxWait <= 0 {
		bad("kafka.max_wait", "must be positive")
	}
	if c.Kafka.MinBytes < 1 || c.Kafka.MaxBytes < c.Kafka.MinBytes {
		bad("kafka.min_bytes", "want 1 ≤ min_bytes ≤ max_bytes")
	}
	if c.Kafka.MaxRecordBytes < 1024 {
		bad("kafka.max_record_bytes", "must be at least 1024")
	}
	if c.Kafka.MaxSkew <= 0 {
		bad("kafka.max_skew", "must be positive")
	}
	if c.Kafka.MaxPartitionStall < c.Kafka.MaxWait || c.Kafka.MaxPartitionStall <= 0 {
		bad("kafka.max_partition_stall", "must be positive and at least kafka.max_wait")
	}
	if len(c.Pretrain.Cohort) == 0 {
		bad("pretrain.cohort", "at least one wiki is required")
	}
	if c.Pretrain.ServergroupPrefix == "" && c.Pretrain.Deployment == "" {
		bad("pretrain", "servergroup_prefix or deployment is required to recognise Pretrain traffic")
	}
	w := c.Window
	if w.Bucket <= 0 {
		bad("window.bucket", "must be positive")
	} else if w.Length < 6*w.Bucket || time.Duration(w.Length)%time.Duration(w.Bucket) != 0 {
		bad("window.length", "must be a multiple of window.bucket and at least 6 buckets")
	}
	if w.Lateness < 0 || (w.Length > 0 && w.Lateness >= w.Length) {
		bad("window.lateness", "must be ≥ 0 and shorter than window.length")
	}
	if w.CacheBytes < 1<<20 {
		bad("window.cache_bytes", "must be at least 1 MiB")
	}
	if w.CatalogueEntries < 100 {
		bad("window.catalogue_entries", "must be at least 100")
	}
	if w.CatalogueBytes < 1<<20 {
		bad("window.catalogue_bytes", "must be at least 1 MiB")
	}
	d := c.Detect
	if d.Alpha <= 0 || d.Alpha >= 0.5 {
		bad("detect.alpha", "must be in (0, 0.5)")
	}
	if d.Margin < 1 {
		bad("detect.margin", "must be ≥ 1 (a rate ratio)")
	}
	if d.MinPrePeriod <= 0 || (w.Length > 0 && d.MinPrePeriod >= w.Length) {
		bad("detect.min_pre_period", "must be positive and shorter than window.length")
	}
	if d.MinBuckets < 1 {
		bad("detect.min_buckets", "must be ≥ 1")
	}
	if d.MinDistinct < 1 {
		bad("detect.min_distinct", "must be ≥ 1")
	}
	if d.Attribution <= 0 {
		bad("detect.attribution", "must be positive")
	}
	if d.ResolveAfter < w.Bucket {
		bad("detect.resolve_after", "must be at least one window.bucket")
	}
	if d.AnomalyWindow < 3*w.Bucket {
		bad("detect.anomaly_window", "must be at least three window.bucket")
	}
	if d.LeakMinEvents < 1 {
		bad("detect.leak_min_events", "must be ≥ 1")
	}
	if c.Alerting.ResendDelay < model.Duration(time.Second) {
		bad("alerting.resend_delay", "must be at least 1s")
	}
	for i := range c.Alerting.Alertmanagers {
		am := &c.Alerting.Alertmanagers[i]
		f := fmt.Sprintf("alerting.alertmanagers[%d]", i)
		if len(am.URLs) == 0 {
			bad(f+".urls", "at least one URL is required")
		}
		for j, raw := range am.URLs {
			if err := checkAlertmanagerURL(raw); err != nil {
				bad(fmt.Sprintf("%s.urls[%d]", f, j), "%v", err)
			}
		}
		if am.Timeout <= 0 {
			bad(f+".timeout", "must be positive")
		}
		// Validate also moves bearer_token(_file) into authorization, as
		// Prometheus does, so it runs on the stored value.
		if err := am.HTTPClientConfig.Validate(); err != nil {
			bad(f, "%v", err)
		}
	}
	if !labelValueOK(c.Alerting.Team) {
		bad("alerting.team", "must be non-empty printable text of at most 256 bytes")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Alerting.ExternalLabels)) {
		f := "alerting.external_labels." + name
		switch {
		case !labelNameRe.MatchString(name) || strings.HasPrefix(name, "__"):
			bad(f, "not a label name (letters, digits and _, not starting with a digit or __)")
		case name == "team":
			bad(f, "set alerting.team instead")
		case slices.Contains(FindingLabels, name):
			bad(f, "the finding sets this label")
		case !labelValueOK(c.Alerting.ExternalLabels[name]):
			bad(f, "the value must be non-empty printable text of at most 256 bytes")
		}
	}
	for i, m := range c.Deploys {
		f := fmt.Sprintf("deploys[%d]", i)
		if m.At.IsZero() {
			bad(f+".at", "required (RFC 3339)")
			continue
		}
		// The deploy timeline's own check, which names the field: the same
		// bounds as markers from the API.
		if _, err := window.NewMarker(m.Scope, m.Group, m.Version, m.At, "config"); err != nil {
			// "field version: …" becomes "field deploys[i].version: …".
			errs = append(errs, fmt.Errorf("field %s.%s", f, strings.TrimPrefix(err.Error(), "field ")))
		}
	}
	for i, p := range c.Classifier.Paths {
		if p.Contains == "" {
			bad(fmt.Sprintf("classifier.paths[%d].contains", i), "must not be empty")
		}
	}
	return errors.Join(errs...)
}

// checkAlertmanagerURL accepts an absolute http(s) URL without user info,
// query or fragment. Errors never echo the URL's password.
func checkAlertmanagerURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL, password included
		}
		return fmt.Errorf("not a URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("%q: host is missing", u.Redacted())
	case u.User != nil:
		return fmt.Errorf("%q: user info is not accepted in a URL; use basic_auth with password_file", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q: must have no query or fragment", u.Redacted())
	}
	return nil
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
