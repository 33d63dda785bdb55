package ring

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// This file is a queue whose slot count changes while it runs: a chain of
// generations, each an ordinary Queue formatted RESIZABLE. A resize makes
// the next generation, names it in the current one's link line and seals
// the current one, so no producer can reserve there any more; consumers
// drain the sealed generation, then follow. Nothing moves between
// generations: records stay where they were published, and every run
// finishes in the generation it was reserved in. Everything agents must
// agree on is in the metadata (LAYOUT.md, "Resizing"), so the agents of one
// queue may be in several processes, each with a Resizable over its own
// mapping (package ipc does this), or be a device that follows the link
// line by address.

// sealed is Sealed: a producer's compare-and-swap of the cursor fails once
// it is set, and it reads the bit instead of a position.
const sealed = Sealed

// generation is one link of the chain, as this process sees it. What every
// agent must agree on lives in the queue's metadata: the sealed bit and the
// final position in its producer cursor, the next generation's number and
// size in its link line. The pointers here only cache what this process
// has mapped.
type generation struct {
	q     *Queue
	index uint64                     // 0 for the first this process knew, counting up
	next  atomic.Pointer[generation] // once this process has linked the next one
	// sealedAt is when this process saw the generation sealed, in
	// nanoseconds since the Resizable was made (0: not seen), for
	// ResizeStats.Draining.
	sealedAt atomic.Int64
}

// final reports whether g is sealed, and its final position: the first
// position not in it, which is its producer cursor without the bit.
func (g *generation) final() (uint64, bool) {
	c := g.q.m.prod.cursor.Load()
	return c &^ sealed, c&sealed != 0
}

// Resizable is a queue shared by any number of producing and consuming
// goroutines, in one process or several, whose slot count can change while
// they run (Resize). Nothing is lost, duplicated or reordered across a
// resize: each producer's records are consumed in the order it reserved
// them, and a run reserved before a resize is published or released as
// usual after it.
//
// Each generation is an ordinary Queue formatted RESIZABLE (Config.Resizable).
// One agent resizes: it formats the next generation, names it in the
// current one's link line, and seals the current one (LAYOUT.md,
// "Resizing"). In one process that is Resize. Across processes the agent
// that resizes calls ResizeTo with a queue in regions it shares, and every
// other process must have been given those regions and called Add with
// its own view of them before that: an agent that finds a generation
// named that it has not been given takes it as full or empty until Add.
type Resizable struct {
	slotSize int
	single   Config                     // SingleProducer, SingleConsumer
	write    atomic.Pointer[generation] // where producers reserve
	read     atomic.Pointer[generation] // where consumers reserve
	onSeal   func(*Queue)               // set by OnSeal before use
	born     time.Time

	mu sync.Mutex // Resize, ResizeTo, Add, Retire, and linking
	// tail is the newest generation this process linked or made; oldest
	// the oldest not yet retired.
	tail, oldest *generation
	// given are generations Add was given that the chain does not name yet,
	// by generation number.
	given map[uint32]*generation

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
	cfg.Resizable, cfg.Generation = true, 1
	q, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return NewResizableOn(q)
}

// NewResizableOn makes a Resizable whose current generation is q, a queue
// formatted or attached with FeatureResizable: in another process's
// regions, say, or in a BAR. Later generations keep its slot size and
// features.
func NewResizableOn(q *Queue) (*Resizable, error) {
	if q.gen == 0 {
		return nil, invalidf("a queue that is not resizable (format it with Config.Resizable)")
	}
	r := &Resizable{slotSize: q.slotSize, born: time.Now(), given: map[uint32]*generation{},
		single: Config{SingleProducer: q.singleProducer(), SingleConsumer: q.singleConsumer()}}
	g := &generation{q: q}
	r.write.Store(g)
	r.read.Store(g)
	r.tail, r.oldest = g, g
	return r, nil
}

// OnSeal sets f to be called with a generation's queue whenever agents
// asleep on its lines may have to move on: when this process seals it or
// a single producer here leaves it, and when a resize names the next one.
// A waiting wrapper (ring/wait) wakes the sleepers there; one woken for
// nothing looks and sleeps again. Set it before the queue is used; there is
// one.
func (r *Resizable) OnSeal(f func(*Queue)) { r.onSeal = f }

func (r *Resizable) sealed(q *Queue) {
	if r.onSeal != nil {
		r.onSeal(q)
	}
}

