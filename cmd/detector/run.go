package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/pipeline"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

type runOptions struct {
	common          commonOptions
	alertmanagers   []string
	resendDelay     time.Duration
	externalURL     string
	enableLifecycle bool
	web             *web.FlagConfig
	limits          webLimits // --web.enable-admin-api, --web.read-timeout, --web.max-connections
	// listening, when set, is told the bound web addresses before serving
	// starts: tests listen on 127.0.0.1:0 and need the port.
	listening func([]net.Addr)
}

// loadConfig reads the config file (or the defaults) and applies the flags
// that override it.
func loadConfig(c commonOptions) (config.Config, error) {
	cfg := config.Default()
	if c.configFile != "" {
		var err error
		if cfg, err = config.Load(c.configFile); err != nil {
			return config.Config{}, err
		}
	}
	cfg.OverrideBrokers(splitList(c.brokers))
	if err := cfg.Validate(); err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

func loadWikis(cfg config.Config) (*wikimap.Map, error) {
	if cfg.Wikis.MediaWikiConfigDir != "" {
		m, err := wikimap.Load(cfg.Wikis.MediaWikiConfigDir)
		if err != nil {
			return nil, fmt.Errorf("wikis.mediawiki_config_dir: %w", err)
		}
		return m, nil
	}
	m, err := wikimap.Default()
	if err != nil {
		return nil, fmt.Errorf("built-in wiki map: %w", err)
	}
	return m, nil
}

// splitList accepts both repeated flags and comma-separated values.
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(versioncollector.NewCollector("detector"), collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// runDaemon is `detector run`: warm up from Kafka, then detect until told to stop.
func runDaemon(ctx context.Context, o runOptions) error {
	// Register SIGHUP before the slow start so an early reload is not lost.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	if err := checkAlertmanagerFlags(o.alertmanagers); err != nil {
		return err
	}
	cfg, err := loadConfig(o.common)
	if err != nil {
		return err
	}
	logSecurityWarnings(cfg, o.common.logger)
	if *o.web.WebConfigFile != "" {
		if err := web.Validate(*o.web.WebConfigFile); err != nil {
			return fmt.Errorf("web.config.file: %w", err)
		}
	}
	wikis, err := loadWikis(cfg)
	if err != nil {
		return err
	}
	d, err := newDaemon(ctx, o, cfg, wikis, hup)
	if err != nil {
		return err
	}
	defer d.close()
	return d.Run(ctx)
}

// status is /api/v1/status: configuration without secrets and progress.
func status(cfg config.Config, p *pipeline.Pipeline) any {
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
