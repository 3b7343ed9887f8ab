package window

// Run:
//
//	go test -run '^$' -bench . -benchmem ./window/
//
// ns/op and allocs/op are the Writer's side (what an ingest goroutine pays
// per event); ns/event and allocs/event include the shard goroutines
// applying the events (measured to a final Sync, all goroutines' mallocs).

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wikimedia/pretrain-detector/event"
	"github.com/wikimedia/pretrain-detector/wikimap"
)

const benchWikis = 1000

// stream makes a realistic event sequence for writer w: a thousand wikis,
// 10% 5xx, one error in ten when errs is set, event time advancing 10 µs.
type stream struct {
	i, w       int
	errs, newF bool
	version    uint32
	rollout    uint32
	ev         event.Event
	d          event.Detail
	msg        []byte
}

func newStream(w int, errs, newFingerprints bool, version, rollout uint32) *stream {
	st := &stream{w: w, errs: errs, newF: newFingerprints, version: version, rollout: rollout, msg: make([]byte, 0, 64)}
	st.d = *detail("Error 1205: Lock wait timeout", "")
	return st
}

func (st *stream) next() (*event.Event, *event.Detail) {
	st.i++
	i := st.i
	st.ev = event.Event{
		Time:    t0 + int64(i)*int64(10*time.Microsecond),
		Wiki:    wikimap.ID(1 + (i*7+st.w)%benchWikis),
		Scope:   event.Scope(i % 50 / 49),
		Kind:    event.KindRequest,
		Status:  uint16(200 + 303*(i%10/9)),
		Version: st.version,
		Rollout: st.rollout,
	}
	if !st.errs || i%10 != 0 {
		return &st.ev, nil
	}
	st.ev.Kind = event.KindError
	st.ev.Fingerprint = uint64(1 + (i/10)%200) // 200 recurring fingerprints
	if st.newF {
		st.ev.Fingerprint = uint64(i)*0x9E3779B97F4A7C15 | 1
	}
	st.msg = strconv.AppendInt(append(st.msg[:0], "req-"...), int64(i/30), 10) // a request logs ~3 errors
	st.d.ReqID = st.msg
	return &st.ev, &st.d
}

func benchStore(b *testing.B, shards int) (*Store, uint32, uint32) {
	b.Helper()
	versions, rollouts := event.NewInterner(), event.NewInterner()
	s, err := newStore(Config{Shards: shards}, testGroups(benchWikis), versions, rollouts, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s, versions.ID([]byte("1.47.0-wmf.16")), rollouts.ID([]byte("mw-web.eqiad.main-6f7d8c9b5"))
}

// mark is where a benchmark's end-to-end measurement starts.
type mark struct {
	wall    time.Time
	cpu     time.Duration
	mallocs uint64
}

func start() mark {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return mark{wall: time.Now(), cpu: cpuTime(), mallocs: ms.Mallocs}
}

// cpuTime is the process's user+system CPU time: with shard goroutines
// working beside the Writers, wall time hides what the cores spend.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// endToEnd reports the cost per event up to the point every event is
// applied: wall time, CPU time of all goroutines, and allocations.
func endToEnd(b *testing.B, m mark, events int) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(time.Since(m.wall).Nanoseconds())/float64(events), "ns/event")
	b.ReportMetric(float64((cpuTime()-m.cpu).Nanoseconds())/float64(events), "cpu-ns/event")
	b.ReportMetric(float64(ms.Mallocs-m.mallocs)/float64(events), "allocs/event")
}

// BenchmarkAdd is one Writer adding events.
func BenchmarkAdd(b *testing.B) {
	for _, bc := range []struct {
		name        string
		errs, newFP bool
	}{
		{"kind=request", false, false},
		{"kind=mixed-10pct-errors", true, false},
		{"kind=mixed-10pct-new-fingerprints", true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, v, r := benchStore(b, runtime.GOMAXPROCS(0))
			w := s.NewWriter()
			st := newStream(0, bc.errs, bc.newFP, v, r)
			for range 200_000 { // warm up: catalogue, pools, maps
				w.Add(st.next())
			}
			w.Flush()
			s.Sync()
			b.ReportAllocs()
			m, n := start(), 0
			for b.Loop() {
				w.Add(st.next())
				n++
			}
			w.Flush()
			s.Sync()
			endToEnd(b, m, n)
		})
	}
}

