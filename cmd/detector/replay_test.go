package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/wikimedia/pretrain-detector/alert/amtest"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/replay"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// The default configuration's topics, which `detector replay` reads.
var replayTopicNames = []string{"k8s-mw-eqiad", "k8s-mw-codfw", "mediawiki.httpd.accesslog"}

// replayRate is the simulated train fleet's requests/s in these tests: a
// fifth of the simulator's default, so every scenario loads and replays
// in seconds. testwiki keeps its real rate whatever this is.
const replayRate = 80

// replayFill starts an in-process Kafka with the default topics and writes
// a scenario into it, keyed by request id and timestamped with event time.
func replayFill(t *testing.T, sim simulate.Config, wikis *wikimap.Map) (*kfake.Cluster, simulate.GroundTruth) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, replayTopicNames...))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	tr := &kafka.Transport{}
	w := &kafka.Writer{
		Addr: kafka.TCP(c.ListenAddrs()...), Balancer: &kafka.Hash{}, Transport: tr,
		BatchSize: 5000, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireOne,
	}
	sim.Seed, sim.BatchSize = 1, 5000
	sim.Topics = simulate.Topics{ErrorTopics: replayTopicNames[:2], AccessLog: replayTopicNames[2]}
	gt, err := simulate.Run(context.Background(), sim, wikis, simulate.KafkaSink(w))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	tr.CloseIdleConnections() // Writer.Close leaves its Transport's connections open
	return c, gt
}

// reversedConfig writes a config file reading c's topics in the reverse
// order of the default configuration.
func reversedConfig(t *testing.T, c *kfake.Cluster) string {
	t.Helper()
	def := config.Default().Kafka.Clusters[0]
	var b strings.Builder
	fmt.Fprintf(&b, "kafka:\n  clusters:\n  - name: %s\n    brokers: [%q]\n    topics:\n", def.Name, c.ListenAddrs()[0])
	for i := len(def.Topics) - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "    - {name: %s, format: %s}\n", def.Topics[i].Name, def.Topics[i].Format)
	}
	p := filepath.Join(t.TempDir(), "reversed.yml")
	require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o600))
	return p
}

func readFindings(t *testing.T, b []byte) []detect.Finding {
	t.Helper()
	var out []detect.Finding
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		var f detect.Finding
		require.NoError(t, json.Unmarshal(s.Bytes(), &f), s.Text())
		out = append(out, f)
	}
	require.NoError(t, s.Err())
	return out
}

// replayScore is one scenario's findings against its ground truth, scored
// as the scenario suite of package detect does.
type replayScore struct {
	scenario                  string
	incidents, found          int
	findings, correct, blames int
	notes                     []string
	elapsed                   string
}

// scoreReplay matches findings to incidents: same kind, a wiki in common,
// detected between a minute before the onset and the end of the incident
// plus the resolve time.
func scoreReplay(gt simulate.GroundTruth, fired []detect.Finding) replayScore {
	r := replayScore{scenario: gt.Scenario}
	resolveAfter := time.Duration(config.Default().Detect.ResolveAfter)
	matches := func(f detect.Finding, inc simulate.Incident) bool {
		return inc.Matches(string(f.Kind), f.Wikis, f.DetectedAt, resolveAfter)
	}
	for _, inc := range gt.Incidents {
		if !slices.Contains(detect.Kinds, detect.Kind(inc.Kind)) {
			continue // a fleet incident must blame no one: only false blames count
		}
		r.incidents++
		if slices.ContainsFunc(fired, func(f detect.Finding) bool { return matches(f, inc) }) {
			r.found++
		} else {
			r.notes = append(r.notes, fmt.Sprintf("missed %s on %v from %s", inc.Kind, inc.Wikis[:min(3, len(inc.Wikis))], inc.Onset.Format("15:04")))
		}
	}
	for _, f := range fired {
		r.findings++
		if slices.ContainsFunc(gt.Incidents, func(inc simulate.Incident) bool { return matches(f, inc) }) {
			r.correct++
			continue
		}
		if f.Kind.BlamesPretrain() {
			r.blames++
		}
		r.notes = append(r.notes, fmt.Sprintf("unexpected %s at %s: %s", f.Kind, f.DetectedAt.Format("15:04"), f.Summary))
	}
	return r
}

