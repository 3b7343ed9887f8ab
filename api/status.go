package api

import (
	"reflect"
	"time"

	"github.com/prometheus/common/version"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/pipeline"
)

// Status is /api/v1/status: configuration without secrets and progress.
func Status(cfg config.Config, p *pipeline.Pipeline) map[string]any {
	type cluster struct {
		Name    string   `json:"name"`
		Brokers []string `json:"brokers"`
		TLS     bool     `json:"tls"`
		SASL    string   `json:"sasl_mechanism,omitempty"`
		Topics  []string `json:"topics"`
	}
	var cls []cluster
	for _, c := range cfg.Kafka.Clusters {
		cl := cluster{Name: c.Name, Brokers: c.Brokers, TLS: c.TLS.Enabled, SASL: c.SASL.Mechanism}
		for _, t := range c.Topics {
			cl.Topics = append(cl.Topics, t.Name+" ("+t.Format+")")
		}
		cls = append(cls, cl)
	}
	// The watermark is that of the last evaluation: what has been judged.
	wm := p.EvaluatedTo()
	var wmt *time.Time
	if wm > 0 {
		t := time.Unix(0, wm).UTC()
		wmt = &t
	}
	ready, why := p.Readiness()
	a := p.Assessment()
	setAside := a.SetAside
	if setAside == nil {
		setAside = []ingest.SetAside{}
	}
	fleet, since := p.FleetIncident()
	type deploy struct {
		Scope   string    `json:"scope"`
		Group   string    `json:"group,omitempty"`
		Version string    `json:"version"`
		At      time.Time `json:"at"`
		Source  string    `json:"source"`
		Initial bool      `json:"initial,omitempty"`
	}
	deploys := []deploy{}
	for _, d := range p.Store.Deploys(nil) {
		deploys = append(deploys, deploy{Scope: d.Scope.String(), Group: d.Group, Version: d.Version,
			At: time.Unix(0, d.At).UTC(), Source: d.Source, Initial: d.Initial})
	}
	return map[string]any{
		"version":   version.Version,
		"revision":  version.GetRevision(),
		"ready":     ready,
		"not_ready": why,
		"watermark": wmt,
		"ingest": map[string]any{
			"warmed_up":          a.WarmedUp,
			"missing_topics":     p.Consumer.Missing(),
			"partitions_stalled": setAside,
		},
		"cohort":         cfg.Pretrain.Cohort,
		"kafka":          cls,
		"fleet_incident": map[string]any{"active": fleet, "since": since},
		"cohort_test":    p.CohortStatus(),
		"window":         p.Store.Stats(),
		"deploys":        deploys,
	}
}

// Security is what SecurityStatus reports beside the configuration: the
// web server's limits and the --alertmanager.url values, as running.
type Security struct {
	AdminAPI         bool
	ReadTimeout      time.Duration
	MaxConnections   int
	AlertmanagerURLs []string
}

// SecurityStatus is the "security" part of /api/v1/status: the settings
// that weaken or harden the detector, never a secret.
func SecurityStatus(cfg config.Config, l Security) map[string]any {
	var insecure, plaintext []string
	for _, cl := range cfg.Kafka.Clusters {
		if cl.TLS.Enabled && cl.TLS.InsecureSkipVerify {
			insecure = append(insecure, cl.Name)
		}
		if cl.SASL.Mechanism == "PLAIN" && !cl.TLS.Enabled {
			plaintext = append(plaintext, cl.Name)
		}
	}
	type amSet struct {
		URLs      []string `json:"urls"`
		TLS       bool     `json:"tls_config,omitempty"`
		BasicAuth bool     `json:"basic_auth,omitempty"`
		Authz     bool     `json:"authorization,omitempty"`
		Timeout   string   `json:"timeout"`
	}
	sets := []amSet{}
	if urls := l.AlertmanagerURLs; len(urls) > 0 {
		sets = append(sets, amSet{URLs: urls, Timeout: config.DefaultAlertmanagerTimeout.String()})
	}
	for _, s := range cfg.Alerting.Alertmanagers {
		h := s.HTTPClientConfig
		sets = append(sets, amSet{URLs: s.URLs, TLS: !reflect.ValueOf(h.TLSConfig).IsZero(), BasicAuth: h.BasicAuth != nil,
			Authz: h.Authorization != nil, Timeout: time.Duration(s.Timeout).String()})
	}
	markers := map[string]any{"topic": cfg.DeployMarkers.Topic}
	if cl := cfg.MarkerCluster(); cl != nil {
		markers["cluster"] = cl.Name
	}
	return map[string]any{
		"admin_api":                  l.AdminAPI,
		"web_read_timeout":           l.ReadTimeout.String(),
		"web_max_connections":        l.MaxConnections,
		"kafka_insecure_skip_verify": insecure,
		"kafka_sasl_plaintext":       plaintext,
		"alertmanagers":              sets,
		"deploy_markers":             markers,
		"exemplar_redaction":         true,
	}
}
