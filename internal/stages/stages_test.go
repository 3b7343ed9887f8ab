package stages_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/pipeline"
	"github.com/wikimedia/pretrain-detector/replay"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

// TestStagesReleasedOnFailure: whichever runner is built, a failure once
// the window exists releases it, its shard goroutines included, before the
// constructor returns: whether the stages fail themselves (a cohort wiki
// the wiki map does not have: the detector cannot be built) or what the
// runner builds on them fails (a topic of an unknown format).
func TestStagesReleasedOnFailure(t *testing.T) {
	wikis, err := wikimap.Default()
	require.NoError(t, err)
	unknownWiki := func() config.Config {
		cfg := config.Default()
		cfg.Pretrain.Cohort = append(cfg.Pretrain.Cohort, "nosuchwiki")
		return cfg
	}
	badFormat := func() config.Config {
		cfg := config.Default()
		cfg.Kafka.Clusters[0].Topics[0].Format = "no-such-format"
		return cfg
	}
	from := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name  string
		build func(config.Config) error
	}{
		{"New", func(cfg config.Config) error {
			p, err := pipeline.New(pipeline.Options{Config: cfg, Wikis: wikis})
			require.Nil(t, p)
			return err
		}},
		{"NewReplay", func(cfg config.Config) error {
			r, err := replay.New(replay.Options{Config: cfg, Wikis: wikis, From: from, To: from.Add(time.Hour)})
			require.Nil(t, r)
			return err
		}},
		{"NewOffline", func(cfg config.Config) error {
			o, err := replay.NewOffline(cfg, wikis, map[string]decode.Format{"t": decode.Format(cfg.Kafka.Clusters[0].Topics[0].Format)})
			require.Nil(t, o)
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			err := c.build(unknownWiki())
			require.ErrorContains(t, err, `pretrain.cohort: unknown wiki "nosuchwiki"`)
			err = c.build(badFormat())
			require.ErrorContains(t, err, "no-such-format")
		})
	}
}
