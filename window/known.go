package window

import "math/bits"

// The known table is the catalogue's lock-free side (catalogue.table and
// catalogue.times): Writers consult it per error event to skip copying the
// Detail of fingerprints whose text the catalogue already has.

// slots returns fp's two candidate slots: its low bits, and those of fp
// rotated by 32, so fingerprints that share one slot rarely share both.
func (c *catalogue) slots(fp uint64) (i1, i2 uint64) {
	return fp & c.mask, bits.RotateLeft64(fp, 32) & c.mask
}

// known reports whether fp's entry has its text.
func (c *catalogue) known(fp uint64) bool {
	_, ok := c.knownAt(fp)
	return ok
}

// knownAt reports whether fp's entry has its text, and the event time of
// that text or a later one. Lock-free: Writers call it per error event.
// A slot's time is read between two reads of its fingerprint, and setKnown
// clears the fingerprint before it writes another's time, so a time is
// never taken for the wrong fingerprint.
func (c *catalogue) knownAt(fp uint64) (int64, bool) {
	if fp == 0 {
		return 0, false
	}
	i1, i2 := c.slots(fp)
	for _, i := range [2]uint64{i1, i2} {
		if c.table[i].Load() != fp {
			continue
		}
		t := c.times[i].Load()
		if c.table[i].Load() == fp {
			return t, true
		}
	}
	return 0, false
}

// setKnown records that fp's entry has the text of an occurrence at t.
func (c *catalogue) setKnown(fp uint64, t int64) {
	if fp == 0 {
		return
	}
	i1, i2 := c.slots(fp)
	for _, i := range [2]uint64{i1, i2} {
		if c.table[i].Load() == fp {
			c.times[i].Store(t) // text times only decrease: a stale read copies more, never less
			return
		}
	}
	i := i1
	if c.table[i1].Load() != 0 && c.table[i2].Load() == 0 {
		i = i2
	}
	c.table[i].Store(0)
	c.times[i].Store(t)
	c.table[i].Store(fp)
}

// forget clears fp's slot when its entry is evicted, so that Writers copy
// its text again should it come back.
func (c *catalogue) forget(fp uint64) {
	i1, i2 := c.slots(fp)
	c.table[i1].CompareAndSwap(fp, 0)
	c.table[i2].CompareAndSwap(fp, 0)
}
