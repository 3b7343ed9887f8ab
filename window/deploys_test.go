package window

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

func TestDeployTimeline(t *testing.T) {
	const (
		minute = int64(time.Minute)
		hour   = int64(time.Hour)
	)
	type ev struct {
		at      int64
		wiki    wikimap.ID // 1, 4, 7: group0; 2, 5, 8: group1; 3, 6: group2
		scope   event.Scope
		version string
		rollout string
		isError bool
	}
	train, pretrain := event.ScopeTrain, event.ScopePretrain
	initial := func(sc event.Scope, group, version string, at int64) Deploy {
		return Deploy{Scope: sc, Group: group, Version: version, At: at, Source: "mwversion", Initial: true}
	}
	for _, tc := range []struct {
		name    string
		events  []ev
		markers []Deploy
		want    []Deploy
	}{
		{
			name: "the first version of each group and scope is the initial state",
			events: []ev{
				{at: t0, wiki: 1, scope: train, version: "1.47.0-wmf.16"},
				{at: t0, wiki: 2, scope: train, version: "1.47.0-wmf.16"},
				{at: t0 + 1, wiki: 3, scope: train, version: "1.47.0-wmf.16", isError: true},
				{at: t0 + 5*minute, wiki: 6, scope: train, version: "1.47.0-wmf.16"},
				{at: t0 + 2, wiki: 1, scope: pretrain, version: "1.48.0-alpha"},
			},
			want: []Deploy{
				initial(train, "group0", "1.47.0-wmf.16", t0),
				initial(train, "group1", "1.47.0-wmf.16", t0),
				initial(train, "group2", "1.47.0-wmf.16", t0+1),
				initial(pretrain, "", "1.48.0-alpha", t0+2),
			},
		},
		{
			name: "a version change in one train group is that group's deploy",
			events: []ev{
				{at: t0, wiki: 1, scope: train, version: "wmf.16"},
				{at: t0, wiki: 2, scope: train, version: "wmf.16"},
				{at: t0 + hour, wiki: 2, scope: train, version: "wmf.17"},
				{at: t0 + hour + 10*sec, wiki: 5, scope: train, version: "wmf.17"},
				{at: t0 + hour + 20*sec, wiki: 5, scope: train, version: "wmf.16"}, // a straggler of the old version
				{at: t0 + hour + 30*sec, wiki: 1, scope: train, version: "wmf.16"},
			},
			want: []Deploy{
				initial(train, "group0", "wmf.16", t0),
				initial(train, "group1", "wmf.16", t0),
				{Scope: train, Group: "group1", Version: "wmf.17", At: t0 + hour, Source: "mwversion"},
			},
		},
		{
			name: "a deploy is dated by its earliest event, whichever shard saw it first",
			events: []ev{
				{at: t0, wiki: 2, scope: train, version: "wmf.16"},
				{at: t0 + hour + 30*sec, wiki: 2, scope: train, version: "wmf.17"}, // shard 0
				{at: t0 + hour, wiki: 5, scope: train, version: "wmf.17"},          // shard 1, late
				{at: t0 + hour + 5*sec, wiki: 8, scope: train, version: "wmf.17"},
			},
			want: []Deploy{
				initial(train, "group1", "wmf.16", t0),
				{Scope: train, Group: "group1", Version: "wmf.17", At: t0 + hour, Source: "mwversion"},
			},
		},
		{
			name: "a version seen again is not a new deploy",
			events: []ev{
				{at: t0, wiki: 3, scope: train, version: "wmf.16"},
				{at: t0 + hour, wiki: 3, scope: train, version: "wmf.17"},
				{at: t0 + hour + 30*minute, wiki: 6, scope: train, version: "wmf.16"}, // rollback
			},
			want: []Deploy{
				initial(train, "group2", "wmf.16", t0),
				{Scope: train, Group: "group2", Version: "wmf.17", At: t0 + hour, Source: "mwversion"},
			},
		},
		{
			name: "new rollouts in the pretrain scope are Pretrain deploys, merged within ten minutes",
			events: []ev{
				{at: t0, wiki: 1, scope: pretrain, rollout: "main-7f9c"},
				{at: t0 + 2*minute, wiki: 1, scope: pretrain, rollout: "canary-5d2a", isError: true}, // initial state too
				{at: t0 + hour, wiki: 1, scope: pretrain, rollout: "main-81be"},
				{at: t0 + hour + 5*minute, wiki: 4, scope: pretrain, rollout: "canary-90aa"},
				{at: t0 + hour + 11*minute, wiki: 1, scope: pretrain, rollout: "jobrunner-3c3c"},
				{at: t0 + hour + 12*minute, wiki: 1, scope: pretrain, rollout: "main-7f9c"}, // an old pod still logging
			},
			want: []Deploy{
				{Scope: pretrain, Version: "main-7f9c", At: t0, Source: "rollout", Initial: true},
				{Scope: pretrain, Version: "main-81be", At: t0 + hour, Source: "rollout"},
				{Scope: pretrain, Version: "jobrunner-3c3c", At: t0 + hour + 11*minute, Source: "rollout"},
			},
		},
		{
			name: "rollouts are per scope",
			events: []ev{
				{at: t0, wiki: 2, scope: train, rollout: "mw-web.eqiad.main-11aa"},
				{at: t0 + 30*minute, wiki: 1, scope: pretrain, rollout: "main-7f9c"},
				{at: t0 + 40*minute, wiki: 2, scope: train, rollout: "mw-web.eqiad.main-22bb"},
			},
			want: []Deploy{
				{Scope: train, Version: "mw-web.eqiad.main-11aa", At: t0, Source: "rollout", Initial: true},
				{Scope: pretrain, Version: "main-7f9c", At: t0 + 30*minute, Source: "rollout", Initial: true},
				{Scope: train, Version: "mw-web.eqiad.main-22bb", At: t0 + 40*minute, Source: "rollout"},
			},
		},
		{
			name: "explicit markers are kept once, in time order",
			events: []ev{
				{at: t0, wiki: 1, scope: train, version: "wmf.16"},
				{at: t0 + hour, wiki: 1, scope: train, version: "wmf.17"},
			},
			markers: []Deploy{
				{Scope: pretrain, Version: "next", At: t0 + 30*minute, Source: "api"},
				{Scope: pretrain, Version: "next", At: t0 + 30*minute, Source: "api"},
				{Scope: train, Group: "group0", Version: "wmf.17", At: t0 + hour - minute, Source: "scap"},
			},
			want: []Deploy{
				initial(train, "group0", "wmf.16", t0),
				{Scope: pretrain, Version: "next", At: t0 + 30*minute, Source: "api"},
				{Scope: train, Group: "group0", Version: "wmf.17", At: t0 + hour - minute, Source: "scap"},
				{Scope: train, Group: "group0", Version: "wmf.17", At: t0 + hour, Source: "mwversion"},
			},
		},
		{name: "nothing seen, nothing deployed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{Shards: 2}, 8)
			for _, e := range tc.events {
				x := req(e.at, e.wiki, e.scope, 200)
				if e.isError {
					x = errEv(e.at, e.wiki, e.scope, 1)
				}
				if e.version != "" {
					x.Version = f.versions.ID([]byte(e.version))
				}
				if e.rollout != "" {
					x.Rollout = f.rollouts.ID([]byte(e.rollout))
				}
				f.w.Add(&x, nil)
				f.sync()
			}
			for _, m := range tc.markers {
				f.s.AddDeploy(m)
			}
			got := f.s.Deploys(make([]Deploy, 3))
			require.True(t, slices.IsSortedFunc(got, func(a, b Deploy) int { return int(a.At - b.At) }), "ordered by At: %v", got)
			require.ElementsMatch(t, tc.want, got)
		})
	}
}

