package ring

import (
	"sync"
	"sync/atomic"
	"time"
)

// This file is a queue whose slot count changes while it runs, in one
// process: a chain of generations, each an ordinary Queue. A resize makes
// the next generation, points producers at it and seals the current one, so
// no producer can reserve there any more; consumers drain the sealed
// generation, then follow. Nothing moves between generations: records
// stay where they were published, and every run finishes in the generation
// it was reserved in. ../shared/design/resize.md has the shape this is the
// in-process start of; across processes and under a device it is not yet
// built.

// sealed is the bit a resize sets in a generation's producer cursor: a
// producer's compare-and-swap of the cursor then fails, and it reads the
// bit instead of a position.
const sealed = 1 << 63

// generation is one link of the chain.
type generation struct {
	q     *Queue
	index uint64                     // 0 for the first, counting up
	next  atomic.Pointer[generation] // set before the generation is sealed
	// final is the first position not in this generation: its producer
	// cursor when it was sealed. Valid once closed is true.
	final    atomic.Uint64
	sealedAt time.Time // written before closed is set
	closed   atomic.Bool
}

// Resizable is a queue shared by any number of producing and consuming
// goroutines whose slot count can change while they run (Resize). Nothing is
// lost, duplicated or reordered across a resize: each producer's records are
// consumed in the order it reserved them, and a run reserved before a
// resize is published or released as usual after it.
type Resizable struct {
	slotSize int
	single   Config                     // SingleProducer, SingleConsumer
	write    atomic.Pointer[generation] // where producers reserve
	read     atomic.Pointer[generation] // where consumers reserve
	mu       sync.Mutex                 // serializes Resize
	onSeal   func(*Queue)               // set by OnSeal before use
	// last is where a single producer reserved last; only it reads or
	// writes this.
	last *generation

	resizes  atomic.Uint64
	draining atomic.Int64 // ns generations took from sealed to drained
}

// NewResizable makes a resizable queue of cfg.Slots slots of cfg.SlotSize
// bytes on the Go heap; every generation has cfg's SingleProducer and
// SingleConsumer. Shared producers are sealed out of a generation by
// Resize itself; a single producer, which stores its cursor without the
// compare-and-swap that relies on, seals the generation it leaves on its
// first reserve after a Resize (until then it cannot have published
// anything newer, so consumers lose nothing by waiting there).
func NewResizable(cfg Config) (*Resizable, error) {
	q, err := New(cfg)
	if err != nil {
		return nil, err
	}
	q.gen = 1
	r := &Resizable{slotSize: cfg.SlotSize,
		single: Config{SingleProducer: cfg.SingleProducer, SingleConsumer: cfg.SingleConsumer}}
	g := &generation{q: q}
	r.write.Store(g)
	r.read.Store(g)
	r.last = g
	return r, nil
}

// OnSeal sets f to be called with a generation's queue whenever agents
// asleep on its lines may have to move on: when it is sealed (no producer
// can reserve there any more), and, for a single producer, which seals it
// later itself, also when a Resize makes the next generation current. A
// waiting wrapper (ring/wait) wakes the sleepers there; one woken for
// nothing looks and sleeps again. Set it before the queue is used; there is
// one.
func (r *Resizable) OnSeal(f func(*Queue)) { r.onSeal = f }

// seal records that g takes no more reservations: its final position is c.
func (r *Resizable) seal(g *generation, c uint64) {
	g.final.Store(c)
	g.sealedAt = time.Now()
	g.closed.Store(true)
	if r.onSeal != nil {
		r.onSeal(g.q)
	}
}

// Resize makes the queue hold slots slots from now on. Producers reserve in
// the new size at once; records already in the queue stay where they are
// until consumed, so a shrink below what is in flight loses nothing and
// waits for nothing. It is safe to call while producers and consumers run.
func (r *Resizable) Resize(slots int) error {
	cfg := Config{Slots: slots, SlotSize: r.slotSize, SingleProducer: r.single.SingleProducer, SingleConsumer: r.single.SingleConsumer}
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	q, err := New(cfg)
	if err != nil {
		return err
	}
	old := r.write.Load()
	g := &generation{q: q, index: old.index + 1}
	q.gen = uint32(g.index%(1<<32-1)) + 1 // never 0, which would mean not resizable
	old.next.Store(g)
	// Producers go to g from now on; one that still tries old finds it
	// sealed below and comes back here.
	r.write.Store(g)
	r.resizes.Add(1)
	if r.single.SingleProducer {
		// The producer seals old when it moves on; wake it, should it
		// sleep there for room.
		if r.onSeal != nil {
			r.onSeal(old.q)
		}
		return nil
	}
	cur := &old.q.m.prod.cursor
	for {
		c := cur.Load()
		if cur.CompareAndSwap(c, c|sealed) {
			r.seal(old, c)
			return nil
		}
	}
}

