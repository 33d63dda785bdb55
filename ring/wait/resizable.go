package wait

import (
	"context"
	"math"

	"github.com/ycq-dev/ycq/ring"
)

// Resizable is a ring.Resizable whose reserves can wait, as Queue is for a
// ring.Queue. Producers sleep on the space line of the generation they
// reserve in, consumers on the items line of the one they read; when a
// generation is sealed (ring.Resizable.OnSeal, which NewResizable takes) its
// sleepers are woken, and move on to the next.
type Resizable struct {
	r      *ring.Resizable
	opt    Options
	waiter Waiter
}

// NewResizable wraps r; opt as for New.
func NewResizable(r *ring.Resizable, opt *Options) *Resizable {
	o := Options{Spin: DefaultSpin}
	if opt != nil {
		o = *opt
	}
	w := &Resizable{r: r, opt: o}
	w.waiter = Waiter{Spin: o.Spin, Arm: func(line ring.WakeLine) Sleep { return armFutex(line, o.MaxSleep) }}
	r.OnSeal(wakeSealed)
	return w
}

// wakeSealed wakes every producer and consumer asleep on a generation that
// was just sealed: its producers find room in the next one, and its
// consumers, once they have drained it, records there. The seal was a
// compare-and-swap or a store and a fence (ring.Resizable), the barrier
// between what a sleeper's last look reads and the loads of the waiters
// words here.
func wakeSealed(q *ring.Queue) {
	for _, line := range []ring.WakeLine{q.ItemsWake(), q.SpaceWake()} {
		if line.Waiters().Load() != 0 {
			line.Futex().Add(1)
			futexWake(line.Futex(), math.MaxInt32)
		}
	}
}

// Resizable returns the wrapped queue.
func (w *Resizable) Resizable() *ring.Resizable { return w.r }

// Resize resizes the queue: ring.Resizable.Resize.
func (w *Resizable) Resize(slots int) error { return w.r.Resize(slots) }

// ResizableProducer is the producing side of a waiting Resizable.
type ResizableProducer struct{ w *Resizable }

// Producer returns the producing side.
func (w *Resizable) Producer() ResizableProducer { return ResizableProducer{w} }

// Reserve reserves exactly n slots, waiting until they are free or ctx is
// done.
func (p ResizableProducer) Reserve(ctx context.Context, n int) (WriteRun, error) {
	return p.reserve(ctx, n, true)
}

// ReserveUpTo reserves 1 to n slots, waiting until at least one is free.
func (p ResizableProducer) ReserveUpTo(ctx context.Context, n int) (WriteRun, error) {
	return p.reserve(ctx, n, false)
}

func (p ResizableProducer) reserve(ctx context.Context, n int, exact bool) (WriteRun, error) {
	r := p.w.r
	return waitWrite(ctx, &p.w.waiter, func() ring.WakeLine { return r.ProducerQueue().SpaceWake() }, r.Producer(), n, exact)
}

// ResizableConsumer is the consuming side of a waiting Resizable.
type ResizableConsumer struct{ w *Resizable }

// Consumer returns the consuming side.
func (w *Resizable) Consumer() ResizableConsumer { return ResizableConsumer{w} }

// Reserve reserves exactly n records of one generation, waiting until they
// are ready or ctx is done.
func (c ResizableConsumer) Reserve(ctx context.Context, n int) (ReadRun, error) {
	return c.reserve(ctx, n, true)
}

// ReserveUpTo reserves 1 to n records of one generation, waiting until at
// least one is ready.
func (c ResizableConsumer) ReserveUpTo(ctx context.Context, n int) (ReadRun, error) {
	return c.reserve(ctx, n, false)
}

func (c ResizableConsumer) reserve(ctx context.Context, n int, exact bool) (ReadRun, error) {
	r := c.w.r
	return waitRead(ctx, &c.w.waiter, func() ring.WakeLine { return r.ConsumerQueue().ItemsWake() }, r.ConsumerQueue, r.Consumer(), n, exact)
}
