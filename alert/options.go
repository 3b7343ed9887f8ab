package alert

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	promconfig "github.com/prometheus/common/config"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
)

// The Notifier's options: what they mean, their defaults, how they are
// checked before a Notifier is built and the Alertmanager endpoints they
// name.

const (
	defaultQueueCapacity = 10000
	// maxBatchSize is the most alerts per POST, as Prometheus sends.
	maxBatchSize = 256
)

// AlertmanagerSet is Alertmanagers that share one HTTP client
// configuration, as a Prometheus alertmanager_config does.
type AlertmanagerSet struct {
	// URLs are base URLs (http[s]://host:port[/prefix]) without user info.
	URLs []string
	// HTTPConfig sets TLS, basic auth (password_file), authorization or
	// bearer token file, proxies.
	HTTPConfig promconfig.HTTPClientConfig
	// Timeout bounds each request (default config.DefaultAlertmanagerTimeout).
	Timeout time.Duration
}

// NotifierOptions configures a Notifier. Zero values take the documented
// defaults: the detector passes its configuration's values, which start
// from the same defaults, so a caller without a configuration (a test, a
// tool) sends the same alerts.
type NotifierOptions struct {
	// URLs are the Alertmanager base URLs (http[s]://host:port[/prefix])
	// given on the command line, sent with HTTPConfig and Timeout. They may
	// not carry user info: a command line is visible in ps and at
	// /debug/pprof/cmdline, so credentials belong in the config file (Sets).
	// Every batch goes to every Alertmanager of URLs and Sets: Alertmanager
	// replicas do not share alerts, only silences and the notification log.
	URLs []string
	// Sets are Alertmanagers from the config file, each set with its own
	// HTTP client configuration.
	Sets []AlertmanagerSet
	// ResendDelay is how often a firing alert is re-sent (default
	// alerting.resend_delay of config.Default()).
	ResendDelay time.Duration
	// QueueCapacity bounds the queue; on overflow the oldest alerts go
	// (default 10000).
	QueueCapacity int
	// BatchSize is the most alerts per POST (default and maximum 256).
	BatchSize int
	// Timeout bounds each request (default config.DefaultAlertmanagerTimeout).
	Timeout time.Duration
	// HTTPConfig sets TLS, basic auth, bearer tokens, proxies, as in
	// Prometheus's alertmanager_config.
	HTTPConfig promconfig.HTTPClientConfig
	// ExternalURL is the detector's own URL; the alert's generatorURL is
	// the finding's page, ExternalURL + "/findings/<id>". Empty: no
	// generatorURL.
	ExternalURL string
	// RunbookURL is the runbook_url annotation, "<kind>" substituted
	// (default alerting.runbook_url of config.Default()).
	RunbookURL string
	// DashboardURL is the optional dashboard annotation, "<kind>" substituted.
	DashboardURL string
	// ExtraLabels are added to every alert, e.g. replay="true". They cannot
	// override the identity labels.
	ExtraLabels map[string]string
	// Do sends a request; tests inject it. Default: c.Do(r.WithContext(ctx)).
	Do func(ctx context.Context, c *http.Client, r *http.Request) (*http.Response, error)
	// Now is the wall clock used for resend timing and EndsAt (default
	// time.Now). Alertmanager compares EndsAt with its own clock, so this is
	// wall time even in replay, unlike finding times, which are event times.
	Now func() time.Time
}

