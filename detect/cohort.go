package detect

import (
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// wikiSet is a set of wikis as a bitmap indexed by wikimap.ID.
type wikiSet []bool

func newWikiSet(n int, ids ...wikimap.ID) wikiSet {
	s := make(wikiSet, n+1)
	for _, id := range ids {
		if int(id) < len(s) {
			s[id] = true
		}
	}
	return s
}

func (s wikiSet) has(id wikimap.ID) bool { return int(id) < len(s) && s[id] }

func (s wikiSet) add(ids ...wikimap.ID) {
	for _, id := range ids {
		if int(id) < len(s) {
			s[id] = true
		}
	}
}

func (s wikiSet) len() int {
	n := 0
	for _, b := range s {
		if b {
			n++
		}
	}
	return n
}

// topology is what detect knows of who shares data with the Pretrain cohort
// (docs/domain.md section 2). For each shared-data class it holds the wikis that
// share that path with the cohort; a class shared with (nearly) every wiki
// cannot be told from a fleet-wide problem by where errors land, so its set
// is marked broad.
type topology struct {
	cohort   wikiSet
	byClass  [event.NumSharedClasses]wikiSet
	broad    [event.NumSharedClasses]bool
	names    [event.NumSharedClasses]string // what the set is, for evidence
	anyShare wikiSet                        // union of the non-broad sets: "wikis sharing data with testwiki"
}

func newTopology(m *wikimap.Map, cohort []wikimap.ID, extra []wikimap.ID) *topology {
	n := m.Len()
	t := &topology{cohort: newWikiSet(n, cohort...), anyShare: newWikiSet(n)}
	all := newWikiSet(n)
	for id := 1; id <= n; id++ {
		all[id] = true
	}
	sections := map[string]bool{}
	repos := map[string]bool{}
	for _, id := range cohort {
		w := m.Wiki(id)
		if w == nil {
			continue
		}
		sections[w.Section] = true
		if w.WikidataRepo != "" {
			repos[w.WikidataRepo] = true
		}
	}
	core := newWikiSet(n)
	for s := range sections {
		core.add(m.InSection(s)...)
	}
	wb := newWikiSet(n)
	for id := 1; id <= n; id++ {
		w := m.Wiki(wikimap.ID(id))
		if repos[w.WikidataRepo] || repos[w.DBName] {
			wb[id] = true
		}
	}
	commons := newWikiSet(n, m.ByNameString("commonswiki"), m.ByNameString("testcommonswiki"))
	meta := newWikiSet(n, m.ByNameString("metawiki"))
	for c := range t.byClass {
		t.byClass[c] = all
		t.broad[c] = true
		t.names[c] = "all wikis"
	}
	t.byClass[event.SharedCoreDB], t.broad[event.SharedCoreDB], t.names[event.SharedCoreDB] = core, false, "the cohort's DB section"
	t.byClass[event.SharedWikibase], t.broad[event.SharedWikibase], t.names[event.SharedWikibase] = wb, false, "clients of the cohort's Wikibase repo"
	// Commons and metawiki errors surface on every wiki using them, but the
	// data lives on those wikis: errors there are the concentrated signal.
	t.byClass[event.SharedCommons] = orSet(commons, t.byClass[event.SharedCommons])
	t.byClass[event.SharedMetawiki] = orSet(meta, t.byClass[event.SharedMetawiki])
	for c := range t.byClass {
		if !t.broad[c] {
			for id, b := range t.byClass[c] {
				if b {
					t.anyShare[id] = true
				}
			}
		}
	}
	t.anyShare.add(extra...)
	return t
}

func orSet(a, b wikiSet) wikiSet {
	out := make(wikiSet, len(a))
	for i := range out {
		out[i] = a[i] || b[i]
	}
	return out
}
