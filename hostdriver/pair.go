package hostdriver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ring/wait"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// Pair is one queue pair: requests go to the device through the
// host-to-device queue, responses come back through the device-to-host
// queue. Safe for any number of goroutines on both sides.
type Pair struct {
	d        *Driver
	index    int
	layout   pairLayout
	h2d, d2h *ring.Queue

	mu  sync.Mutex
	gen chan struct{} // closed by the next interrupt (or driver failure)

	sent, received, doorbells, interrupts, sleeps atomic.Uint64
}

// PairStats count what a pair did.
type PairStats struct {
	Sent       uint64 // requests published
	Received   uint64 // responses released
	Doorbells  uint64 // doorbell writes (only when the device slept)
	Interrupts uint64 // interrupts taken for this pair
	Sleeps     uint64 // times a goroutine slept waiting for the device
	H2D, D2H   ring.Stats
}

// Stats reads the pair's counters and both queues' counters.
func (p *Pair) Stats() PairStats {
	return PairStats{Sent: p.sent.Load(), Received: p.received.Load(), Doorbells: p.doorbells.Load(),
		Interrupts: p.interrupts.Load(), Sleeps: p.sleeps.Load(), H2D: p.h2d.Stats(), D2H: p.d2h.Stats()}
}

// Index is the pair's number.
func (p *Pair) Index() int { return p.index }

// SlotSize is the most bytes a request or response can hold.
func (p *Pair) SlotSize() int { return p.d.cfg.SlotSize }

// interrupt wakes every goroutine waiting on this pair.
func (p *Pair) interrupt() {
	p.interrupts.Add(1)
	p.mu.Lock()
	if p.gen != nil {
		close(p.gen)
	}
	p.gen = make(chan struct{})
	p.mu.Unlock()
}

// waitChan returns the channel the next interrupt closes.
func (p *Pair) waitChan() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen == nil {
		p.gen = make(chan struct{})
	}
	return p.gen
}

// spinTries is how often a waiter retries, pausing briefly, before it
// sleeps. The pause is a short busy loop, not a yield: yielding takes the
// scheduler's lock and, on a machine with few CPUs, the CPU the device
// needs.
const spinTries = 32

// pause busy-waits a few hundred nanoseconds.
func pause(int) { ring.Spin(64) }

// wait calls try until it returns something other than again, sleeping on
// the pair's interrupt, registered on line, in between: ring/wait's loop
// (wait.Waiter), with this pair's pause and sleep. It gives up when ctx
// ends or the driver stops; while asleep it looks at the device's health
// now and then, so a device that stops without an interrupt, or vanishes,
// ends the wait too.
func (p *Pair) wait(ctx context.Context, line ring.WakeLine, again error, try func() error) error {
	w := wait.Waiter{Spin: spinTries, Pause: pause, Check: p.d.Err, Arm: p.arm}
	return w.Wait(ctx, line, again, func() error {
		err := try()
		if err == again {
			return err
		}
		return p.check(err)
	})
}

// arm is the pair's wait.Waiter.Arm: it takes the channel the next
// interrupt closes, and the sleep ends with it, with ctx, or with a timer,
// after which it looks at the device's health.
func (p *Pair) arm(ring.WakeLine) wait.Sleep {
	ch := p.waitChan()
	return func(ctx context.Context, i int) error {
		d := p.d
		p.sleeps.Add(1)
		var timer *time.Timer
		if d.cfg.Polling {
			// No interrupt will come: look again soon.
			timer = time.NewTimer(20 * time.Microsecond)
		} else {
			timer = time.NewTimer(d.cfg.Health)
		}
		select {
		case <-ch:
		case <-ctx.Done():
		case <-timer.C:
			if !d.cfg.Polling || i%1024 == 0 {
				d.checkHealth()
			}
		}
		timer.Stop()
		return nil
	}
}

// check turns a ring error caused by the device into a driver failure.
func (p *Pair) check(err error) error {
	if errors.Is(err, ring.ErrCorrupt) {
		p.d.fail(p.d.withIncomplete(fmt.Errorf("%w: pair %d: %w", ErrDevice, p.index, err)))
	}
	return err
}

// kick rings the doorbell if the device sleeps on line (the H2D queue's
// items line after a publish, the D2H queue's space line after a release).
func (p *Pair) kick(line ring.WakeLine) error {
	ring.Fence() // our stores first, then the load of the device's registration
	if line.Waiters().Load() == 0 {
		return nil
	}
	p.doorbells.Add(1)
	off := ycqdev.QueueReg(p.index, ycqdev.RegQDoorbell)
	if err := vfio.Write32(p.d.dev, vfio.BAR0, off, 1); err != nil {
		err = gone(err)
		p.d.fail(p.d.withIncomplete(err))
		return err
	}
	return nil
}

// Request is a run of reserved request slots: fill each (Slot) and
// Publish it, or Abort it. It embeds the ring's run: Len, Slot and
// Position are the ring's.
type Request struct {
	ring.WriteRun
	p    *Pair
	done int // slots published or aborted through this Request
}

// Reserve reserves exactly n request slots, waiting for room.
func (p *Pair) Reserve(ctx context.Context, n int) (Request, error) {
	return p.reserve(ctx, n, true)
}

// ReserveUpTo reserves 1 to n request slots, waiting for room.
func (p *Pair) ReserveUpTo(ctx context.Context, n int) (Request, error) {
	return p.reserve(ctx, n, false)
}

