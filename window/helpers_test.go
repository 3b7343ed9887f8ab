package window

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

const (
	sec = int64(time.Second)
	// t0 is 2026-05-01T12:00:00Z, a bucket-aligned event time tests count from.
	t0 = 1777636800 * sec
)

// testGroups is a wiki set of n wikis cycling through the train groups
// and two DB sections: wiki 1 is group0 in s1, 2 group1 in s2, 3 group2 in
// s1, 4 group0 in s2, ...
func testGroups(n int) []wikiAttrs {
	g := make([]wikiAttrs, n+1)
	for id := 1; id <= n; id++ {
		g[id] = wikiAttrs{group: []string{"group0", "group1", "group2"}[(id-1)%3], section: []string{"s1", "s2"}[(id-1)%2]}
	}
	return g
}

type fixture struct {
	s                  *Store
	w                  *Writer
	versions, rollouts *event.Interner
}

// newFixture returns a store over 8 wikis (unless cfg says otherwise through
// nWikis) that is closed when the test ends.
func newFixture(t testing.TB, cfg Config, nWikis int) *fixture {
	t.Helper()
	if nWikis == 0 {
		nWikis = 8
	}
	return newFixtureWikis(t, cfg, testGroups(nWikis))
}

// newFixtureWikis is newFixture over wikis of the caller's choosing.
func newFixtureWikis(t testing.TB, cfg Config, wikis []wikiAttrs) *fixture {
	t.Helper()
	f := &fixture{versions: event.NewInterner(), rollouts: event.NewInterner()}
	s, err := newStore(cfg, wikis, f.versions, f.rollouts, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	f.s, f.w = s, s.NewWriter()
	return f
}

// sync flushes the fixture's writer and waits until the store applied it.
func (f *fixture) sync() {
	f.w.Flush()
	f.s.Sync()
}

func req(t int64, w wikimap.ID, sc event.Scope, status uint16) event.Event {
	return event.Event{Time: t, Kind: event.KindRequest, Wiki: w, Scope: sc, Status: status}
}

func errEv(t int64, w wikimap.ID, sc event.Scope, fp uint64) event.Event {
	return event.Event{Time: t, Kind: event.KindError, Wiki: w, Scope: sc, Fingerprint: fp}
}

func detail(msg, reqID string) *event.Detail {
	return &event.Detail{
		Message:  []byte(msg),
		Exemplar: []byte("[" + reqID + "] /w/index.php   " + msg),
		Class:    []byte("Wikimedia\\Rdbms\\DBQueryError"),
		Channel:  []byte("exception"),
		File:     []byte("/srv/mediawiki/php-1.47.0-wmf.16/includes/libs/rdbms/database/Database.php"),
		Frame:    []byte("includes/libs/rdbms/database/Database.php"),
		Trace:    []byte("#0 /srv/mediawiki/includes/libs/rdbms/database/Database.php(1234): foo()"),
		ReqID:    []byte(reqID),
	}
}