// TestReplayScenarios replays every simulator scenario from an in-process
// broker with `detector replay`, twice: once on all cores, once on one core
// with the topics configured in the opposite order. The two outputs must be
// byte-identical, and the findings are scored against the scenario's ground
// truth. -short replays three scenarios.
func TestReplayScenarios(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	var scenarios []simulate.Config
	for _, s := range simulate.Scenarios() {
		sim := simulate.Config{Scenario: s.Name, Rate: replayRate}
		if s.Name == "quiet-week" || s.Name == "placebo-week" {
			if testing.Short() {
				continue
			}
			sim = simulate.Config{Scenario: s.Name, Duration: 12 * time.Hour} // its own rate (20); half a day of it
		}
		if testing.Short() && !slices.Contains([]string{"pretrain-regression", "spillover-jobrunner", "fleet-db-incident"}, s.Name) {
			continue
		}
		scenarios = append(scenarios, sim)
	}
	var scores []replayScore
	for _, sim := range scenarios {
		t.Run(sim.Scenario, func(t *testing.T) {
			c, gt := replayFill(t, sim, wikis)
			dir := t.TempDir()
			a, b, page := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl"), filepath.Join(dir, "report.html")
			sumA, sumB := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
			args := []string{"replay", "--from=" + gt.Start.Format(time.RFC3339), "--to=" + gt.End.Format(time.RFC3339), "--log.level=warn"}

			start := time.Now()
			code, _, stderr := runMain(t, append(args, "--kafka.brokers="+c.ListenAddrs()[0], "--output="+a, "--report="+page, "--summary="+sumA)...)
			require.Equal(t, 0, code, stderr)
			elapsed := time.Since(start)

			procs := runtime.GOMAXPROCS(1)
			code, _, stderr = runMain(t, append([]string{"--config.file=" + reversedConfig(t, c)}, append(args, "--output="+b, "--summary="+sumB)...)...)
			runtime.GOMAXPROCS(procs)
			require.Equal(t, 0, code, stderr)

			outA, err := os.ReadFile(a)
			require.NoError(t, err)
			outB, err := os.ReadFile(b)
			require.NoError(t, err)
			require.Equal(t, string(outA), string(outB), "the same records give the same findings")

			fired := readFindings(t, outA)
			s := scoreReplay(gt, fired)
			s.elapsed = elapsed.Round(100 * time.Millisecond).String()
			scores = append(scores, s)

			html, err := os.ReadFile(page)
			require.NoError(t, err)
			require.Equal(t, 1+len(fired), strings.Count(string(html), "<svg "), "the timeline and a plot per finding")
			for _, f := range fired {
				require.Contains(t, string(html), f.ID)
			}

			// The deploys' verdicts: the same records give the same ones,
			// and every deploy a reported finding blames failed.
			jsA, err := os.ReadFile(sumA)
			require.NoError(t, err)
			jsB, err := os.ReadFile(sumB)
			require.NoError(t, err)
			require.JSONEq(t, string(jsA), string(jsB), "the same records give the same verdicts")
			var sum struct {
				Deploys []struct {
					Scope, Group, Version, Verdict string
					Findings                       []string
				} `json:"deploys"`
			}
			require.NoError(t, json.Unmarshal(jsA, &sum))
			for _, f := range fired {
				if f.Deploy == nil || !(f.Kind.BlamesPretrain() || f.Kind == detect.KindTrainRegression) {
					continue
				}
				i := slices.IndexFunc(sum.Deploys, func(d struct {
					Scope, Group, Version, Verdict string
					Findings                       []string
				}) bool {
					return d.Scope == f.Deploy.Scope && d.Version == f.Deploy.Version && d.Group == f.Deploy.Group
				})
				require.GreaterOrEqual(t, i, 0, "%s follows %s %s, which the summary lists", f.Kind, f.Deploy.Scope, f.Deploy.Version)
				require.Equal(t, "fail", sum.Deploys[i].Verdict)
				require.Contains(t, sum.Deploys[i].Findings, f.ID)
				require.Contains(t, string(html), `<span class="verdict v-fail">fail</span>`)
			}
		})
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tincidents\tfound\tfindings\tcorrect\tfalse blames of Pretrain\treplay")
	var inc, found, findings, correct, blames int
	for _, s := range scores {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", s.scenario, s.incidents, s.found, s.findings, s.correct, s.blames, s.elapsed)
		inc, found, findings, correct, blames = inc+s.incidents, found+s.found, findings+s.findings, correct+s.correct, blames+s.blames
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t\n", inc, found, findings, correct, blames)
	require.NoError(t, tw.Flush())
	t.Logf("replays at %d requests/s against ground truth:\n%s", replayRate, b.String())
	for _, s := range scores {
		for _, n := range s.notes {
			t.Logf("%s: %s", s.scenario, n)
		}
	}
	require.Zero(t, blames, "false blames of Pretrain")
	require.GreaterOrEqual(t, float64(found), 0.75*float64(inc), "recall")
	require.GreaterOrEqual(t, float64(correct), 0.75*float64(findings), "precision")
	for _, s := range scores {
		switch s.scenario {
		case "pretrain-regression", "pretrain-regression-slow", "spillover-s3", "spillover-jobrunner", "pretrain-leak", "demo":
			require.Equal(t, s.incidents, s.found, "%s: every Pretrain incident is found", s.scenario)
		}
	}
}

func TestReplayFailsClearly(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, replayTopicNames[0], replayTopicNames[2]))
	require.NoError(t, err)
	defer c.Close()
	onlyRequests, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, replayTopicNames[2]))
	require.NoError(t, err)
	defer onlyRequests.Close()
	dir := t.TempDir()
	rng := []string{"--from=2026-11-24T12:00:00Z", "--to=2026-11-24T13:00:00Z"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unreachable broker", append([]string{"--kafka.brokers=127.0.0.1:1"}, rng...), []string{"no broker reachable", "127.0.0.1:1"}},
		{"no error-log topic", append([]string{"--kafka.brokers=" + onlyRequests.ListenAddrs()[0]}, rng...),
			[]string{"no error-log topic exists (k8s-mw-eqiad on kafka cluster logging-eqiad, k8s-mw-codfw on kafka cluster logging-eqiad)"}},
		{"bad relative time", []string{"--kafka.brokers=" + c.ListenAddrs()[0], "--from=-6x", "--to=now"}, []string{"--from"}},
		{"bad from", []string{"--kafka.brokers=" + c.ListenAddrs()[0], "--from=yesterday", "--to=2026-11-24T13:00:00Z"}, []string{"--from"}},
		{"empty range", []string{"--kafka.brokers=" + c.ListenAddrs()[0], "--from=2026-11-24T13:00:00Z", "--to=2026-11-24T13:00:00Z"}, []string{"must be after"}},
		{"bad report path", append([]string{"--kafka.brokers=" + c.ListenAddrs()[0], "--report=" + filepath.Join(dir, "no", "such", "dir.html")}, rng...), []string{"--report"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, _, stderr := runMain(t, append([]string{"replay", "--log.level=error", "--output=" + filepath.Join(dir, "out.jsonl")}, tc.args...)...)
			require.Equal(t, 1, code)
			for _, w := range tc.want {
				require.Contains(t, stderr, w)
			}
			require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
			require.Less(t, time.Since(start), 15*time.Second)
		})
	}
}

