package ring

import "sync/atomic"

// WakeLine is one of the two wake lines of the metadata, for a wrapper that
// lets agents sleep (package ring/wait): a futex word sleepers wait on and a
// count of sleepers. The queue itself never touches them. Both words are in
// shared memory: treat what they hold as a hint, never as a bound. The
// counts of wakeups live in the waking side's own line (CountProducerWake,
// CountConsumerWake), since each line is written only by its side.
type WakeLine struct {
	futex, waiters *atomic.Uint32
}

// ItemsWake is where consumers sleep for records; producers wake them (and
// consumers that give records back).
func (q *Queue) ItemsWake() WakeLine { return WakeLine{&q.m.items.futex, &q.m.items.waiters} }

// SpaceWake is where producers sleep for free slots; consumers wake them
// (and producers whose abort hands slots straight back).
func (q *Queue) SpaceWake() WakeLine { return WakeLine{&q.m.space.futex, &q.m.space.waiters} }

// Futex is the word sleepers wait on. A waker changes it before waking, so
// a sleeper that read it before registering does not sleep through a wake.
func (l WakeLine) Futex() *atomic.Uint32 { return l.futex }

// Waiters counts the agents asleep, or about to sleep, on Futex.
func (l WakeLine) Waiters() *atomic.Uint32 { return l.waiters }

// CountProducerWake counts, in the producer line, a wakeup a producer sent
// (sent) or found nobody to send to. Only producers may call it: a single
// producer updates its counters with a plain load and store.
func (q *Queue) CountProducerWake(sent bool) {
	c := &q.m.prod.wakeSuppressed
	if sent {
		c = &q.m.prod.wakeSent
	}
	q.bumpProd(c, 1)
}

// CountConsumerWake counts, in the consumer line, a wakeup a consumer sent
// or found nobody to send to. Only consumers may call it.
func (q *Queue) CountConsumerWake(sent bool) {
	c := &q.m.cons.wakeSuppressed
	if sent {
		c = &q.m.cons.wakeSent
	}
	q.bumpCons(c, 1)
}

// HolesPassed reads the consumers' count of aborted slots passed over
// (cons_skipped): passing a hole hands its slot back to producers, so a
// wrapper that lets producers sleep compares it around a reserve to know
// whether to wake them.
func (q *Queue) HolesPassed() uint64 { return q.m.cons.skipped.Load() }

// Fence orders every store this goroutine made before it, including the
// release stores of Publish and Release, before every load after it. A
// waker needs it between publishing and reading Waiters; the sleeper's
// increment of Waiters, a locked read-modify-write, is the matching fence on
// the other side. Without it a store could still sit in this CPU's store
// buffer while the load runs, and both sides would miss each other.
func Fence() {
	var f atomic.Uint32
	f.Add(1) // any locked instruction is a full barrier
}

// Spin busy-waits n short steps (a few nanoseconds each) without yielding
// the processor: for a side that polls the other's stamps and should not
// hammer the cache lines the other side is writing.
func Spin(n int) {
	for range n {
		spinStep()
	}
}

//go:noinline
func spinStep() {}
