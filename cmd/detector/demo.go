package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

type demoOptions struct {
	common       commonOptions
	listen       string
	exitWhenDone bool
	speed        float64
	seed         int64
	scenario     string
}

// runDemo is `detector demo`: an in-process Kafka broker, the simulator at
// high speed and the daemon itself (kafka-go readers → window → detect →
// sinks, the web page and API). The findings come from the daemon alone;
// the simulator's ground truth is used only to narrate the story and, with
// --exit-when-done, to grade the result.
func runDemo(ctx context.Context, o demoOptions) error {
	out := o.common.stdout
	wikis, err := wikimap.Default()
	if err != nil {
		return err
	}
	simCfg := simulate.Config{Scenario: o.scenario, Seed: o.seed, Speed: o.speed, Topics: simTopics()}
	truth, err := simulate.Plan(simCfg, wikis)
	if err != nil {
		return err
	}
	all := append(slices.Clone(simCfg.Topics.ErrorTopics), simCfg.Topics.AccessLog)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, all...))
	if err != nil {
		return fmt.Errorf("start in-process kafka: %w", err)
	}
	defer cluster.Close()
	cfg, err := demoConfig(cluster.ListenAddrs())
	if err != nil {
		return err
	}

	var fired firedFindings
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	d, err := newDaemon(dctx, demoRunOptions(o, truth, &fired), cfg, wikis, nil)
	if err != nil {
		return err
	}
	defer d.close()
	addr := d.listeners[0].Addr()
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	// Whatever way runDemo returns, the daemon has stopped (readers first)
	// before its window and the broker close (deferred earlier, so run
	// later): none is left reconnecting to a broker that is gone.
	stopDaemon := sync.OnceValue(func() error {
		stop()
		return <-done
	})
	defer stopDaemon()

	dur := truth.End.Sub(truth.Start)
	fmt.Fprintf(out, "Pretrain detector demo: scenario %q, %s of simulated Wikimedia traffic at %.0f× (about %s).\n",
		truth.Scenario, dur, o.speed, (time.Duration(float64(dur) / o.speed)).Round(time.Second))
	fmt.Fprintf(out, "In-process Kafka at %s; the page at http://%s/, findings at http://%s/api/v1/findings, metrics at http://%s/metrics\n\n",
		strings.Join(cluster.ListenAddrs(), ","), addr, addr, addr)

	story := newNarrator(out, truth)
	addDemoMarker(d.p, story, truth)
	if err := playStory(ctx, cluster.ListenAddrs(), simCfg, wikis, story); err != nil {
		return err
	}
	story.advance(truth.End)
	// Let the daemon read what was written and evaluate the last buckets.
	// On a loaded machine the readers lag at the story's end: wait for the
	// evaluation itself, not for a fixed time, but not for ever.
	deadline := time.Now().Add(demoDrain)
	target := truth.End.Add(-time.Duration(cfg.Window.Lateness) - time.Duration(cfg.Window.Bucket)).UnixNano()
	for ctx.Err() == nil && time.Now().Before(deadline) && d.p.EvaluatedTo() < target {
		time.Sleep(100 * time.Millisecond)
	}

	got := fired.list()
	fmt.Fprintf(out, "\nThe story is over: %d findings fired.\n", len(got))
	verdict := grade(truth, got, wikis)
	fmt.Fprintln(out, verdict.text)
	if o.exitWhenDone {
		if err := stopDaemon(); err != nil {
			return fmt.Errorf("pipeline: %w", err)
		}
		if !verdict.ok {
			return errors.New("the scripted incident was not found")
		}
		return nil
	}
	fmt.Fprintf(out, "Still serving http://%s/api/v1/findings; press Ctrl-C to stop.\n", addr)
	<-ctx.Done()
	return stopDaemon()
}

