package usbdev

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// engineBatch bounds the records the engine loop takes from one pair's
// receive ring before it looks at the others, and inBatch the IN
// completions it writes in one go.
const (
	engineBatch = 64
	inBatch     = 16
)

// pair is queue pair i: its endpoints' state, the IN requests it holds,
// and the queue SET_QUEUE started (nil while stopped). Fields without a
// note are guarded by Device.mu.
type pair struct {
	index       int
	outEP, inEP uint8
	outHalted   bool
	inHalted    bool
	ins         []inRequest // held IN requests, oldest first
	q           *queue

	requests, responses, outBytes, inBytes, badTransfers atomic.Uint64
}

// inRequest is a held bulk IN request.
type inRequest struct {
	id     uint64
	length uint32
}

// queue is one SET_QUEUE's worth of a pair: the two device rings and
// what the engine is in the middle of. RESET, SET_CONFIGURATION and the
// like replace it (the pair's q becomes nil) rather than reset it, so an
// engine loop still working on it touches only memory nobody else uses.
type queue struct {
	engineID    uint32
	engine      devicemodel.Engine
	recSize     int
	respSize    int
	perTransfer int
	slots       int

	// rx: records from OUT transfers. Produced under Device.mu (by the
	// reader, or by the engine loop moving staged transfers in); consumed
	// by the engine loop alone.
	rx *ring.Queue
	// tx: responses. Produced by the engine loop, consumed by it (IN
	// completions, under Device.wmu); nil for an engine without
	// responses.
	tx     *ring.Queue
	txData []byte

	staged []stagedOut // guarded by Device.mu: held OUT transfers, oldest first
	spare  [][]byte    // guarded by Device.mu: staging buffers to reuse
	failed bool        // guarded by Device.mu

	// The engine loop's own state.
	cur     ring.ReadRun // records taken from rx, not all answered
	curOK   bool
	curIdx  int // the record of cur being answered
	curN    int // its response count, -1 before Responses is asked
	curK    int // responses of it produced so far
	txNext  uint64
	txSlots uint64
}

// stagedOut is a held OUT transfer: its data, copied out of the reader's
// buffer, waiting for room in rx.
type stagedOut struct {
	id   uint64
	data []byte
}

// newQueue makes the rings for a SET_QUEUE that passed its checks.
func newQueue(engineID uint32, e devicemodel.Engine, recSize int) (*queue, error) {
	q := &queue{
		engineID:    engineID,
		engine:      e,
		recSize:     recSize,
		respSize:    usbproto.ResponseSize(engineID, recSize),
		perTransfer: usbproto.RecordsPerTransfer(recSize),
		slots:       usbproto.RingSlots(recSize),
		curN:        -1,
	}
	cfg := ring.Config{Slots: q.slots, SlotSize: recSize, SingleProducer: true, SingleConsumer: true}
	rx, err := ring.Format(ring.AlignedBytes(cfg.MetaSize()), make([]byte, cfg.DataSize()), cfg)
	if err != nil {
		return nil, fmt.Errorf("receive ring: %w", err)
	}
	q.rx = rx
	if q.respSize > 0 {
		tcfg := ring.Config{Slots: q.slots, SlotSize: q.respSize, SingleProducer: true, SingleConsumer: true}
		q.txData = make([]byte, tcfg.DataSize())
		tx, err := ring.Format(ring.AlignedBytes(tcfg.MetaSize()), q.txData, tcfg)
		if err != nil {
			return nil, fmt.Errorf("transmit ring: %w", err)
		}
		q.tx = tx
		q.txSlots = uint64(q.slots)
	}
	return q, nil
}

// buffer returns a staging buffer of n bytes. Called with mu held.
func (q *queue) buffer(n int) []byte {
	for i, b := range q.spare {
		if cap(b) >= n {
			q.spare[i] = q.spare[len(q.spare)-1]
			q.spare = q.spare[:len(q.spare)-1]
			return b[:n]
		}
	}
	return make([]byte, n)
}

// recycle keeps a staging buffer for reuse, up to OutWindow of them.
// Called with mu held.
func (q *queue) recycle(b []byte) {
	if len(q.spare) < usbproto.OutWindow {
		q.spare = append(q.spare, b[:0])
	}
}

