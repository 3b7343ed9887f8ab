package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/internal/rateplot"
	"github.com/wikimedia/pretrain-detector/pipeline"
	"github.com/wikimedia/pretrain-detector/render"
	"github.com/wikimedia/pretrain-detector/ui"
	verdicts "github.com/wikimedia/pretrain-detector/verdict"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// webUI wires the live page and the deploy-verdict API (package ui) to a
// running pipeline: its findings, deploy timeline, window counts and
// health. Until ctx is done it judges the deploys every verdictEvery, so
// that each verdict reads its counts while the window holds them, whether
// or not anyone asks. It returns what alert.WebOptions.Mount calls; nil
// (the one-line text page) if the page cannot be built, which a test would
// have caught.
// simulated says the events carry a simulation's times (the demo).
func webUI(ctx context.Context, cfg config.Config, p *pipeline.Pipeline, wikis *wikimap.Map, g prometheus.Gatherer, logger *slog.Logger, simulated bool) func(*http.ServeMux) {
	u, err := ui.New(ui.Options{
		Version:  version.Version,
		Findings: p.Findings,
		Deploys:  func() []verdicts.Deploy { return verdicts.FromWindow(p.Store.Deploys(nil)) },
		Source:   verdicts.NewWindowSource(p.Store, wikis, cfg.Pretrain.Cohort),
		Ledger:   verdicts.NewLedger(verdictConfig(cfg)),
		Plot:     func(f detect.Finding) *render.Plot { return renderPlot(rateplot.Live(p.Store, wikis, f)) },
		Health: func() ui.Health {
			h := ui.Health{Ready: p.Ready(), Topics: ui.TopicsFromMetrics(g), Simulated: simulated}
			if !h.Ready {
				h.NotReady = "warming the windows up from Kafka"
			}
			if wm := p.Store.Watermark(); wm > 0 {
				h.Watermark = time.Unix(0, wm).UTC()
			}
			cs := p.CohortStatus()
			h.Cohort = &cs
			h.FleetIncident, h.FleetSince = p.FleetIncident()
			return h
		},
		Logger: logger.With("component", "ui"),
	})
	if err != nil {
		logger.Error("Building the web page", "err", err)
		return nil
	}
	go func() {
		t := time.NewTicker(verdictEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				u.Verdicts()
			}
		}
	}()
	return u.Register
}

// verdictEvery is how often the daemon judges the deploys: far below the
// hour a deploy's counts stay in the window after it is first judged.
const verdictEvery = 10 * time.Second

// verdictConfig is the part of the detector's configuration deploy
// verdicts are judged with.
func verdictConfig(cfg config.Config) verdicts.Config {
	return verdicts.Config{Alpha: cfg.Detect.Alpha, Margin: cfg.Detect.Margin,
		Attribution: time.Duration(cfg.Detect.Attribution), MinPrePeriod: time.Duration(cfg.Detect.MinPrePeriod)}
}

// renderPlot converts a recorded plot for the renderer.
func renderPlot(p *rateplot.Plot) *render.Plot {
	if p == nil {
		return nil
	}
	rp := &render.Plot{Start: p.Start, Step: p.Step, Cohort: p.Cohort, CohortScope: p.CohortScope, Fingerprint: p.Fingerprint}
	for _, pt := range p.Points {
		rp.Points = append(rp.Points, render.Point(pt))
	}
	return rp
}
