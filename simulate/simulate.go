// Package simulate generates realistic, deterministic Wikimedia traffic for
// the detector's demo, tests and benchmarks: MediaWiki error-log events as on
// the k8s-mw-<dc> topics and httpd access-log events as on
// mediawiki.httpd.accesslog, in their real wire formats (docs/domain.md sections
// 3 and 4), with Pretrain and train deploys and injected incidents whose
// ground truth is returned alongside.
//
// The same Config always yields byte-identical records in the same order:
// every random choice comes from PCG streams seeded by Config.Seed, and
// simulated time, never the wall clock, drives every timestamp.
//
// The model: requests arrive as a Poisson process whose rate follows a daily
// cycle (±40%, trough 04:00 UTC, peak 15:00 UTC). Train-fleet requests pick
// a wiki by a heavy-tailed weight (Zipf over the busiest wikis, then the
// size dblists and a per-wiki log-normal factor; closed and private wikis
// near zero) and a deployment by path (mw-web, mw-api-ext, mw-api-int,
// mw-parsoid); testwiki has its own real rate and is served by mw-pretrain
// (main, or canary for a third). Every PHP request may log one of about
// twenty recurring background errors (about 3.8 per 10k requests in all,
// testwiki at the same per-request rate), some of them from a jobrunner or a
// Parsoid render it caused; incidents add their error to matching requests
// with a per-request probability. Records are keyed by the request id
// (X-Request-Id), so an error and its request share a key.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/wikimedia/pretrain-detector/wikimap"
)

// Record is one Kafka record. Time is the event time (simulated).
type Record struct {
	Topic string
	Key   []byte
	Value []byte
	Time  time.Time
}

// Topics names the topics records go to.
type Topics struct {
	// ErrorTopics holds one MediaWiki error-log topic per data centre, in
	// the order of Config.DCs. Default "k8s-mw-<dc>".
	ErrorTopics []string
	// AccessLog is the httpd access-log topic. Default
	// "mediawiki.httpd.accesslog" (no DC prefix: it lives on the logging
	// clusters).
	AccessLog string
}

// Config says what to simulate. Zero values take the defaults.
type Config struct {
	Scenario string // name, see Scenarios()
	Seed     int64
	// Start is the simulated start; zero means the scenario's default, a
	// fixed date so that output is reproducible.
	Start time.Time
	// Duration is the simulated length; 0 means the scenario's default.
	Duration time.Duration
	// Speed is simulated seconds per wall second; 0 means as fast as possible.
	Speed float64
	// Rate is the train fleet's requests per simulated second at the daily
	// mean; 0 means the scenario's default (400 for most). The real fleet
	// serves about 20k/s: this is a sample in which per-wiki shares stay real.
	Rate float64
	// TestwikiRate is testwiki's requests per second at its real level
	// (default 2). It is never scaled down with Rate, because Pretrain's
	// statistics live or die by testwiki's real, small counts.
	TestwikiRate float64
	DCs          []string // default eqiad, codfw
	Topics       Topics
	BatchSize    int // records per sink call, default 1000
}

// Sink receives records in event-time order. The batch and the slices it
// points to may be reused by Run after the call returns.
type Sink func(ctx context.Context, batch []Record) error

// GroundTruth is what a scenario did: its deploys and injected incidents.
type GroundTruth struct {
	Scenario  string     `json:"scenario"`
	Seed      int64      `json:"seed"`
	Start     time.Time  `json:"start"`
	End       time.Time  `json:"end"`
	Deploys   []Deploy   `json:"deploys"`
	Incidents []Incident `json:"incidents"`
}

// Deploy is one deploy. Pretrain's Version is the mwversion its events
// carry ("1.47.0-alpha": wmf/next logs a master version that does not change
// per deploy; only the rollout, a new replicaset hash, marks it). A train
// deploy's Version is the branch its Group moved to.
type Deploy struct {
	Scope   string    `json:"scope"` // "pretrain" | "train"
	Group   string    `json:"group,omitempty"`
	Version string    `json:"version"`
	At      time.Time `json:"at"`
}

