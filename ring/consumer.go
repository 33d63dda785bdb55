package ring

import (
	"fmt"
	"math/bits"
	"sync/atomic"
)

// holeWindow is how many positions from its start a ReadRun can carry
// aborted slots among its records: it keeps them as one bit each in a word,
// which keeps the run small enough to pass in registers. A run whose next
// hole would fall beyond the window ends before it.
const holeWindow = 64

// Consumer is the consuming side of a queue. Unless the queue was made with
// SingleConsumer, any number of goroutines and processes may consume at once.
type Consumer struct{ q *Queue }

// Consumer returns the consuming side of q.
func (q *Queue) Consumer() Consumer { return Consumer{q} }

// ReadRun is a run of consecutive published records reserved by a consumer.
// Read each record in place (Slot), then Release it; records may be released
// in any order and from any goroutine, but each exactly once. Slots that
// producers aborted are passed over: they never appear as records.
//
// A ReadRun has four word-sized fields and no more: the compiler then keeps
// one in registers, where a larger one lives on the stack and is copied
// after Reserve returns, a copy whose loads wait for the stores before them
// to drain (perf put a third of the consumer's time at batch 1 there).
type ReadRun struct {
	q     *Queue
	start uint64 // position of record 0
	n     int    // records
	holes uint64 // bit k: the slot at start+k is aborted (k < holeWindow)
}

// Reserve reserves exactly n records, or none: ErrEmpty if fewer than n are
// ready in one run.
func (c Consumer) Reserve(n int) (ReadRun, error) { return c.q.reserveRead(n, true) }

// ReserveUpTo reserves between 1 and n records, as many as are ready in one
// run: ErrEmpty if none is.
func (c Consumer) ReserveUpTo(n int) (ReadRun, error) { return c.q.reserveRead(n, false) }

func (q *Queue) reserveRead(n int, exact bool) (ReadRun, error) {
	if n < 1 || uint64(n) > q.slots {
		return ReadRun{}, invalidf("reserve %d records: want 1 to %d", n, q.slots)
	}
	cons := q.m.cons
	descs, mask := q.m.descs, q.mask
	slotSize := uint32(q.slotSize)
	pos := cons.cursor.Load()
	// Fast path: a run of records with no hole in front of or among them,
	// ending at a slot not yet published or at n. Anything else (a hole,
	// a stamp to explain, a lost race) takes the general loop below.
	recs := 0
	for recs < n {
		p := pos + uint64(recs)
		// Pairs with the producer's store of stamp p+1 in publish.
		w := descs[p&mask].word.Load()
		if uint32(w) != uint32(p+1) || uint32(w>>32) > slotSize {
			if uint32(w) == uint32(p+1) || uint32(w)-uint32(p+1) != ^uint32(0) && uint32(w)-uint32(p+1) != q.negSlots {
				recs = -1 // a hole or a stamp to explain
			}
			break
		}
		recs++
	}
	if recs > 0 && (!exact || recs == n) && q.claimRead(pos, pos+uint64(recs)) {
		return ReadRun{q: q, start: pos, n: recs}, nil
	}
	if recs == 0 && !exact {
		q.bumpCons(&cons.empty, 1)
		return ReadRun{}, ErrEmpty
	}
	pos = cons.cursor.Load()
	for range maxAttempts {
		r := ReadRun{q: q}
		lead := 0 // aborted slots before the first record
		recs, span := 0, 0
		bad := ""
		fragmented := false // stopped at the holes one run can hold
		for recs < n && uint64(lead+span) < q.slots {
			p := pos + uint64(lead+span)
			// Pairs with the producer's store of stamp p+1 in publish:
			// seeing p+1 means the payload is written.
			w := descs[p&mask].word.Load()
			seq, info := uint32(w), uint32(w>>32)
			if seq == uint32(p+1) && info <= slotSize {
				// Published, no flags, a length that fits: a record.
				recs++
				span++
				continue
			}
			if seq == uint32(p+1) {
				_, length, flags := unpackDesc(w)
				if flags != FlagAborted {
					bad = fmt.Sprintf("slot %d info %#x: length %d in a %d-byte slot, flags %#x", p&mask, info, length, slotSize, flags)
					break
				}
				if recs == 0 {
					lead++
					continue
				}
				if span >= holeWindow {
					fragmented = true
					break
				}
				r.holes |= 1 << span
				span++
				continue
			}
			// p: not published yet. p-N+1: the slot still holds a
			// record of the previous lap. Either way nothing is ready.
			if diff := seq - uint32(p+1); diff == ^uint32(0) || diff == q.negSlots {
				break
			}
			bad = fmt.Sprintf("slot %d stamp %#x at position %d: want %#x, or one behind", p&mask, seq, p, uint32(p+1))
			break
		}
		r.n = recs
		if bad != "" {
			// As for producers: with several consumers pos may be stale,
			// and the stamp we read orders the next cursor load.
			now := cons.cursor.Load()
			if now == pos {
				return ReadRun{}, q.corruptCons("%s", bad)
			}
			pos = now
			continue
		}
		if r.n == 0 || exact && r.n < n {
			if lead > 0 && q.claimRead(pos, pos+uint64(lead)) {
				q.releaseHoles(pos, lead)
				q.bumpCons(&cons.skipped, uint64(lead))
			} else if lead > 0 {
				pos = cons.cursor.Load()
				continue
			}
			if fragmented && r.n > 0 {
				// The records are there, but no exact run can hold them
				// with the holes between: waiting would never help.
				return ReadRun{}, ErrFragmented
			}
			q.bumpCons(&cons.empty, 1)
			return ReadRun{}, ErrEmpty
		}
		end := pos + uint64(lead+span)
		if !q.claimRead(pos, end) {
			pos = cons.cursor.Load()
			continue
		}
		q.releaseHoles(pos, lead)
		if n := lead + bits.OnesCount64(r.holes); n > 0 {
			q.bumpCons(&cons.skipped, uint64(n))
		}
		r.start = pos + uint64(lead)
		return r, nil
	}
	return ReadRun{}, q.corruptCons("consumer cursor moved %d times during one reserve", maxAttempts)
}

