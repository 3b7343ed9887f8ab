package window

import (
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/ingest"
)

// item is one buffered event.
type item struct {
	ev  event.Event
	req uint64 // hash of the error's reqId, 0 when none
	det int32  // index into batch.dets of the copied Detail, -1 when not copied
}

// Text fields of a catalogue entry, in the order they are stored.
const (
	txtMessage = iota
	txtExemplar
	txtClass
	txtChannel
	txtFile
	txtFrame
	txtTrace
	numText
)

// textLimit bounds what the catalogue keeps of Detail field i.
func textLimit(i int) int {
	switch i {
	case txtMessage, txtExemplar:
		return 1 << 10
	case txtClass:
		return 256
	case txtChannel:
		return 128
	case txtFile, txtFrame:
		return 512
	default: // txtTrace
		return 4 << 10
	}
}

// detRef locates a copied Detail in batch.arena: field i is
// arena[offs[i]:offs[i+1]], so the whole text is one contiguous slice.
type detRef struct {
	offs [numText + 1]uint32
}

// batch carries events from a Writer to a shard owner, with the Detail text
// of errors whose fingerprint the catalogue lacks. Batches are recycled
// through the Store's pool. A batch with done set is a Sync marker.
type batch struct {
	items []item
	dets  []detRef
	arena []byte
	done  chan struct{}
}

// text returns the copied text of detail i and its field offsets relative
// to the start of the text.
func (b *batch) text(i int32) ([]byte, [numText + 1]uint16) {
	r := &b.dets[i]
	var offs [numText + 1]uint16
	for j := range offs {
		offs[j] = uint16(r.offs[j] - r.offs[0])
	}
	return b.arena[r.offs[0]:r.offs[numText]], offs
}

func (b *batch) addDetail(d *event.Detail) int32 {
	var r detRef
	fields := [numText][]byte{d.Message, d.Exemplar, d.Class, d.Channel, d.File, d.Frame, d.Trace}
	for i, f := range fields {
		r.offs[i] = uint32(len(b.arena))
		b.arena = append(b.arena, truncate(f, textLimit(i))...)
	}
	r.offs[numText] = uint32(len(b.arena))
	b.dets = append(b.dets, r)
	return int32(len(b.dets) - 1)
}

// truncate cuts b to at most n bytes without splitting a UTF-8 sequence.
func truncate(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[:n]
	// Back off over continuation bytes to the start of the last rune; drop
	// it if it is incomplete.
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}

// Writer buffers events per shard for one ingest goroutine; it implements
// ingest.Sink. A Writer is not safe for concurrent use.
type Writer struct {
	s    *Store
	bufs []*batch // by shard
	// copied remembers fingerprints whose Detail this Writer copied since
	// its last Flush, and the event time of the copy, so a burst of a new
	// error is copied once, not once per event until a shard has
	// catalogued it.
	copied     [copiedSlots]uint64
	copiedAt   [copiedSlots]int64
	copiedHash [copiedSlots]uint64 // textHash of the copy
}

const copiedSlots = 64

var _ ingest.Sink = (*Writer)(nil)

// NewWriter returns a Writer. Use one per ingest goroutine.
func (s *Store) NewWriter() *Writer {
	s.writers.Add(1)
	return &Writer{s: s, bufs: make([]*batch, len(s.shards))}
}

// Add buffers ev, and for an error the parts of d the window keeps. d may
// be nil. It allocates nothing for requests, nor for errors whose
// fingerprint the catalogue already holds; it blocks while the target
// shard's queue is full.
func (w *Writer) Add(ev *event.Event, d *event.Detail) {
	i := int(ev.Wiki) % len(w.bufs)
	b := w.bufs[i]
	if b == nil {
		b = w.s.getBatch()
		w.bufs[i] = b
	}
	it := item{ev: *ev, det: -1}
	if ev.Kind == event.KindError && d != nil {
		if len(d.ReqID) > 0 {
			it.req = xxhash.Sum64(d.ReqID)
			if it.req == 0 {
				it.req = 1
			}
		}
		// The catalogue keeps the text of the earliest occurrence, so an
		// occurrence at or before the one it (or this Writer) has must be
		// copied too; later ones need not. Fingerprint 0 is never
		// remembered: the zero slot means empty.
		fp, k := ev.Fingerprint, ev.Fingerprint%copiedSlots
		if at, known := w.s.cat.knownAt(fp); !known || ev.Time <= at {
			switch {
			case fp == 0 || w.copied[k] != fp || ev.Time < w.copiedAt[k]:
				it.det = b.addDetail(d)
				w.copied[k], w.copiedAt[k], w.copiedHash[k] = fp, ev.Time, textHash(d)
			case ev.Time == w.copiedAt[k]:
				// A tie: the smaller text wins in the catalogue, so copy
				// only a smaller one (a burst of one error is copied once).
				if h := textHash(d); h < w.copiedHash[k] {
					it.det = b.addDetail(d)
					w.copiedHash[k] = h
				}
			}
		}
	}
	b.items = append(b.items, it)
	if len(b.items) >= batchEvents || len(b.arena) >= batchArenaMax {
		w.bufs[i] = nil
		w.s.send(i, b)
	}
}

// textHash is the xxhash of the text addDetail would copy from d, which is
// what the catalogue compares.
func textHash(d *event.Detail) uint64 {
	var h xxhash.Digest
	h.Reset()
	for i, f := range [numText][]byte{d.Message, d.Exemplar, d.Class, d.Channel, d.File, d.Frame, d.Trace} {
		_, _ = h.Write(truncate(f, textLimit(i))) // never fails
	}
	return h.Sum64()
}

// Flush hands every buffered event to the shards. The pipeline calls it
// after each Kafka batch; Sync then makes them visible to readers.
func (w *Writer) Flush() {
	// Forget the copies: a fingerprint evicted from the catalogue meanwhile
	// must have its Detail copied again.
	w.copied = [copiedSlots]uint64{}
	w.copiedAt = [copiedSlots]int64{}
	w.copiedHash = [copiedSlots]uint64{}
	for i, b := range w.bufs {
		if b == nil || len(b.items) == 0 {
			continue
		}
		w.bufs[i] = nil
		w.s.send(i, b)
	}
}
