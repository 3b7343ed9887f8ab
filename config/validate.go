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
