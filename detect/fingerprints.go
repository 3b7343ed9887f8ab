package detect

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/window"
)

// fpState accumulates one recent fingerprint's counts, bucket by bucket,
// from its first sighting. Only fingerprints young enough to be blamed on a
// deploy are tracked, so the cost follows new errors, not the catalogue.
type fpState struct {
	first       int64
	cohortPre   int64 // on cohort wikis, Pretrain scope
	cohortTrain int64 // on cohort wikis, train scope (train jobrunners)
	train       int64 // all wikis, train scope
	pre         int64 // all wikis, Pretrain scope
	bucketsPre  int   // buckets with cohort Pretrain-scope occurrences
	bucketsTr   int   // buckets with train-scope occurrences
	scopeTrain  int64 // train scope, on the cohort's DB sections (cohort's own train-scope occurrences included)
	last        int64
}

func (d *Detector) fingerprintTests(b0, b1 int64, dc deployContext) {
	// The oldest deploy an onset here could still be blamed on.
	horizon := b1 - int64(d.cfg.Attribution)
	if dc.pretrain == nil && dc.trainLatest == nil {
		return
	}
	// Only fingerprints first seen within the attribution horizon can be
	// blamed on a deploy: the catalogue's older ones cost nothing here. The
	// window returns them ordered by first sighting, then id, so the
	// evaluation order (and Bonferroni's K) is deterministic.
	d.infos = d.w.FirstSeenAfter(horizon, d.infos[:0])
	for i := range d.infos {
		info := &d.infos[i]
		if info.LastSeen < b0 || info.FirstSeen >= b1 {
			continue
		}
		st := d.fps[info.ID]
		if st == nil {
			st = &fpState{first: info.FirstSeen}
			d.fps[info.ID] = st
		}
		var cp, ct int64
		for _, id := range d.cohortIDs {
			cp += d.w.FingerprintCount(info.ID, id, event.ScopePretrain, b0, b1)
			ct += d.w.FingerprintCount(info.ID, id, event.ScopeTrain, b0, b1)
		}
		tr := d.w.FingerprintTotal(info.ID, event.ScopeTrain, b0, b1)
		pr := d.w.FingerprintTotal(info.ID, event.ScopePretrain, b0, b1)
		if cp+tr+pr == 0 {
			continue
		}
		st.cohortPre += cp
		st.cohortTrain += ct
		if tr > 0 {
			for sec, ok := range d.cohortSections {
				if ok {
					st.scopeTrain += d.w.FingerprintSection(info.ID, sec, event.ScopeTrain, b0, b1)
				}
			}
		}
		st.train += tr
		st.pre += pr
		if cp > 0 {
			st.bucketsPre++
		}
		if tr > 0 {
			st.bucketsTr++
		}
		st.last = b1
		if dc.pretrain != nil && info.FirstSeen >= dc.pretrain.At {
			if cp > 0 {
				d.pretrainNewFingerprint(info, st, b1, dc)
			}
			if tr > 0 && (info.Shared != event.SharedNone || st.cohortTrain > 0) {
				d.spillover(info, st, b1, dc)
			}
		}
		if dc.trainLatest != nil && tr > 0 {
			d.trainRegression(info, st, b1, dc)
		}
	}
	// Forget fingerprints too old to blame on anything.
	for id, st := range d.fps {
		if st.first < horizon-int64(d.cfg.ResolveAfter) {
			delete(d.fps, id)
		}
	}
}

// trainSince returns the train scope's per-wiki counts over [from, to),
// computed once per bucket evaluation however many candidates ask.
func (d *Detector) trainSince(from, to int64) []window.Counts {
	if d.sinceFrom != from || d.sinceTo != to {
		d.sinceBuf = d.w.SumWikis(event.ScopeTrain, from, to, d.sinceBuf[:0])
		d.sinceFrom, d.sinceTo = from, to
	}
	return d.sinceBuf
}

func fpKey(id uint64) string { return "fp:" + strconv.FormatUint(id, 16) }

func fpHex(id uint64) string { return fmt.Sprintf("%016x", id) }

// newTrainVersions returns the versions brought by train deploys after t.
func (d *Detector) newTrainVersions(after int64, before int64) map[string]window.Deploy {
	out := map[string]window.Deploy{}
	for _, dep := range d.deploys {
		if dep.Scope == event.ScopeTrain && !dep.Initial && dep.At > after && dep.At <= before {
			out[dep.Version] = dep
		}
	}
	return out
}

// topWikis counts a fingerprint on the wikis the catalogue saw it on, and
// how many of its occurrences fell in set.
func (d *Detector) topWikis(info *window.FingerprintInfo, sc event.Scope, from, to int64, set wikiSet) (top []WikiCount, inSet int64) {
	for _, id := range info.Wikis {
		c := d.w.FingerprintCount(info.ID, id, sc, from, to)
		if c == 0 {
			continue
		}
		if set.has(id) {
			inSet += c
		}
		top = append(top, WikiCount{Wiki: d.wikiName(id), Errors: c})
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].Errors != top[j].Errors {
			return top[i].Errors > top[j].Errors
		}
		return top[i].Wiki < top[j].Wiki
	})
	return top, inSet
}

func (d *Detector) fillFingerprint(f *Finding, info *window.FingerprintInfo, sc event.Scope, from, to int64) {
	f.NormalizedMessage = info.Message
	f.ExceptionClass = info.Class
	f.Channel = info.Channel
	f.Fingerprint = fpHex(info.ID)
	f.Evidence.Exemplar = info.Exemplar
	f.Evidence.Versions = append([]string(nil), info.Versions...)
	f.Evidence.SharedData = info.Shared.String()
	f.Evidence.Frame = info.Frame
	if f.Evidence.Frame == "" && info.Shared != event.SharedNone {
		f.Evidence.Frame = "channel " + info.Channel
	}
}