func (p *Pair) reserve(ctx context.Context, n int, exact bool) (Request, error) {
	if err := p.d.Err(); err != nil {
		return Request{}, err
	}
	prod := p.h2d.Producer()
	var w ring.WriteRun
	err := p.wait(ctx, p.h2d.SpaceWake(), ring.ErrFull, func() (err error) {
		if exact {
			w, err = prod.Reserve(n)
		} else {
			w, err = prod.ReserveUpTo(n)
		}
		return err
	})
	return Request{WriteRun: w, p: p}, err
}

// Publish sends request slot i with length bytes.
func (r *Request) Publish(i, length int) error {
	if err := r.WriteRun.Publish(i, length); err != nil {
		return r.p.check(err)
	}
	r.done++
	r.p.sent.Add(1)
	return r.p.kick(r.p.h2d.ItemsWake())
}

// PublishAll sends every slot of the run not yet published or aborted, each
// with length bytes.
func (r *Request) PublishAll(length int) error {
	err := r.WriteRun.PublishAll(length)
	if err != nil {
		return r.p.check(err)
	}
	r.p.sent.Add(uint64(r.Len() - r.done))
	r.done = r.Len()
	return r.p.kick(r.p.h2d.ItemsWake())
}

// Abort gives request slot i up; the device passes over it.
func (r *Request) Abort(i int) error {
	if err := r.WriteRun.Abort(i); err != nil {
		return r.p.check(err)
	}
	r.done++
	return r.p.kick(r.p.h2d.ItemsWake())
}

// AbortAll gives up every slot not yet published.
func (r *Request) AbortAll() error {
	if err := r.WriteRun.AbortAll(); err != nil {
		return r.p.check(err)
	}
	r.done = r.Len()
	return r.p.kick(r.p.h2d.ItemsWake())
}

// Response is a run of responses: read each in place (Slot), then Release.
// It embeds the ring's run.
type Response struct {
	ring.ReadRun
	p    *Pair
	done int // records released through this Response
}

// Receive takes 1 to n responses, waiting for the device. Responses the
// device published stay readable after the driver stopped; then Receive
// returns the driver's error only when none is left.
func (p *Pair) Receive(ctx context.Context, n int) (Response, error) {
	cons := p.d2h.Consumer()
	var r ring.ReadRun
	err := p.wait(ctx, p.d2h.ItemsWake(), ring.ErrEmpty, func() (err error) {
		r, err = cons.ReserveUpTo(n)
		return err
	})
	return Response{ReadRun: r, p: p}, err
}

// Release hands response i back to the device.
func (r *Response) Release(i int) error {
	if err := r.ReadRun.Release(i); err != nil {
		return r.p.check(err)
	}
	r.done++
	r.p.received.Add(1)
	return r.p.kickIfRunning()
}

// ReleaseAll hands every held response back.
func (r *Response) ReleaseAll() error {
	err := r.ReadRun.ReleaseAll()
	if err != nil {
		return r.p.check(err)
	}
	r.p.received.Add(uint64(r.Len() - r.done))
	r.done = r.Len()
	return r.p.kickIfRunning()
}

// kickIfRunning rings the doorbell for D2H space, unless the driver has
// stopped (responses may be drained after a failure).
func (p *Pair) kickIfRunning() error {
	if p.d.Err() != nil {
		return nil
	}
	return p.kick(p.d2h.SpaceWake())
}

// Send copies b into one request and sends it.
func (p *Pair) Send(ctx context.Context, b []byte) error {
	if len(b) > p.SlotSize() {
		return fmt.Errorf("%w: a %d-byte request does not fit a %d-byte slot", ErrConfig, len(b), p.SlotSize())
	}
	r, err := p.Reserve(ctx, 1)
	if err != nil {
		return err
	}
	n := copy(r.Slot(0), b)
	return r.Publish(0, n)
}

// Recv copies the next response into b and returns its length.
func (p *Pair) Recv(ctx context.Context, b []byte) (int, error) {
	r, err := p.Receive(ctx, 1)
	if err != nil {
		return 0, err
	}
	s, err := r.Slot(0)
	if err != nil {
		r.ReleaseAll()
		return 0, err
	}
	n := copy(b, s)
	if err := r.ReleaseAll(); err != nil {
		return n, err
	}
	if n < len(s) {
		return n, fmt.Errorf("hostdriver: a %d-byte response cut to the %d-byte buffer", len(s), len(b))
	}
	return n, nil
}

// incomplete returns the request positions not completed: from the first
// request the device has not answered to the end of what was reserved.
// Everything read here was written by the device, so it is clamped.
func (p *Pair) incomplete() (first, end uint64) {
	h := p.h2d.Stats()
	end = h.ProducerCursor
	first = min(h.ConsumerCursor, end)
	if p.answerOnce() {
		first = max(first, min(p.answered(), end))
	}
	return first, end
}

// answerOnce reports whether the engine answers each request with one
// response, published before the request is released: then a published
// response answers its request.
func (p *Pair) answerOnce() bool {
	e := p.d.engine
	return e == ycqdev.EngineEcho || e == ycqdev.EngineCRC32C
}

// answered is, for an engine that answers once, how many requests (holes
// passed included) have their response published. It reads the
// device-to-host stamps past the host's cursor, not the device's cursor,
// which the device stores once a batch: a device that died mid-batch has
// published more than its cursor says.
func (p *Pair) answered() uint64 {
	r := p.d2h.Stats()
	published := max(r.ProducerCursor, r.ConsumerCursor+uint64(p.d2h.Ready()))
	return published + p.h2d.Stats().Skipped
}
