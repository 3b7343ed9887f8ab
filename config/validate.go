package config

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/common/model"

	"github.com/wikimedia/pretrain-detector/window"
)

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

// formats are the record formats the detector decodes.
var formats = map[string]bool{"mediawiki-log": true, "httpd-accesslog": true, "api-request": true, "client-error": true, "webrequest": true}

// problems collects what Validate finds, so that one run names every bad
// field, not just the first.
type problems []error

// bad adds an error naming field, in the form every error of Validate takes.
func (p *problems) bad(field, format string, args ...any) {
	*p = append(*p, fmt.Errorf("field %s: %s", field, fmt.Sprintf(format, args...)))
}

// Validate checks values that parse but make no sense. Each error names the
// field. The sections are checked in this order, which is the order of the
// errors.
func (c *Config) Validate() error {
	var p problems
	c.validateClusters(&p)
	c.validateDeployMarkers(&p)
	c.validateKafka(&p)
	c.validatePretrain(&p)
	c.validateWindow(&p)
	c.validateDetect(&p)
	c.validateAlerting(&p)
	c.validateDeploys(&p)
	c.validateClassifier(&p)
	return errors.Join(p...)
}

// validateClusters checks kafka.clusters[].
func (c *Config) validateClusters(p *problems) {
	if len(c.Kafka.Clusters) == 0 {
		p.bad("kafka.clusters", "at least one cluster is required")
	}
	names := map[string]bool{}
	for i, cl := range c.Kafka.Clusters {
		f := fmt.Sprintf("kafka.clusters[%d]", i)
		if cl.Name == "" {
			p.bad(f+".name", "must not be empty")
		} else if names[cl.Name] {
			p.bad(f+".name", "duplicate cluster %q", cl.Name)
		}
		names[cl.Name] = true
		validateCluster(p, f, cl)
	}
}

// validateCluster checks one cluster's brokers, topics and credentials; f
// names it (kafka.clusters[i]).
func validateCluster(p *problems, f string, cl Cluster) {
	if len(cl.Brokers) == 0 {
		p.bad(f+".brokers", "at least one broker is required")
	}
	for j, b := range cl.Brokers {
		if !strings.Contains(b, ":") {
			p.bad(fmt.Sprintf("%s.brokers[%d]", f, j), "%q is not host:port", b)
		}
	}
	if len(cl.Topics) == 0 {
		p.bad(f+".topics", "at least one topic is required")
	}
	for j, t := range cl.Topics {
		if t.Name == "" {
			p.bad(fmt.Sprintf("%s.topics[%d].name", f, j), "must not be empty")
		}
		if !formats[t.Format] {
			p.bad(fmt.Sprintf("%s.topics[%d].format", f, j), "unknown format %q (want mediawiki-log, httpd-accesslog, api-request, client-error or webrequest)", t.Format)
		}
	}
	switch cl.SASL.Mechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		p.bad(f+".sasl.mechanism", "unknown mechanism %q (want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", cl.SASL.Mechanism)
	}
	if cl.SASL.Mechanism != "" && (cl.SASL.Username == "" || cl.SASL.PasswordFile == "") {
		p.bad(f+".sasl", "username and password_file are required with a mechanism")
	}
	if (cl.TLS.CertFile == "") != (cl.TLS.KeyFile == "") {
		p.bad(f+".tls", "cert_file and key_file go together")
	}
	if cl.SASL.Mechanism == "PLAIN" && !cl.TLS.Enabled && !cl.SASL.AllowPlaintext {
		p.bad(f+".sasl.mechanism", "PLAIN without tls.enabled sends the password in clear; enable TLS, use SCRAM, or set sasl.allow_plaintext: true")
	}
}