// putRecords copies the whole records of data into rx and publishes
// them, or reports false if rx lacks room for all of them. Called with mu
// held.
func (q *queue) putRecords(data []byte) bool {
	k := len(data) / q.recSize
	w, err := q.rx.Producer().Reserve(k)
	if err != nil {
		return false // ErrFull; nothing else is possible on a ring only this device drives
	}
	for i := range k {
		copy(w.Slot(i), data[i*q.recSize:][:q.recSize])
	}
	return w.PublishAll(q.recSize) == nil
}

// counters reads the pair's counters.
func (p *pair) counters() usbproto.PairCounters {
	return usbproto.PairCounters{
		Requests:     p.requests.Load(),
		Responses:    p.responses.Load(),
		OutBytes:     p.outBytes.Load(),
		InBytes:      p.inBytes.Load(),
		BadTransfers: p.badTransfers.Load(),
	}
}

func (p *pair) zeroCounters() {
	p.requests.Store(0)
	p.responses.Store(0)
	p.outBytes.Store(0)
	p.inBytes.Store(0)
	p.badTransfers.Store(0)
}

// state is GET_QUEUE's answer. Called with mu held.
func (p *pair) state() usbproto.QueueState {
	var s usbproto.QueueState
	if q := p.q; q != nil {
		s = usbproto.QueueState{
			Engine:             q.engineID,
			RecordSize:         uint32(q.recSize),
			ResponseSize:       uint32(q.respSize),
			RecordsPerTransfer: uint32(q.perTransfer),
			RingSlots:          uint16(q.slots),
		}
		if q.failed {
			s.State |= usbproto.QueueFailed
		} else {
			s.State |= usbproto.QueueRunning
		}
	}
	if p.outHalted {
		s.State |= usbproto.QueueOutHalted
	}
	if p.inHalted {
		s.State |= usbproto.QueueInHalted
	}
	return s
}

// stop drops the pair's queue and completes every transfer it holds with
// status. Called with wmu and mu held.
func (p *pair) stop(d *Device, out *outbox, status redir.Status) {
	p.completeIns(d, out, status)
	if q := p.q; q != nil {
		for _, s := range q.staged {
			delete(d.held, s.id)
			out.add(s.id, redir.BulkPacket{Endpoint: p.outEP, Status: status})
		}
		q.staged = nil
		p.q = nil
	}
}

// completeIns completes every held IN request with status. Called with
// wmu and mu held.
func (p *pair) completeIns(d *Device, out *outbox, status redir.Status) {
	for _, in := range p.ins {
		delete(d.held, in.id)
		out.add(in.id, redir.BulkPacket{Endpoint: p.inEP, Status: status})
	}
	p.ins = p.ins[:0]
}

// haltIn halts the IN endpoint: its held requests complete with a STALL.
// Called with wmu and mu held.
func (p *pair) haltIn(d *Device, out *outbox) {
	p.inHalted = true
	p.completeIns(d, out, redir.StatusStall)
}

// cancel completes the transfer with this id, if the pair holds it, with
// usb_redir_cancelled. Called with wmu and mu held.
func (p *pair) cancel(d *Device, out *outbox, id uint64) bool {
	for i, in := range p.ins {
		if in.id == id {
			p.ins = append(p.ins[:i], p.ins[i+1:]...)
			delete(d.held, id)
			out.add(id, redir.BulkPacket{Endpoint: p.inEP, Status: redir.StatusCancelled})
			return true
		}
	}
	if q := p.q; q != nil {
		for i, s := range q.staged {
			if s.id == id {
				q.staged = append(q.staged[:i], q.staged[i+1:]...)
				q.recycle(s.data)
				delete(d.held, id)
				out.add(id, redir.BulkPacket{Endpoint: p.outEP, Status: redir.StatusCancelled})
				return true
			}
		}
	}
	return false
}

// engineLoop is the device's second goroutine: it moves staged OUT
// transfers into the receive rings, runs the engines from the receive
// rings into the transmit rings, and completes held IN requests from the
// transmit rings. It sleeps on kick when nothing moved.
func (d *Device) engineLoop() {
	defer d.wg.Done()
	for {
		select {
		case <-d.stop:
			return
		default:
		}
		progress := false
		for _, p := range d.pairs {
			did, err := d.step(p)
			if err != nil {
				d.logf("engine loop: %v", err)
				return // a write failed: the connection is closed, Serve ends
			}
			progress = progress || did
		}
		if progress {
			continue
		}
		select {
		case <-d.kick:
		case <-d.stop:
			return
		}
	}
}