func TestSeenSetBounded(t *testing.T) {
	var s seenSet
	s.init(4)
	var reports []seenReport
	key := func(i int) uint64 { return seenKey(seenRollout, event.ScopeTrain, 0, uint32(i)) }
	for i := 1; i <= 6; i++ {
		reports = s.note(key(i), t0+int64(i)*sec, reports)
		reports = s.note(key(1), t0+int64(i)*sec, reports) // key 1 stays recently seen
	}
	require.Len(t, s.recs, 4)
	require.Len(t, s.idx, 4)
	for _, i := range []int{1, 4, 5, 6} {
		_, ok := s.idx[key(i)]
		require.True(t, ok, "key %d", i)
	}
	require.Len(t, reports, 6, "one report per new key; key 1 was never re-reported")
	// Re-noting a known key inside reportEvery reports nothing; an earlier
	// sighting or one reportEvery later does.
	n := len(reports)
	reports = s.note(key(5), t0+6*sec, reports)
	require.Len(t, reports, n)
	reports = s.note(key(5), t0, reports)
	require.Equal(t, seenReport{key: key(5), first: t0, last: t0 + 6*sec}, reports[n])
	reports = s.note(key(5), t0+reportEvery+5*sec, reports) // not yet reportEvery after the last report
	require.Len(t, reports, n+1)
	reports = s.note(key(5), t0+reportEvery+6*sec, reports)
	require.Len(t, reports, n+2)
}