// validateDeployMarkers checks deploy_markers against the clusters and
// their log topics.
func (c *Config) validateDeployMarkers(p *problems) {
	if c.DeployMarkers.Topic != "" {
		known := slices.ContainsFunc(c.Kafka.Clusters, func(cl Cluster) bool { return cl.Name == c.DeployMarkers.Cluster })
		if c.DeployMarkers.Cluster != "" && !known {
			p.bad("deploy_markers.cluster", "no kafka.clusters[] entry is named %q", c.DeployMarkers.Cluster)
		}
		for _, ct := range c.Topics() {
			if ct.Topic.Name == c.DeployMarkers.Topic && (c.DeployMarkers.Cluster == "" || c.DeployMarkers.Cluster == ct.Cluster.Name) {
				p.bad("deploy_markers.topic", "%q is also a log topic", c.DeployMarkers.Topic)
			}
		}
	}
	if c.DeployMarkers.MaxAhead < 0 || c.DeployMarkers.MaxAhead > model.Duration(time.Hour) {
		p.bad("deploy_markers.max_ahead", "must be between 0 and 1h")
	}
}

// validateKafka checks the reader settings of kafka (the clusters are
// validateClusters').
func (c *Config) validateKafka(p *problems) {
	k := c.Kafka
	if k.MaxWait <= 0 {
		p.bad("kafka.max_wait", "must be positive")
	}
	if k.MinBytes < 1 || k.MaxBytes < k.MinBytes {
		p.bad("kafka.min_bytes", "want 1 ≤ min_bytes ≤ max_bytes")
	}
	if k.MaxRecordBytes < 1024 {
		p.bad("kafka.max_record_bytes", "must be at least 1024")
	}
	if k.MaxSkew <= 0 {
		p.bad("kafka.max_skew", "must be positive")
	}
	if k.MaxPartitionStall < k.MaxWait || k.MaxPartitionStall <= 0 {
		p.bad("kafka.max_partition_stall", "must be positive and at least kafka.max_wait")
	}
	// Zero would mean "never look again" to a reader and "default" to
	// another: refused, so the configured value is the one that runs.
	if k.TopicRecheck <= 0 {
		p.bad("kafka.topic_recheck", "must be positive")
	}
}

// validatePretrain checks that the cohort and its traffic can be recognised.
func (c *Config) validatePretrain(p *problems) {
	if len(c.Pretrain.Cohort) == 0 {
		p.bad("pretrain.cohort", "at least one wiki is required")
	}
	if c.Pretrain.ServergroupPrefix == "" && c.Pretrain.Deployment == "" {
		p.bad("pretrain", "servergroup_prefix or deployment is required to recognise Pretrain traffic")
	}
}

// validateWindow checks the window's sizes. It refuses everything package
// window's own check would (TestValidateRefusesWhatWindowRefuses), so a bad
// window is named here, by its YAML key, before anything is built.
func (c *Config) validateWindow(p *problems) {
	w := c.Window
	if w.Bucket <= 0 {
		p.bad("window.bucket", "must be positive")
	} else if w.Length < 6*w.Bucket || time.Duration(w.Length)%time.Duration(w.Bucket) != 0 {
		p.bad("window.length", "must be a multiple of window.bucket and at least 6 buckets")
	} else if n := w.Length / w.Bucket; n > window.MaxBuckets {
		p.bad("window.length", "must be at most %d buckets of window.bucket, not %d", window.MaxBuckets, n)
	}
	if w.Lateness < 0 || (w.Length > 0 && w.Lateness >= w.Length) {
		p.bad("window.lateness", "must be ≥ 0 and shorter than window.length")
	}
	if w.CacheBytes < 1<<20 {
		p.bad("window.cache_bytes", "must be at least 1 MiB")
	}
	if w.CatalogueEntries < 100 {
		p.bad("window.catalogue_entries", "must be at least 100")
	}
	if w.CatalogueBytes < 1<<20 {
		p.bad("window.catalogue_bytes", "must be at least 1 MiB")
	}
}