// TestReplayWithoutATopicWarns: a configured topic that does not exist is a
// warning, in the log, the closing summary and the report, not an error;
// the range may be given relative to now.
func TestReplayWithoutATopicWarns(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, replayTopicNames[0], replayTopicNames[2]))
	require.NoError(t, err)
	defer c.Close()
	page := filepath.Join(t.TempDir(), "report.html")
	code, stdout, stderr := runMain(t, "replay", "--kafka.brokers="+c.ListenAddrs()[0], "--from=-1h", "--to=now", "--report="+page)
	require.Equal(t, 0, code, stderr)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "topic k8s-mw-codfw does not exist: replayed without it")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	require.Contains(t, lines[len(lines)-1], "missing_topics=k8s-mw-codfw")
	html, err := os.ReadFile(page)
	require.NoError(t, err)
	require.Contains(t, string(html), "topic k8s-mw-codfw does not exist")
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"now":                  now,
		"-6h":                  now.Add(-6 * time.Hour),
		"now-90m":              now.Add(-90 * time.Minute),
		"now+1h":               now.Add(time.Hour),
		"-1d":                  now.Add(-24 * time.Hour),
		"2026-11-24T10:00:00Z": time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		require.NoError(t, err, in)
		require.True(t, want.Equal(got), "%s: %s", in, got)
	}
	for _, bad := range []string{"yesterday", "now-", "now*2h", "-6x"} {
		_, err := parseWhen(bad, now)
		require.Error(t, err, bad)
	}
}