func TestTimelineBounded(t *testing.T) {
	f := newFixture(t, Config{Shards: 1}, 8)
	tl := f.s.tl
	var rs []seenReport
	for i := 1; i <= maxTimelineKeys+500; i++ {
		id := f.rollouts.ID([]byte("r-" + strconv.Itoa(i)))
		at := t0 + int64(i)*int64(time.Hour)
		rs = append(rs, seenReport{key: seenKey(seenRollout, event.ScopePretrain, 0, id), first: at, last: at})
	}
	tl.report(rs)
	require.LessOrEqual(t, tl.size(), maxTimelineKeys)
	for i := range maxMarkers + 10 {
		f.s.AddDeploy(Deploy{Scope: event.ScopeTrain, Version: "m", At: int64(i), Source: "config"})
	}
	require.Len(t, tl.markers, maxMarkers)
	got := f.s.Deploys(nil)
	require.Len(t, got, maxTimeline+maxMarkers, "derived entries and markers are bounded apart")
	require.Equal(t, "r-"+strconv.Itoa(maxTimelineKeys+500), got[len(got)-1].Version, "the newest are kept")
	for _, d := range got {
		require.False(t, d.Initial, "the initial rollout was evicted, so none is initial")
	}
}

// TestMarkersNeverEvictDerivedDeploys: 1,000 markers dated far ahead (more
// than the marker cap, all later than every event) leave every deploy learned
// from the events in the timeline.
func TestMarkersNeverEvictDerivedDeploys(t *testing.T) {
	f := newFixture(t, Config{Shards: 2}, 8)
	for i, v := range []string{"wmf.16", "wmf.17"} {
		x := req(t0+int64(i)*int64(time.Hour), 2, event.ScopeTrain, 200)
		x.Version = f.versions.ID([]byte(v))
		f.w.Add(&x, nil)
		y := req(t0+int64(i)*int64(time.Hour), 1, event.ScopePretrain, 200)
		y.Rollout = f.rollouts.ID([]byte("mw-pretrain-" + strconv.Itoa(i)))
		f.w.Add(&y, nil)
		f.sync()
	}
	derived := func() []Deploy {
		var out []Deploy
		for _, d := range f.s.Deploys(nil) {
			if d.Source == "mwversion" || d.Source == "rollout" {
				out = append(out, d)
			}
		}
		return out
	}
	before := derived()
	require.Len(t, before, 4)
	far := time.Date(2199, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := range maxMarkers + 500 {
		d, err := NewMarker("train", "group1", "1.99.0-wmf."+strconv.Itoa(i), far.Add(time.Duration(i)*time.Minute), "api")
		require.NoError(t, err)
		require.NoError(t, f.s.AddMarker(d))
	}
	require.Equal(t, before, derived(), "no event-derived deploy was evicted")
	require.Len(t, f.s.Deploys(nil), 4+maxMarkers)
}

func TestNewMarkerBounds(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name                  string
		scope, group, version string
		at                    time.Time
		field                 string // "" = accepted
	}{
		{"a pretrain deploy", "pretrain", "", "1.48.0-alpha", now, ""},
		{"a train deploy", "train", "group1", "1.47.0-wmf.17", now, ""},
		{"unknown scope", "prod", "", "v", now, "field scope"},
		{"no version", "train", "", "", now, "field version"},
		{"long version", "train", "", strings.Repeat("v", MaxMarkerVersion+1), now, "field version"},
		{"version with a newline", "train", "", "v\nforged log line", now, "field version"},
		{"long group", "train", strings.Repeat("g", MaxMarkerGroup+1), "v", now, "field group"},
		{"a pretrain group", "pretrain", "group0", "v", now, "field group"},
		{"year 1600 (would wrap to 2184)", "train", "", "v", time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), "field at"},
		{"year 2300", "train", "", "v", time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), "field at"},
		{"zero time", "train", "", "v", time.Time{}, "field at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewMarker(tc.scope, tc.group, tc.version, tc.at, "api")
			if tc.field == "" {
				require.NoError(t, err)
				require.Equal(t, tc.at.UnixNano(), d.At)
				return
			}
			require.ErrorContains(t, err, tc.field)
		})
	}
	f := newFixture(t, Config{Shards: 1}, 8)
	require.ErrorContains(t, f.s.AddMarker(Deploy{Scope: event.ScopeTrain, Version: "v", At: -1}), "field at")
	require.Empty(t, f.s.Deploys(nil))
}