// claimRead moves the consumer cursor from pos to end.
func (q *Queue) claimRead(pos, end uint64) bool {
	if q.singleConsumer() {
		StoreRelease64(&q.m.cons.cursor, end)
		return true
	}
	return q.m.cons.cursor.CompareAndSwap(pos, end)
}

// releaseHoles hands n aborted slots from position p back to producers.
// They were counted as skipped when the run was reserved.
func (q *Queue) releaseHoles(p uint64, n int) {
	for i := range uint64(n) {
		q.release(p + i)
	}
}

// release hands the slot at position p, which this consumer holds, back to
// producers: stamp p+N pairs with the producer's load in reserveWrite.
func (q *Queue) release(p uint64) {
	StoreRelease64(&q.m.descs[p&q.mask].word, packDesc(uint32(p+q.slots), 0, 0))
}

// bumpCons adds n to a consumer counter, as bumpProd.
func (q *Queue) bumpCons(c *atomic.Uint64, n uint64) {
	if q.singleConsumer() {
		StoreRelease64(c, c.Load()+n)
	} else {
		c.Add(n)
	}
}

func (q *Queue) corruptCons(format string, args ...any) error {
	q.m.cons.corrupt.Add(1)
	return &CorruptError{Side: "consumer", Reason: fmt.Sprintf(format, args...)}
}

// Len is the number of records in the run.
func (r *ReadRun) Len() int { return r.n }

// Queue is the queue the run was reserved in (for a Resizable, the
// generation), as WriteRun.Queue.
func (r *ReadRun) Queue() *Queue { return r.q }

// Generation is the generation of a Resizable the run was reserved in,
// counting resizes from 0 (modulo 2^32-1); always 0 for a Queue's runs. Positions restart
// in each generation, and every record of generation g comes before any of
// g+1: (Generation, Position) orders records across resizes.
func (r *ReadRun) Generation() uint64 {
	if r.q.gen == 0 {
		return 0
	}
	return uint64(r.q.gen - 1)
}

// span is how many positions the run covers from start: its records and
// the holes among and after them.
func (r *ReadRun) span() int { return r.n + bits.OnesCount64(r.holes) }

// offset is the position of record i relative to start.
func (r *ReadRun) offset(i int) int { return holeOffset(r.holes, i) }

// holeOffset is the offset from a run's start of record i, given the run's
// holes: i plus the holes before it.
func holeOffset(holes uint64, i int) int {
	o := i
	for m := holes; m != 0; m &= m - 1 {
		if bits.TrailingZeros64(m) > o {
			break
		}
		o++
	}
	return o
}

// Position is the queue position of record i.
func (r *ReadRun) Position(i int) uint64 {
	r.check(i)
	return r.start + uint64(r.offset(i))
}

func (r *ReadRun) check(i int) {
	if uint(i) >= uint(r.n) {
		panic(errIndex)
	}
}

// Slot returns record i's payload, in place, with the length its producer
// published. The descriptor is re-read and re-checked on every call, since
// the metadata is shared. Like indexing a slice, it panics if i is out of
// range.
func (r *ReadRun) Slot(i int) ([]byte, error) {
	// One call with scalars, small enough to inline, so that a run the
	// caller holds can stay in registers.
	return r.q.recordSlot(r.start, i, r.n, r.holes)
}

