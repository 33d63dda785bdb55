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
	h2d, d2h *ring.Queue // the queues; for a resizable pair, its first generation
	regs     queueRegs   // what the queue registers say at the next enable
	rz       *pairResize // nil unless Config.Resizable

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

// Stats reads the pair's counters and both queues' counters (for a
// resizable pair: of the generation requests go to and the one responses
// are taken from).
func (p *Pair) Stats() PairStats {
	st := PairStats{Sent: p.sent.Load(), Received: p.received.Load(), Doorbells: p.doorbells.Load(),
		Interrupts: p.interrupts.Load(), Sleeps: p.sleeps.Load()}
	p.rlock()
	h2d, d2h := p.queues()
	st.H2D, st.D2H = h2d.Stats(), d2h.Stats()
	p.runlock()
	return st
}

// rlock and runlock hold a resizable pair's generations for one call
// that touches their memory; nothing for a pair that is not resizable.
func (p *Pair) rlock() {
	if p.rz != nil {
		p.rz.mu.RLock()
	}
}

func (p *Pair) runlock() {
	if p.rz != nil {
		p.rz.mu.RUnlock()
	}
}

// queues are the generation requests are reserved in and the one
// responses are taken from; p.rlock held.
func (p *Pair) queues() (h2d, d2h *ring.Queue) {
	if p.rz == nil {
		return p.h2d, p.d2h
	}
	return p.rz.h2d.ProducerQueue(), p.rz.d2h.ConsumerQueue()
}

// h2dCap is the slot count requests are reserved in now, and d2hCap the
// one responses are published in (for a Stream's window). A Queue's slot
// count is its own Go field, not shared memory: no lock.
func (p *Pair) h2dCap() int {
	if p.rz == nil {
		return p.h2d.Cap()
	}
	return p.rz.h2d.Cap()
}

func (p *Pair) d2hCap() int {
	if p.rz == nil {
		return p.d2h.Cap()
	}
	return p.rz.d2h.Cap()
}

// produce reserves request slots without waiting; p.rlock held.
func (p *Pair) produce(n int, exact bool) (ring.WriteRun, error) {
	if p.rz != nil {
		if exact {
			return p.rz.h2d.Producer().Reserve(n)
		}
		return p.rz.h2d.Producer().ReserveUpTo(n)
	}
	if exact {
		return p.h2d.Producer().Reserve(n)
	}
	return p.h2d.Producer().ReserveUpTo(n)
}

