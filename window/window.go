// Package window is the detector's bounded, event-time memory: per-(wiki,
// scope) counters in a ring of buckets, per-fingerprint counts in fastcache,
// a capped fingerprint catalogue, and the deploy timeline.
package window

import (
	"time"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Config sizes the window. Zero values take the defaults, except Lateness's:
// zero is a lateness.
type Config struct {
	Bucket           time.Duration // default 10s
	Length           time.Duration // ring length, default 2h
	Lateness         time.Duration // allowed lateness
	CacheBytes       int           // fastcache size for per-fingerprint counts, default 64 MiB; fastcache never holds less than 32 MiB
	CatalogueEntries int           // max fingerprints in the catalogue, default 100000
	CatalogueBytes   int           // max bytes of catalogue text, default 64 MiB
	Shards           int           // default runtime.GOMAXPROCS(0)
	RolloutMerge     time.Duration // rollouts of one scope within this of a deploy's first one are that deploy, default 10m
}

// Counts are the per-(wiki, scope) counters summed over a bucket range.
type Counts struct {
	Requests     int64
	Status5xx    int64
	Errors       int64
	SharedErrors int64 // errors with a shared-data class
	// ErrorRequests counts distinct requests (reqId) that logged an error,
	// each once in the bucket of its first error line, however many lines
	// and buckets it spans; errors without a reqId count each.
	ErrorRequests int64
}

// DebugTraffic is one wiki's traffic through mw-pretrain's debug release:
// developers choosing Pretrain on purpose with the debug header. It is kept
// out of every wiki's counters and the deploy timeline.
type DebugTraffic struct {
	Wiki     wikimap.ID
	Requests int64 // since the window started
	Errors   int64
	Last     int64 // event time of the newest, Unix ns
}

// FingerprintInfo is the catalogue entry of one fingerprint. Strings are
// copies owned by the caller.
type FingerprintInfo struct {
	ID        uint64
	FirstSeen int64 // event time, Unix ns
	LastSeen  int64
	Count     uint64 // all occurrences seen while in the catalogue
	Class     string
	Channel   string
	Message   string // normalized, without the reqId/url prefix
	Exemplar  string // one raw message, truncated
	Trace     string // truncated
	File      string
	Frame     string
	Shared    event.SharedClass
	Versions  []string     // bounded
	Wikis     []wikimap.ID // bounded: the first wikis it was seen on
	Scopes    [event.NumScopes]uint64
}

// Deploy is one entry of the deploy timeline.
type Deploy struct {
	Scope   event.Scope
	Group   string // train group of the wikis whose version changed; "" for pretrain
	Version string
	At      int64  // event time of the first event showing it, Unix ns
	Source  string // "mwversion", "rollout", "config", "scap", "api"
	// Initial marks the first version or rollout seen for its key: the state
	// the window started in, not a deploy. Detect must not treat it as one.
	Initial bool
}