// demoConfig is the default configuration reading the in-process broker.
func demoConfig(brokers []string) (config.Config, error) {
	cfg := config.Default()
	cfg.OverrideBrokers(brokers)
	cfg.Kafka.MaxWait = config.Default().Kafka.MaxWait / 2
	// The story has half an hour of calm before the deploy; ask for a little
	// less so bucket alignment cannot make it fall short.
	cfg.Detect.MinPrePeriod = model.Duration(20 * time.Minute)
	// The demo adds its marker to the window itself (addDemoMarker): its
	// times are the story's, which the marker API would refuse as past.
	cfg.DeployMarkers.Topic = ""
	if err := cfg.Validate(); err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

// demoRunOptions are the daemon's options in the demo: no flags but the
// listen address; the web server's limits at their defaults; readers from
// the story's start; the fired findings collected for the grade.
func demoRunOptions(o demoOptions, truth simulate.GroundTruth, fired alert.Sink) runOptions {
	noConfigFile := ""
	return runOptions{
		common:    o.common,
		web:       &web.FlagConfig{WebListenAddresses: &[]string{o.listen}, WebConfigFile: &noConfigFile},
		start:     truth.Start.Add(-time.Minute),
		simulated: true,
		sink:      fired,
	}
}

// playStory writes the scenario into the broker at its speed, telling the
// story as simulated time passes.
func playStory(ctx context.Context, brokers []string, simCfg simulate.Config, wikis *wikimap.Map, story *narrator) error {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections() // Writer.Close leaves them open
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Transport: tr, Balancer: &kafka.Hash{},
		BatchSize: 2000, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireOne}
	defer func() { _ = w.Close() }()
	sink := simulate.KafkaSink(w)
	_, err := simulate.Run(ctx, simCfg, wikis, func(ctx context.Context, batch []simulate.Record) error {
		if len(batch) > 0 {
			story.advance(batch[len(batch)-1].Time)
		}
		return sink(ctx, batch)
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("simulate: %w", err)
	}
	return nil
}

// firedFindings collects the findings that fired (alert.Sink), in order.
type firedFindings struct {
	mu sync.Mutex
	fs []detect.Finding
}

// Notify keeps the changed findings that fire.
func (c *firedFindings) Notify(changed, _ []detect.Finding) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range changed {
		if f.State == detect.StateFiring {
			c.fs = append(c.fs, f)
		}
	}
	return nil
}

func (c *firedFindings) list() []detect.Finding {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.fs)
}

// demoDrain bounds the wait, after the story's last record is written, for
// the pipeline to read and evaluate it.
const demoDrain = 2 * time.Minute

// narrator prints the simulator's plan as simulated time passes it, so the
// viewer knows what just happened. It reads the ground truth only to tell
// the story, never to make a finding.
type narrator struct {
	out    interface{ Write([]byte) (int, error) }
	events []storyEvent
	next   int
}

type storyEvent struct {
	at   time.Time
	text string
}

func newNarrator(out interface{ Write([]byte) (int, error) }, gt simulate.GroundTruth) *narrator {
	n := &narrator{out: out}
	for _, d := range gt.Deploys {
		what := "Pretrain deploy (mw-pretrain rolls out wmf/next)"
		if d.Scope == "train" {
			what = fmt.Sprintf("train deploy of %s to %s", d.Group, d.Version)
		}
		n.events = append(n.events, storyEvent{d.At, what})
	}
	for _, inc := range gt.Incidents {
		n.events = append(n.events, storyEvent{inc.Onset, fmt.Sprintf("(scripted, hidden from the detector) %s begins on %d wikis", inc.Kind, len(inc.Wikis))})
	}
	slices.SortStableFunc(n.events, func(a, b storyEvent) int { return a.at.Compare(b.at) })
	return n
}

func (n *narrator) advance(t time.Time) {
	for n.next < len(n.events) && !n.events[n.next].at.After(t) {
		e := n.events[n.next]
		fmt.Fprintf(n.out, "-- %s  %s\n", e.at.UTC().Format("15:04:05"), e.text)
		n.next++
	}
}

type verdict struct {
	ok   bool
	text string
}

// grade compares the findings with the scripted incidents: every scripted
// incident of a finding kind must be found with the right kind, on at least
// one of its wikis, after the right deploy; and nothing may blame Pretrain
// that the script did not put there.
func grade(gt simulate.GroundTruth, got []detect.Finding, wikis *wikimap.Map) verdict {
	var lines []string
	ok := true
	scripted := map[detect.Kind]bool{}
	for _, inc := range gt.Incidents {
		k := detect.Kind(inc.Kind)
		scripted[k] = true
		if !slices.Contains(detect.Kinds, k) {
			continue
		}
		var match *detect.Finding
		for i := range got {
			f := &got[i]
			if f.Kind != k || !overlaps(f.Wikis, inc.Wikis) {
				continue
			}
			if inc.Deploy != nil && (f.Deploy == nil || f.Deploy.Scope != inc.Deploy.Scope) {
				continue
			}
			match = f
			break
		}
		if match == nil {
			ok = false
			lines = append(lines, fmt.Sprintf("MISSED: scripted %s on %d wikis from %s", k, len(inc.Wikis), inc.Onset.Format("15:04")))
			continue
		}
		sections := map[string]int{}
		for _, w := range match.Wikis {
			if id := wikis.ByNameString(w); id != 0 {
				sections[wikis.Wiki(id).Section]++
			}
		}
		lines = append(lines, fmt.Sprintf("FOUND: %s on %d wikis %v, %s after the scripted onset, following the %s deploy at %s",
			k, len(match.Wikis), sections, match.DetectedAt.Sub(inc.Onset).Round(time.Second), match.Deploy.Scope, match.Deploy.At.Format("15:04")))
	}
	for _, f := range got {
		if f.Kind.BlamesPretrain() && !scripted[f.Kind] {
			ok = false
			lines = append(lines, fmt.Sprintf("FALSE BLAME: %s %s", f.Kind, f.Summary))
		}
	}
	return verdict{ok: ok, text: strings.Join(lines, "\n")}
}

func overlaps(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