// consume takes up to n responses without waiting; p.rlock held.
func (p *Pair) consume(n int) (ring.ReadRun, error) {
	if p.rz != nil {
		return p.rz.d2h.Consumer().ReserveUpTo(n)
	}
	return p.d2h.Consumer().ReserveUpTo(n)
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
//
// lineOf gives the wake line (for a resizable pair, of the generation the
// caller would sleep on), and try makes one attempt; for a resizable pair
// both run with p.rlock held, and the sleep without it (waitResizable).
func (p *Pair) wait(ctx context.Context, lineOf func() ring.WakeLine, again error, try func() error) error {
	if p.rz != nil {
		return p.waitResizable(ctx, lineOf, again, try)
	}
	w := wait.Waiter{Spin: spinTries, Pause: pause, Check: p.d.Err, Arm: p.arm}
	return w.Wait(ctx, lineOf(), again, func() error {
		err := try()
		if err == again {
			return err
		}
		return p.check(err)
	})
}

// waitResizable is wait for a resizable pair: ring/wait's protocol
// (register on the line, try once more, sleep), with each try and the
// registration under the read lock, and the sleep outside it, so that a
// Resize can give a generation back while goroutines sleep. A sleeper
// unregisters from its line only if that generation is still live.
func (p *Pair) waitResizable(ctx context.Context, lineOf func() ring.WakeLine, again error, try func() error) error {
	rz := p.rz
	locked := func() error {
		rz.mu.RLock()
		defer rz.mu.RUnlock()
		return try()
	}
	for i := 0; ; i++ {
		err := locked()
		if err != again {
			return p.check(err)
		}
		if err := p.d.Err(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if i < spinTries {
			pause(i)
			continue
		}
		rz.mu.RLock()
		line := lineOf()
		q := p.lineQueue(line)
		sleep := p.arm(line)
		line.Waiters().Add(1) // a locked add: the full barrier the device's wake pairs with
		err = try()
		moved := lineOf() != line
		if err != again || moved {
			line.Waiters().Add(^uint32(0))
			rz.mu.RUnlock()
			if err != again {
				return p.check(err)
			}
			continue
		}
		rz.mu.RUnlock()
		err = sleep(ctx, i)
		rz.mu.RLock()
		if _, dead := rz.dead[q]; !dead {
			line.Waiters().Add(^uint32(0))
		}
		rz.mu.RUnlock()
		if err != nil {
			return err
		}
	}
}

// lineQueue is the live generation whose wake line line is; rz.mu held.
func (p *Pair) lineQueue(line ring.WakeLine) *ring.Queue {
	for _, g := range p.rz.gens {
		for _, q := range []*ring.Queue{g.h2d, g.d2h} {
			if q.ItemsWake() == line || q.SpaceWake() == line {
				return q
			}
		}
	}
	return nil
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

// sleeping reports whether the device sleeps on line (the H2D queue's
// items line after a publish, the D2H queue's space line after a
// release), so the doorbell must be rung; for a resizable pair it looks
// with p.rlock held.
func (p *Pair) sleeping(line ring.WakeLine) bool {
	ring.Fence() // our stores first, then the load of the device's registration
	return line.Waiters().Load() != 0
}

// ringDoorbell writes the pair's doorbell.
func (p *Pair) ringDoorbell() error {
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
	var w ring.WriteRun
	err := p.wait(ctx, p.h2dSpace, ring.ErrFull, func() (err error) {
		w, err = p.produce(n, exact)
		return err
	})
	return Request{WriteRun: w, p: p}, err
}

// h2dSpace is the wake line producers sleep on for room, and d2hItems the
// one consumers sleep on for responses.
func (p *Pair) h2dSpace() ring.WakeLine {
	if p.rz != nil {
		return p.rz.h2d.ProducerQueue().SpaceWake()
	}
	return p.h2d.SpaceWake()
}

func (p *Pair) d2hItems() ring.WakeLine {
	if p.rz != nil {
		return p.rz.d2h.ConsumerQueue().ItemsWake()
	}
	return p.d2h.ItemsWake()
}

// done finishes a call on a run (held in a generation that cannot be
// given back while it holds slots there; Slot needs no lock): with
// p.rlock held, it looks whether the device sleeps on the run's line,
// drops the lock, and rings the doorbell if so. err is the call's.
func (p *Pair) done(err error, line func() ring.WakeLine) error {
	if err != nil {
		p.runlock()
		return p.check(err)
	}
	asleep := p.sleeping(line())
	p.runlock()
	if asleep {
		return p.ringDoorbell()
	}
	return nil
}

// items is the items line of the run's generation, which the device
// sleeps on.
func (r *Request) items() ring.WakeLine { return r.Queue().ItemsWake() }

// Publish sends request slot i with length bytes.
func (r *Request) Publish(i, length int) error {
	r.p.rlock()
	err := r.WriteRun.Publish(i, length)
	if err == nil {
		r.done++
		r.p.sent.Add(1)
	}
	return r.p.done(err, r.items)
}

// PublishAll sends every slot of the run not yet published or aborted, each
// with length bytes.
func (r *Request) PublishAll(length int) error {
	r.p.rlock()
	err := r.WriteRun.PublishAll(length)
	if err == nil {
		r.p.sent.Add(uint64(r.Len() - r.done))
		r.done = r.Len()
	}
	return r.p.done(err, r.items)
}

// Abort gives request slot i up; the device passes over it.
func (r *Request) Abort(i int) error {
	r.p.rlock()
	err := r.WriteRun.Abort(i)
	if err == nil {
		r.done++
	}
	return r.p.done(err, r.items)
}

// AbortAll gives up every slot not yet published.
func (r *Request) AbortAll() error {
	r.p.rlock()
	err := r.WriteRun.AbortAll()
	if err == nil {
		r.done = r.Len()
	}
	return r.p.done(err, r.items)
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
	var r ring.ReadRun
	err := p.wait(ctx, p.d2hItems, ring.ErrEmpty, func() (err error) {
		r, err = p.consume(n)
		return err
	})
	return Response{ReadRun: r, p: p}, err
}

// space is the space line of the run's generation, which the device
// sleeps on when it is full.
func (r *Response) space() ring.WakeLine { return r.Queue().SpaceWake() }

// Release hands response i back to the device.
func (r *Response) Release(i int) error {
	r.p.rlock()
	err := r.ReadRun.Release(i)
	if err == nil {
		r.done++
		r.p.received.Add(1)
	}
	return r.p.doneRelease(err, r.space)
}

// ReleaseAll hands every held response back.
func (r *Response) ReleaseAll() error {
	r.p.rlock()
	err := r.ReadRun.ReleaseAll()
	if err == nil {
		r.p.received.Add(uint64(r.Len() - r.done))
		r.done = r.Len()
	}
	return r.p.doneRelease(err, r.space)
}

// doneRelease is done for a release: the doorbell for D2H space, unless
// the driver has stopped (responses may be drained after a failure).
func (p *Pair) doneRelease(err error, line func() ring.WakeLine) error {
	if err == nil && p.d.Err() != nil {
		p.runlock()
		return nil
	}
	return p.done(err, line)
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
//
// For a resizable pair positions count on across generations: position
// 0 of a generation follows the last of the one before.
func (p *Pair) incomplete() (first, end uint64) {
	if p.rz != nil {
		t := p.totals()
		first, end = min(t.consumed, t.reserved), t.reserved
		if p.answerOnce() {
			first = max(first, min(t.answered, end))
		}
		return first, end
	}
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

// totals are a resizable pair's request positions and answers, counted
// across its generations.
type totals struct {
	reserved uint64 // request positions reserved, all generations
	consumed uint64 // request positions the device consumed (or passed)
	answered uint64 // requests (holes included) whose response is published
}

func (p *Pair) totals() totals {
	rz := p.rz
	rz.mu.RLock()
	defer rz.mu.RUnlock()
	t := totals{reserved: rz.h2dBase, consumed: rz.h2dBase}
	published, skipped := rz.d2hBase, rz.h2dSkipped
	for _, g := range rz.gens {
		h, r := g.h2d.Stats(), g.d2h.Stats()
		t.reserved += h.ProducerCursor
		t.consumed += min(h.ConsumerCursor, h.ProducerCursor)
		skipped += h.Skipped
		published += max(r.ProducerCursor, r.ConsumerCursor+uint64(g.d2h.Ready()))
	}
	t.answered = published + skipped
	return t
}