// BenchmarkAddError is adding one error event of a catalogued fingerprint.
func BenchmarkAddError(b *testing.B) {
	s, v, r := benchStore(b, runtime.GOMAXPROCS(0))
	w := s.NewWriter()
	ev := errEv(t0, 3, event.ScopeTrain, 0xabcdef)
	ev.Version, ev.Rollout = v, r
	d := detail("Error 1205: Lock wait timeout", "req-1")
	for range 100_000 {
		ev.Time += int64(time.Millisecond)
		w.Add(&ev, d)
	}
	w.Flush()
	s.Sync()
	b.ReportAllocs()
	m, n := start(), 0
	for b.Loop() {
		ev.Time += int64(time.Millisecond)
		w.Add(&ev, d)
		n++
	}
	w.Flush()
	s.Sync()
	endToEnd(b, m, n)
}

// design is one way to count request events into per-shard rings.
type design interface {
	writer() func(*event.Event)
	done()
}

// ownerDesign is the Store: Writers batch per shard, one goroutine per
// shard applies.
type ownerDesign struct{ s *Store }

func (d ownerDesign) writer() func(*event.Event) {
	w := d.s.NewWriter()
	n := 0
	return func(ev *event.Event) {
		if ev == nil {
			w.Flush()
			return
		}
		w.Add(ev, nil)
		if n++; n%4096 == 0 {
			w.Flush() // as the pipeline does after a Kafka batch
		}
	}
}
func (d ownerDesign) done() { d.s.Sync() }

// mutexDesign applies each event under its shard's mutex, from the
// ingest goroutine, with the same per-event code as the owner.
type mutexDesign struct{ s *Store }

func (d mutexDesign) writer() func(*event.Event) {
	var local int64
	n := 0
	return func(ev *event.Event) {
		if ev == nil {
			return
		}
		sh := d.s.shardOf(ev.Wiki)
		it := item{ev: *ev, det: -1}
		sh.mu.Lock()
		st := sh.begin()
		sh.applyOne(&it, 0, &st)
		sh.newest = st.newest
		sh.mu.Unlock()
		local = max(local, st.newest)
		if n++; n%512 == 0 { // publish the writer's newest now and then, not per event
			for cur := d.s.newest.Load(); local > cur; cur = d.s.newest.Load() {
				if d.s.newest.CompareAndSwap(cur, local) {
					break
				}
			}
		}
	}
}
func (d mutexDesign) done() {}

// atomicDesign counts with atomic adds into one shared ring; a slot is
// claimed by CAS on its bucket number and zeroed by the claimer. It is
// racy by construction: an add between the claim and the zeroing is lost,
// which is why it is only a benchmark baseline.
type atomicDesign struct {
	width, slots, length int64
	newest               atomic.Int64
	slotBucket           []atomic.Int64
	requests, status5xx  []atomic.Uint32
}

func newAtomicDesign(nWikis int) *atomicDesign {
	cfg := Config{}.withDefaults()
	d := &atomicDesign{width: int64(cfg.Bucket), slots: int64(cfg.Length / cfg.Bucket), length: int64(cfg.Length)}
	d.slotBucket = make([]atomic.Int64, d.slots)
	n := (nWikis + 1) * event.NumScopes * int(d.slots)
	d.requests, d.status5xx = make([]atomic.Uint32, n), make([]atomic.Uint32, n)
	return d
}

func (d *atomicDesign) writer() func(*event.Event) {
	var local int64
	n := 0
	return func(ev *event.Event) {
		if ev == nil {
			return
		}
		t := ev.Time
		newest := max(local, d.newest.Load())
		if t > newest {
			if newest != 0 && t-newest > d.length {
				return
			}
			local = t
			newest = t
		}
		if n++; n%512 == 0 { // publish the writer's newest now and then, not per event
			for cur := d.newest.Load(); local > cur; cur = d.newest.Load() {
				if d.newest.CompareAndSwap(cur, local) {
					break
				}
			}
		}
		bk := floorDiv(t, d.width)
		if bk <= floorDiv(newest, d.width)-d.slots {
			return
		}
		slot := bk % d.slots
		if held := d.slotBucket[slot].Load(); held != bk {
			if held > bk || !d.slotBucket[slot].CompareAndSwap(held, bk) {
				return
			}
			for i := slot; i < int64(len(d.requests)); i += d.slots {
				d.requests[i].Store(0)
				d.status5xx[i].Store(0)
			}
		}
		i := (int64(ev.Wiki)*event.NumScopes+int64(ev.Scope))*d.slots + slot
		d.requests[i].Add(1)
		if ev.Status >= 500 && ev.Status < 600 {
			d.status5xx[i].Add(1)
		}
	}
}
func (d *atomicDesign) done() {}