// step does one round of the engine loop's work for pair p.
func (d *Device) step(p *pair) (bool, error) {
	d.mu.Lock()
	q := p.q
	if q == nil || q.failed {
		d.mu.Unlock()
		return false, nil
	}
	staged, ins := len(q.staged) > 0, len(p.ins) > 0
	d.mu.Unlock()

	progress := false
	if staged {
		did, err := d.unstage(p, q)
		if err != nil {
			return false, err
		}
		progress = did
	}
	did, err := q.run()
	if err != nil {
		// What the engine answered before it failed still goes out.
		if q.tx != nil && q.tx.Ready() > 0 {
			if _, werr := d.completeIns(p, q); werr != nil {
				return false, werr
			}
		}
		return progress, d.fail(p, q, err)
	}
	progress = progress || did
	if ins && q.tx != nil && q.tx.Ready() > 0 {
		did, err := d.completeIns(p, q)
		if err != nil {
			return false, err
		}
		progress = progress || did
	}
	return progress, nil
}

// unstage moves held OUT transfers of q, oldest first, into its receive
// ring while there is room, and completes them.
func (d *Device) unstage(p *pair, q *queue) (bool, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var out outbox
	d.mu.Lock()
	if p.q != q || q.failed {
		d.mu.Unlock()
		return false, nil
	}
	moved := 0
	for len(q.staged) > 0 {
		s := q.staged[0]
		if !q.putRecords(s.data) {
			break
		}
		q.staged = q.staged[1:]
		delete(d.held, s.id)
		p.requests.Add(uint64(len(s.data) / q.recSize))
		p.outBytes.Add(uint64(len(s.data)))
		out.add(s.id, redir.BulkPacket{Endpoint: p.outEP, Status: redir.StatusSuccess, Length: uint32(len(s.data))})
		q.recycle(s.data)
		moved++
	}
	if len(q.staged) == 0 {
		q.staged = nil // let the backing array of a long-gone window go
	}
	d.mu.Unlock()
	if moved > 0 {
		d.signalRoom()
	}
	return moved > 0, d.flush(&out)
}

// run answers up to engineBatch records of q's receive ring into its
// transmit ring. It runs on the engine loop without a lock: only the
// engine loop consumes rx and touches tx's producer side.
func (q *queue) run() (bool, error) {
	progress := false
	for done := 0; done < engineBatch; {
		if !q.curOK {
			r, err := q.rx.Consumer().ReserveUpTo(min(engineBatch, q.slots))
			if errors.Is(err, ring.ErrEmpty) {
				return progress, nil
			}
			if err != nil {
				return progress, fmt.Errorf("receive ring: %w", err)
			}
			q.cur, q.curOK, q.curIdx, q.curN, q.curK = r, true, 0, -1, 0
		}
		rec, err := q.cur.Slot(q.curIdx)
		if err != nil {
			return progress, fmt.Errorf("receive ring: %w", err)
		}
		if q.curN < 0 {
			q.curN = q.engine.Responses(rec)
			if q.curN < 0 || (q.curN > 0 && q.tx == nil) {
				return progress, fmt.Errorf("%s asks for %d responses with a response size of %d", ycqEngineName(q.engineID), q.curN, q.respSize)
			}
		}
		for q.curK < q.curN {
			w, err := q.tx.Producer().ReserveUpTo(min(q.curN-q.curK, engineBatch, q.slots))
			if errors.Is(err, ring.ErrFull) {
				return progress, nil // resumes here once IN completions free slots
			}
			if err != nil {
				return progress, fmt.Errorf("transmit ring: %w", err)
			}
			for j := range w.Len() {
				n, err := q.engine.Respond(rec, q.curK+j, w.Slot(j)[:q.respSize])
				if err == nil && n != q.respSize {
					err = fmt.Errorf("a %d-byte response, %d expected", n, q.respSize)
				}
				if err != nil {
					_ = w.AbortAll()
					return progress, fmt.Errorf("%s: %w", ycqEngineName(q.engineID), err)
				}
			}
			if err := w.PublishAll(q.respSize); err != nil {
				return progress, fmt.Errorf("transmit ring: %w", err)
			}
			q.curK += w.Len()
			progress = true
		}
		if err := q.cur.Release(q.curIdx); err != nil {
			return progress, fmt.Errorf("receive ring: %w", err)
		}
		progress = true
		done++
		q.curIdx++
		q.curN, q.curK = -1, 0
		if q.curIdx == q.cur.Len() {
			q.cur, q.curOK = ring.ReadRun{}, false
		}
	}
	return progress, nil
}