// nextGeneration is the number of the generation after gen: counting up,
// never 0, which would mean not resizable.
func nextGeneration(gen uint32) uint32 {
	if gen == 1<<32-1 {
		return 1
	}
	return gen + 1
}

// NextGeneration is the generation number the next resize must format its
// queue with (Config.Generation) for ResizeTo.
func (r *Resizable) NextGeneration() uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return nextGeneration(r.tail.q.gen)
}

// Resize makes the queue hold slots slots from now on, in a new generation
// on the Go heap. Producers reserve in the new size at once; records
// already in the queue stay where they are until consumed, so a shrink
// below what is in flight loses nothing and waits for nothing. It is safe
// to call while producers and consumers run.
func (r *Resizable) Resize(slots int) error {
	cfg := Config{Slots: slots, SlotSize: r.slotSize, SingleProducer: r.single.SingleProducer,
		SingleConsumer: r.single.SingleConsumer, Resizable: true}
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg.Generation = nextGeneration(r.tail.q.gen)
	q, err := New(cfg)
	if err != nil {
		return err
	}
	return r.resizeTo(q, 0, 0)
}

// ResizeTo makes q, an empty queue formatted with Config.Resizable, the
// generation NextGeneration() names, the same slot size and features,
// the next generation: it names q in the current generation's link line
// (with metaAddr and dataAddr, where an agent that reaches memory by
// address finds it; 0 if none does) and, for shared producers, seals the
// current generation. Every other process that uses the queue must have
// Added its view of q's regions first.
func (r *Resizable) ResizeTo(q *Queue, metaAddr, dataAddr uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resizeTo(q, metaAddr, dataAddr)
}

func (r *Resizable) resizeTo(q *Queue, metaAddr, dataAddr uint64) error {
	old := r.tail
	if err := r.fits(q, nextGeneration(old.q.gen)); err != nil {
		return err
	}
	if r.pending() {
		return ErrResizing
	}
	if c := q.m.prod.cursor.Load(); c != 0 {
		return invalidf("generation %d is not empty: producer cursor %#x", q.gen, c)
	}
	g := &generation{q: q, index: old.index + 1}
	link := old.q.m.link()
	if link.next.Load() != 0 {
		return corruptf("generation %d already names generation %d: another agent resized it", old.q.gen, link.next.Load())
	}
	link.metaAddr.Store(metaAddr)
	link.dataAddr.Store(dataAddr)
	link.slots.Store(uint32(q.slots))
	// Pairs with the load in link: an agent that reads the number reads
	// the rest of the line.
	link.next.Store(q.gen)
	old.next.Store(g)
	r.tail = g
	r.resizes.Add(1)
	if r.single.SingleProducer {
		// The producer seals old when it moves on; wake it, should it
		// sleep there for room.
		r.sealed(old.q)
		return nil
	}
	// Producers here go to g from now on; one that still tries old (here
	// or in another process) finds it sealed and follows the link.
	r.write.Store(g)
	cur := &old.q.m.prod.cursor
	for {
		c := cur.Load()
		if c&sealed != 0 {
			return corruptf("generation %d was sealed by another agent", old.q.gen)
		}
		if cur.CompareAndSwap(c, c|sealed) {
			old.sealedAt.Store(r.now())
			r.sealed(old.q)
			return nil
		}
	}
}

// ResizePending reports whether a single producer has yet to follow the
// last resize: it seals the generation it leaves when it next reserves,
// and until then another resize is refused (ErrResizing), so that at most
// one generation waits for it. Shared producers are sealed out at once,
// and never leave one pending.
func (r *Resizable) ResizePending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending()
}

// pending is ResizePending with r.mu held: the generation before the
// newest is named but not sealed.
func (r *Resizable) pending() bool {
	if !r.single.SingleProducer {
		return false
	}
	for g := r.oldest; g != r.tail; g = g.next.Load() {
		if g.next.Load() == r.tail {
			_, done := g.final()
			return !done
		}
	}
	return false
}

