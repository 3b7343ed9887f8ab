package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/internal/rateplot"
	"github.com/wikimedia/pretrain-detector/internal/stages"
	"github.com/wikimedia/pretrain-detector/pipeline"
	"github.com/wikimedia/pretrain-detector/render"
	"github.com/wikimedia/pretrain-detector/ui"
	"github.com/wikimedia/pretrain-detector/verdict"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Pages are the live page and the deploy-verdict API (package ui) wired
// to a running pipeline: its findings, deploy timeline, window counts and
// health. Run judges the deploys every verdictEvery, so that each verdict
// reads its counts while the window holds them, whether or not anyone asks.
type Pages struct {
	u *ui.UI
}

// NewPages builds the pages over p. simulated says the events carry a
// simulation's times (the demo).
func NewPages(cfg config.Config, p *pipeline.Pipeline, wikis *wikimap.Map, g prometheus.Gatherer, logger *slog.Logger, simulated bool) (*Pages, error) {
	u, err := ui.New(ui.Options{
		Version:  version.Version,
		Findings: p.Findings,
		Deploys:  func() []verdict.Deploy { return verdict.FromWindow(p.Store.Deploys(nil)) },
		Source:   verdict.NewWindowSource(p.Store, wikis, cfg.Pretrain.Cohort),
		Ledger:   verdict.NewLedger(stages.VerdictConfig(cfg)),
		Plot:     func(f detect.Finding) *render.Plot { return rateplot.Live(p.Store, wikis, f) },
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
		return nil, fmt.Errorf("web page: %w", err)
	}
	return &Pages{u: u}, nil
}

// Register adds the pages' handlers to mux (Options.Mount).
func (pg *Pages) Register(mux *http.ServeMux) { pg.u.Register(mux) }

// Run judges the deploys every verdictEvery until ctx is done.
func (pg *Pages) Run(ctx context.Context) {
	t := time.NewTicker(verdictEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pg.u.Verdicts()
		}
	}
}

// verdictEvery is how often the daemon judges the deploys: far below the
// hour a deploy's counts stay in the window after it is first judged.
const verdictEvery = 10 * time.Second
