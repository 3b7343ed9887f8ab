package replay

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/simulate"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

var replayTopics = []string{"k8s-mw-eqiad", "k8s-mw-codfw", "mediawiki.httpd.accesslog"}

// fillCluster starts an in-process Kafka whose topics have the given
// partition count and writes a scenario into it, records keyed (and so
// partitioned) by request id as the simulator makes them.
func fillCluster(t *testing.T, partitions int, sim simulate.Config, wikis *wikimap.Map) (*kfake.Cluster, simulate.GroundTruth) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), replayTopics...))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	tr := &kafka.Transport{}
	w := &kafka.Writer{
		Addr: kafka.TCP(c.ListenAddrs()...), Balancer: &kafka.Hash{}, Transport: tr,
		BatchSize: 2000, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireOne,
	}
	sim.Topics = simulate.Topics{ErrorTopics: replayTopics[:2], AccessLog: replayTopics[2]}
	sim.BatchSize = 2000
	gt, err := simulate.Run(context.Background(), sim, wikis, simulate.KafkaSink(w))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	tr.CloseIdleConnections()
	return c, gt
}

// replayConfig is the default configuration pointed at c, its topics in the
// given order.
func replayConfig(c *kfake.Cluster, topicOrder []string) config.Config {
	cfg := config.Default()
	cfg.OverrideBrokers(c.ListenAddrs())
	cfg.Kafka.MaxWait = model.Duration(50 * time.Millisecond)
	def := cfg.Kafka.Clusters[0].Topics
	cfg.Kafka.Clusters[0].Topics = nil
	for _, name := range topicOrder {
		for _, tp := range def {
			if tp.Name == name {
				cfg.Kafka.Clusters[0].Topics = append(cfg.Kafka.Clusters[0].Topics, tp)
			}
		}
	}
	return cfg
}

type replayRun struct {
	res      Result
	out      []detect.Finding // every change, as delivered
	progress []Progress
	// catalogue is the window's fingerprint catalogue at the end, with the
	// distinct-request estimates: what findings are made of.
	catalogue []fingerprintState
}

type fingerprintState struct {
	Info               window.FingerprintInfo
	Distinct, Total    [event.NumScopes]int64
	PerWikiFirstWikiTr int64
}

func runReplay(t *testing.T, cfg config.Config, wikis *wikimap.Map, from, to time.Time) replayRun {
	t.Helper()
	var run replayRun
	var mu sync.Mutex
	r, err := New(Options{
		Config: cfg, Wikis: wikis, From: from, To: to, Plots: true, ProgressInterval: 20 * time.Millisecond,
		Sink: alert.SinkFunc(func(changed, _ []detect.Finding) error { run.out = append(run.out, changed...); return nil }),
		OnProgress: func(p Progress) {
			mu.Lock()
			run.progress = append(run.progress, p)
			mu.Unlock()
		},
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, r.Close()) }()
	run.res, err = r.Run(context.Background())
	require.NoError(t, err)
	lo, hi := r.st.Store.Oldest(), r.st.Store.Newest()+1
	for _, fi := range r.st.Store.ActiveFingerprints(0, nil) {
		st := fingerprintState{Info: fi}
		for sc := range event.Scope(event.NumScopes) {
			st.Distinct[sc] = r.st.Store.FingerprintDistinct(fi.ID, sc, lo, hi)
			st.Total[sc] = r.st.Store.FingerprintTotal(fi.ID, sc, lo, hi)
		}
		if len(fi.Wikis) > 0 {
			st.PerWikiFirstWikiTr = r.st.Store.FingerprintCount(fi.ID, fi.Wikis[0], event.ScopeTrain, lo, hi)
		}
		run.catalogue = append(run.catalogue, st)
	}
	return run
}

