// Package wait lets producers and consumers of a ring.Queue sleep instead
// of spinning: consumers until there are records, producers until there is
// room. Sleeping uses futexes on words in the queue's own metadata (its wake
// lines), not process-private ones, so a producer in one process wakes a
// consumer in another.
//
// The protocol, for consumers waiting for records (producers waiting for
// room mirror it):
//
//	consumer                          producer
//	reserve: empty                    publish (release store of the stamp)
//	v = load futex word               Fence (full barrier)
//	waiters++ (locked: full barrier)  if load waiters > 0:
//	reserve again: empty?               futex word++; futex wake all
//	futex wait while word == v        else count the wakeup as suppressed
//	waiters--
//
// Either the producer's load of waiters sees the consumer's increment and
// wakes it, or the consumer's second reserve sees the producer's record:
// each side stores, fences, then loads what the other stored. A wakeup
// system call is made only when someone sleeps. The words are shared with
// the peer, so they are hints: a peer that corrupts them can cost a wakeup,
// never memory safety. Give waits against an untrusted peer a deadline.
//
// The wrapper adds nothing to the queue's layout and takes no locks. Its
// types embed the ring's runs, so everything but the waking methods is the
// ring's own.
package wait

import (
	"context"
	"errors"
	"math"
	"runtime"
	"time"

	"github.com/ycq-dev/ycq/ring"
)

// Options tune a Queue.
type Options struct {
	// Spin is how many times a reserve is retried, backing off in between,
	// before the caller sleeps. 0 sleeps at once.
	Spin int
	// MaxSleep caps one sleep, after which the reserve is retried; 0 is no
	// cap. A cap bounds the cost of a lost wakeup (a peer that corrupted the
	// wake words); it is not needed for correctness.
	MaxSleep time.Duration
}

// DefaultSpin is the Spin of New's default options.
const DefaultSpin = 64

// Queue is a ring.Queue whose reserves can wait.
type Queue struct {
	q      *ring.Queue
	items  ring.WakeLine // consumers sleep here
	space  ring.WakeLine // producers sleep here
	opt    Options
	waiter Waiter // spins with Backoff, then sleeps on the line's futex
}

// New wraps q. A nil opt means {Spin: DefaultSpin}.
func New(q *ring.Queue, opt *Options) *Queue {
	o := Options{Spin: DefaultSpin}
	if opt != nil {
		o = *opt
	}
	w := &Queue{q: q, items: q.ItemsWake(), space: q.SpaceWake(), opt: o}
	w.waiter = Waiter{Spin: o.Spin, Arm: w.arm}
	return w
}

// Queue returns the wrapped queue.
func (w *Queue) Queue() *ring.Queue { return w.q }

// Producer returns the producing side.
func (w *Queue) Producer() Producer { return Producer{w} }

// Consumer returns the consuming side.
func (w *Queue) Consumer() Consumer { return Consumer{w} }

// Producer is the producing side of a waiting queue.
type Producer struct{ w *Queue }

// Reserve reserves exactly n slots, waiting until they are free or ctx is
// done (then ctx.Err()).
func (p Producer) Reserve(ctx context.Context, n int) (WriteRun, error) {
	return p.reserve(ctx, n, true)
}

// ReserveUpTo reserves 1 to n slots, waiting until at least one is free.
func (p Producer) ReserveUpTo(ctx context.Context, n int) (WriteRun, error) {
	return p.reserve(ctx, n, false)
}

func (p Producer) reserve(ctx context.Context, n int, exact bool) (WriteRun, error) {
	space := p.w.space
	return waitWrite(ctx, &p.w.waiter, func() ring.WakeLine { return space }, p.w.q.Producer(), n, exact)
}

// reserver is a ring side that reserves: a Queue's, or a Resizable's.
type reserver[R any] interface {
	Reserve(n int) (R, error)
	ReserveUpTo(n int) (R, error)
}

// waitWrite reserves n slots (exactly, or up to n) on p, waiting on the
// space line line gives.
func waitWrite[P reserver[ring.WriteRun]](ctx context.Context, w *Waiter, line func() ring.WakeLine, p P, n int, exact bool) (WriteRun, error) {
	var run ring.WriteRun
	err := w.WaitOn(ctx, line, ring.ErrFull, func() (err error) {
		if exact {
			run, err = p.Reserve(n)
		} else {
			run, err = p.ReserveUpTo(n)
		}
		return err
	})
	return WriteRun{WriteRun: run}, err
}

// waitRead reserves n records (exactly, or up to n) on c, waiting on the
// items line line gives. Passing holes hands their slots back, so it
// wakes the producers of the queue it read (queue gives it) when it did.
func waitRead[C reserver[ring.ReadRun]](ctx context.Context, w *Waiter, line func() ring.WakeLine, queue func() *ring.Queue, c C, n int, exact bool) (ReadRun, error) {
	var run ring.ReadRun
	err := w.WaitOn(ctx, line, ring.ErrEmpty, func() (err error) {
		q := queue()
		holes := q.HolesPassed()
		if exact {
			run, err = c.Reserve(n)
		} else {
			run, err = c.ReserveUpTo(n)
		}
		if q.HolesPassed() != holes {
			// Producers may be asleep for exactly that room.
			wakeSpace(q, byConsumer)
		}
		return err
	})
	return ReadRun{ReadRun: run}, err
}

