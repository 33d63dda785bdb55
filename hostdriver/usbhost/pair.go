package usbhost

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ring/wait"
)

// Pair is one queue pair: requests go to the device through the request
// queue (h2d), one OUT transfer per run of published slots; responses come
// back through the response queue (d2h), each IN transfer landing in a run
// of reserved slots. Safe for any number of goroutines on both sides.
type Pair struct {
	d     *Driver
	index int
	shape pairShape

	h2d, d2h         *ring.Queue
	h2dMem, d2hMem   region
	h2dData, d2hData []byte

	// Wakeups, each for the side sleeping on one wake line.
	outWork  signal // the transport's OUT side: requests published
	inRoom   signal // the transport's IN side: response slots released
	appRoom  signal // applications: request slots released
	appItems signal // applications: responses published

	mu   sync.Mutex // guards held
	held heldQueue  // request records the transport reserved, in order, not yet released

	// inNext is the next response position the IN goroutine reserves,
	// kept from one lifetime of the engines to the next (which the
	// driver's stop and start order).
	inNext uint64

	sent, answered, received, published, padded       atomic.Uint64
	outXfers, inXfers, shortIn, holes, copies, resent atomic.Uint64
}

// PairStats count what a pair did since Open.
type PairStats struct {
	Sent         uint64 // requests whose OUT transfer completed
	Answered     uint64 // requests whose responses all came
	Published    uint64 // responses published into the response queue
	Received     uint64 // responses the application released
	Padded       uint64 // requests published shorter than the record size, zero-filled in place
	OutTransfers uint64 // OUT transfers completed
	InTransfers  uint64 // IN transfers completed with data
	ShortIn      uint64 // IN transfers that brought fewer responses than they had room for
	Holes        uint64 // response slots given back unfilled (after a short IN transfer)
	Resent       uint64 // requests sent again after a reset or a replug
	// Copies counts transfers whose bytes were copied on their way: by
	// usbfs, for every transfer when the queue's data region is not usbfs
	// memory (anonymous memory: Config.DeviceMemory off, or refused), or
	// by this driver, were a transfer's buffer not slot memory (it never
	// is: that would be a bug). With DeviceMemory it stays 0.
	Copies uint64
	// DeviceMemory: both queues' data regions are usbfs memory
	// (Config.DeviceMemory), which the kernel does not copy either.
	DeviceMemory bool
	H2D, D2H     ring.Stats
}

// Stats reads the pair's counters and both queues' counters.
func (p *Pair) Stats() PairStats {
	return PairStats{
		Sent: p.sent.Load(), Answered: p.answered.Load(), Published: p.published.Load(),
		Received: p.received.Load(), Padded: p.padded.Load(),
		OutTransfers: p.outXfers.Load(), InTransfers: p.inXfers.Load(), ShortIn: p.shortIn.Load(),
		Holes: p.holes.Load(), Resent: p.resent.Load(), Copies: p.copies.Load(),
		DeviceMemory: p.h2dMem.device && (p.d2hMem.device || p.shape.s == 0),
		H2D:          p.h2d.Stats(), D2H: p.d2h.Stats(),
	}
}

// Index is the pair's number.
func (p *Pair) Index() int { return p.index }

// SlotSize is the record size R: the most bytes a request holds, and the
// bytes every request occupies on the wire.
func (p *Pair) SlotSize() int { return p.shape.r }

// ResponseSize is S, the bytes of every response (0 for the sink engine).
func (p *Pair) ResponseSize() int { return p.shape.s }

// Slots is the number of slots of the pair's request queue, and of its
// response queue unless the engine is sink: the most one Reserve,
// ReserveUpTo or Receive may ask for (a larger n is refused).
func (p *Pair) Slots() int { return p.shape.slots }

func newPair(d *Driver, i int) (p *Pair, err error) {
	sh := d.shape
	p = &Pair{d: d, index: i, shape: sh}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("usbhost: pair %d: %w", i, err), p.free())
		}
	}()
	if p.h2d, p.h2dMem, err = d.newRing(ring.Config{Slots: sh.slots, SlotSize: sh.r, SingleConsumer: true}); err != nil {
		return nil, err
	}
	// A sink answers nothing: its response queue is the smallest there is.
	rs, rslots := sh.s, sh.slots
	if rs == 0 {
		rs, rslots = 8, ring.MinSlots
	}
	if p.d2h, p.d2hMem, err = d.newRing(ring.Config{Slots: rslots, SlotSize: rs, SingleProducer: true}); err != nil {
		return nil, err
	}
	p.h2dData = p.h2dMem.b
	p.d2hData = p.d2hMem.b
	return p, nil
}

// free releases the queues' memory; the transfers must have stopped.
func (p *Pair) free() error {
	var errs []error
	for _, r := range []*region{&p.h2dMem, &p.d2hMem} {
		if r.free != nil {
			errs = append(errs, r.free())
			*r = region{}
		}
	}
	return errors.Join(errs...)
}

// --- waiting ---

// signal wakes one side's sleepers: arm returns the channel the next fire
// closes.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *signal) arm() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) fire() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}

// kick fires s if anyone sleeps on line: the waker's half of ring/wait's
// protocol (store, fence, load the sleeper count), with a channel in place
// of the futex since both sides are in this process.
func kick(line ring.WakeLine, s *signal) {
	ring.Fence() // our publish or release first, then the load of the sleepers' count
	if line.Waiters().Load() != 0 {
		s.fire()
	}
}