// TestReplayDeterministic replays the same records from topics with
// different partition counts, with the topics configured in a different
// order and on one core instead of all: the findings must be the same,
// byte for byte.
func TestReplayDeterministic(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	sim := simulate.Config{Scenario: "spillover-s3", Seed: 3, Rate: 60, Duration: 90 * time.Minute}
	c4, gt := fillCluster(t, 4, sim, wikis)
	c3, _ := fillCluster(t, 3, sim, wikis)
	from, to := gt.Start.Add(30*time.Minute), gt.End

	a := runReplay(t, replayConfig(c4, replayTopics), wikis, from, to)
	reversed := slices.Clone(replayTopics)
	slices.Reverse(reversed)
	procs := runtime.GOMAXPROCS(1)
	b := runReplay(t, replayConfig(c3, reversed), wikis, from, to)
	runtime.GOMAXPROCS(procs)

	for _, run := range []replayRun{a, b} {
		t.Logf("%d records (%d events) in %s: %d findings", run.res.Records, run.res.Events, run.res.Elapsed.Round(time.Millisecond), len(run.res.Findings))
	}
	for _, f := range a.res.Findings {
		t.Logf("%s %s %v detected %s", f.Kind, f.State, f.Wikis[:min(3, len(f.Wikis))], f.DetectedAt.Format(time.TimeOnly))
	}
	require.NotEmpty(t, a.res.Findings, "the scenario's incident is found")
	require.Equal(t, a.out, b.out, "the same findings, in the same order")
	require.NotEmpty(t, a.catalogue)
	require.Equal(t, a.catalogue, b.catalogue, "the window's fingerprints, text, versions, wikis and distinct requests")
	require.Equal(t, a.res.Records, b.res.Records)
	require.Equal(t, a.res.Events, b.res.Events)
	require.Zero(t, a.res.Rejected)
	require.Equal(t, a.res.Deploys, b.res.Deploys)
	require.Equal(t, a.res.Plots, b.res.Plots)
	for _, f := range a.res.Findings {
		require.False(t, f.DetectedAt.Before(from), "nothing from the warm-up: %s", f.DetectedAt)
		p := a.res.Plots[f.ID]
		require.NotNil(t, p, f.ID)
		require.NotEmpty(t, p.Points)
	}
	var partitions int
	for _, ts := range a.res.Topics {
		require.Positive(t, ts.Records, ts.Topic)
		partitions += ts.Partitions
	}
	require.Equal(t, 12, partitions)

	// Progress is reported, and moves forward.
	require.NotEmpty(t, a.progress)
	for i := 1; i < len(a.progress); i++ {
		require.GreaterOrEqual(t, a.progress[i].Records, a.progress[i-1].Records)
		require.False(t, a.progress[i].Position.Before(a.progress[i-1].Position))
	}
	last := a.progress[len(a.progress)-1]
	require.LessOrEqual(t, last.Fraction, 1.0)
	require.Positive(t, last.Records)

	// Interrupted, it stops promptly and leaves nothing running (goleak).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := New(Options{Config: replayConfig(c4, replayTopics), Wikis: wikis, From: from, To: to,
		ProgressInterval: 10 * time.Millisecond, OnProgress: func(Progress) { cancel() }})
	require.NoError(t, err)
	defer func() { require.NoError(t, r.Close()) }()
	start := time.Now()
	_, err = r.Run(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Less(t, time.Since(start), a.res.Elapsed+5*time.Second)
}

// TestReplayWithoutATopic: a configured topic that does not exist is a
// warning. The same records replayed from a cluster without k8s-mw-codfw
// and from one where it exists, empty, give the same findings, byte for
// byte; the result names what was missing. With no error-log topic at all
// the replay fails, in one line naming them.
func TestReplayWithoutATopic(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	sim := simulate.Config{Scenario: "spillover-s3", Seed: 3, Rate: 60, Duration: 90 * time.Minute,
		Topics: simulate.Topics{ErrorTopics: []string{"k8s-mw-eqiad", "k8s-mw-eqiad"}, AccessLog: "mediawiki.httpd.accesslog"}}
	withEmpty, gt := fillClusterTopics(t, 2, sim, wikis, replayTopics)
	without, _ := fillClusterTopics(t, 2, sim, wikis, []string{"k8s-mw-eqiad", "mediawiki.httpd.accesslog"})
	from, to := gt.Start.Add(30*time.Minute), gt.End

	a := runReplay(t, replayConfig(withEmpty, replayTopics), wikis, from, to)
	b := runReplay(t, replayConfig(without, replayTopics), wikis, from, to)
	require.NotEmpty(t, a.res.Findings, "the scenario's incident is found")
	require.Equal(t, a.out, b.out, "the same findings, byte for byte")
	require.Equal(t, a.catalogue, b.catalogue)
	require.Equal(t, a.res.Records, b.res.Records)
	require.Empty(t, a.res.Missing)
	require.Equal(t, []string{"k8s-mw-codfw"}, b.res.Missing)
	require.NotEmpty(t, b.progress)
	require.Equal(t, []string{"k8s-mw-codfw"}, b.progress[len(b.progress)-1].Missing, "progress names it")
	last := a.progress[len(a.progress)-1]
	require.Positive(t, last.OffsetsTotal, "progress in offsets")
	require.LessOrEqual(t, last.OffsetsRead, last.OffsetsTotal)

	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "mediawiki.httpd.accesslog"))
	require.NoError(t, err)
	defer c.Close()
	r, err := New(Options{Config: replayConfig(c, replayTopics), Wikis: wikis, From: from, To: to})
	require.NoError(t, err)
	defer func() { require.NoError(t, r.Close()) }()
	_, err = r.Run(context.Background())
	require.Error(t, err)
	require.Contains(t, err.Error(), "no error-log topic exists (k8s-mw-eqiad on kafka cluster logging-eqiad, k8s-mw-codfw on kafka cluster logging-eqiad)")
	require.NotContains(t, err.Error(), "request topic")
	require.NotContains(t, err.Error(), "\n")
}

// fillClusterTopics is fillCluster with the topics the cluster has (seeded
// empty) and the simulator's own topic list.
func fillClusterTopics(t *testing.T, partitions int, sim simulate.Config, wikis *wikimap.Map, seed []string) (*kfake.Cluster, simulate.GroundTruth) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), seed...))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	tr := &kafka.Transport{}
	w := &kafka.Writer{
		Addr: kafka.TCP(c.ListenAddrs()...), Balancer: &kafka.Hash{}, Transport: tr,
		BatchSize: 2000, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireOne,
	}
	sim.BatchSize = 2000
	gt, err := simulate.Run(context.Background(), sim, wikis, simulate.KafkaSink(w))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	tr.CloseIdleConnections()
	return c, gt
}
