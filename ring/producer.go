package ring

import (
	"errors"
	"fmt"
	"sync/atomic"
)

// maxAttempts bounds the retries of one reserve. Each retry means the cursor
// moved under us; a correct peer moves it at most once per operation of its
// own, so reaching the bound means something keeps rewriting the cursor.
const maxAttempts = 1 << 20

// Producer is the producing side of a queue. Unless the queue was made with
// SingleProducer, any number of goroutines and processes may produce at once.
type Producer struct{ q *Queue }

// Producer returns the producing side of q.
func (q *Queue) Producer() Producer { return Producer{q} }

// WriteRun is a run of consecutive slots reserved by a producer. Write each
// slot's payload in place (Slot), then Publish it with its length, or Abort
// it; slots may be published in any order and from any goroutine, but each
// exactly once. A WriteRun is a small value: copy it freely, but finish each
// slot once.
type WriteRun struct {
	q     *Queue
	start uint64
	n     int
}

// Reserve reserves exactly n consecutive slots, or none: ErrFull if fewer
// than n are free.
func (p Producer) Reserve(n int) (WriteRun, error) { return p.q.reserveWrite(n, true) }

// ReserveUpTo reserves between 1 and n consecutive slots, as many as are
// free: ErrFull if none is.
func (p Producer) ReserveUpTo(n int) (WriteRun, error) { return p.q.reserveWrite(n, false) }

func (q *Queue) reserveWrite(n int, exact bool) (WriteRun, error) {
	if n < 1 || uint64(n) > q.slots {
		return WriteRun{}, invalidf("reserve %d slots: want 1 to %d", n, q.slots)
	}
	prod := q.m.prod
	descs, mask := q.m.descs, q.mask
	pos := prod.cursor.Load()
	for range maxAttempts {
		if pos&sealed != 0 && q.gen != 0 {
			return WriteRun{}, ErrSealed
		}
		// Count the free slots from pos. Slot p is free for this lap when
		// its stamp is p: the consumer's release store (stamp p) pairs
		// with this load, so the consumer is done with the payload.
		m, odd := 0, uint32(0)
		full := false
		for m < n {
			p := pos + uint64(m)
			seq := uint32(descs[p&mask].word.Load())
			d := seq - uint32(p)
			if d == 0 {
				m++
				continue
			}
			// p-N: reserved a lap ago, not yet published. p-N+1:
			// published a lap ago, not yet released. Either way full.
			if d == q.negSlots || d == q.negSlots+1 {
				full = true
			} else {
				odd = seq
			}
			break
		}
		if !full && m < n {
			// A stamp no correct agent would leave for a producer at
			// pos. With several producers, pos may be stale: the stamp
			// was written after someone moved the cursor past pos, and
			// reading it orders our next cursor load after that move.
			now := prod.cursor.Load()
			if now == pos {
				return WriteRun{}, q.corruptProd("slot %d stamp %#x at position %d: want %#x, or a lap behind",
					(pos+uint64(m))&q.mask, odd, pos+uint64(m), uint32(pos+uint64(m)))
			}
			pos = now
			continue
		}
		if m == 0 || exact && m < n {
			q.bumpProd(&prod.full, 1)
			return WriteRun{}, ErrFull
		}
		if q.singleProducer() {
			StoreRelease64(&prod.cursor, pos+uint64(m))
		} else if !prod.cursor.CompareAndSwap(pos, pos+uint64(m)) {
			pos = prod.cursor.Load()
			continue
		}
		return WriteRun{q: q, start: pos, n: m}, nil
	}
	return WriteRun{}, q.corruptProd("producer cursor moved %d times during one reserve", maxAttempts)
}

func (q *Queue) corruptProd(format string, args ...any) error {
	q.m.prod.corrupt.Add(1)
	return &CorruptError{Side: "producer", Reason: fmt.Sprintf(format, args...)}
}

// Len is the number of slots in the run.
func (w *WriteRun) Len() int { return w.n }

// Queue is the queue the run was reserved in: for a Resizable, the
// generation, whose wake lines and counters its publishing concerns.
func (w *WriteRun) Queue() *Queue { return w.q }

// Position is the queue position of slot i of the run: positions count
// every slot ever reserved, so consumers see records in position order.
func (w *WriteRun) Position(i int) uint64 {
	w.check(i)
	return w.start + uint64(i)
}

// Slot returns the payload area of slot i, the queue's full slot size, to
// write in place. Like indexing a slice, it panics if i is out of range.
func (w *WriteRun) Slot(i int) []byte {
	w.check(i)
	return w.q.slot(w.start + uint64(i))
}

func (w *WriteRun) check(i int) {
	if uint(i) >= uint(w.n) {
		panic(errIndex)
	}
}

// errIndex is what the accessors panic with for an index outside the run,
// as slice indexing does; a plain value keeps them small enough to inline.
var errIndex = errors.New("ring: slot or record index out of range for the run")

// Publish makes slot i visible to consumers as a record of length bytes.
func (w *WriteRun) Publish(i, length int) error {
	if uint(i) >= uint(w.n) {
		return invalidf("publish slot %d of a run of %d", i, w.n)
	}
	if uint(length) > uint(w.q.slotSize) {
		return invalidf("publish %d bytes into a %d-byte slot", length, w.q.slotSize)
	}
	return w.q.publish(w.start+uint64(i), uint32(length), 0)
}

