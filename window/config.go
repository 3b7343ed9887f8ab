package window

import (
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Defaults of the Config fields that package config sets, and the
// detector's defaults for them: config.Default reads them from here, so
// each value is written once. They fill zero values for callers that build
// a window by hand (tests of other packages above all); the daemon's window
// gets every field from the configuration (internal/stages). Lateness has
// none: zero is a lateness, as config allows.
const (
	DefaultBucket           = 10 * time.Second
	DefaultLength           = 2 * time.Hour
	DefaultCacheBytes       = 64 << 20
	DefaultCatalogueEntries = 100_000
	DefaultCatalogueBytes   = 64 << 20
)

// DefaultRolloutMerge is RolloutMerge's default, and the value the detector
// runs with: config has no setting for it.
const DefaultRolloutMerge = 10 * time.Minute

// MaxBuckets is the most buckets the ring may hold (Length / Bucket): a
// hard limit that keeps a mistyped config from asking for absurd memory.
// config.Validate refuses a window.length over it.
const MaxBuckets = 1 << 20

// maxShards bounds Shards: the shard index is 16 bits in fastcache keys.
const maxShards = 1 << 10

// ErrInvalidConfig is wrapped by every validation error, so callers can
// tell a bad config from other failures with errors.Is.
var ErrInvalidConfig = errors.New("invalid window config")

// withDefaults fills zero values but Lateness's, where zero is a lateness.
// Negative values are kept so that validate can name them.
func (c Config) withDefaults() Config {
	if c.Bucket == 0 {
		c.Bucket = DefaultBucket
	}
	if c.Length == 0 {
		c.Length = DefaultLength
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.CatalogueEntries == 0 {
		c.CatalogueEntries = DefaultCatalogueEntries
	}
	if c.CatalogueBytes == 0 {
		c.CatalogueBytes = DefaultCatalogueBytes
	}
	if c.Shards == 0 {
		c.Shards = runtime.GOMAXPROCS(0)
	}
	if c.RolloutMerge == 0 {
		c.RolloutMerge = DefaultRolloutMerge
	}
	return c
}

// validate checks a config after withDefaults; errors name the field. It
// protects the window's own invariants for every caller; config.Validate
// refuses all of this (and more) first, naming the YAML key
// (TestValidateRefusesWhatWindowRefuses in package config).
func (c Config) validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Bucket < 0:
		return bad("Bucket", "must be positive, got %v", c.Bucket)
	case c.Length < 0:
		return bad("Length", "must be positive, got %v", c.Length)
	case c.Length < c.Bucket:
		return bad("Length", "(%v) must be at least one Bucket (%v)", c.Length, c.Bucket)
	case c.Length%c.Bucket != 0:
		return bad("Length", "(%v) must be a multiple of Bucket (%v)", c.Length, c.Bucket)
	case c.Length/c.Bucket > MaxBuckets:
		return bad("Length", "(%v) holds %d buckets of %v, more than %d", c.Length, c.Length/c.Bucket, c.Bucket, MaxBuckets)
	case c.Lateness < 0:
		return bad("Lateness", "must not be negative, got %v", c.Lateness)
	case c.Lateness >= c.Length:
		return bad("Lateness", "(%v) must be shorter than Length (%v)", c.Lateness, c.Length)
	case c.CacheBytes < 0:
		return bad("CacheBytes", "must be positive, got %d", c.CacheBytes)
	case c.CatalogueEntries < 0:
		return bad("CatalogueEntries", "must be positive, got %d", c.CatalogueEntries)
	case c.CatalogueBytes < 0:
		return bad("CatalogueBytes", "must be positive, got %d", c.CatalogueBytes)
	case c.Shards < 0 || c.Shards > maxShards:
		return bad("Shards", "must be in 1..%d, got %d", maxShards, c.Shards)
	case c.RolloutMerge < 0:
		return bad("RolloutMerge", "must not be negative, got %v", c.RolloutMerge)
	}
	return nil
}
