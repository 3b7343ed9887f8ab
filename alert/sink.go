package alert

import (
	"errors"

	"github.com/wikimedia/pretrain-detector/detect"
)

// Sink is where findings go after an evaluation: the console, the findings
// JSONL, the Alertmanager notifier (live, and replay's). The runner that
// evaluates (pipeline.Pipeline, replay.Replay) calls its sinks from its one
// evaluation goroutine, in order, after every evaluation, so a sink is fed
// by one caller and decides what to send from what it is given: changed
// are the findings whose state changed in that evaluation, all every
// finding the runner holds. A sink must not keep either slice past the
// call. An error is the sink's own (a full disk, a closed terminal): the
// runner reports it and goes on evaluating.
type Sink interface {
	Notify(changed, all []detect.Finding) error
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(changed, all []detect.Finding) error

// Notify calls f.
func (f SinkFunc) Notify(changed, all []detect.Finding) error { return f(changed, all) }

// Sinks notifies each sink in turn; its error joins theirs. A nil sink in
// the list is skipped, so optional outputs need no branching at the caller.
type Sinks []Sink

// Notify notifies every sink, even after one fails.
func (s Sinks) Notify(changed, all []detect.Finding) error {
	var errs []error
	for _, k := range s {
		if k == nil {
			continue
		}
		if err := k.Notify(changed, all); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