// Incident is one injected condition. Kind is a finding kind (docs/design.md section 5), or
// "fleet-incident" for a fleet-wide problem that must blame no one.
// NormalizedMessage, ExceptionClass, Channel and File identify the injected
// error so that a scorer can match findings by fingerprint; File is relative
// to the MediaWiki root (/srv/mediawiki/php-<version>/), without the line.
type Incident struct {
	Kind              string    `json:"kind"`
	Wikis             []string  `json:"wikis"`
	Onset             time.Time `json:"onset"`
	End               time.Time `json:"end"`
	NormalizedMessage string    `json:"normalized_message,omitempty"`
	ExceptionClass    string    `json:"exception_class,omitempty"`
	Channel           string    `json:"channel,omitempty"`
	File              string    `json:"file,omitempty"`
	Deploy            *Deploy   `json:"deploy,omitempty"`
	// ErrorsPerMinute is the expected rate of injected errors over the
	// incident, summed over its wikis (at the configured Rate).
	ErrorsPerMinute float64 `json:"errors_per_minute"`
}

// Matches says whether a finding of kind on wikis, detected at detectedAt,
// is this incident: the same kind, a wiki in common, detected between a
// minute before the onset and the end plus resolveAfter (a finding may
// still be live then). The scenario suite and the replay tests score
// findings with it.
func (inc Incident) Matches(kind string, wikis []string, detectedAt time.Time, resolveAfter time.Duration) bool {
	if kind != inc.Kind || detectedAt.Before(inc.Onset.Add(-time.Minute)) {
		return false
	}
	if !inc.End.IsZero() && detectedAt.After(inc.End.Add(resolveAfter)) {
		return false
	}
	return slices.ContainsFunc(wikis, func(w string) bool { return slices.Contains(inc.Wikis, w) })
}

// Incident kinds besides the finding kinds (docs/design.md section 5).
const KindFleetIncident = "fleet-incident"

// ScenarioInfo describes a scenario.
type ScenarioInfo struct {
	Name            string
	Description     string
	DefaultDuration time.Duration
}

