package replay

import (
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/internal/stages"
	"github.com/wikimedia/pretrain-detector/verdict"
	"github.com/wikimedia/pretrain-detector/window"
)

// verdicts judges the deploys of a replay as it passes them, from the
// merge goroutine after every evaluation. A nil *verdicts does nothing.
type verdicts struct {
	st     *stages.Stages
	ledger *verdict.Ledger
	src    *verdict.WindowSource
	judged bool // an evaluation ran: without one there is nothing to judge
}

func newVerdicts(st *stages.Stages) *verdicts {
	return &verdicts{st: st, ledger: verdict.NewLedger(stages.VerdictConfig(st.Config)),
		src: verdict.NewWindowSource(st.Store, st.Wikis, st.Config.Pretrain.Cohort)}
}

// judge judges every deploy the window knows, as of the last evaluation.
func (v *verdicts) judge() {
	if v == nil {
		return
	}
	v.judged = true
	v.ledger.Judge(verdict.FromWindow(v.st.Store.Deploys(nil)), nil, v.src)
}

// result is the verdict of every deploy of the range as of its end.
func (v *verdicts) result(deploys []window.Deploy, findings []detect.Finding) []verdict.Result {
	if v == nil || !v.judged {
		return nil
	}
	return v.ledger.Judge(verdict.FromWindow(deploys), findings, v.src)
}