// Consumer is the consuming side of a waiting queue.
type Consumer struct{ w *Queue }

// Reserve reserves exactly n records, waiting until they are ready or ctx
// is done (then ctx.Err()).
func (c Consumer) Reserve(ctx context.Context, n int) (ReadRun, error) {
	return c.reserve(ctx, n, true)
}

// ReserveUpTo reserves 1 to n records, waiting until at least one is ready.
func (c Consumer) ReserveUpTo(ctx context.Context, n int) (ReadRun, error) {
	return c.reserve(ctx, n, false)
}

func (c Consumer) reserve(ctx context.Context, n int, exact bool) (ReadRun, error) {
	q, items := c.w.q, c.w.items
	return waitRead(ctx, &c.w.waiter, func() ring.WakeLine { return items }, func() *ring.Queue { return q }, q.Consumer(), n, exact)
}

// Waiter is the one loop of a reserve that may have to wait, for this
// package's Queue and for hostdriver's queue pairs alike. Wait calls try
// until it returns something other than again. After each of the first
// Spin failed tries it pauses (Pause) and tries again. After that it calls
// Arm, registers as a waiter on the wake line (so that the other side's
// next wake call wakes it: see the protocol above), tries once more, and
// sleeps as Arm said, then tries again. A Waiter holds no state of its own
// between waits and is safe for concurrent use.
type Waiter struct {
	// Spin is how many failed tries are followed by Pause rather than a
	// sleep.
	Spin int
	// Pause waits a little after failed try i, i < Spin; nil is Backoff.
	Pause func(i int)
	// Check, if set, is called after every failed try; an error from it
	// ends the wait (the host driver's stopped driver).
	Check func() error
	// Arm reads what the waker will change, before the waiter registers
	// on line (the futex word, the next interrupt's channel), and returns
	// the sleep that ends once it changed, so that a wakeup that comes
	// between the registration and the sleep is not lost.
	Arm func(line ring.WakeLine) Sleep
}

// Sleep is a sleep Arm prepared, after failed try i: it returns nil to try
// again, or an error that ends the wait.
type Sleep func(ctx context.Context, i int) error

// Wait calls try until it returns something other than again and returns
// that, or ctx.Err() once ctx is done, or Check's error; it spins, then
// sleeps on line in between.
func (w *Waiter) Wait(ctx context.Context, line ring.WakeLine, again error, try func() error) error {
	return w.WaitOn(ctx, func() ring.WakeLine { return line }, again, try)
}

// WaitOn is Wait for a wake line that may change between tries (a
// Resizable's, whose generations come and go): line is called before each
// sleep.
func (w *Waiter) WaitOn(ctx context.Context, line func() ring.WakeLine, again error, try func() error) error {
	for i := 0; ; i++ {
		err := try()
		if err != again {
			return err
		}
		if w.Check != nil {
			if err := w.Check(); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if i < w.Spin {
			if w.Pause != nil {
				w.Pause(i)
			} else {
				Backoff(i)
			}
			continue
		}
		if err := w.sleep(ctx, line, again, try, i); err != errRetry {
			return err
		}
	}
}

var errRetry = errors.New("retry")

// sleep registers as a waiter on line, tries once more, and sleeps. It
// returns errRetry to try again, or the result of the last try, or the
// error that ended the sleep.
func (w *Waiter) sleep(ctx context.Context, lineOf func() ring.WakeLine, again error, try func() error, i int) error {
	line := lineOf()
	sleep := w.Arm(line)
	waiters := line.Waiters()
	waiters.Add(1) // a locked add: the full barrier the waker's Fence pairs with
	defer waiters.Add(math.MaxUint32)
	if err := try(); err != again {
		return err
	}
	if lineOf() != line {
		// The last try moved to another line (a Resizable's next
		// generation), whose wakers do not know of this registration.
		return errRetry
	}
	if err := sleep(ctx, i); err != nil {
		return err
	}
	return errRetry
}

// Backoff waits a little before try number i+1: a busy loop that doubles
// up to about a microsecond, so a spinning side neither hammers the cache
// lines the other side is writing nor moves to another thread, and a yield
// of the processor every 16 tries, so spinners never starve a goroutine
// that needs the CPU.
func Backoff(i int) {
	if i%16 == 15 {
		runtime.Gosched()
		return
	}
	ring.Spin(1 << min(i, 9))
}

// arm is the Queue's Waiter.Arm.
func (w *Queue) arm(line ring.WakeLine) Sleep { return armFutex(line, w.opt.MaxSleep) }

// armFutex reads line's futex word, and the sleep waits until the word
// moves on (a wake), ctx is done, or maxSleep (0: no cap) passes.
func armFutex(line ring.WakeLine, maxSleep time.Duration) Sleep {
	futex := line.Futex()
	v := futex.Load()
	return func(ctx context.Context, _ int) error {
		// A cancelled context bumps the word and wakes every sleeper on
		// it, so this one returns at once; the others see a spurious
		// wakeup and sleep again.
		woke := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(woke)
			futex.Add(1)
			futexWake(futex, math.MaxInt32)
		})
		defer func() {
			if !stop() {
				// The wake has started: let it finish before the
				// caller may unmap the word it touches.
				<-woke
			}
		}()
		timeout := maxSleep
		if d, ok := ctx.Deadline(); ok {
			left := time.Until(d)
			if left <= 0 {
				// The context's own timer may not have fired yet.
				return context.DeadlineExceeded
			}
			if timeout == 0 || left < timeout {
				timeout = left
			}
		}
		futexWait(futex, v, timeout)
		return ctx.Err()
	}
}

