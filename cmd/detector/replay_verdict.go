package main

import (
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/replay"
	verdicts "github.com/wikimedia/pretrain-detector/verdict"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// replayVerdicts judges the deploys of a replay as it passes them: after
// every evaluation (replay.Options.OnEvaluate, on the merge
// goroutine), so that each verdict reads its counts at the same event time
// as the daemon could, and the same records give the same verdicts.
type replayVerdicts struct {
	cfg    config.Config
	wikis  *wikimap.Map
	ledger *verdicts.Ledger
	src    *verdicts.WindowSource
}

func newReplayVerdicts(cfg config.Config, wikis *wikimap.Map) *replayVerdicts {
	return &replayVerdicts{cfg: cfg, wikis: wikis, ledger: verdicts.NewLedger(verdictConfig(cfg))}
}

func (v *replayVerdicts) onEvaluate(store *window.Store, _ int64) {
	if v.src == nil {
		v.src = verdicts.NewWindowSource(store, v.wikis, v.cfg.Pretrain.Cohort)
	}
	v.ledger.Judge(verdicts.FromWindow(store.Deploys(nil)), nil, v.src)
}

// result is the verdict of every deploy of the replayed range, as of its
// end, newest first: the findings reported decide the fails.
func (v *replayVerdicts) result(res replay.Result) []verdicts.Result {
	if v.src == nil {
		return nil
	}
	return v.ledger.Judge(verdicts.FromWindow(res.Deploys), res.Findings, v.src)
}