// TestReplayProgressAndSummary: progress lines while it runs, and a final
// line with records read, rejected, events/s and the findings per kind; a
// warning when the range starts before the oldest record retained.
func TestReplayProgressAndSummary(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	c, gt := replayFill(t, simulate.Config{Scenario: "quiet", Rate: 200, Duration: 40 * time.Minute}, wikis)
	// A short interval: the replay of these records can take under the
	// default second, and then shows no progress at all.
	code, stdout, stderr := runMain(t, "replay", "--kafka.brokers="+c.ListenAddrs()[0], "--progress.interval=20ms",
		"--from="+gt.Start.Add(10*time.Minute).Format(time.RFC3339), "--to="+gt.End.Format(time.RFC3339))
	require.Equal(t, 0, code, stderr)
	require.Empty(t, stdout, "a quiet scenario has no finding")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	last := lines[len(lines)-1]
	for _, k := range []string{`msg="Replay done"`, "records=", "rejected=0", "events_per_second=",
		`findings_by_kind="pretrain-regression=0,shared-data-spillover=0,pretrain-leak=0,train-regression=0,wiki-anomaly=0"`} {
		require.Contains(t, last, k)
	}
	require.Contains(t, stderr, `msg=Replaying`)
	require.Contains(t, stderr, `msg="Replay progress"`)
	require.Contains(t, stderr, "eta=")
	require.Contains(t, stderr, "the range begins before the data", "the warm-up starts 2 h before the first record")
}

// TestReplayAlertsAlertmanager: a replayed finding reaches a real
// Alertmanager's webhook receiver firing, labelled replay="true" with its
// event times in annotations, and is resolved when the replay ends.
func TestReplayAlertsAlertmanager(t *testing.T) {
	hook := amtest.NewWebhook(t)
	am := amtest.Start(t, amtest.Options{WebhookURL: hook.URL})
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	c, gt := replayFill(t, simulate.Config{Scenario: "pretrain-leak", Rate: replayRate, Duration: 80 * time.Minute}, wikis)
	out := filepath.Join(t.TempDir(), "findings.jsonl")
	code, _, stderr := runMain(t, "replay", "--kafka.brokers="+c.ListenAddrs()[0], "--log.level=warn",
		"--from="+gt.Start.Format(time.RFC3339), "--to="+gt.End.Format(time.RFC3339), "--output="+out,
		"--alertmanager.url="+am.URL, "--alertmanager.hold=3s")
	require.Equal(t, 0, code, stderr)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	fired := readFindings(t, b)
	require.NotEmpty(t, fired)
	f := fired[0]

	isIt := func(status string) func(amtest.Alert) bool {
		return func(a amtest.Alert) bool {
			return a.Status == status && a.Labels["finding_id"] == f.ID
		}
	}
	firing := hook.WaitFor(t, 30*time.Second, isIt("firing"))
	require.Equal(t, "true", firing.Labels["replay"])
	require.Equal(t, string(f.Kind), firing.Labels["kind"])
	require.Equal(t, f.DetectedAt.UTC().Format(time.RFC3339), firing.Annotations["detected_at"])
	require.Equal(t, f.StartedAt.UTC().Format(time.RFC3339), firing.Annotations["started_at"])
	resolved := hook.WaitFor(t, 30*time.Second, isIt("resolved"))
	require.WithinDuration(t, time.Now(), resolved.EndsAt, time.Minute, "resolved now, when the replay ended, not at event time")
	require.Len(t, slices.DeleteFunc(hook.Alerts(), func(a amtest.Alert) bool { return a.Labels["replay"] == "true" }), 0, "every alert is a replay's")
}

// TestReplayProgressBar: on a terminal the progress is one bar redrawn in
// place, its fraction and ETA from offsets; elsewhere a log line per tick.
func TestReplayProgressBar(t *testing.T) {
	var b bytes.Buffer
	p := &replayProgress{w: &b, tty: true}
	p.show(replay.Progress{Records: 5000, Elapsed: 2 * time.Second, OffsetsRead: 5000, OffsetsTotal: 20000, ETA: 6 * time.Second})
	p.end()
	out := b.String()
	require.True(t, strings.HasPrefix(out, "\r[======="), out)
	require.Contains(t, out, " 25.0%")
	require.Contains(t, out, "5000 records  2500/s  ETA 6s  at warming up")
	require.True(t, strings.HasSuffix(out, "\n"), "the next line starts on its own")
	require.False(t, newReplayProgress(&b, nil).tty, "a buffer is no terminal")
}
