package hostdriver

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/ycq-dev/ycq/internal/cpupin"
	"github.com/ycq-dev/ycq/ring"
)

// Stream is a run-to-completion loop over queue pairs, as a DPDK lcore
// runs: one goroutine publishes every pair's requests and reaps every
// pair's responses, so the host adds one busy thread however many pairs it
// drives. When no pair can move it spins briefly, then sleeps until an
// interrupt of any of them (or a health check).
type Stream struct {
	// Request writes the next request of pair p into b (the whole slot) and
	// returns its length; ok false means p has no more requests.
	Request func(p *Pair, b []byte) (length int, ok bool)
	// Response takes the next response of pair p, in order, in place; an
	// error ends the stream with it. Each request gets one response (the
	// echo and crc32c engines).
	Response func(p *Pair, b []byte) error
	// Window is the most requests a pair has in flight; 0 is what its
	// device-to-host queue holds.
	Window int
	// Batch is the most requests reserved, and responses taken, at a time;
	// 0 is 32.
	Batch int
	// CPUs, when not empty, are the CPUs Run's thread may run on: Run
	// locks its goroutine to a thread and pins that, as DPDK pins an
	// lcore, so the scheduler does not move the loop away from the caches
	// that hold its queues. Empty: wherever the Go scheduler runs it.
	CPUs []int

	lengths []int // the requests' lengths, published together
}

// streamSpin is how long a Stream with nothing to do keeps looking before
// it sleeps.
const streamSpin = 100 * time.Microsecond

