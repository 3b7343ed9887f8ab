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
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/config"
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
	autoMemLimit    bool
	memLimitRatio   float64
	// listening, when set, is told the bound web addresses before serving
	// starts: tests listen on 127.0.0.1:0 and need the port.
	listening func([]net.Addr)

	// The demo's, never flags: where the readers start (zero: now −
	// window length), one more sink for the findings, and whether the
	// events carry a simulation's times (the page says so).
	start     time.Time
	sink      alert.Sink
	simulated bool
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
