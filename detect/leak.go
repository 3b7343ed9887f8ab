package detect

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/wikimedia/pretrain-detector/wikimap"
)

// leakState counts Pretrain-scope events for wikis outside the cohort.
type leakState struct {
	count, first, last []int64
}

func (d *Detector) leakTest(b0, b1 int64) {
	ls := &d.leaks
	win := int64(d.cfg.AnomalyWindow)
	var leaked []wikimap.ID
	for id := 1; id < len(d.preB); id++ {
		wid := wikimap.ID(id)
		if d.topo.cohort.has(wid) {
			continue
		}
		c := d.preB[id].Requests + d.preB[id].Errors
		if c == 0 {
			if ls.count[id] > 0 && b1-ls.last[id] > win {
				ls.count[id] = 0
			}
			continue
		}
		if ls.count[id] == 0 || b1-ls.last[id] > win {
			ls.count[id], ls.first[id] = 0, b0
		}
		ls.count[id] += c
		ls.last[id] = b1
		if ls.count[id] >= int64(d.cfg.LeakMinEvents) {
			leaked = append(leaked, wid)
		}
	}
	if len(leaked) == 0 {
		return
	}
	var total, reqs, errs int64
	first := int64(math.MaxInt64)
	var top []WikiCount
	for id := 1; id < len(ls.count); id++ {
		if ls.count[id] < int64(d.cfg.LeakMinEvents) || b1-ls.last[id] > win {
			continue
		}
		total += ls.count[id]
		first = min(first, ls.first[id])
		top = append(top, WikiCount{Wiki: d.wikiName(wikimap.ID(id)), Errors: ls.count[id]})
	}
	for _, id := range leaked {
		reqs += d.preB[id].Requests
		errs += d.preB[id].Errors
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].Errors != top[j].Errors {
			return top[i].Errors > top[j].Errors
		}
		return top[i].Wiki < top[j].Wiki
	})
	d.upsert(KindPretrainLeak, "leak", b1, nil, func(f *Finding) {
		f.Wikis = wikisOf(top)
		if f.StartedAt.IsZero() || ts(first).Before(f.StartedAt) {
			f.StartedAt = ts(first)
		}
		f.Evidence = Evidence{
			Test:         "count of Pretrain-scope events for wikis outside the cohort",
			CohortErrors: errs, CohortRequests: reqs, TopWikis: capTop(top, 10),
			Note: fmt.Sprintf("%d Pretrain-served events for %d wikis outside the cohort (%s) in the last %s",
				total, len(top), strings.Join(d.cohortNames(), ", "), d.cfg.AnomalyWindow),
		}
		f.Summary = fmt.Sprintf("Pretrain (mw-pretrain, releases other than debug) served or logged %d events for %d wikis outside its cohort, e.g. %s: Pretrain code is reaching wikis it must not serve.",
			total, len(top), strings.Join(firstN(f.Wikis, 3), ", "))
	})
}