// Run drives pairs until every one has no more requests and all its
// responses are taken, ctx ends, or the driver fails.
func (s *Stream) Run(ctx context.Context, pairs []*Pair) error {
	if len(pairs) == 0 || s.Request == nil || s.Response == nil {
		return fmt.Errorf("%w: a stream needs pairs, Request and Response", ErrConfig)
	}
	unpin, err := cpupin.Thread(s.CPUs)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer unpin()
	d := pairs[0].d
	batch := s.Batch
	if batch <= 0 {
		batch = 32
	}
	type state struct {
		inflight int
		more     bool
	}
	st := make([]state, len(pairs))
	window := make([]int, len(pairs))
	for i, p := range pairs {
		if p.d != d {
			return fmt.Errorf("%w: a stream's pairs belong to one driver", ErrConfig)
		}
		st[i].more = true
		window[i] = s.Window
		if window[i] <= 0 || window[i] > p.d2h.Cap() {
			window[i] = p.d2h.Cap()
		}
	}
	idle := 0
	var idleSince time.Time
	wantsRoom := make([]bool, len(pairs))
	for {
		active, did := false, false
		for i, p := range pairs {
			w := window[i]
			if p.rz != nil {
				// A resize changes the response queue's size.
				if w = s.Window; w <= 0 || w > p.d2hCap() {
					w = p.d2hCap()
				}
			}
			room := w - st[i].inflight
			sent, err := s.send(p, &st[i].more, min(batch, room))
			if err != nil {
				return err
			}
			// It had requests and window to send them, and sent none: the
			// request queue is full.
			wantsRoom[i] = st[i].more && room > 0 && sent == 0
			st[i].inflight += sent
			got, err := s.reap(p, batch)
			if err != nil {
				return err
			}
			st[i].inflight -= got
			did = did || sent > 0 || got > 0
			active = active || st[i].more || st[i].inflight > 0
		}
		if !active {
			return nil
		}
		if did {
			idle = 0
			continue
		}
		if err := d.Err(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if idle++; idle == 1 {
			idleSince = time.Now()
		}
		// Spin for streamSpin at least: a burst from the device can take
		// that long to come back when the CPUs are far apart, and a
		// stream that sleeps in between costs both sides an interrupt
		// and a wakeup for every burst.
		if idle < spinTries || idle%16 != 0 || time.Since(idleSince) < streamSpin {
			pause(idle)
			continue
		}
		idle = 0
		if err := s.sleep(ctx, pairs, wantsRoom); err != nil {
			return err
		}
	}
}

// send reserves up to n request slots of p, fills them with Request,
// publishes them and rings the doorbell once if the device sleeps.
func (s *Stream) send(p *Pair, more *bool, n int) (int, error) {
	if !*more || n <= 0 {
		return 0, nil
	}
	p.rlock()
	w, err := p.produce(n, false)
	if err == ring.ErrFull {
		p.runlock()
		return 0, nil
	}
	if err != nil {
		p.runlock()
		return 0, p.check(err)
	}
	// Fill them all, then publish them in one call: Publish on each
	// would update the producers' shared counter, a locked instruction
	// that waits for the requests' stores to leave this CPU, once a
	// request.
	w.Prefetch() // the slots' first lines, to own, before filling them
	s.lengths = s.lengths[:0]
	k := 0
	for ; k < w.Len(); k++ {
		length, ok := s.Request(p, w.Slot(k))
		if !ok {
			*more = false
			break
		}
		s.lengths = append(s.lengths, length)
	}
	if err := w.PublishLengths(s.lengths); err != nil {
		// A length that does not fit (Request's bug) refuses them all:
		// give the slots back rather than leave them held.
		aerr := w.AbortAll()
		p.runlock()
		return 0, errors.Join(p.check(err), aerr)
	}
	if k < w.Len() {
		// A hole this may leave (if another producer reserved after us)
		// wants the device to pass it: the kick below covers it too.
		if err := w.AbortAll(); err != nil {
			p.runlock()
			return k, p.check(err)
		}
	}
	p.sent.Add(uint64(k))
	return k, p.done(nil, w.Queue().ItemsWake)
}

// reap takes up to n responses of p, hands each to Response, releases them
// and rings the doorbell once if the device sleeps for space.
func (s *Stream) reap(p *Pair, n int) (int, error) {
	p.rlock()
	r, err := p.consume(n)
	if err == ring.ErrEmpty {
		p.runlock()
		return 0, nil
	}
	if err != nil {
		p.runlock()
		return 0, p.check(err)
	}
	r.Prefetch() // every response's first line, before reading any
	for i := range r.Len() {
		b, err := r.Slot(i)
		if err == nil {
			err = s.Response(p, b)
		}
		if err != nil {
			rerr := r.ReleaseAll()
			p.runlock()
			return i, errors.Join(err, rerr)
		}
	}
	err = r.ReleaseAll()
	if err == nil {
		p.received.Add(uint64(r.Len()))
	}
	return r.Len(), p.doneRelease(err, r.Queue().SpaceWake)
}

// sleep registers on every pair's response line (the device interrupts
// only a host that sleeps there) and, for a pair whose request queue was
// full, its request-space line; looks once more; and waits for an interrupt
// of any pair, ctx, or the health timer.
func (s *Stream) sleep(ctx context.Context, pairs []*Pair, wantsRoom []bool) error {
	d := pairs[0].d
	cases := make([]reflect.SelectCase, 0, len(pairs)+2)
	// The lines slept on: for a resizable pair, of the generations
	// current now, registered and looked at under the read lock, and
	// unregistered only if still live (a Resize may give them back while
	// this sleeps).
	type slept struct {
		items, space ring.WakeLine
		d2h, h2d     *ring.Queue
	}
	lines := make([]slept, len(pairs))
	for i, p := range pairs {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(p.waitChan())})
		p.rlock()
		h2d, d2h := p.queues()
		lines[i] = slept{items: d2h.ItemsWake(), space: h2d.SpaceWake(), d2h: d2h, h2d: h2d}
		lines[i].items.Waiters().Add(1) // a locked add: the barrier the device's wake pairs with
		if wantsRoom[i] {
			lines[i].space.Waiters().Add(1)
		}
		p.runlock()
	}
	defer func() {
		for i, p := range pairs {
			p.rlock()
			if p.live(lines[i].d2h) {
				lines[i].items.Waiters().Add(^uint32(0))
			}
			if wantsRoom[i] && p.live(lines[i].h2d) {
				lines[i].space.Waiters().Add(^uint32(0))
			}
			p.runlock()
		}
	}()
	for i, p := range pairs {
		p.rlock()
		h2d, d2h := p.queues()
		moved := d2h.Ready() > 0 || wantsRoom[i] && h2d.Len() < h2d.Cap() || d2h != lines[i].d2h || h2d != lines[i].h2d
		if !moved && p.rz != nil {
			// A drained generation whose successor is named: the next
			// reserve moves on.
			moved = d2h.Sealed() && d2h.Len() == 0
		}
		p.runlock()
		if moved {
			return nil // something moved meanwhile: go round again
		}
	}
	timeout := d.cfg.Health
	if d.cfg.Polling {
		timeout = 20 * time.Microsecond
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	cases = append(cases,
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)})
	for _, p := range pairs {
		p.sleeps.Add(1)
	}
	chosen, _, _ := reflect.Select(cases)
	if chosen == len(cases)-1 && !d.cfg.Polling {
		d.checkHealth()
	}
	return nil
}