// recordSlot is Slot for record i of the run of n records from start with
// the given holes.
func (q *Queue) recordSlot(start uint64, i, n int, holes uint64) ([]byte, error) {
	if uint(i) >= uint(n) {
		panic(errIndex)
	}
	p := start + uint64(holeOffset(holes, i))
	w := q.m.descs[p&q.mask].word.Load()
	if uint32(w) != uint32(p+1) || uint32(w>>32) > uint32(q.slotSize) {
		return nil, q.slotError(p, w)
	}
	return q.slot(p)[:w>>32], nil
}

// slotError explains why a held record's descriptor no longer reads as one.
func (q *Queue) slotError(p, w uint64) error {
	seq, length, flags := unpackDesc(w)
	if seq != uint32(p+1) {
		return q.notHeldCons(p, seq)
	}
	return q.corruptCons("slot %d length %d flags %#x: changed after it was reserved as a %d-byte record", p&q.mask, length, flags, q.slotSize)
}

func (q *Queue) notHeldCons(p uint64, seq uint32) error {
	if int32(seq-uint32(p+1)) > 0 {
		return ErrNotHeld
	}
	return q.corruptCons("slot %d stamp %#x at position %d: want %#x", p&q.mask, seq, p, uint32(p+1))
}

// Release hands record i back to producers.
func (r *ReadRun) Release(i int) error {
	if uint(i) >= uint(r.n) {
		return invalidf("release record %d of a run of %d", i, r.n)
	}
	return r.release(i)
}

// ReleaseAll releases every record of the run not yet released.
func (r *ReadRun) ReleaseAll() error {
	if r.q == nil {
		return nil
	}
	return r.q.releaseRun(r.start, r.n, r.holes)
}

// releaseRun releases the records of the run of n records from start with
// the given holes that this consumer still holds.
func (q *Queue) releaseRun(start uint64, n int, holes uint64) error {
	var first error
	if holes != 0 {
		r := ReadRun{q: q, start: start, n: n, holes: holes}
		for i := n - 1; i >= 0; i-- {
			if err := r.release(i); err != nil && err != ErrNotHeld && first == nil {
				first = err
			}
		}
		return first
	}
	descs, mask := q.m.descs, q.mask
	// Last record first, for the same reason as WriteRun.PublishAll.
	for i := n - 1; i >= 0; i-- {
		p := start + uint64(i)
		d := &descs[p&mask]
		if seq := uint32(d.word.Load()); seq != uint32(p+1) {
			if err := q.notHeldCons(p, seq); err != ErrNotHeld && first == nil {
				first = err
			}
			continue
		}
		StoreRelease64(&d.word, packDesc(uint32(p+q.slots), 0, 0))
	}
	return first
}

// release releases record i and the aborted slots that follow it in the run.
func (r *ReadRun) release(i int) error {
	q := r.q
	o := r.offset(i)
	p := r.start + uint64(o)
	seq, _, _ := unpackDesc(q.m.descs[p&q.mask].word.Load())
	if seq != uint32(p+1) {
		return q.notHeldCons(p, seq)
	}
	q.release(p)
	// The aborted slots right after record i go back with it.
	if holes := bits.TrailingZeros64(^(r.holes >> (o + 1))); holes > 0 {
		q.releaseHoles(p+1, holes)
	}
	return nil
}

// AbortFrom gives records i to Len()-1 back to the queue unread, so that
// they are delivered again in the same order. That is possible only while no
// consumer has reserved after this run: otherwise it returns ErrNotLast and
// the records stay held. The run then holds records 0 to i-1.
func (r *ReadRun) AbortFrom(i int) error {
	if uint(i) > uint(r.n) {
		return invalidf("abort from record %d of a run of %d", i, r.n)
	}
	if i == r.n {
		return nil
	}
	q := r.q
	for j := i; j < r.n; j++ {
		p := r.start + uint64(r.offset(j))
		seq, _, _ := unpackDesc(q.m.descs[p&q.mask].word.Load())
		if seq != uint32(p+1) {
			return q.notHeldCons(p, seq)
		}
	}
	o := r.offset(i)
	end, back := r.start+uint64(r.span()), r.start+uint64(o)
	if q.singleConsumer() {
		if q.m.cons.cursor.Load() != end {
			return ErrNotLast
		}
		StoreRelease64(&q.m.cons.cursor, back)
	} else if !q.m.cons.cursor.CompareAndSwap(end, back) {
		return ErrNotLast
	}
	q.bumpCons(&q.m.cons.returned, uint64(r.n-i))
	var dropped int
	if o < holeWindow {
		dropped = bits.OnesCount64(r.holes >> o)
		r.holes &= 1<<o - 1
	}
	if dropped > 0 {
		// They will be passed over, and counted, again.
		q.bumpCons(&q.m.cons.skipped, ^uint64(dropped-1))
	}
	r.n = i
	return nil
}

// AbortAll gives every record of the run back, as AbortFrom(0).
func (r *ReadRun) AbortAll() error { return r.AbortFrom(0) }