// BenchmarkDesign compares the owner-goroutine design with a per-shard
// mutex and with atomic counters, for request events, with one Writer and
// with as many concurrent Writers as cores.
func BenchmarkDesign(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	for _, name := range []string{"owner", "mutex", "atomic"} {
		for _, writers := range []int{1, procs} {
			b.Run("design="+name+"/writers="+strconv.Itoa(writers), func(b *testing.B) {
				var d design
				switch name {
				case "owner":
					s, _, _ := benchStore(b, procs)
					d = ownerDesign{s}
				case "mutex":
					s, _, _ := benchStore(b, procs)
					d = mutexDesign{s}
				default:
					d = newAtomicDesign(benchWikis)
				}
				fns := make([]func(*event.Event), writers)
				streams := make([]*stream, writers)
				for w := range writers {
					fns[w], streams[w] = d.writer(), newStream(w, false, false, 0, 0)
					for range 100_000 {
						ev, _ := streams[w].next()
						fns[w](ev)
					}
					fns[w](nil)
				}
				d.done()
				b.ReportAllocs()
				m := start()
				per := b.N/writers + 1
				var wg sync.WaitGroup
				b.ResetTimer()
				for w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						fn, st := fns[w], streams[w]
						for range per {
							ev, _ := st.next()
							fn(ev)
						}
						fn(nil)
					}()
				}
				wg.Wait()
				d.done()
				b.StopTimer()
				endToEnd(b, m, per*writers)
			})
		}
	}
}

// BenchmarkRead measures the read paths detect uses, over a full 2-h ring
// of a thousand wikis.
func BenchmarkRead(b *testing.B) {
	s, v, r := benchStore(b, runtime.GOMAXPROCS(0))
	w := s.NewWriter()
	st := newStream(0, true, false, v, r)
	// 2 h at one event per 10 µs would be 720 M events; space them 1 ms
	// apart instead: 7.2 M events fill every bucket.
	for i := range 7_200_000 {
		ev, d := st.next()
		ev.Time = t0 + int64(i)*int64(time.Millisecond)
		w.Add(ev, d)
	}
	w.Flush()
	s.Sync()
	from, to := s.Oldest(), s.Newest()+1
	fp := uint64(7)
	b.Run("op=Sum-2h", func(b *testing.B) {
		for b.Loop() {
			_ = s.Sum(500, event.ScopeTrain, from, to)
		}
	})
	b.Run("op=Series-2h", func(b *testing.B) {
		var dst []Counts
		b.ReportAllocs()
		for b.Loop() {
			dst = s.Series(500, event.ScopeTrain, from, to, dst)
		}
	})
	b.Run("op=SumWikis-2h", func(b *testing.B) {
		var dst []Counts
		b.ReportAllocs()
		for b.Loop() {
			dst = s.SumWikis(event.ScopeTrain, from, to, dst)
		}
	})
	b.Run("op=SumWikis-10m", func(b *testing.B) {
		var dst []Counts
		for b.Loop() {
			dst = s.SumWikis(event.ScopeTrain, to-int64(10*time.Minute), to, dst)
		}
	})
	b.Run("op=FingerprintTotal-2h", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = s.FingerprintTotal(fp, event.ScopeTrain, from, to)
		}
	})
	b.Run("op=FingerprintSeries-2h", func(b *testing.B) {
		var dst []int64
		b.ReportAllocs()
		for b.Loop() {
			dst = s.FingerprintSeries(fp, 500, event.ScopeTrain, from, to, dst)
		}
	})
	b.Run("op=ActiveFingerprints", func(b *testing.B) {
		var dst []FingerprintInfo
		for b.Loop() {
			dst = s.ActiveFingerprints(from, dst)
		}
	})
	b.Run("op=Deploys", func(b *testing.B) {
		var dst []Deploy
		for b.Loop() {
			dst = s.Deploys(dst)
		}
	})
}
