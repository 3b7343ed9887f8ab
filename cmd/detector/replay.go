package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/replay"
	"github.com/wikimedia/pretrain-detector/report"
	verdicts "github.com/wikimedia/pretrain-detector/verdict"
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
	now := time.Now().UTC().Truncate(time.Second)
	from, err := parseWhen(o.from, now)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	to, err := parseWhen(o.to, now)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if !to.After(from) {
		return fmt.Errorf("--to (%s) must be after --from (%s)", o.to, o.from)
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
	var w io.Writer = o.common.stdout
	if o.output != "-" {
		f, err := os.Create(o.output)
		if err != nil {
			return fmt.Errorf("--output: %w", err)
		}
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("--output: %w", cerr)
			}
		}()
		w = f
	}
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
	var alerts *replayAlerts
	if len(o.alertmanagers) > 0 {
		if alerts, err = newReplayAlerts(cfg, splitList(o.alertmanagers), logger, reg); err != nil {
			return err
		}
		// Whatever happens, what was sent is resolved before exit.
		defer func() { err = errors.Join(err, alerts.finish(ctx, o.hold, err == nil)) }()
	}

	jsonl := alert.NewJSONL(w)
	rv := newReplayVerdicts(cfg, wikis)
	var sinkErr error
	progress := newReplayProgress(o.common.stderr, logger)
	r, err := replay.New(replay.Options{
		Config: cfg, Wikis: wikis, From: from, To: to, Plots: o.report != "",
		Registry: reg, Logger: logger, OnEvaluate: rv.onEvaluate,
		OnChange: func(changed []detect.Finding) {
			if err := jsonl.Notify(changed); err != nil && sinkErr == nil {
				sinkErr = err
			}
			alerts.add(changed)
		},
		OnProgress: func(p replay.Progress) {
			progress.show(p)
			alerts.resend()
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
	warnings := replayWarnings(res)
	for _, w := range warnings {
		logger.Warn("Replay: " + w)
	}
	logger.Info("Replay done", "records", res.Records, "rejected", res.Rejected, "skipped", res.Skipped, "events", res.Events,
		"events_per_second", int64(float64(res.Events)/res.Elapsed.Seconds()), "findings", len(res.Findings),
		"findings_by_kind", findingsByKind(res.Findings), "missing_topics", strings.Join(res.Missing, ","),
		"duration", res.Elapsed.Round(time.Millisecond))
	if sinkErr != nil {
		return sinkErr
	}
	data := reportData(res, rv.result(res))
	data.Warnings = warnings
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

// replayWarnings are what a reader of the result must know to trust it.
func replayWarnings(res replay.Result) []string {
	var out []string
	for _, t := range res.Missing {
		out = append(out, fmt.Sprintf("topic %s does not exist: replayed without it", t))
	}
	for _, p := range res.StartsAfterStart {
		out = append(out, fmt.Sprintf("%s partition %d: the oldest record retained is from %s, after the warm-up start %s: the range begins before the data, so findings near its start may be missing",
			p.Topic, p.Partition, p.Oldest.UTC().Format(time.RFC3339), res.Start.UTC().Format(time.RFC3339)))
	}
	return out
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

// reportData turns a replay's result and its deploys' verdicts into the
// report's input.
func reportData(res replay.Result, vs []verdicts.Result) report.Data {
	d := report.Data{
		Version: version.Version, From: res.From, To: res.To, Start: res.Start, Elapsed: res.Elapsed,
		Records: res.Records, Rejected: res.Rejected, Skipped: res.Skipped, Events: res.Events, Verdicts: vs,
	}
	for _, t := range res.Topics {
		d.Inputs = append(d.Inputs, report.Input{Cluster: t.Cluster, Topic: t.Topic, Format: t.Format, Partitions: t.Partitions,
			Records: t.Records, Bytes: t.Bytes, Rejected: t.Rejected, Skipped: t.Skipped})
	}
	for _, dp := range res.Deploys {
		d.Deploys = append(d.Deploys, report.Deploy{Scope: dp.Scope.String(), Group: dp.Group, Version: dp.Version, Source: dp.Source,
			At: time.Unix(0, dp.At).UTC()})
	}
	for _, f := range res.Findings {
		d.Findings = append(d.Findings, report.Finding{Finding: f, Plot: renderPlot(res.Plots[f.ID])})
	}
	return d
}

// replayAlerts sends replayed findings to Alertmanager. Alertmanager drops
// an alert whose endsAt has passed, so a past incident is sent as firing now
// (StartsAt stays the estimated onset; the started_at and detected_at
// annotations carry the event times), with the label replay="true" so routes
// and silences can tell it from a live one, and resolved when the replay
// ends. A nil *replayAlerts does nothing.
type replayAlerts struct {
	n      *alert.Notifier
	logger *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	firing []detect.Finding // in the order they fired
	seen   map[string]bool
}

func newReplayAlerts(cfg config.Config, urls []string, logger *slog.Logger, reg prometheus.Registerer) (*replayAlerts, error) {
	plain, sets := replayTargets(cfg, urls)
	labels := cfg.Alerting.Labels()
	labels["replay"] = "true"
	n, err := alert.NewNotifier(alert.NotifierOptions{
		URLs: plain, Sets: sets, ResendDelay: time.Duration(cfg.Alerting.ResendDelay),
		RunbookURL: cfg.Alerting.RunbookURL, DashboardURL: cfg.Alerting.DashboardURL,
		ExtraLabels: labels,
	}, logger.With("component", "notifier"), reg)
	if err != nil {
		return nil, fmt.Errorf("alertmanager: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &replayAlerts{n: n, logger: logger, cancel: cancel, done: make(chan struct{}), seen: map[string]bool{}}
	go func() {
		defer close(a.done)
		n.Run(ctx)
	}()
	return a, nil
}

// add sends the findings that fired for the first time. A finding that
// resolves during the replay stays firing here: the replayed incident is
// happening now, until the replay ends.
func (a *replayAlerts) add(changed []detect.Finding) {
	if a == nil {
		return
	}
	a.mu.Lock()
	for _, f := range changed {
		if f.State == detect.StateFiring && !a.seen[f.ID] {
			a.seen[f.ID] = true
			a.firing = append(a.firing, f)
		}
	}
	a.mu.Unlock()
	a.resend()
}

// resend hands the notifier the firing set; it re-sends each alert once per
// resend delay, so a long replay keeps the early ones alive.
func (a *replayAlerts) resend() {
	if a == nil {
		return
	}
	a.mu.Lock()
	fs := append([]detect.Finding(nil), a.firing...)
	a.mu.Unlock()
	if len(fs) > 0 {
		a.n.Update(fs)
	}
}

// finish holds the alerts firing for hold (only after a complete replay),
// resolves them all and drains the queue. Its error says whether an alert
// could not be sent.
func (a *replayAlerts) finish(ctx context.Context, hold time.Duration, complete bool) error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	fs := append([]detect.Finding(nil), a.firing...)
	a.mu.Unlock()
	if len(fs) > 0 && complete && hold > 0 {
		a.logger.Info("Holding replayed alerts firing before resolving them", "alerts", len(fs), "hold", hold)
		t := time.NewTimer(hold)
		tick := time.NewTicker(10 * time.Second)
	wait:
		for {
			select {
			case <-ctx.Done():
				break wait
			case <-t.C:
				break wait
			case <-tick.C:
				a.n.Update(fs)
			}
		}
		t.Stop()
		tick.Stop()
	}
	if len(fs) > 0 {
		now := time.Now().UTC()
		for i := range fs {
			fs[i].State, fs[i].ResolvedAt = detect.StateResolved, &now
		}
		a.n.Update(fs)
	}
	a.cancel()
	<-a.done
	dctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := a.n.Drain(dctx); err != nil {
		return fmt.Errorf("alertmanager: %w", err)
	}
	if len(fs) > 0 {
		a.logger.Info("Replayed alerts resolved", "alerts", len(fs))
	}
	return nil
}

// oneLine prints an error on one line: errors.Join separates with newlines,
// and the CLI promises a one-line error.
type oneLine struct{ err error }

func (e oneLine) Error() string { return strings.ReplaceAll(e.err.Error(), "\n", "; ") }

func (e oneLine) Unwrap() error { return e.err }
