package replay

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wikimedia/pretrain-detector/config"
	"github.com/wikimedia/pretrain-detector/decode"
	"github.com/wikimedia/pretrain-detector/detect"
	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/internal/stages"
	"github.com/wikimedia/pretrain-detector/wikimap"
	"github.com/wikimedia/pretrain-detector/window"
)

// Offline runs records through the same decoders, window and detector as
// the Kafka pipeline, in the order given, on the caller's goroutine: the
// scenario suite, benchmarks and tools feed it records they already hold.
// Records must come in (roughly) event-time order; evaluation follows the
// watermark exactly as live.
type Offline struct {
	st       *stages.Stages // the window and the detector, built as live (stages.New)
	w        *window.Writer
	decoders map[string]*decode.Decoder
	ev       event.Event
	detail   event.Detail

	bucket   int64
	nextEval int64
	fired    []detect.Finding
	changes  []detect.Finding
	Rejected map[error]int
	Skipped  int
	Records  int
	// Tap, when set, sees every decoded event (baselines such as the scap
	// guardrail are scored on the same events).
	Tap func(*event.Event)
}

// NewOffline builds the stages from cfg; topics maps topic names to formats.
func NewOffline(cfg config.Config, wikis *wikimap.Map, topics map[string]decode.Format) (_ *Offline, err error) {
	st, err := stages.New(cfg, wikis, 0, prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()
	o := &Offline{st: st, w: st.Store.NewWriter(), decoders: map[string]*decode.Decoder{},
		bucket: int64(time.Duration(cfg.Window.Bucket)), Rejected: map[error]int{}}
	for topic, f := range topics {
		d, err := st.NewDecoder(f)
		if err != nil {
			return nil, fmt.Errorf("topic %s: %w", topic, err)
		}
		o.decoders[topic] = d
	}
	return o, nil
}

// Add decodes one record and, when its time closes a bucket, evaluates.
func (o *Offline) Add(topic string, value []byte, ts time.Time) error {
	d, ok := o.decoders[topic]
	if !ok {
		return fmt.Errorf("no format for topic %q", topic)
	}
	o.Records++
	o.detail = event.Detail{}
	switch err := d.Decode(value, ts, &o.ev, &o.detail); {
	case err == nil:
		o.w.Add(&o.ev, &o.detail)
		if o.Tap != nil {
			o.Tap(&o.ev)
		}
	case errors.Is(err, decode.ErrSkip):
		o.Skipped++
	default:
		o.Rejected[err]++
	}
	t := ts.UnixNano()
	if o.nextEval == 0 {
		o.nextEval = t - t%o.bucket + o.bucket
	}
	if t >= o.nextEval {
		o.evaluate(o.st.Store.Watermark())
		o.nextEval = t - t%o.bucket + o.bucket
	}
	return nil
}

func (o *Offline) evaluate(wm int64) {
	o.w.Flush()
	o.st.Store.Sync()
	for _, f := range o.st.Detector.Evaluate(wm) {
		o.changes = append(o.changes, f)
		if f.State == detect.StateFiring {
			o.fired = append(o.fired, f)
		}
	}
}

// Finish evaluates up to end (the records are final) and returns every
// finding that fired, in order, and every state change.
func (o *Offline) Finish(end time.Time) (fired, changes []detect.Finding) {
	o.evaluate(end.UnixNano())
	return o.fired, o.changes
}

// Detector exposes the detector, for its current findings.
func (o *Offline) Detector() *detect.Detector { return o.st.Detector }

// Store exposes the window.
func (o *Offline) Store() *window.Store { return o.st.Store }

// Close releases the window.
func (o *Offline) Close() error { return o.st.Close() }
