// Package window is the detector's bounded, event-time memory: per-(wiki,
// scope) counters in a ring of buckets, per-fingerprint counts in fastcache,
// a capped fingerprint catalogue, and the deploy timeline.
package window

import (
	"time"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Config sizes the window. internal/stages builds it, complete, from
// config's window section, whose defaults are config.Default's. A zero
// field takes this package's Default constant for it (config.Default's
// value), except Lateness, where zero is a lateness. Shards and
// RolloutMerge are not configured; their defaults are window's own.
type Config struct {
	Bucket           time.Duration // bucket width
	Length           time.Duration // ring length, a multiple of Bucket
	Lateness         time.Duration // allowed lateness, shorter than Length
	CacheBytes       int           // fastcache size for per-fingerprint counts; fastcache never holds less than 32 MiB
	CatalogueEntries int           // max fingerprints in the catalogue
	CatalogueBytes   int           // max bytes of catalogue text
	Shards           int           // default runtime.GOMAXPROCS(0)
	RolloutMerge     time.Duration // rollouts of one scope within this of a deploy's first one are that deploy, default DefaultRolloutMerge
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
