package main

import (
	"context"
	"errors"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/internal/stages"
	"github.com/wikimedia/pretrain-detector/pipeline"
)

// reloadLoop is the reload coordinator: it serves SIGHUP and POST
// /-/reload alike, one reload at a time, until ctx ends.
func (d *daemon) reloadLoop(ctx context.Context) {
	for {
		var reply chan error
		select {
		case <-ctx.Done():
			return
		case <-d.hup:
		case reply = <-d.reloads:
		}
		live, restart, err := reloadConfig(d.o.common, d.p, d.cfg)
		if err != nil {
			d.logger.Error("Configuration reload failed; keeping the old one", "err", err)
			d.metrics.reloadOK.Set(0)
		} else {
			d.metrics.reloaded(restart)
			if len(restart) > 0 {
				d.logger.Warn("Configuration reloaded; some changes take effect only after a restart",
					"applied", live, "restart_required", restart)
			} else {
				d.logger.Info("Configuration reloaded", "applied", live)
			}
		}
		if reply != nil {
			reply <- err
		}
	}
}

// lifecycle returns the /-/reload hook when enabled. Once ctx is done the
// reload goroutine is gone, so a late request is refused instead of waiting
// forever (and holding up the HTTP server's shutdown).
func lifecycle(ctx context.Context, enabled bool, reloads chan chan error) func() error {
	if !enabled {
		return nil
	}
	return func() error {
		reply := make(chan error, 1)
		select {
		case reloads <- reply:
		case <-ctx.Done():
			return errors.New("shutting down")
		}
		return <-reply // taken: the goroutine always answers
	}
}

// reloadConfig re-reads the configuration. What can change without a
// restart is applied (deploy markers are added; one removed from the file
// stays until a restart) and named in live; every other section that
// differs from running, the configuration the daemon started with, is
// named in restart, for the log line and detector_config_restart_required,
// so a reload never claims more than it did. A bad file never replaces a
// good one.
func reloadConfig(c commonOptions, p *pipeline.Pipeline, running config.Config) (live, restart []string, err error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range cfg.Deploys {
		p.Store.AddDeploy(stages.MarkerDeploy(m.Scope, m.Group, m.Version, m.At, "config"))
	}
	live, restart = config.Changes(running, cfg)
	return live, restart, nil
}