// SealAbandoned finishes the last resize for a single producer that
// stopped before it followed it, as LAYOUT.md's "Failure" says the owner
// may: it seals the generation the producer was leaving, as the producer
// would have on its next reserve. First it turns every slot there the
// producer reserved and did not publish into a hole (an aborted slot, which
// consumers pass over), and takes as the generation's final position the
// stored producer cursor, or, past it, the last record the producer
// published there (an agent stores its cursor after it publishes). Every
// record the producer published stays for consumers to drain; they then
// follow to the next generation, where a new producer (Producer, on any
// view) reserves. It returns how many slots became holes, and wakes
// whoever sleeps on the generation (OnSeal).
//
// It is safe only once the caller knows the producer will never touch the
// queue again: its process has exited (its parent reaped it, a pidfd or
// its session's socket said so), or a device was reset and does not drive
// the queue until it is attached anew. No producer of this Resizable may
// be running either: the producer it replaces is the only one there is. A
// producer that is only slow would publish into holes consumers may have
// passed, or reserve past the seal. Consumers may run meanwhile, here and
// in other processes.
//
// ErrInvalid if the queue's producers are shared: a resize seals their
// generation itself, and a dead shared producer's slots cannot be told
// from a live one's. ErrNotPending if no resize waits for the producer:
// none was named since it last followed, or it sealed the generation
// itself before it stopped. A producer that died in the newest generation
// (holding slots there, say) is recovered by naming one more (ResizeTo,
// or Resize), which it will never follow, and then SealAbandoned.
func (r *Resizable) SealAbandoned() (holes int, err error) {
	if !r.single.SingleProducer {
		return 0, invalidf("SealAbandoned on a queue of shared producers: a resize seals their generation itself")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Link what other agents named and this process was given, so that a
	// view other than the owner's finds the resize too.
	for {
		n, err := r.link(r.tail)
		if err != nil {
			return 0, err
		}
		if n == nil {
			break
		}
	}
	var g *generation
	for x := r.oldest; x != r.tail; x = x.next.Load() {
		if x.next.Load() == r.tail {
			g = x
		}
	}
	if g == nil {
		return 0, fmt.Errorf("%w: generation %d is the newest this process has, and names none", ErrNotPending, r.tail.q.gen)
	}
	q := g.q
	c := q.m.prod.cursor.Load()
	if c&sealed != 0 {
		return 0, fmt.Errorf("%w: generation %d is sealed: its producer followed the resize", ErrNotPending, q.gen)
	}
	holes, final := q.abandon(c)
	r.sealAt(g, final) // the producer's own step (moveOn), after the holes
	r.write.CompareAndSwap(g, r.tail)
	return holes, nil
}

// abandon is SealAbandoned's work on q, a generation whose single producer
// is gone and whose cursor reads c: it aborts the slots the producer holds
// (stamp p at a position it passed) and returns how many, with the final
// position to seal q at. A producer that stores its cursor late (an agent,
// by less than a lap) may have published past c: the final position is
// past the last record it published there (stamp p+1), or consumers took
// and released (stamp p+N), and positions it passed without publishing
// become holes too. The stamps are read once each, and a hostile peer's
// are clamped to a lap from the consumer cursor.
func (q *Queue) abandon(c uint64) (holes int, final uint64) {
	descs, mask, n := q.m.descs, q.mask, q.slots
	stamp := func(p uint64) uint32 { return uint32(descs[p&mask].word.Load()) }
	final = c
	for p := c; p < c+n; p++ {
		if s := stamp(p); s == uint32(p+1) || s == uint32(p+n) {
			final = p + 1
		}
	}
	// Read after the stamps: a consumer that took a record the loop did
	// not see (published and released before it looked) has moved the
	// cursor past it.
	cons := q.m.cons.cursor.Load()
	final = max(final, cons)
	lo := cons
	if final-lo > n {
		lo = final - n
	}
	for p := lo; p < final; p++ {
		if stamp(p) == uint32(p) {
			// Pairs with the consumers' load of the stamp, as a
			// producer's abort does.
			StoreRelease64(&descs[p&mask].word, packDesc(uint32(p)+1, 0, FlagAborted))
			holes++
		}
	}
	q.m.prod.aborted.Add(uint64(holes))
	return holes, final
}

// fits checks that q can be generation gen of r.
func (r *Resizable) fits(q *Queue, gen uint32) error {
	switch {
	case q.gen != gen:
		return invalidf("a queue of generation %d where generation %d comes next", q.gen, gen)
	case q.slotSize != r.slotSize:
		return invalidf("a generation of %d-byte slots in a queue of %d-byte slots", q.slotSize, r.slotSize)
	case q.singleProducer() != r.single.SingleProducer || q.singleConsumer() != r.single.SingleConsumer:
		return invalidf("a generation with features %#x in a queue with %#x", q.features, r.single.features()|FeatureResizable)
	}
	return nil
}

// Add gives this process its view of a generation another agent made (and
// will name with ResizeTo), before that agent names it: agents here follow
// the link to it once they find it named. q is attached (Attach) to the
// regions that agent passed over.
func (r *Resizable) Add(q *Queue) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q.gen == 0 {
		return invalidf("a queue that is not resizable")
	}
	if err := r.fits(q, q.gen); err != nil {
		return err
	}
	if _, dup := r.given[q.gen]; dup || r.known(q.gen) {
		return invalidf("generation %d given twice", q.gen)
	}
	if len(r.given) >= maxGiven {
		// Producers here have not followed the resizes yet.
		return fmt.Errorf("%w: %d generations given here and not yet followed", ErrResizing, len(r.given))
	}
	r.given[q.gen] = &generation{q: q}
	// Agents here may be asleep on a generation that names this one.
	r.sealed(r.tail.q)
	return nil
}