// wakeApp wakes every application goroutine waiting on the pair (the
// driver stopped, or started again).
func (p *Pair) wakeApp() {
	p.appRoom.fire()
	p.appItems.fire()
}

// spinTries is how often an application's wait retries before it sleeps.
const spinTries = 32

// wait is ring/wait's loop for an application goroutine: spin, then sleep
// until the transport fires s, ctx ends or the driver stops.
func (p *Pair) wait(ctx context.Context, line ring.WakeLine, s *signal, again error, try func() error) error {
	w := wait.Waiter{
		Spin:  spinTries,
		Check: p.d.Err,
		Arm: func(ring.WakeLine) wait.Sleep {
			ch, failed := s.arm(), p.d.failedChan()
			return func(ctx context.Context, _ int) error {
				select {
				case <-ch:
				case <-failed:
				case <-ctx.Done():
				}
				return nil
			}
		},
	}
	return w.Wait(ctx, line, again, try)
}

// --- the application's side: requests ---

// Request is a run of reserved request slots: fill each (Slot) and
// Publish it, or Abort it. It embeds the ring's run: Len, Slot and
// Position are the ring's.
type Request struct {
	ring.WriteRun
	p *Pair
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
	err := p.wait(ctx, p.h2d.SpaceWake(), &p.appRoom, ring.ErrFull, func() (err error) {
		if exact {
			w, err = prod.Reserve(n)
		} else {
			w, err = prod.ReserveUpTo(n)
		}
		return err
	})
	return Request{WriteRun: w, p: p}, err
}

// pad zero-fills slot i past length: every record travels whole.
func (r *Request) pad(i, length int) {
	if length < 0 || length >= r.p.shape.r {
		return
	}
	clear(r.Slot(i)[length:])
	r.p.padded.Add(1)
}

// Publish sends request slot i with length bytes; a record shorter than
// the record size is zero-filled to it (the device sees R bytes).
func (r *Request) Publish(i, length int) error {
	r.pad(i, length)
	if err := r.WriteRun.Publish(i, length); err != nil {
		return err
	}
	kick(r.p.h2d.ItemsWake(), &r.p.outWork)
	return nil
}

// PublishAll sends every slot of the run not yet published or aborted,
// each with length bytes.
func (r *Request) PublishAll(length int) error {
	if length < r.p.shape.r {
		for i := range r.Len() {
			r.pad(i, length)
		}
	}
	if err := r.WriteRun.PublishAll(length); err != nil {
		return err
	}
	kick(r.p.h2d.ItemsWake(), &r.p.outWork)
	return nil
}

// PublishLengths sends slots 0 to len(lengths)-1 of the run, slot i with
// lengths[i] bytes (zero-filled to the record size), in one update.
func (r *Request) PublishLengths(lengths []int) error {
	for i, n := range lengths {
		if i < r.Len() {
			r.pad(i, n)
		}
	}
	if err := r.WriteRun.PublishLengths(lengths); err != nil {
		return err
	}
	kick(r.p.h2d.ItemsWake(), &r.p.outWork)
	return nil
}

// Abort gives request slot i up; the transport passes over it.
func (r *Request) Abort(i int) error {
	if err := r.WriteRun.Abort(i); err != nil {
		return err
	}
	kick(r.p.h2d.ItemsWake(), &r.p.outWork)
	return nil
}

// AbortAll gives up every slot not yet published.
func (r *Request) AbortAll() error {
	if err := r.WriteRun.AbortAll(); err != nil {
		return err
	}
	kick(r.p.h2d.ItemsWake(), &r.p.outWork)
	return nil
}

// --- the application's side: responses ---

// Response is a run of responses: read each in place (Slot), then Release.
// It embeds the ring's run.
type Response struct {
	ring.ReadRun
	p    *Pair
	done int // records released through this Response
}

// Receive takes 1 to n responses, waiting for them. Responses the device
// sent stay readable after the driver stopped; then Receive returns the
// driver's error only when none is left.
func (p *Pair) Receive(ctx context.Context, n int) (Response, error) {
	cons := p.d2h.Consumer()
	var r ring.ReadRun
	err := p.wait(ctx, p.d2h.ItemsWake(), &p.appItems, ring.ErrEmpty, func() (err error) {
		r, err = cons.ReserveUpTo(n)
		return err
	})
	return Response{ReadRun: r, p: p}, err
}

// Release hands response i back.
func (r *Response) Release(i int) error {
	if err := r.ReadRun.Release(i); err != nil {
		return err
	}
	r.done++
	r.p.received.Add(1)
	kick(r.p.d2h.SpaceWake(), &r.p.inRoom)
	return nil
}

// ReleaseAll hands every held response back.
func (r *Response) ReleaseAll() error {
	if err := r.ReadRun.ReleaseAll(); err != nil {
		return err
	}
	r.p.received.Add(uint64(r.Len() - r.done))
	r.done = r.Len()
	kick(r.p.d2h.SpaceWake(), &r.p.inRoom)
	return nil
}

// Send copies b into one request and sends it.
func (p *Pair) Send(ctx context.Context, b []byte) error {
	if len(b) > p.SlotSize() {
		return fmt.Errorf("%w: a %d-byte request does not fit a %d-byte record", ErrConfig, len(b), p.SlotSize())
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
		return 0, errors.Join(err, r.ReleaseAll())
	}
	n := copy(b, s)
	if err := r.ReleaseAll(); err != nil {
		return n, err
	}
	if n < len(s) {
		return n, fmt.Errorf("usbhost: a %d-byte response cut to the %d-byte buffer", len(s), len(b))
	}
	return n, nil
}
