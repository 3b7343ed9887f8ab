package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/wikimedia/pretrain-detector/alert"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/pipeline"
)

type replayOptions struct {
	common        commonOptions
	brokers       []string
	from, to      string
	output        string
	alertmanagers []string
}

// runReplay is `detector replay`: the same pipeline as `run` over
// [from − window length, to], event time driving everything; findings that
// fire before --from (the warm-up) are not reported.
func runReplay(ctx context.Context, o replayOptions) error {
	from, err := time.Parse(time.RFC3339, o.from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	to, err := time.Parse(time.RFC3339, o.to)
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
	var w io.Writer = o.common.stdout
	if o.output != "-" {
		f, err := os.Create(o.output)
		if err != nil {
			return fmt.Errorf("--output: %w", err)
		}
		defer func() { _ = f.Close() }()
		w = f
	}
	jsonl := alert.NewJSONL(w)
	var sinkErr error
	p, err := pipeline.New(pipeline.Options{
		Config: cfg, Wikis: wikis, Registry: newRegistry(), Logger: o.common.logger,
		Start: from.Add(-time.Duration(cfg.Window.Length)), End: to,
		OnChange: func(changed []detect.Finding) {
			var keep []detect.Finding
			for _, f := range changed {
				if !f.DetectedAt.Before(from) {
					keep = append(keep, f)
				}
			}
			if err := jsonl.Notify(keep); err != nil && sinkErr == nil {
				sinkErr = err
			}
		},
	})
	if err != nil {
		return err
	}
	defer func() { _ = p.Close() }()
	if err := p.Run(ctx); err != nil {
		return err
	}
	return sinkErr
}