// Withdraw takes back a generation Add was given that the chain does not
// name yet (the agent that resizes gave up on it, and may offer the number
// again), and returns its queue for the caller to give back its regions.
func (r *Resizable) Withdraw(gen uint32) (*Queue, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.given[gen]
	if !ok {
		return nil, false
	}
	delete(r.given, gen)
	return g.q, true
}

// maxGiven bounds the generations Add holds before the chain names them.
const maxGiven = 16

// known reports whether the chain from oldest holds generation gen.
func (r *Resizable) known(gen uint32) bool {
	for g := r.oldest; g != nil; g = g.next.Load() {
		if g.q.gen == gen {
			return true
		}
	}
	return false
}

// successor is the generation after g, once g's link line names it and
// this process has it; nil if not yet. A link line that names anything
// but the next number, or a size other than the queue given for it, is
// corruption.
func (r *Resizable) successor(g *generation) (*generation, error) {
	if n := g.next.Load(); n != nil {
		return n, nil
	}
	// Without the lock first: a single producer asks on every reserve.
	if want, err := g.named(); want == 0 || err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.link(g)
}

// mayBeNamed is successor's first look, small enough to inline into the
// reserves that ask it on every call: false while no resize has named g's
// next generation (this process has not linked one, and the link line's
// word is 0); true otherwise, a name that named then checks.
func (g *generation) mayBeNamed() bool {
	return g.next.Load() != nil || g.q.m.link().next.Load() != 0
}

// named is the generation g's link line names next, 0 if none yet; a name
// other than the next number is corruption.
func (g *generation) named() (uint32, error) {
	want := g.q.m.link().next.Load()
	if gen := nextGeneration(g.q.gen); want != 0 && want != gen {
		return 0, corruptf("generation %d links to generation %d: want %d", g.q.gen, want, gen)
	}
	return want, nil
}

// link is successor's second half, with r.mu held.
func (r *Resizable) link(g *generation) (*generation, error) {
	if n := g.next.Load(); n != nil {
		return n, nil
	}
	want, err := g.named()
	if want == 0 || err != nil {
		return nil, err
	}
	link := g.q.m.link()
	n := r.given[want]
	if n == nil {
		return nil, nil
	}
	if slots := link.slots.Load(); uint64(slots) != n.q.slots {
		return nil, corruptf("generation %d names generation %d of %d slots: the one given has %d", g.q.gen, want, slots, n.q.slots)
	}
	delete(r.given, want)
	n.index = g.index + 1
	g.next.Store(n)
	if r.tail == g {
		r.tail = n
	}
	return n, nil
}

// moveOn is a single producer's step from g, which names n: it seals g.
// It is the only writer of g's cursor, so a plain store of the sealed bit
// is the seal; a rollback of a run it still holds there then fails, and
// the run's unpublished slots become holes.
func (r *Resizable) moveOn(g, n *generation) {
	r.sealAt(g, g.q.m.prod.cursor.Load())
	r.write.Store(n)
}