// PublishAll publishes every slot of the run not yet published or aborted,
// each as a record of length bytes.
func (w *WriteRun) PublishAll(length int) error {
	if w.q == nil {
		return nil
	}
	return w.q.publishRun(w.start, w.n, length, nil)
}

// publishRun publishes the slots at positions start to start+n-1 that this
// producer still holds, each as a record of length bytes, or of lengths[i]
// if lengths is not nil (which the caller checked).
func (q *Queue) publishRun(start uint64, n, length int, lengths []int) error {
	if lengths == nil && uint(length) > uint(q.slotSize) {
		return invalidf("publish %d bytes into a %d-byte slot", length, q.slotSize)
	}
	var first error
	descs, mask := q.m.descs, q.mask
	// Last slot first: a consumer waiting at the first slot then finds the
	// whole run ready at once instead of chasing it slot by slot.
	for i := n - 1; i >= 0; i-- {
		p := start + uint64(i)
		d := &descs[p&mask]
		if seq := uint32(d.word.Load()); seq != uint32(p) {
			if err := q.notHeldProd(p, seq); err != ErrNotHeld && first == nil {
				first = err
			}
			continue
		}
		if lengths != nil {
			length = lengths[i]
		}
		// Pairs with the consumer's load of the stamp in reserveRead.
		StoreRelease64(&d.word, packDesc(uint32(p)+1, uint32(length), 0))
	}
	return first
}

// PublishLengths publishes slots 0 to len(lengths)-1 of the run, slot i as
// a record of lengths[i] bytes, skipping any already published or aborted,
// and counts them in one update: for a run of records of different lengths,
// where Publish on each would update the producers' shared counter once a
// record. Every length is checked before anything is published.
func (w *WriteRun) PublishLengths(lengths []int) error {
	q := w.q
	if len(lengths) > w.n {
		return invalidf("publish %d slots of a run of %d", len(lengths), w.n)
	}
	for i, length := range lengths {
		if uint(length) > uint(q.slotSize) {
			return invalidf("publish %d bytes into a %d-byte slot (slot %d of the run)", length, q.slotSize, i)
		}
	}
	return q.publishRun(w.start, len(lengths), 0, lengths)
}

// Abort gives slot i up: consumers never see it, and the slot returns to
// the queue once consumers pass it.
func (w *WriteRun) Abort(i int) error {
	if uint(i) >= uint(w.n) {
		return invalidf("abort slot %d of a run of %d", i, w.n)
	}
	if err := w.q.publish(w.start+uint64(i), 0, FlagAborted); err != nil {
		return err
	}
	w.q.bumpProd(&w.q.m.prod.aborted, 1)
	return nil
}

// AbortAll gives up every slot of the run not yet published. When those
// slots end the run and no producer reserved after it, the cursor moves back
// and the slots are reused at once; otherwise each becomes a hole that
// consumers pass over.
func (w *WriteRun) AbortAll() error {
	q := w.q
	// Find the unpublished suffix [k, n).
	k := w.n
	for k > 0 {
		p := w.start + uint64(k-1)
		seq, _, _ := unpackDesc(q.m.descs[p&q.mask].word.Load())
		if seq != uint32(p) {
			break
		}
		k--
	}
	end := w.start + uint64(w.n)
	rolled := 0
	if k < w.n {
		back := w.start + uint64(k)
		if q.singleProducer() {
			if q.m.prod.cursor.Load() == end {
				StoreRelease64(&q.m.prod.cursor, back)
				rolled = w.n - k
			}
		} else if q.m.prod.cursor.CompareAndSwap(end, back) {
			rolled = w.n - k
		}
	}
	if rolled > 0 {
		w.n = k
		q.bumpProd(&q.m.prod.rolledBack, uint64(rolled))
	}
	var first error
	holes := 0
	for i := range w.n {
		err := q.publish(w.start+uint64(i), 0, FlagAborted)
		switch {
		case err == nil:
			holes++
		case err == ErrNotHeld:
		case first == nil:
			first = err
		}
	}
	q.bumpProd(&q.m.prod.aborted, uint64(rolled+holes))
	return first
}

// publish finishes the slot at position p: it writes the stamp p+1 with the
// length and flags in one store. That store pairs with the consumer's load
// of the descriptor in reserveRead: a consumer that sees p+1 sees the
// payload written before it.
func (q *Queue) publish(p uint64, length, flags uint32) error {
	d := &q.m.descs[p&q.mask]
	seq, _, _ := unpackDesc(d.word.Load())
	if seq != uint32(p) {
		return q.notHeldProd(p, seq)
	}
	StoreRelease64(&d.word, packDesc(uint32(p)+1, length, flags))
	return nil
}

// notHeldProd explains why a slot this producer reserved at position p does
// not carry the stamp p: it moved on (published, aborted, then perhaps
// released), or something wrote a stamp no agent could have.
func (q *Queue) notHeldProd(p uint64, seq uint32) error {
	if int32(seq-uint32(p)) > 0 {
		return ErrNotHeld
	}
	return q.corruptProd("slot %d stamp %#x at position %d: want %#x", p&q.mask, seq, p, uint32(p))
}

// bumpProd adds n to a producer counter. A single producer owns its line
// and needs no atomic read-modify-write.
func (q *Queue) bumpProd(c *atomic.Uint64, n uint64) {
	if q.singleProducer() {
		StoreRelease64(c, c.Load()+n)
	} else {
		c.Add(n)
	}
}
