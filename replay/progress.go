package replay

import (
	"sync"
	"time"
)

// Progress is where a running replay is.
type Progress struct {
	Position time.Time     // every partition is merged and evaluated up to here (Kafka time)
	Fraction float64       // of the range from the warm-up start to To, in event time
	Records  int64         // records read
	Events   int64         // events applied to the window
	Elapsed  time.Duration // wall time since Run started
	// OffsetsRead and OffsetsTotal measure the work in records: the
	// offsets read so far, and those between every partition's start and
	// where it stops (its first record past To, else its end). ETA is the
	// time left at the average rate so far; 0 until it can be estimated.
	OffsetsRead, OffsetsTotal int64
	ETA                       time.Duration
	// Missing are the configured topics that do not exist.
	Missing []string
}

// progress calls OnProgress every ProgressInterval until the returned
// function is called.
func (r *Replay) progress(began time.Time) (stop func()) {
	if r.opts.OnProgress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.opts.ProgressInterval)
		defer t.Stop()
		start, end := r.Start().UnixNano(), r.opts.To.UnixNano()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			p := Progress{Records: r.records.Load(), Events: r.events.Load(), Elapsed: time.Since(began), Missing: r.consumer.Missing()}
			p.OffsetsRead, p.OffsetsTotal = r.consumer.Offsets()
			if p.OffsetsRead > 0 && p.OffsetsTotal > p.OffsetsRead {
				p.ETA = time.Duration(float64(p.Elapsed) * float64(p.OffsetsTotal-p.OffsetsRead) / float64(p.OffsetsRead))
			}
			if pos := r.pos.Load(); pos != 0 {
				p.Position = time.Unix(0, pos).UTC()
				p.Fraction = min(1, max(0, float64(pos-start)/float64(end-start)))
			}
			r.opts.OnProgress(p)
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