// wake wakes the sleepers on line, if there are any, and counts the wakeup
// with count, the waking side's own counter (Queue.CountProducerWake or
// CountConsumerWake). Call it after the stores that may let them go on.
func wake(line ring.WakeLine, count func(sent bool)) {
	ring.Fence()
	if line.Waiters().Load() == 0 {
		count(false)
		return
	}
	line.Futex().Add(1)
	futexWake(line.Futex(), math.MaxInt32)
	count(true)
}

// WriteRun is a ring.WriteRun whose publishing and aborting wake sleeping
// consumers (and, when an abort hands slots straight back, producers) of
// the queue the run is in. Every wakeup is counted in the producer line.
type WriteRun struct {
	ring.WriteRun
}

// wakeItems and wakeSpace wake q's consumers or producers, if q is a queue
// (a failed reserve's run has none), counting the wakeup with count.
func wakeItems(q *ring.Queue, count func(*ring.Queue, bool)) {
	if q != nil {
		wake(q.ItemsWake(), func(sent bool) { count(q, sent) })
	}
}

func wakeSpace(q *ring.Queue, count func(*ring.Queue, bool)) {
	if q != nil {
		wake(q.SpaceWake(), func(sent bool) { count(q, sent) })
	}
}

var (
	byProducer = (*ring.Queue).CountProducerWake
	byConsumer = (*ring.Queue).CountConsumerWake
)

// Publish publishes slot i and wakes consumers.
func (r *WriteRun) Publish(i, length int) error {
	err := r.WriteRun.Publish(i, length)
	if err == nil {
		wakeItems(r.Queue(), byProducer)
	}
	return err
}

// PublishAll publishes every held slot and wakes consumers.
func (r *WriteRun) PublishAll(length int) error {
	err := r.WriteRun.PublishAll(length)
	wakeItems(r.Queue(), byProducer)
	return err
}

// PublishLengths publishes slots 0 to len(lengths)-1 with a length each
// (ring.WriteRun.PublishLengths) and wakes consumers.
func (r *WriteRun) PublishLengths(lengths []int) error {
	err := r.WriteRun.PublishLengths(lengths)
	wakeItems(r.Queue(), byProducer)
	return err
}

// Abort gives slot i up and wakes consumers, which pass over the hole and
// so free the slot.
func (r *WriteRun) Abort(i int) error {
	err := r.WriteRun.Abort(i)
	if err == nil {
		wakeItems(r.Queue(), byProducer)
	}
	return err
}

// AbortAll gives up every unpublished slot; it wakes consumers for the
// holes and producers for slots handed straight back.
func (r *WriteRun) AbortAll() error {
	err := r.WriteRun.AbortAll()
	wakeItems(r.Queue(), byProducer)
	wakeSpace(r.Queue(), byProducer)
	return err
}

// ReadRun is a ring.ReadRun whose releasing wakes sleeping producers, and
// whose giving back wakes sleeping consumers, of the queue the run is in.
// Every wakeup is counted in the consumer line.
type ReadRun struct {
	ring.ReadRun
}

// Release releases record i and wakes producers.
func (r *ReadRun) Release(i int) error {
	err := r.ReadRun.Release(i)
	if err == nil {
		wakeSpace(r.Queue(), byConsumer)
	}
	return err
}

// ReleaseAll releases every held record and wakes producers.
func (r *ReadRun) ReleaseAll() error {
	err := r.ReadRun.ReleaseAll()
	wakeSpace(r.Queue(), byConsumer)
	return err
}

// AbortFrom gives records i onwards back and wakes consumers; when it
// fails (ErrNotLast) nothing was given back and nobody is woken.
func (r *ReadRun) AbortFrom(i int) error {
	err := r.ReadRun.AbortFrom(i)
	if err == nil {
		wakeItems(r.Queue(), byConsumer)
	}
	return err
}

// AbortAll gives every record back and wakes consumers, as AbortFrom(0).
func (r *ReadRun) AbortAll() error {
	err := r.ReadRun.AbortAll()
	if err == nil {
		wakeItems(r.Queue(), byConsumer)
	}
	return err
}
