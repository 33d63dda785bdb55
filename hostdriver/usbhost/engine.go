package usbhost

import (
	"errors"
	"fmt"
	"sync"

	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// The transport: per pair, one goroutine keeps OUT transfers in flight on
// runs of published request slots, and one keeps IN transfers in flight
// on runs of reserved response slots. A request slot is released once its
// OUT transfer completed and its responses all came (for the sink engine,
// once its OUT transfer completed), so after a reset or a replug whatever
// was not answered is still in its slot and is sent again.

// seg is a run of request records at consecutive slots: what one OUT
// transfer carries.
type seg struct {
	run      *ring.ReadRun
	i0, n    int // records i0 to i0+n-1 of run
	slot     int // the slot of record i0
	released int // records released from the front
}

// heldQueue is the request records the transport reserved and has not
// released, in queue order. The counts are of records from the first
// unreleased one; each is at most the next: answered, outDone <= submitted
// <= total (answered may pass outDone: a response can come before its OUT
// transfer's completion).
type heldQueue struct {
	segs      []seg
	total     int // records held
	submitted int // records in an OUT transfer, in flight or completed, since the engines started
	outDone   int // records whose OUT transfer completed
	answered  int // records whose responses all came
	partial   int // responses come so far for the record after the answered ones (source)
}

// find returns the segment holding held record j (counted from the first
// unreleased one) and j's offset in the segment (from its first record,
// released ones included: the record is at slot s.slot+offset).
func (h *heldQueue) find(j int) (*seg, int) {
	for k := range h.segs {
		s := &h.segs[k]
		if avail := s.n - s.released; j < avail {
			return s, s.released + j
		} else {
			j -= avail
		}
	}
	return nil, 0
}

// add appends the records of run, split where the slots stop being
// consecutive (at the end of the data region, or around a hole).
func (h *heldQueue) add(run ring.ReadRun, slots int) {
	rr := &run
	prev := uint64(0)
	for i := range rr.Len() {
		pos := rr.Position(i)
		slot := int(pos % uint64(slots))
		if i == 0 || pos != prev+1 || slot == 0 {
			h.segs = append(h.segs, seg{run: rr, i0: i, slot: slot})
		}
		h.segs[len(h.segs)-1].n++
		prev = pos
	}
	h.total += rr.Len()
}

// pending is what the pair has unanswered, for an IncompleteError.
func (p *Pair) pending() Pending {
	p.mu.Lock()
	defer p.mu.Unlock()
	done := p.held.answered
	if p.shape.s == 0 {
		done = p.held.outDone
	}
	return Pending{Pair: p.index, Unanswered: p.held.total - done, Sent: p.sent.Load(), Answered: p.answered.Load()}
}

// rewind runs while the engines are stopped: what was submitted and not
// answered (for the sink engine: not completed) goes out again.
func (p *Pair) rewind() {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &p.held
	if p.shape.s > 0 {
		// An answered record reached the device, whatever its OUT
		// transfer's completion said.
		h.outDone = h.answered
	}
	p.resent.Add(uint64(h.submitted - h.outDone))
	h.submitted, h.answered, h.partial = h.outDone, min(h.answered, h.outDone), 0
	if p.shape.s == 0 {
		h.answered = h.outDone
	}
}

// nextOut reserves what the next OUT transfer carries: the first records
// not yet submitted, those held first (sent again after a rewind), then
// newly published ones. It returns their first slot and count, or n 0.
func (p *Pair) nextOut() (slot, n int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &p.held
	if h.submitted == h.total {
		run, err := p.h2d.Consumer().ReserveUpTo(p.shape.outRecords)
		if err == ring.ErrEmpty {
			return 0, 0, nil
		}
		if err != nil {
			return 0, 0, err
		}
		h.add(run, p.shape.slots)
	}
	s, off := h.find(h.submitted)
	if s == nil {
		return 0, 0, fmt.Errorf("%w: pair %d: held record %d of %d not found", ErrProtocol, p.index, h.submitted, h.total)
	}
	n = s.n - off
	h.submitted += n
	return s.slot + off, n, nil
}

// unsubmit takes back the last n records nextOut gave (a submit failed).
func (p *Pair) unsubmit(n int) {
	p.mu.Lock()
	p.held.submitted -= n
	p.mu.Unlock()
}

// outCompleted counts n records whose OUT transfer completed.
func (p *Pair) outCompleted(n int) error {
	p.mu.Lock()
	p.held.outDone += n
	if p.shape.s == 0 {
		p.held.answered = p.held.outDone
		p.answered.Add(uint64(n))
	}
	err := p.releaseLocked()
	p.mu.Unlock()
	p.sent.Add(uint64(n))
	kick(p.h2d.SpaceWake(), &p.appRoom)
	return err
}

// answer counts k responses that came, in order, against the submitted
// records: a response for a record not sent is the device's lie.
func (p *Pair) answer(k int) error {
	p.mu.Lock()
	h := &p.held
	var err error
	for k > 0 {
		if h.answered >= h.submitted {
			err = fmt.Errorf("%w: pair %d: %d responses for requests never sent", ErrProtocol, p.index, k)
			break
		}
		need := 1
		if p.shape.engine == ycqdev.EngineSource {
			s, off := h.find(h.answered)
			need = usbproto.Responses(p.shape.engine, p.h2dData[(s.slot+off)*p.shape.r:][:p.shape.r])
		}
		take := min(k, need-h.partial)
		h.partial += take
		k -= take
		if h.partial == need {
			h.answered++
			h.partial = 0
			p.answered.Add(1)
		}
	}
	err = errors.Join(err, p.releaseLocked())
	p.mu.Unlock()
	kick(p.h2d.SpaceWake(), &p.appRoom)
	return err
}

// releaseLocked releases the records both sent and answered.
func (p *Pair) releaseLocked() error {
	h := &p.held
	r := min(h.outDone, h.answered)
	if r == 0 {
		return nil
	}
	h.total -= r
	h.submitted -= r
	h.outDone -= r
	h.answered -= r
	var errs []error
	for r > 0 {
		s := &h.segs[0]
		take := min(r, s.n-s.released)
		for j := range take {
			if err := s.run.Release(s.i0 + s.released + j); err != nil {
				errs = append(errs, err)
			}
		}
		s.released += take
		r -= take
		if s.released == s.n {
			h.segs[0] = seg{}
			h.segs = h.segs[1:]
		}
	}
	return errors.Join(errs...)
}

// engines are one lifetime of the pairs' transfer goroutines, on one
// device handle.
type engines struct {
	d    *Driver
	dev  device
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newEngines(d *Driver) *engines {
	return &engines{d: d, dev: d.dev, stop: make(chan struct{})}
}

func (e *engines) start() {
	for _, p := range e.d.pairs {
		e.wg.Go(func() { e.runOut(p) })
		if p.shape.s > 0 {
			e.wg.Go(func() { e.runIn(p) })
		}
	}
}

func (e *engines) stopAsync() { e.once.Do(func() { close(e.stop) }) }

func (e *engines) stopWait() {
	e.stopAsync()
	e.wg.Wait()
}

// transfers makes n transfers on ep, or fails the driver.
func (e *engines) transfers(p *Pair, ep uint8, n int) ([]transfer, bool) {
	var xs []transfer
	for range n {
		x, err := e.dev.newTransfer(ep)
		if err != nil {
			for _, x := range xs {
				x.free()
			}
			e.d.fail(&TransferError{Pair: p.index, Endpoint: ep, Err: sentinel(err), Detail: "allocate"})
			return nil, false
		}
		xs = append(xs, x)
	}
	return xs, true
}

// failTransfer reports a failed transfer; a stalled endpoint's halt is
// cleared first, so that Recover finds it usable.
func (e *engines) failTransfer(p *Pair, ep uint8, n int, err error) {
	te := &TransferError{Pair: p.index, Endpoint: ep, N: n, Err: sentinel(err)}
	if errors.Is(err, ErrStall) {
		if cerr := e.dev.clearHalt(ep); cerr != nil {
			te.Detail = "clear halt: " + cerr.Error()
		} else {
			te.Detail = "halt cleared"
		}
	}
	e.d.fail(te)
}

// sentinel makes sure err wraps one of the sentinels (ErrIO if none).
func sentinel(err error) error {
	for _, s := range []error{ErrGone, ErrStall, ErrTimeout, ErrProtocol, ErrIO} {
		if errors.Is(err, s) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", ErrIO, err)
}

// copied reports whether a transfer on buf, cut from a queue's data
// region data whose memory is usbfs memory when device says so, has its
// bytes copied on the way: by this driver, were buf not the queue's own
// memory (isSub checks that without unsafe), or by usbfs, which copies a
// transfer between a buffer of its own and any memory it did not map
// itself (USBDEVFS_SUBMITURB on anonymous memory). PairStats.Copies counts
// them.
func copied(buf, data []byte, device bool) bool { return !device || !isSub(buf, data) }

// isSub reports whether s is a subslice of base (it shares the end of
// base's backing array).
func isSub(s, base []byte) bool {
	if cap(s) == 0 || cap(base) == 0 {
		return false
	}
	return &s[:cap(s)][cap(s)-1] == &base[:cap(base)][cap(base)-1]
}

type outFlight struct {
	x    transfer
	n    int // records
	size int // bytes
}

// runOut keeps up to OutTransfers OUT transfers in flight on p.
func (e *engines) runOut(p *Pair) {
	ep := usbproto.OutEndpoint(p.index)
	free, ok := e.transfers(p, ep, p.shape.outTransfers)
	if !ok {
		return
	}
	var inflight []outFlight
	defer func() {
		// What was in flight: its completions count (a completed OUT
		// needs no resending for the sink), its failures do not (they
		// will be sent again).
		drain(inflight, free, func(f outFlight) {
			if n, err := f.x.result(); err == nil && n == f.size {
				p.outXfers.Add(1)
				p.outCompleted(f.n)
			}
		})
	}()
	line := p.h2d.ItemsWake()
	r := p.shape.r
	// fill submits while there are transfers and records; false means the
	// driver failed.
	fill := func() (submitted int, ok bool) {
		for len(free) > 0 {
			slot, n, err := p.nextOut()
			if err != nil {
				e.d.fail(fmt.Errorf("usbhost: pair %d: request queue: %w", p.index, err))
				return submitted, false
			}
			if n == 0 {
				return submitted, true
			}
			buf := p.h2dData[slot*r : (slot+n)*r]
			if copied(buf, p.h2dData, p.h2dMem.device) {
				p.copies.Add(1)
			}
			x := free[len(free)-1]
			if err := x.submit(buf, e.d.cfg.Timeout); err != nil {
				p.unsubmit(n)
				e.failTransfer(p, ep, 0, err)
				return submitted, false
			}
			free = free[:len(free)-1]
			inflight = append(inflight, outFlight{x: x, n: n, size: len(buf)})
			submitted++
		}
		return submitted, true
	}
	// The publisher kicks p.outWork after its publish.
	pump(e, line, &p.outWork, &free, &inflight, fill, func(f outFlight) bool {
		n, err := f.x.result()
		switch {
		case err == nil && n == f.size:
			p.outXfers.Add(1)
			if err := p.outCompleted(f.n); err != nil {
				e.d.fail(fmt.Errorf("usbhost: pair %d: release requests: %w", p.index, err))
				return false
			}
		case errors.Is(err, errCancelled):
			// Stopping: the records go out again after the restart.
		case err == nil:
			e.failTransfer(p, ep, n, fmt.Errorf("%w: %d bytes of %d sent", ErrProtocol, n, f.size))
			return false
		default:
			e.failTransfer(p, ep, n, err)
			return false
		}
		return true
	})
}

type inFlight struct {
	x    transfer
	run  *ring.WriteRun
	n    int // response slots
	size int
}

// runIn keeps up to InTransfers IN transfers in flight on p, each on a run
// of reserved response slots.
func (e *engines) runIn(p *Pair) {
	ep := usbproto.InEndpoint(p.index)
	free, ok := e.transfers(p, ep, p.shape.inTransfers)
	if !ok {
		return
	}
	var inflight []inFlight
	s := p.shape.s
	lengths := make([]int, p.shape.inResponses)
	for i := range lengths {
		lengths[i] = s
	}
	slots := p.d2h.Cap()
	// complete publishes the whole responses f brought and gives the rest
	// of its slots back.
	complete := func(f inFlight) error {
		n, err := f.x.result()
		k := min(max(n, 0)/s, f.n)
		// Count the answers first, so that whoever reads a response finds
		// it counted (and its request released).
		var aerr error
		if k > 0 {
			aerr = p.answer(k)
		}
		if perr := f.run.PublishLengths(lengths[:k]); perr != nil {
			return errors.Join(err, fmt.Errorf("usbhost: pair %d: publish responses: %w", p.index, perr))
		}
		for i := k; i < f.n; i++ {
			if aerr := f.run.Abort(i); aerr != nil {
				return errors.Join(err, aerr)
			}
			p.holes.Add(1)
		}
		if k > 0 {
			p.inXfers.Add(1)
			p.published.Add(uint64(k))
			kick(p.d2h.ItemsWake(), &p.appItems)
		}
		if aerr != nil {
			return aerr
		}
		if err == nil && n%s != 0 {
			return fmt.Errorf("%w: a %d-byte IN completion is not whole %d-byte responses", ErrProtocol, n, s)
		}
		if err == nil && k < f.n {
			p.shortIn.Add(1)
		}
		return err
	}
	defer func() {
		// Responses that came before the cancel count.
		drain(inflight, free, func(f inFlight) { complete(f) })
	}()
	line := p.d2h.SpaceWake()
	next := p.inNext // the next position this side reserves (it is the only producer)
	defer func() { p.inNext = next }()
	// fill submits while there are transfers and free response slots;
	// false means the driver failed.
	fill := func() (submitted int, ok bool) {
		for len(free) > 0 {
			want := min(p.shape.inResponses, slots-int(next%uint64(slots)))
			w, err := p.d2h.Producer().ReserveUpTo(want)
			if err == ring.ErrFull {
				return submitted, true
			}
			if err != nil {
				e.d.fail(fmt.Errorf("usbhost: pair %d: response queue: %w", p.index, err))
				return submitted, false
			}
			run := &w
			first := int(run.Position(0) % uint64(slots))
			n := run.Len()
			next = run.Position(0) + uint64(n)
			if first+n > slots {
				// Not where this side thought: give back what wraps.
				for i := slots - first; i < n; i++ {
					if err := run.Abort(i); err != nil {
						e.d.fail(fmt.Errorf("usbhost: pair %d: response queue: %w", p.index, err))
						return submitted, false
					}
					p.holes.Add(1)
				}
				n = slots - first
			}
			buf := p.d2hData[first*s : (first+n)*s]
			if copied(buf, p.d2hData, p.d2hMem.device) {
				p.copies.Add(1)
			}
			x := free[len(free)-1]
			if err := x.submit(buf, 0); err != nil {
				for i := range n {
					run.Abort(i)
				}
				e.failTransfer(p, ep, 0, err)
				return submitted, false
			}
			free = free[:len(free)-1]
			inflight = append(inflight, inFlight{x: x, run: run, n: n, size: len(buf)})
			submitted++
		}
		return submitted, true
	}
	// The application's release kicks p.inRoom.
	pump(e, line, &p.inRoom, &free, &inflight, fill, func(f inFlight) bool {
		if err := complete(f); err != nil && !errors.Is(err, errCancelled) {
			e.failTransfer(p, ep, 0, err)
			return false
		}
		return true
	})
}

// flight is a transfer in flight with what it carries (outFlight,
// inFlight).
type flight interface{ xfer() transfer }

func (f outFlight) xfer() transfer { return f.x }
func (f inFlight) xfer() transfer  { return f.x }

// pump is the loop runOut and runIn share. Until the engines stop or a
// step fails, it fills (fill submits on free transfers what there is,
// appending to inflight; false means the driver failed), then waits for
// the oldest transfer in flight, or, with a transfer free, for more work
// (wake, fired by kick on line), or for the end. The oldest transfer, once
// done, goes back to free and to complete, which returns false to end the
// loop. pump alone appends to free and takes from inflight's head while it
// runs; fill and complete run on its goroutine.
func pump[F flight](e *engines, line ring.WakeLine, wake *signal, free *[]transfer, inflight *[]F,
	fill func() (submitted int, ok bool), complete func(F) bool) {
	for {
		select {
		case <-e.stop:
			return
		default:
		}
		if _, ok := fill(); !ok {
			return
		}
		// Wait for the oldest transfer, or (with a transfer free) for
		// work, or the end. Registered as a sleeper on line, try once
		// more before sleeping: work since the last try either shows now
		// or kicks.
		var head, work <-chan struct{}
		if len(*inflight) > 0 {
			head = (*inflight)[0].xfer().done()
		}
		if len(*free) > 0 {
			work = wake.arm()
			line.Waiters().Add(1) // a locked add: the barrier the kick's fence pairs with
			n, ok := fill()
			if n > 0 || !ok {
				line.Waiters().Add(^uint32(0))
				if !ok {
					return
				}
				continue
			}
		}
		select {
		case <-head:
		case <-work:
		case <-e.stop:
		}
		if work != nil {
			line.Waiters().Add(^uint32(0))
		}
		if len(*inflight) == 0 {
			continue
		}
		f := (*inflight)[0]
		select {
		case <-f.xfer().done():
		default:
			continue
		}
		*inflight = (*inflight)[1:]
		*free = append(*free, f.xfer())
		if !complete(f) {
			return
		}
	}
}

// drain is what runOut and runIn do last: cancel every transfer in flight,
// wait for each, in order, and hand it to finish, then free every
// transfer.
func drain[F flight](inflight []F, free []transfer, finish func(F)) {
	for _, f := range inflight {
		f.xfer().cancel()
	}
	for _, f := range inflight {
		<-f.xfer().done()
		finish(f)
		free = append(free, f.xfer())
	}
	for _, x := range free {
		x.free()
	}
}