// sealAt is a single producer's seal of g at position final, made by the
// producer as it moves on (moveOn) or for it (SealAbandoned), and the
// wakeup of whoever sleeps on g: the last touch of g's memory on that path.
func (r *Resizable) sealAt(g *generation, final uint64) {
	StoreRelease64(&g.q.m.prod.cursor, final|sealed)
	// The seal is a plain store; OnSeal's wakers next load the waiters
	// words, and a store may pass a later load: order them, as a waker
	// must (the shared producers' seal is a compare-and-swap, which does).
	Fence()
	g.sealedAt.Store(r.now())
	r.sealed(g.q)
}

func (r *Resizable) now() int64 { return max(int64(time.Since(r.born)), 1) }

// Retire drops from the chain the generations every agent is done with,
// as the metadata shows it: sealed, drained, every record in them released,
// and followed by one this process has. It returns their queues, oldest
// first, so that the caller can give back their regions (for a device:
// once the device's link_left says it left too). Producers and consumers
// here that have not moved on yet (because their side is played in another
// process, or they have not reserved since) are moved on.
//
// The caller must know that no goroutine but its own is inside a call on
// the Resizable, nor on a run of a retired generation: a process whose
// producing and consuming here is done by the goroutine that calls it,
// between its own calls, knows that, and so does any caller once the
// agents have stopped.
func (r *Resizable) Retire() []*Queue {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Queue
	for g := r.oldest; ; {
		// The next generation, linked here if another process named it
		// and gave it; the newest has none.
		n, err := r.link(g)
		if err != nil || n == nil {
			break
		}
		final, done := g.final()
		if !done || g.q.m.cons.cursor.Load() != final {
			break
		}
		if _, held := g.q.heldSlots(final, final); held != 0 {
			break
		}
		r.read.CompareAndSwap(g, n)
		r.write.CompareAndSwap(g, n)
		out = append(out, g.q)
		g = n
		r.oldest = g
	}
	return out
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
	Resizes     uint64        // resizes this process made (Resize, ResizeTo)
	Generations uint64        // generations from the one consumers read to the newest, both included
	Draining    time.Duration // time sealed generations took to drain, in all, as this process saw it
}

// Stats reads the resize counters.
func (r *Resizable) Stats() ResizeStats {
	r.mu.Lock()
	live := r.tail.index - r.read.Load().index + 1
	r.mu.Unlock()
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
	r := p.r
	for {
		g := r.write.Load()
		if r.single.SingleProducer && g.mayBeNamed() {
			// A single producer leaves a generation once it is named:
			// that seals it.
			next, err := r.successor(g)
			if err != nil {
				return WriteRun{}, err
			}
			if next != nil {
				r.moveOn(g, next)
				continue
			}
		}
		w, err := g.q.reserveWrite(clamp(n, g.q, exact), exact)
		if err != ErrSealed {
			return w, err
		}
		if _, ok := g.final(); !ok {
			return WriteRun{}, err // the queue was used apart from its Resizable
		}
		next, err := r.successor(g)
		if err != nil {
			return WriteRun{}, err
		}
		if next == nil {
			// Sealed before this process was given the next
			// generation: full until Add.
			return WriteRun{}, ErrFull
		}
		r.write.CompareAndSwap(g, next)
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
	r := c.r
	for {
		g := r.read.Load()
		run, err := g.q.reserveRead(clamp(n, g.q, exact), exact)
		if err != ErrEmpty {
			return run, err
		}
		// Nothing to follow before a resize names the next generation:
		// ask the link line, which changes once a resize, and not the
		// producer cursor, the line producers write on every reserve.
		if !g.mayBeNamed() {
			return run, err
		}
		// Sealed: once consumers have taken every position below final
		// the generation is drained and its successor is next. Records
		// still held there are released into it as usual.
		final, done := g.final()
		if !done || g.q.m.cons.cursor.Load() != final {
			if done && g.sealedAt.Load() == 0 {
				// Sealed elsewhere: drain time counts from here.
				g.sealedAt.CompareAndSwap(0, r.now())
			}
			return run, err
		}
		next, lerr := r.successor(g)
		if lerr != nil {
			return ReadRun{}, lerr
		}
		if next == nil {
			return run, err
		}
		// The consumers' word: the agent that resized may give the
		// generation back once every record is released. Stored before
		// the move, the last touch of g's memory on this path.
		g.q.m.link().left.Store(next.q.gen)
		if r.read.CompareAndSwap(g, next) {
			if at := g.sealedAt.Load(); at != 0 {
				r.draining.Add(r.now() - at)
			}
		}
	}
}