// Defaults.
const (
	DefaultRate         = 400.0
	DefaultTestwikiRate = 2.0
	DefaultBatchSize    = 1000
	DefaultAccessLog    = "mediawiki.httpd.accesslog"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid simulate config")

// Scenarios lists the scenarios in a fixed order.
func Scenarios() []ScenarioInfo {
	defs := scenarioDefs()
	out := make([]ScenarioInfo, len(defs))
	for i, d := range defs {
		out[i] = d.info
	}
	return out
}

// Plan returns the ground truth of cfg without generating traffic. It is
// cheap, and equal to what Run returns for the same Config.
func Plan(cfg Config, wikis *wikimap.Map) (GroundTruth, error) {
	p, err := newPlan(cfg, wikis)
	if err != nil {
		return GroundTruth{}, err
	}
	return p.truth, nil
}

// Run generates the scenario, calling sink with batches in event-time order,
// pacing to cfg.Speed. It returns when the scenario ends, the sink fails or
// ctx is done (then with ctx's error); the ground truth is returned in every
// case.
func Run(ctx context.Context, cfg Config, wikis *wikimap.Map, sink Sink) (GroundTruth, error) {
	return run(ctx, cfg, wikis, sink, realClock{})
}

func run(ctx context.Context, cfg Config, wikis *wikimap.Map, sink Sink, clk clock) (GroundTruth, error) {
	if sink == nil {
		return GroundTruth{}, fmt.Errorf("%w: sink is nil", ErrConfig)
	}
	p, err := newPlan(cfg, wikis)
	if err != nil {
		return GroundTruth{}, err
	}
	g := newGenerator(p, sink, clk)
	if err := g.run(ctx); err != nil {
		return p.truth, err
	}
	return p.truth, nil
}

// resolved is a Config with its defaults applied and validated.
type resolved struct {
	Config
	def scenarioDef
}

func resolve(cfg Config) (resolved, error) {
	def, ok := findScenario(cfg.Scenario)
	if !ok {
		names := make([]string, 0, len(scenarioDefs()))
		for _, d := range scenarioDefs() {
			names = append(names, d.info.Name)
		}
		return resolved{}, fmt.Errorf("%w: Scenario: unknown scenario %q (want one of %s)", ErrConfig, cfg.Scenario, strings.Join(names, ", "))
	}
	r := resolved{Config: cfg, def: def}
	if r.Start.IsZero() {
		r.Start = def.start
	}
	r.Start = r.Start.UTC()
	if r.Start.Year() < 1971 || r.Start.Year() > 2200 {
		return resolved{}, fmt.Errorf("%w: Start: %v is outside 1971-2200", ErrConfig, r.Start)
	}
	switch {
	case r.Duration < 0:
		return resolved{}, fmt.Errorf("%w: Duration: %v is negative", ErrConfig, r.Duration)
	case r.Duration == 0:
		r.Duration = def.info.DefaultDuration
	}
	if !finite(r.Speed) || r.Speed < 0 {
		return resolved{}, fmt.Errorf("%w: Speed: %v is not a finite number >= 0", ErrConfig, r.Speed)
	}
	if !finite(r.Rate) || r.Rate < 0 {
		return resolved{}, fmt.Errorf("%w: Rate: %v is not a finite number >= 0", ErrConfig, r.Rate)
	}
	if r.Rate == 0 {
		r.Rate = def.rate
	}
	if !finite(r.TestwikiRate) || r.TestwikiRate < 0 {
		return resolved{}, fmt.Errorf("%w: TestwikiRate: %v is not a finite number >= 0", ErrConfig, r.TestwikiRate)
	}
	if r.TestwikiRate == 0 {
		r.TestwikiRate = DefaultTestwikiRate
	}
	// Bound the work of one simulated step (100 ms): a typo such as
	// Rate=4e9 should be an error, not an out-of-memory.
	if r.Rate+r.TestwikiRate > 1e7 {
		return resolved{}, fmt.Errorf("%w: Rate: %v + TestwikiRate %v exceeds 1e7 requests/s", ErrConfig, r.Rate, r.TestwikiRate)
	}
	if len(r.DCs) == 0 {
		r.DCs = []string{"eqiad", "codfw"}
	} else {
		r.DCs = slices.Clone(r.DCs)
	}
	for i, dc := range r.DCs {
		if !validName(dc) {
			return resolved{}, fmt.Errorf("%w: DCs[%d]: %q is not a data-centre name (lower-case letters and digits)", ErrConfig, i, dc)
		}
		if slices.Index(r.DCs, dc) != i {
			return resolved{}, fmt.Errorf("%w: DCs: %q listed twice", ErrConfig, dc)
		}
	}
	if len(r.Topics.ErrorTopics) == 0 {
		r.Topics.ErrorTopics = make([]string, len(r.DCs))
		for i, dc := range r.DCs {
			r.Topics.ErrorTopics[i] = "k8s-mw-" + dc
		}
	} else {
		r.Topics.ErrorTopics = slices.Clone(r.Topics.ErrorTopics)
	}
	if len(r.Topics.ErrorTopics) != len(r.DCs) {
		return resolved{}, fmt.Errorf("%w: Topics.ErrorTopics: %d topics for %d DCs (want one per DC)", ErrConfig, len(r.Topics.ErrorTopics), len(r.DCs))
	}
	for i, t := range r.Topics.ErrorTopics {
		if t == "" {
			return resolved{}, fmt.Errorf("%w: Topics.ErrorTopics[%d]: empty topic", ErrConfig, i)
		}
	}
	if r.Topics.AccessLog == "" {
		r.Topics.AccessLog = DefaultAccessLog
	}
	switch {
	case r.BatchSize < 0:
		return resolved{}, fmt.Errorf("%w: BatchSize: %d is negative", ErrConfig, r.BatchSize)
	case r.BatchSize == 0:
		r.BatchSize = DefaultBatchSize
	}
	return r, nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// clock lets tests replace the wall clock used for pacing.
type clock interface {
	Now() time.Time
	// Sleep waits d or until ctx is done, returning ctx's error then.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
