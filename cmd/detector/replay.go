package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/replay"
	"github.com/wikimedia/pretrain-detector/report"
)

type replayOptions struct {
	common        commonOptions
	brokers       []string
	from, to      string
	output        string
	report        string
	summary       string
	alertmanagers []string
	hold          time.Duration
	progress      time.Duration
}

func (o *replayOptions) addFlags(cmd *kingpin.CmdClause) {
	cmd.Flag("kafka.brokers", "Kafka brokers (host:port, comma-separated or repeated); overrides every cluster's brokers in the config.").StringsVar(&o.brokers)
	cmd.Flag("from", "Start of the range: RFC 3339, or relative to now (-6h, now-90m, now). Partitions start one window length earlier, to warm up; findings detected before it are not reported.").Required().StringVar(&o.from)
	cmd.Flag("to", "End of the range: RFC 3339, or relative to now (now, -1h).").Required().StringVar(&o.to)
	cmd.Flag("output", "Findings JSONL output file (- for stdout).").Default("-").StringVar(&o.output)
	cmd.Flag("report", "Write a self-contained HTML report to this file.").StringVar(&o.report)
	cmd.Flag("summary", "Write the report's JSON summary (findings per kind, every deploy's verdict) to this file.").StringVar(&o.summary)
	cmd.Flag("alertmanager.url", "Send the replayed findings to this Alertmanager (repeatable), firing now with the label replay=\"true\", resolved when the replay ends.").StringsVar(&o.alertmanagers)
	cmd.Flag("alertmanager.hold", "How long replayed alerts stay firing after the replay before they are resolved, so that routes' group_wait passes and receivers get them.").Default("1m").DurationVar(&o.hold)
	cmd.Flag("progress.interval", "How often progress is shown on stderr (and replayed alerts are resent).").Default("1s").DurationVar(&o.progress)
}

// runReplay is `detector replay`: the detector over [from, to] of the
// topics, event time driving everything (replay.Replay), findings as JSONL,
// optionally an HTML report and alerts. Partitions start at from − window
// length; findings that fire before from (the warm-up) are not reported.
func runReplay(ctx context.Context, o replayOptions) error {
	if err := replayRange(ctx, o); err != nil {
		return oneLine{err}
	}
	return nil
}

// replayRange does runReplay's work; runReplay makes its error one line.
func replayRange(ctx context.Context, o replayOptions) (err error) {
	logger := o.common.logger
	from, to, err := o.timeRange(time.Now().UTC().Truncate(time.Second))
	if err != nil {
		return err
	}
	cfg, err := loadConfig(o.common)
	if err != nil {
		return err
	}
	wikis, err := loadWikis(cfg)
	if err != nil {
		return err
	}

	// Open the outputs first, so that a bad path fails before the replay.
	w, closeOutput, err := openOutput(o.output, o.common.stdout)
	if err != nil {
		return err
	}
	defer closeOutput(&err)
	reportFile, closeReport, err := createArtefact(o.report, "--report")
	if err != nil {
		return err
	}
	defer closeReport(&err)
	summaryFile, closeSummary, err := createArtefact(o.summary, "--summary")
	if err != nil {
		return err
	}
	defer closeSummary(&err)

	reg := newRegistry()
	sinks := alert.Sinks{alert.NewJSONL(w)}
	var alerts *alert.ReplayNotifier
	if len(o.alertmanagers) > 0 {
		if alerts, err = newReplayNotifier(cfg, splitList(o.alertmanagers), logger, reg); err != nil {
			return err
		}
		sinks = append(sinks, alerts)
		// Whatever happens, what was sent is resolved before exit.
		defer func() { err = errors.Join(err, alerts.Finish(ctx, o.hold, shutdownTimeout, err == nil)) }()
	}

	progress := newReplayProgress(o.common.stderr, logger)
	r, err := replay.New(replay.Options{
		Config: cfg, Wikis: wikis, From: from, To: to, Plots: o.report != "", Verdicts: true,
		Registry: reg, Logger: logger, Sink: sinks, ProgressInterval: o.progress,
		OnProgress: func(p replay.Progress) {
			progress.show(p)
			alerts.Resend()
		},
	})
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	logger.Info("Replaying", "from", from.Format(time.RFC3339), "to", to.Format(time.RFC3339),
		"warm_up_from", r.Start().Format(time.RFC3339), "topics", len(cfg.Topics()))
	res, err := r.Run(ctx)
	progress.end()
	if err != nil {
		return err
	}
	data := res.Report()
	for _, w := range data.Warnings {
		logger.Warn("Replay: " + w)
	}
	logger.Info("Replay done", "records", res.Records, "rejected", res.Rejected, "skipped", res.Skipped, "events", res.Events,
		"events_per_second", int64(float64(res.Events)/res.Elapsed.Seconds()), "findings", len(res.Findings),
		"findings_by_kind", findingsByKind(res.Findings), "missing_topics", strings.Join(res.Missing, ","),
		"duration", res.Elapsed.Round(time.Millisecond))
	if reportFile != nil {
		if err := report.Write(reportFile, data); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	if summaryFile != nil {
		if err := report.WriteSummary(summaryFile, data); err != nil {
			return fmt.Errorf("--summary: %w", err)
		}
	}
	return nil
}

// timeRange is --from and --to, relative to now.
func (o replayOptions) timeRange(now time.Time) (from, to time.Time, err error) {
	if from, err = parseWhen(o.from, now); err != nil {
		return from, to, fmt.Errorf("--from: %w", err)
	}
	if to, err = parseWhen(o.to, now); err != nil {
		return from, to, fmt.Errorf("--to: %w", err)
	}
	if !to.After(from) {
		return from, to, fmt.Errorf("--to (%s) must be after --from (%s)", o.to, o.from)
	}
	return from, to, nil
}

// newReplayNotifier sends the replay's findings to the Alertmanagers of
// --alertmanager.url, each with the client configuration of the
// alerting.alertmanagers[] set that lists it (replayTargets).
func newReplayNotifier(cfg config.Config, urls []string, logger *slog.Logger, reg prometheus.Registerer) (*alert.ReplayNotifier, error) {
	plain, sets := replayTargets(cfg, urls)
	n, err := alert.NewReplayNotifier(notifierOptions(cfg, plain, sets), logger.With("component", "notifier"), reg)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	return n, nil
}

// openOutput is --output: stdout for "-", else a new file; finish closes
// it, reporting a close error into *errp. The findings written stay, even
// when the replay fails later: they are what it found so far.
func openOutput(path string, stdout io.Writer) (w io.Writer, finish func(errp *error), err error) {
	if path == "-" {
		return stdout, func(*error) {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--output: %w", err)
	}
	return f, func(errp *error) {
		if cerr := f.Close(); cerr != nil && *errp == nil {
			*errp = fmt.Errorf("--output: %w", cerr)
		}
	}, nil
}

// createArtefact creates the file of an output flag (none when path is
// empty). finish closes it, reporting a close error into *errp, and
// removes it when *errp is set: no half-written report or summary stays.
func createArtefact(path, flag string) (f *os.File, finish func(errp *error), err error) {
	if path == "" {
		return nil, func(*error) {}, nil
	}
	if f, err = os.Create(path); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", flag, err)
	}
	return f, func(errp *error) {
		if cerr := f.Close(); cerr != nil && *errp == nil {
			*errp = fmt.Errorf("%s: %w", flag, cerr)
		}
		if *errp != nil {
			_ = os.Remove(path)
		}
	}, nil
}

// parseWhen reads a time given as RFC 3339 or relative to now: "now",
// "-6h" (now minus 6 hours), "now-90m", "now+1h"; durations as Prometheus
// writes them (s, m, h, d, w).
func parseWhen(s string, now time.Time) (time.Time, error) {
	rel, ok := strings.CutPrefix(s, "now")
	if !ok && !strings.HasPrefix(s, "-") {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("want RFC 3339 or a time relative to now (-6h, now-90m, now): %w", err)
		}
		return t, nil
	}
	if rel == "" {
		return now, nil
	}
	sign := time.Duration(1)
	switch rel[0] {
	case '-':
		sign = -1
	case '+':
	default:
		return time.Time{}, fmt.Errorf("%q: want now, now-DURATION or -DURATION", s)
	}
	d, err := model.ParseDuration(rel[1:])
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: %w", s, err)
	}
	return now.Add(sign * time.Duration(d)), nil
}