// validateDetect checks the tests' settings, some against the window's.
func (c *Config) validateDetect(p *problems) {
	d, w := c.Detect, c.Window
	if d.Alpha <= 0 || d.Alpha >= 0.5 {
		p.bad("detect.alpha", "must be in (0, 0.5)")
	}
	if d.Margin < 1 {
		p.bad("detect.margin", "must be ≥ 1 (a rate ratio)")
	}
	if d.MinPrePeriod <= 0 || (w.Length > 0 && d.MinPrePeriod >= w.Length) {
		p.bad("detect.min_pre_period", "must be positive and shorter than window.length")
	}
	if d.MinBuckets < 1 {
		p.bad("detect.min_buckets", "must be ≥ 1")
	}
	if d.MinDistinct < 1 {
		p.bad("detect.min_distinct", "must be ≥ 1")
	}
	if d.Attribution <= 0 {
		p.bad("detect.attribution", "must be positive")
	}
	if d.ResolveAfter < w.Bucket {
		p.bad("detect.resolve_after", "must be at least one window.bucket")
	}
	if d.AnomalyWindow < 3*w.Bucket {
		p.bad("detect.anomaly_window", "must be at least three window.bucket")
	}
	if d.LeakMinEvents < 1 {
		p.bad("detect.leak_min_events", "must be ≥ 1")
	}
}

// validateAlerting checks alerting: the resend delay, the Alertmanager
// sets and the labels.
func (c *Config) validateAlerting(p *problems) {
	if c.Alerting.ResendDelay < model.Duration(time.Second) {
		p.bad("alerting.resend_delay", "must be at least 1s")
	}
	for i := range c.Alerting.Alertmanagers {
		am := &c.Alerting.Alertmanagers[i]
		f := fmt.Sprintf("alerting.alertmanagers[%d]", i)
		if len(am.URLs) == 0 {
			p.bad(f+".urls", "at least one URL is required")
		}
		for j, raw := range am.URLs {
			if err := checkAlertmanagerURL(raw); err != nil {
				p.bad(fmt.Sprintf("%s.urls[%d]", f, j), "%v", err)
			}
		}
		if am.Timeout <= 0 {
			p.bad(f+".timeout", "must be positive")
		}
		// Validate also moves bearer_token(_file) into authorization, as
		// Prometheus does, so it runs on the stored value.
		if err := am.HTTPClientConfig.Validate(); err != nil {
			p.bad(f, "%v", err)
		}
	}
	if !labelValueOK(c.Alerting.Team) {
		p.bad("alerting.team", "must be non-empty printable text of at most 256 bytes")
	}
	for _, name := range slices.Sorted(maps.Keys(c.Alerting.ExternalLabels)) {
		f := "alerting.external_labels." + name
		switch {
		case !labelNameRe.MatchString(name) || strings.HasPrefix(name, "__"):
			p.bad(f, "not a label name (letters, digits and _, not starting with a digit or __)")
		case name == "team":
			p.bad(f, "set alerting.team instead")
		case slices.Contains(FindingLabels, name):
			p.bad(f, "the finding sets this label")
		case !labelValueOK(c.Alerting.ExternalLabels[name]):
			p.bad(f, "the value must be non-empty printable text of at most 256 bytes")
		}
	}
}

// validateDeploys checks the configured deploy markers.
func (c *Config) validateDeploys(p *problems) {
	for i, m := range c.Deploys {
		f := fmt.Sprintf("deploys[%d]", i)
		if m.At.IsZero() {
			p.bad(f+".at", "required (RFC 3339)")
			continue
		}
		// The deploy timeline's own check, which names the field: the same
		// bounds as markers from the API.
		if _, err := window.NewMarker(m.Scope, m.Group, m.Version, m.At, "config"); err != nil {
			// "field version: …" becomes "field deploys[i].version: …".
			*p = append(*p, fmt.Errorf("field %s.%s", f, strings.TrimPrefix(err.Error(), "field ")))
		}
	}
}

// validateClassifier checks the classifier's path rules.
func (c *Config) validateClassifier(p *problems) {
	for i, r := range c.Classifier.Paths {
		if r.Contains == "" {
			p.bad(fmt.Sprintf("classifier.paths[%d].contains", i), "must not be empty")
		}
	}
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