// withDefaults fills in the zero fields (see NotifierOptions). The options
// that the configuration also sets (resend delay, runbook URL, the request
// timeout) take their defaults from it, so that each default has one
// source; config.Default is built only when one of them is missing.
func (o NotifierOptions) withDefaults() NotifierOptions {
	if o.ResendDelay == 0 || o.RunbookURL == "" {
		def := config.Default().Alerting
		if o.ResendDelay == 0 {
			o.ResendDelay = time.Duration(def.ResendDelay)
		}
		if o.RunbookURL == "" {
			o.RunbookURL = def.RunbookURL
		}
	}
	if o.QueueCapacity == 0 {
		o.QueueCapacity = defaultQueueCapacity
	}
	if o.BatchSize == 0 {
		o.BatchSize = maxBatchSize
	}
	if o.Timeout == 0 {
		o.Timeout = config.DefaultAlertmanagerTimeout
	}
	if o.Do == nil {
		o.Do = func(ctx context.Context, c *http.Client, r *http.Request) (*http.Response, error) {
			return c.Do(r.WithContext(ctx))
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// validate checks the options after defaults, naming the offending field.
func (o NotifierOptions) validate() error {
	total := len(o.URLs)
	for _, s := range o.Sets {
		total += len(s.URLs)
	}
	if total == 0 {
		return errors.New("URLs: at least one Alertmanager URL is required")
	}
	switch {
	case o.ResendDelay < 0:
		return fmt.Errorf("ResendDelay: must not be negative, got %s", o.ResendDelay)
	case o.QueueCapacity < 0:
		return fmt.Errorf("QueueCapacity: must not be negative, got %d", o.QueueCapacity)
	case o.BatchSize < 0 || o.BatchSize > maxBatchSize:
		return fmt.Errorf("BatchSize: must be between 1 and %d, got %d", maxBatchSize, o.BatchSize)
	case o.Timeout < 0:
		return fmt.Errorf("Timeout: must not be negative, got %s", o.Timeout)
	}
	if o.ExternalURL != "" {
		if _, err := parseHTTPURL(o.ExternalURL); err != nil {
			return fmt.Errorf("ExternalURL: %w", err)
		}
	}
	if _, err := parseHTTPURL(kindURL(o.RunbookURL, detect.KindPretrainRegression)); err != nil {
		return fmt.Errorf("RunbookURL: %w", err)
	}
	if o.DashboardURL != "" {
		if _, err := parseHTTPURL(kindURL(o.DashboardURL, detect.KindPretrainRegression)); err != nil {
			return fmt.Errorf("DashboardURL: %w", err)
		}
	}
	for name, v := range o.ExtraLabels {
		switch {
		case !validLabelName(name):
			return fmt.Errorf("ExtraLabels: invalid label name %q", name)
		case reservedLabel(name):
			return fmt.Errorf("ExtraLabels: label %q is set from the finding and cannot be overridden", name)
		case v == "" || labelValue(v) != v:
			return fmt.Errorf("ExtraLabels: label %q: value must be non-empty printable text of at most %d bytes", name, maxLabelValue)
		}
	}
	if err := o.HTTPConfig.Validate(); err != nil {
		return fmt.Errorf("HTTPConfig: %w", err)
	}
	for i := range o.Sets {
		if err := o.Sets[i].HTTPConfig.Validate(); err != nil {
			return fmt.Errorf("Sets[%d].HTTPConfig: %w", i, err)
		}
		if o.Sets[i].Timeout < 0 {
			return fmt.Errorf("Sets[%d].Timeout: must not be negative, got %s", i, o.Sets[i].Timeout)
		}
	}
	return nil
}

// ErrURLUserInfo is returned for an Alertmanager URL given with user info on
// the command line.
var ErrURLUserInfo = errors.New("user info in an Alertmanager URL is refused (the command line shows in ps and /debug/pprof/cmdline); " +
	"put the credentials in the config file: alerting.alertmanagers[].basic_auth.password_file")

// parseHTTPURL accepts absolute http and https URLs only.
func parseHTTPURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error quotes the whole URL, password included: keep only
		// what is wrong with it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("parse URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("URL %q: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("URL %q: host is missing", u.Redacted())
	}
	return u, nil
}

// sendSets are the sets of Alertmanagers to send to, each with its HTTP
// client configuration and timeout: the command line's URLs (if any) first,
// then Sets. names are the sets' option names, for errors.
func (o NotifierOptions) sendSets() (sets []AlertmanagerSet, names []string) {
	sets = make([]AlertmanagerSet, 0, 1+len(o.Sets))
	names = make([]string, 0, 1+len(o.Sets))
	if len(o.URLs) > 0 {
		sets = append(sets, AlertmanagerSet{URLs: o.URLs, HTTPConfig: o.HTTPConfig, Timeout: o.Timeout})
		names = append(names, "URLs")
	}
	for i, s := range o.Sets {
		if s.Timeout == 0 {
			s.Timeout = config.DefaultAlertmanagerTimeout
		}
		sets = append(sets, s)
		names = append(names, fmt.Sprintf("Sets[%d].URLs", i))
	}
	return sets, names
}

// target is one Alertmanager's alerts endpoint and the index of its set.
type target struct {
	set      int
	endpoint string
}

// endpoints checks every URL of sets, in order, and returns its alerts
// endpoint. A URL with user info, a query or a fragment is refused, and so
// is an endpoint listed twice: it would get every batch twice.
func endpoints(sets []AlertmanagerSet, names []string) ([]target, error) {
	var targets []target
	seen := make(map[string]bool)
	for si, set := range sets {
		for i, raw := range set.URLs {
			u, err := parseHTTPURL(raw)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", names[si], i, err)
			}
			if u.User != nil {
				return nil, fmt.Errorf("%s[%d]: URL %q: %w", names[si], i, u.Redacted(), ErrURLUserInfo)
			}
			if u.RawQuery != "" || u.Fragment != "" {
				return nil, fmt.Errorf("%s[%d]: URL %q: must have no query or fragment", names[si], i, u.Redacted())
			}
			ep := u.JoinPath(alertsAPIPath).String()
			if seen[ep] {
				return nil, fmt.Errorf("%s[%d]: %q is listed twice", names[si], i, ep)
			}
			seen[ep] = true
			targets = append(targets, target{si, ep})
		}
	}
	return targets, nil
}
