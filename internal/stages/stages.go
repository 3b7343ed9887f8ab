// Package stages builds what every way of running the detector shares from
// the configuration (the window, the detector, the decoders' options, the
// Kafka sources) with one cleanup path.
package stages

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/verdict"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// Stages are what every way of running the detector builds alike from the
// configuration: New (the daemon, the demo, the benchmarks), NewReplay and
// NewOffline (the scenario suite). They are the interners every decoder
// shares, the window with the configured deploy markers, the detector over
// the window, and the decoders' options with the classifier. Only
// New builds them; Close is their one cleanup path, taken on every
// error return once they exist and by each runner's Close.
type Stages struct {
	Config             config.Config
	Wikis              *wikimap.Map
	Versions, Rollouts *event.Interner
	Store              *window.Store
	Detector           *detect.Detector
	decOpts            decode.Options
}

// New builds the stages from cfg. shards is the window's shard count
// (0: its default); reg gets the window's metrics. Errors name the field.
// Once the window exists, a failure releases it (close) before returning.
func New(cfg config.Config, wikis *wikimap.Map, shards int, reg prometheus.Registerer) (_ *Stages, err error) {
	s := &Stages{Config: cfg, Wikis: wikis, Versions: event.NewInterner(), Rollouts: event.NewInterner()}
	wcfg := windowConfig(cfg)
	wcfg.Shards = shards
	if s.Store, err = window.New(wcfg, wikis, s.Versions, s.Rollouts, reg); err != nil {
		return nil, fmt.Errorf("window: %w", err)
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	for _, m := range cfg.Deploys {
		s.Store.AddDeploy(markerDeploy(m))
	}
	if s.Detector, err = detect.New(detectConfig(cfg), wikis, s.Store); err != nil {
		return nil, err
	}
	cls, err := classifier(cfg.Classifier)
	if err != nil {
		return nil, err
	}
	s.decOpts = decoderOptions(cfg, cls)
	return s, nil
}

// NewDecoder returns a decoder for format f that interns into the stages'
// interners, as every decoder of one run must (ids agree across topics).
func (s *Stages) NewDecoder(f decode.Format) (*decode.Decoder, error) {
	return decode.New(f, s.Wikis, s.Versions, s.Rollouts, s.decOpts)
}

// Close releases the window: its shard goroutines and its fastcache memory.
func (s *Stages) Close() error { return s.Store.Close() }

// windowConfig maps config's window section, which config.Validate has
// checked as a whole: every field it maps is given, and none takes a
// default of package window. Shards is New's argument; RolloutMerge is
// window's own, as config has no setting for it.
func windowConfig(cfg config.Config) window.Config {
	return window.Config{
		Bucket:           time.Duration(cfg.Window.Bucket),
		Length:           time.Duration(cfg.Window.Length),
		Lateness:         time.Duration(cfg.Window.Lateness),
		CacheBytes:       cfg.Window.CacheBytes,
		CatalogueEntries: cfg.Window.CatalogueEntries,
		CatalogueBytes:   cfg.Window.CatalogueBytes,
	}
}

func detectConfig(cfg config.Config) detect.Config {
	return detect.Config{
		Cohort: cfg.Pretrain.Cohort, SharedWith: cfg.Detect.ShareDataWikis,
		Alpha: cfg.Detect.Alpha, Margin: cfg.Detect.Margin,
		MinPrePeriod: time.Duration(cfg.Detect.MinPrePeriod), Attribution: time.Duration(cfg.Detect.Attribution),
		ResolveAfter: time.Duration(cfg.Detect.ResolveAfter), AnomalyWindow: time.Duration(cfg.Detect.AnomalyWindow),
		MinBuckets: cfg.Detect.MinBuckets, MinDistinct: cfg.Detect.MinDistinct, LeakMinEvents: cfg.Detect.LeakMinEvents,
	}
}

// VerdictConfig is the part of the configuration deploy verdicts are
// judged with: the detector's level, margin and attribution window.
func VerdictConfig(cfg config.Config) verdict.Config {
	return verdict.Config{Alpha: cfg.Detect.Alpha, Margin: cfg.Detect.Margin,
		Attribution: time.Duration(cfg.Detect.Attribution), MinPrePeriod: time.Duration(cfg.Detect.MinPrePeriod)}
}

func decoderOptions(cfg config.Config, cls *decode.Classifier) decode.Options {
	return decode.Options{
		MaxRecordBytes:            cfg.Kafka.MaxRecordBytes,
		MaxSkew:                   time.Duration(cfg.Kafka.MaxSkew),
		PretrainServergroupPrefix: cfg.Pretrain.ServergroupPrefix,
		PretrainDeployment:        cfg.Pretrain.Deployment,
		Classifier:                cls,
	}
}

// MarkerDeploy turns a configured deploy marker into a timeline entry.
func MarkerDeploy(scope, group, version string, at time.Time, source string) window.Deploy {
	sc := event.ScopeTrain
	if scope == "pretrain" {
		sc = event.ScopePretrain
	}
	return window.Deploy{Scope: sc, Group: group, Version: version, At: at.UnixNano(), Source: source}
}

func markerDeploy(m config.DeployMarker) window.Deploy {
	return MarkerDeploy(m.Scope, m.Group, m.Version, m.At, "config")
}

// classifier extends the default shared-data classification with the
// configured rules, which take precedence.
func classifier(c config.Classifier) (*decode.Classifier, error) {
	extra := decode.ClassifierConfig{Channels: c.Channels}
	for _, r := range c.Paths {
		extra.Paths = append(extra.Paths, decode.PathRule{Contains: r.Contains, Class: r.Class})
	}
	cls, err := decode.NewClassifier(decode.DefaultClassifierConfig().Extend(extra))
	if err != nil {
		return nil, fmt.Errorf("classifier: %w", err)
	}
	return cls, nil
}
