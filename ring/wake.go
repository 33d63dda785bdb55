package ring

import "sync/atomic"

// WakeLine is one of the two wake lines of the metadata, for a wrapper that
// lets agents sleep (package ring/wait): a futex word sleepers wait on, a
// count of sleepers, and the waking side's counters. The queue itself never
// touches them. Both words are in shared memory: treat what they hold as a
// hint, never as a bound.
type WakeLine struct {
	futex, waiters   *atomic.Uint32
	sent, suppressed *atomic.Uint64
	single           bool // the waking side has a single agent
}

// ItemsWake is where consumers sleep for records; producers wake them.
func (q *Queue) ItemsWake() WakeLine {
	return WakeLine{&q.m.items.futex, &q.m.items.waiters, &q.m.prod.wakeSent, &q.m.prod.wakeSuppressed, q.singleProducer()}
}

// SpaceWake is where producers sleep for free slots; consumers wake them.
func (q *Queue) SpaceWake() WakeLine {
	return WakeLine{&q.m.space.futex, &q.m.space.waiters, &q.m.cons.wakeSent, &q.m.cons.wakeSuppressed, q.singleConsumer()}
}

// Futex is the word sleepers wait on. A waker changes it before waking, so
// a sleeper that read it before registering does not sleep through a wake.
func (l WakeLine) Futex() *atomic.Uint32 { return l.futex }

// Waiters counts the agents asleep, or about to sleep, on Futex.
func (l WakeLine) Waiters() *atomic.Uint32 { return l.waiters }

// CountWake adds one to the waking side's counter of wakeups sent, or of
// wakeups it did not need to send.
func (l WakeLine) CountWake(sent bool) {
	c := l.suppressed
	if sent {
		c = l.sent
	}
	if l.single {
		storeRelease(c, c.Load()+1)
	} else {
		c.Add(1)
	}
}

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