// moveOn is a single producer's first step in generation g: it seals every
// generation from the one it reserved in last up to g. It is the only
// writer of their cursors, so a plain store of the sealed bit is the seal;
// a rollback of a run it still holds there then fails, and the run's
// unpublished slots become holes.
func (r *Resizable) moveOn(g *generation) {
	for x := r.last; x != g; x = x.next.Load() {
		cur := &x.q.m.prod.cursor
		c := cur.Load()
		StoreRelease64(cur, c|sealed)
		r.seal(x, c)
	}
	r.last = g
}

// Cap is the slot count producers reserve in now.
func (r *Resizable) Cap() int { return r.write.Load().q.Cap() }

// ProducerQueue is the generation producers reserve in now, and
// ConsumerQueue the one consumers read, for their wake lines and counters:
// a waiting wrapper (ring/wait) sleeps producers on the first's space line
// and consumers on the second's items line, and after a Resize wakes both
// lines of the generation that was the producers' before it. Reserve
// through the Resizable's sides, not on these.
func (r *Resizable) ProducerQueue() *Queue { return r.write.Load().q }

// ConsumerQueue: see ProducerQueue.
func (r *Resizable) ConsumerQueue() *Queue { return r.read.Load().q }

// ResizeStats counts a Resizable's resizes.
type ResizeStats struct {
	Resizes     uint64        // Resize calls that made a new generation
	Generations uint64        // generations not yet drained and left, the current one included
	Draining    time.Duration // time sealed generations took to drain, in all
}

// Stats reads the resize counters.
func (r *Resizable) Stats() ResizeStats {
	live := r.write.Load().index - r.read.Load().index + 1
	return ResizeStats{Resizes: r.resizes.Load(), Generations: live, Draining: time.Duration(r.draining.Load())}
}

// ResizableProducer is the producing side of a Resizable.
type ResizableProducer struct{ r *Resizable }

// Producer returns the producing side.
func (r *Resizable) Producer() ResizableProducer { return ResizableProducer{r} }

// Reserve reserves exactly n slots, or none: ErrFull if fewer are free,
// ErrInvalid if n is more than the queue holds now.
func (p ResizableProducer) Reserve(n int) (WriteRun, error) { return p.reserve(n, true) }

// ReserveUpTo reserves 1 to n slots (n above the slot count counts as the
// slot count).
func (p ResizableProducer) ReserveUpTo(n int) (WriteRun, error) { return p.reserve(n, false) }

func (p ResizableProducer) reserve(n int, exact bool) (WriteRun, error) {
	for {
		g := p.r.write.Load()
		if p.r.single.SingleProducer && g != p.r.last {
			p.r.moveOn(g)
		}
		w, err := g.q.reserveWrite(clamp(n, g.q, exact), exact)
		if err != ErrSealed {
			return w, err
		}
		// A resize sealed g after it made the next generation current:
		// the next load finds that one.
	}
}

// clamp is n for an exact reserve (which the queue checks), and at most the
// slot count for an up-to one: sizes change under the caller.
func clamp(n int, q *Queue, exact bool) int {
	if exact || n <= q.Cap() {
		return n
	}
	return q.Cap()
}

// ResizableConsumer is the consuming side of a Resizable.
type ResizableConsumer struct{ r *Resizable }

// Consumer returns the consuming side.
func (r *Resizable) Consumer() ResizableConsumer { return ResizableConsumer{r} }

// Reserve reserves exactly n records of one generation, or none: ErrEmpty
// if fewer are ready in one run, ErrInvalid if n is more than the slot
// count of the generation being read.
func (c ResizableConsumer) Reserve(n int) (ReadRun, error) { return c.reserve(n, true) }

// ReserveUpTo reserves 1 to n records of one generation.
func (c ResizableConsumer) ReserveUpTo(n int) (ReadRun, error) { return c.reserve(n, false) }

func (c ResizableConsumer) reserve(n int, exact bool) (ReadRun, error) {
	for {
		g := c.r.read.Load()
		run, err := g.q.reserveRead(clamp(n, g.q, exact), exact)
		if err != ErrEmpty || !g.closed.Load() {
			return run, err
		}
		// Sealed: once consumers have taken every position below final
		// the generation is drained and its successor is next. Records
		// still held there are released into it as usual.
		if g.q.m.cons.cursor.Load() != g.final.Load() {
			return run, err
		}
		if c.r.read.CompareAndSwap(g, g.next.Load()) {
			c.r.draining.Add(int64(time.Since(g.sealedAt)))
		}
	}
}
