// Package replay runs the detector over a past range of the topics and
// exits (Replay), or over records a caller already holds (Offline): the
// same stages as live (internal/stages), event time driving everything, and
// the same findings for the same records, byte for byte.
package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/ingest"
	"github.com/wikimedia/pretrain-detector/internal/stages"
	"github.com/wikimedia/pretrain-detector/render"
	"github.com/wikimedia/pretrain-detector/verdict"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// Replay runs the detector to completion over a past range of the topics,
// deterministically: the same records give the same findings, byte for byte,
// whatever the number of partitions, their interleaving or the number of
// cores.
//
// How. Every partition is read and decoded in parallel by the ingest
// Consumer, as live. Each partition's sink cuts its records into steps of one
// window bucket by Kafka timestamp (a record opens the step of its
// timestamp; a record older than the current step stays in it, so the cut is
// a function of the partition's records alone). One merge goroutine owns the
// window's only Writer and the detector. It evaluates step k only when every
// partition has passed k (a finished partition counts as past every step):
// the low watermark over partitions. Before that it applies every event of
// steps ≤ k and none of later steps: requests as they arrive (counting is
// commutative), errors sorted by (event time, fingerprint, wiki, scope,
// request, text), since what the window keeps of an error (its distinct
// requests, the catalogue's choices) could otherwise depend on the order.
// Then it evaluates with the watermark at the end of step k minus the
// allowed lateness, as live. The window runs a fixed number of shards
// (distinct-request estimates are kept per shard), not one per core.
//
// Memory. A partition that runs ahead keeps at most replayCredits decoded
// Kafka batches waiting (its sink blocks after a batch, never inside one, so
// no fetch times out); the merge releases them as the low watermark passes.
// Without that bound, the allowed lateness would not limit anything: a topic
// with a few error records can lag the access log by hours of event time.
//
// What is not covered: records whose event time lies more than a window
// length from their neighbours' (the ring drops one of the two, and which
// one depends on the order), and eviction from the capped fingerprint
// catalogue and fastcache, which follows the order of application.
type Replay struct {
	st       *stages.Stages // the window and the detector, built as live (stages.New)
	opts     Options
	consumer *ingest.Consumer
	logger   *slog.Logger

	bw, lateness int64 // bucket width and allowed lateness, ns

	ctx    context.Context // the run's context, for sinks blocked on credits
	in     chan *chunk     // every sink's chunks, to the merge
	chunks sync.Pool       // *chunk

	records atomic.Int64 // read, published by sinks after each batch
	events  atomic.Int64 // applied to the window
	pos     atomic.Int64 // end of the last evaluated step, ns
}

// Options configures a Replay.
type Options struct {
	Config config.Config
	Wikis  *wikimap.Map
	// From and To bound the range. Every partition starts at From − window
	// length (the warm-up) and stops at its first record past To, or at its
	// end. Findings detected before From are not reported.
	From, To time.Time
	// Sink gets, from the merge goroutine after every evaluation, the
	// findings detected at or after From whose state changed (first
	// firing, resolution) and every such finding so far. Its first error
	// ends nothing, but Run returns it once the replay is done.
	Sink alert.Sink
	// OnProgress is called at most once per ProgressInterval (default 1s),
	// from its own goroutine, while the replay runs.
	OnProgress       func(Progress)
	ProgressInterval time.Duration
	// Verdicts judges every deploy as the replay passes it (Result.Verdicts):
	// after every evaluation, on the merge goroutine, so that each verdict
	// reads its counts at the same event time as the daemon could, and the
	// same records give the same verdicts whatever the machine.
	Verdicts bool
	// Plots records, for each reported finding, per-minute error rates of
	// its cohort and control around its onset (Result.Plots).
	Plots bool
	// Shards is the window's shard count; it is fixed, not one per core, so
	// that results do not depend on the machine. Default 8.
	Shards   int
	ClientID string
	// Registry gets the stages' metrics; the per-topic counts of the result
	// are read back from it. Default: a new registry.
	Registry *prometheus.Registry
	Logger   *slog.Logger
}

// Result is what a replay read and found.
type Result struct {
	From, To time.Time
	Start    time.Time // From − window length: where every partition started
	Topics   []TopicStats
	Records  int64 // read
	Rejected int64 // malformed, counted and skipped
	Skipped  int64 // well-formed but not counted (canary events, non-error log levels)
	Events   int64 // applied to the window
	Elapsed  time.Duration
	// Findings are those detected at or after From, in the order they first
	// fired, each in its last state.
	Findings []detect.Finding
	// Deploys is the deploy timeline over [Start, To], without the initial
	// state of each series.
	Deploys []window.Deploy
	// Plots are by finding ID, when Options.Plots is set.
	Plots map[string]*render.Plot
	// Verdicts are every deploy's of the range as of its end, newest
	// first, when Options.Verdicts is set: the findings reported decide
	// the fails.
	Verdicts []verdict.Result
	// Missing are the configured topics that do not exist (read without).
	Missing []string
	// StartsAfterStart are the partitions whose oldest retained record is
	// newer than Start: the range, warm-up included, begins before the data.
	StartsAfterStart []ingest.PartitionStart
}