// fail stops q after an engine error: the pair stays failed (GET_QUEUE
// says so) until RESET, its endpoints halt and what it holds completes
// with a STALL.
func (d *Device) fail(p *pair, q *queue, cause error) error {
	d.logf("queue pair %d: %v", p.index, cause)
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var out outbox
	d.mu.Lock()
	if p.q == q && !q.failed {
		q.failed = true
		p.outHalted = true
		p.haltIn(d, &out)
		for _, s := range q.staged {
			delete(d.held, s.id)
			out.add(s.id, redir.BulkPacket{Endpoint: p.outEP, Status: redir.StatusStall})
		}
		q.staged = nil
	}
	d.mu.Unlock()
	d.signalRoom()
	return d.flush(&out)
}

// completion is an IN completion decided under mu: the request, and the
// run of transmit ring slots its data is written from.
type completion struct {
	id  uint64
	run ring.ReadRun
	n   int
}

// completeIns completes held IN requests of p from q's transmit ring,
// oldest first, each with as many whole responses as fit its length and
// lie contiguously in the ring. The data goes to the socket straight from
// the slots; the slots are released once written.
func (d *Device) completeIns(p *pair, q *queue) (bool, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var out outbox
	var done [inBatch]completion
	nd := 0
	d.mu.Lock()
	if p.q != q || q.failed || p.inHalted {
		d.mu.Unlock()
		return false, nil
	}
	maxLen := d.layout.MaxBulkLength()
	for nd < inBatch && len(p.ins) > 0 && !p.inHalted {
		in := p.ins[0]
		fit := int(min(uint64(in.length), uint64(maxLen)) / uint64(q.respSize))
		if fit == 0 {
			p.badTransfers.Add(1)
			d.logf("queue pair %d: IN request %d of %d bytes is shorter than a %d-byte response", p.index, in.id, in.length, q.respSize)
			p.haltIn(d, &out)
			break
		}
		contiguous := int(q.txSlots - q.txNext%q.txSlots)
		r, err := q.tx.Consumer().ReserveUpTo(min(fit, contiguous))
		if err != nil {
			break // ErrEmpty: nothing (more) to send yet
		}
		p.ins = p.ins[1:]
		delete(d.held, in.id)
		done[nd] = completion{id: in.id, run: r, n: r.Len()}
		nd++
		q.txNext += uint64(r.Len())
	}
	if len(p.ins) == 0 {
		p.ins = nil
	}
	d.mu.Unlock()
	stalled := len(out.pkts) > 0
	for i := range nd {
		c := &done[i]
		data, err := q.contiguous(c.run)
		if err != nil {
			return false, err
		}
		err = d.sendLocked(c.id, redir.BulkPacket{Endpoint: p.inEP, Status: redir.StatusSuccess, Length: uint32(len(data)), Data: data})
		if rerr := c.run.ReleaseAll(); err == nil && rerr != nil {
			err = fmt.Errorf("transmit ring: %w", rerr)
		}
		if err != nil {
			return false, err
		}
		p.responses.Add(uint64(c.n))
		p.inBytes.Add(uint64(len(data)))
	}
	if nd > 0 {
		d.signalKick() // freed slots may unblock the engine
	}
	// The STALLs of a halt answer requests younger than those completed.
	return nd > 0 || stalled, d.flush(&out)
}

// contiguous returns the transmit ring's data behind run r, whose slots
// are consecutive and do not wrap: one slice of the ring's data region,
// checked against what each slot was published with.
func (q *queue) contiguous(r ring.ReadRun) ([]byte, error) {
	first := r.Position(0) % q.txSlots
	for i := range r.Len() {
		b, err := r.Slot(i)
		if err != nil {
			return nil, fmt.Errorf("transmit ring: %w", err)
		}
		if len(b) != q.respSize || r.Position(i) != r.Position(0)+uint64(i) {
			return nil, fmt.Errorf("transmit ring: response %d of a run is %d bytes at position %d", i, len(b), r.Position(i))
		}
	}
	if first+uint64(r.Len()) > q.txSlots {
		return nil, fmt.Errorf("transmit ring: a run of %d from slot %d wraps", r.Len(), first)
	}
	at := int(first) * q.respSize
	return q.txData[at : at+r.Len()*q.respSize], nil
}