// findingsByKind is "kind=n" for every kind, in the order of detect.Kinds.
func findingsByKind(fs []detect.Finding) string {
	n := map[detect.Kind]int{}
	for _, f := range fs {
		n[f.Kind]++
	}
	parts := make([]string, 0, len(detect.Kinds))
	for _, k := range detect.Kinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n[k]))
	}
	return strings.Join(parts, ",")
}

// replayProgress shows a replay's progress on stderr: a bar redrawn in
// place when stderr is a terminal, else a log line per tick. The fraction
// and the ETA count records (offsets), not event time: a replay spends its
// time where the records are.
type replayProgress struct {
	w           io.Writer
	logger      *slog.Logger
	tty         bool
	drawn       bool
	lastRecords int64
	lastTick    time.Duration
}

func newReplayProgress(w io.Writer, logger *slog.Logger) *replayProgress {
	p := &replayProgress{w: w, logger: logger}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (r *replayProgress) show(p replay.Progress) {
	rate := float64(p.Records-r.lastRecords) / (p.Elapsed - r.lastTick).Seconds()
	r.lastRecords, r.lastTick = p.Records, p.Elapsed
	done := 0.0
	if p.OffsetsTotal > 0 {
		done = min(1, float64(p.OffsetsRead)/float64(p.OffsetsTotal))
	}
	eta := "unknown"
	if p.ETA > 0 {
		eta = p.ETA.Round(time.Second).String()
	}
	position := "warming up"
	if !p.Position.IsZero() {
		position = p.Position.Format(time.RFC3339)
	}
	if !r.tty {
		r.logger.Info("Replay progress", "done", fmt.Sprintf("%.1f%%", 100*done), "records", p.Records,
			"records_per_second", int64(rate), "eta", eta, "position", position, "missing_topics", strings.Join(p.Missing, ","))
		return
	}
	const width = 30
	filled := int(done * width)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", width-filled)
	fmt.Fprintf(r.w, "\r[%s] %5.1f%%  %d records  %d/s  ETA %s  at %s\x1b[K", bar, 100*done, p.Records, int64(rate), eta, position)
	r.drawn = true
}

// end moves past the bar, so that what follows starts on its own line.
func (r *replayProgress) end() {
	if r.drawn {
		fmt.Fprintln(r.w)
	}
}

// oneLine prints an error on one line: errors.Join separates with newlines,
// and the CLI promises a one-line error.
type oneLine struct{ err error }

func (e oneLine) Error() string { return strings.ReplaceAll(e.err.Error(), "\n", "; ") }

func (e oneLine) Unwrap() error { return e.err }