const (
	defaultReplayShards = 8
	// replayCredits is how many decoded Kafka batches a partition may have
	// waiting for the merge.
	replayCredits = 4
	// replayTextCap bounds each copied Detail field: above every limit the
	// window keeps, plus a UTF-8 sequence, so that the window cuts the same
	// text as it would from the record.
	replayTextCap = 4<<10 + 4
)

// New builds the stages. Errors name the field.
func New(opts Options) (_ *Replay, err error) {
	cfg := opts.Config
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = time.Second
	}
	if opts.Shards <= 0 {
		opts.Shards = defaultReplayShards
	}
	if opts.ClientID == "" {
		opts.ClientID = "pretrain-detector-replay"
	}
	if !opts.To.After(opts.From) {
		return nil, fmt.Errorf("replay: to (%s) must be after from (%s)", opts.To.Format(time.RFC3339), opts.From.Format(time.RFC3339))
	}
	st, err := stages.New(cfg, opts.Wikis, opts.Shards, opts.Registry)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()
	r := &Replay{
		st: st, opts: opts, logger: opts.Logger,
		bw: int64(time.Duration(cfg.Window.Bucket)), lateness: int64(time.Duration(cfg.Window.Lateness)),
	}
	sources, err := stages.KafkaSources(cfg, opts.ClientID)
	if err != nil {
		return nil, err
	}
	r.consumer, err = ingest.NewConsumer(ingest.ConsumerOptions{
		Sources: sources, Start: r.Start(), End: opts.To,
		NewSink:    r.newSink,
		NewDecoder: st.NewDecoder,
		MaxWait:    time.Duration(cfg.Kafka.MaxWait), MinBytes: cfg.Kafka.MinBytes, MaxBytes: cfg.Kafka.MaxBytes,
	}, opts.Logger.With("component", "ingest"), stages.IngestMetrics(opts.Registry, sources))
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Start is where every partition starts: From − window length.
func (r *Replay) Start() time.Time {
	return r.opts.From.Add(-time.Duration(r.st.Config.Window.Length))
}

// Close releases the window.
func (r *Replay) Close() error { return r.st.Close() }

// Run replays the range and returns what it read and found; call it once.
// A configured topic that does not exist is a warning (Result.Missing):
// the replay reads what exists. It fails at start when a broker is
// unreachable, or when no error-log topic or no request topic exists (the
// detector compares error rates: it needs both), naming them.
func (r *Replay) Run(ctx context.Context) (Result, error) {
	began := time.Now()
	res := Result{From: r.opts.From, To: r.opts.To, Start: r.Start()}
	found, err := r.consumer.Discover(ctx)
	if err != nil {
		return res, err
	}
	res.Missing = r.consumer.Missing()
	if err := needBothKinds(r.st.Config, res.Missing); err != nil {
		return res, err
	}
	for _, t := range res.Missing {
		r.logger.Warn("Topic not found; replaying without it", "topic", t)
	}
	parts := 0
	for _, ps := range found {
		parts += len(ps)
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.ctx = cctx
	r.in = make(chan *chunk, (parts+8)*replayCredits)
	var consumerErr error
	consumerDone := make(chan struct{})
	go func() {
		defer close(consumerDone)
		consumerErr = r.consumer.Run(cctx)
	}()

	stopProgress := r.progress(began)
	m := newMerge(r, parts)
	err = m.run(cctx, consumerDone)
	stopProgress()
	cancel()
	<-consumerDone
	switch {
	case ctx.Err() != nil:
		err = ctx.Err() // interrupted: whatever the merge saw follows from it
	case consumerErr != nil && !errors.Is(consumerErr, context.Canceled):
		err = consumerErr
	}
	if err != nil {
		return res, fmt.Errorf("replay: %w", err)
	}
	res.Elapsed = time.Since(began)
	res.Events = r.events.Load()
	res.StartsAfterStart = r.consumer.StartsAfterStart()
	res.Findings = m.reported()
	res.Plots = m.plots.Result()
	for _, d := range r.st.Store.Deploys(nil) {
		if !d.Initial && d.At >= res.Start.UnixNano() && d.At <= res.To.UnixNano() {
			res.Deploys = append(res.Deploys, d)
		}
	}
	res.Verdicts = m.verdicts.result(res.Deploys, res.Findings)
	res.Topics, err = topicStats(r.opts.Registry, r.st.Config)
	if err != nil {
		return res, err
	}
	for _, t := range res.Topics {
		res.Records += t.Records
		res.Rejected += t.Rejected
		res.Skipped += t.Skipped
	}
	if m.sinkErr != nil {
		return res, m.sinkErr
	}
	return res, nil
}
