package usbhost

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// Driver drives one ycq USB device: its queue pairs, their bulk transfers,
// its vendor requests, and bringing it back after a reset or a replug.
type Driver struct {
	cfg   Config
	open  opener
	shape pairShape
	pairs []*Pair

	// ctl serializes what changes the device's state: control requests,
	// Reset, Recover, Close.
	ctl sync.Mutex
	dev device // nil while gone

	mu      sync.Mutex
	closed  bool
	closing chan struct{} // closed by Close before it waits for ctl: ends find's wait
	err     error         // why the driver stopped; nil while it runs
	failed  chan struct{} // closed when err is set
	engines *engines      // the pairs' transport goroutines, nil while stopped
	info    usbproto.Info

	resets, recoveries atomic.Uint64
}

// Open finds the device by Config.Vendor and Config.Product, waiting for it
// until ctx ends (give ctx a deadline), claims its interface, reads its
// info, resets it, sets up every queue pair (SET_QUEUE) and starts their
// transfers.
func Open(ctx context.Context, cfg Config) (*Driver, error) {
	cfg = cfg.withDefaults()
	return openWith(ctx, cfg, usbOpener(cfg))
}

func openWith(ctx context.Context, cfg Config, open opener) (_ *Driver, err error) {
	cfg = cfg.withDefaults()
	d := &Driver{cfg: cfg, open: open, failed: make(chan struct{}), closing: make(chan struct{})}
	d.ctl.Lock()
	defer d.ctl.Unlock()
	if d.dev, err = d.find(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.release())
		}
	}()
	if d.info, err = d.getInfo(); err != nil {
		return nil, err
	}
	if d.shape, err = cfg.shape(d.info); err != nil {
		return nil, err
	}
	// Whatever ran before (another driver's queues) stops: SET_QUEUE
	// takes only stopped pairs.
	if err := d.vendorOut(usbproto.ReqReset, 0, nil); err != nil {
		return nil, fmt.Errorf("usbhost: RESET: %w", err)
	}
	n := cfg.Pairs
	if n == 0 {
		n = int(d.info.Pairs)
	}
	for i := range n {
		p, err := newPair(d, i)
		if err != nil {
			return nil, err
		}
		d.pairs = append(d.pairs, p)
	}
	if err := d.setQueues(); err != nil {
		return nil, err
	}
	d.start()
	cfg.Log.Info("usbhost: device open", "pairs", n, "record", d.shape.r, "response", d.shape.s,
		"out", fmt.Sprintf("%dx%d", d.shape.outTransfers, d.shape.outRecords),
		"in", fmt.Sprintf("%dx%d", d.shape.inTransfers, d.shape.inResponses))
	return d, nil
}

// find opens the device, trying every Poll until ctx ends.
func (d *Driver) find(ctx context.Context) (device, error) {
	for {
		dev, err := d.open()
		if err == nil {
			return dev, nil
		}
		if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrGone) {
			return nil, err
		}
		t := time.NewTimer(d.cfg.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (%04x:%04x): %w", ErrNotFound, d.cfg.Vendor, d.cfg.Product, ctx.Err())
		case <-d.closing:
			t.Stop()
			return nil, ErrClosed
		case <-t.C:
		}
	}
}

// Pairs are the queue pairs, in order.
func (d *Driver) Pairs() []*Pair { return d.pairs }

// Info is the device's GET_INFO answer from when it was last opened.
func (d *Driver) Info() usbproto.Info {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.info
}

// Err is why the driver stopped (an *IncompleteError wrapping a sentinel),
// or nil while it runs.
func (d *Driver) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	return d.err
}

// failedChan is closed once the driver stops on an error.
func (d *Driver) failedChan() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

// fail stops the driver on err, once: the pairs' transfers are cancelled
// (in the background: fail runs on their goroutines), and every waiter
// wakes up to the error.
func (d *Driver) fail(err error) {
	d.mu.Lock()
	if d.err != nil || d.closed {
		d.mu.Unlock()
		return
	}
	d.err = d.withPending(err)
	close(d.failed)
	e := d.engines
	d.mu.Unlock()
	d.cfg.Log.Warn("usbhost: stopped", "err", err)
	if e != nil {
		e.stopAsync()
	}
	d.wakeAll()
}

// withPending adds what each pair had unanswered to err.
func (d *Driver) withPending(err error) error {
	ie := &IncompleteError{Err: err}
	for _, p := range d.pairs {
		ie.Pairs = append(ie.Pairs, p.pending())
	}
	return ie
}

func (d *Driver) wakeAll() {
	for _, p := range d.pairs {
		p.wakeApp()
	}
}

// start runs the pairs' transfers.
func (d *Driver) start() {
	e := newEngines(d)
	d.mu.Lock()
	d.engines = e
	d.mu.Unlock()
	e.start()
}

// stop ends the pairs' transfers and waits until every one completed.
func (d *Driver) stop() {
	d.mu.Lock()
	e := d.engines
	d.engines = nil
	d.mu.Unlock()
	if e != nil {
		e.stopWait()
	}
}

// Reset resets the device (the RESET vendor request) while records may be
// in flight, and brings it back with the same queues: the transfers are
// cancelled, the device drops what it held, every pair is set up again, and
// the requests not answered before the reset are sent again, in order.
// Nothing is lost; a source request answered in part is answered again from
// its first response.
func (d *Driver) Reset(ctx context.Context) error {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}
	d.stop()
	if d.dev == nil {
		return d.recoverLocked(ctx)
	}
	if err := d.vendorOut(usbproto.ReqReset, 0, nil); err != nil {
		d.fail(fmt.Errorf("reset: %w", err))
		return d.Err()
	}
	d.resets.Add(1)
	return d.restart()
}

// Recover brings the driver back after it stopped on an error: a device
// that vanished is looked for (every Poll, until ctx ends) and opened
// again; one that is still there is reset. Then every pair is set up again
// and what was not answered is sent again, as Reset does. On a running
// driver it does nothing.
func (d *Driver) Recover(ctx context.Context) error {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	if err := d.checkOpen(); err != nil {
		return err
	}
	if d.Err() == nil {
		return nil
	}
	d.stop()
	return d.recoverLocked(ctx)
}

func (d *Driver) recoverLocked(ctx context.Context) error {
	if d.dev != nil {
		// Still there? A reset then clears whatever stopped it.
		if err := d.vendorOut(usbproto.ReqReset, 0, nil); err == nil {
			d.resets.Add(1)
			d.recoveries.Add(1)
			return d.restart()
		}
		d.closeDev()
	}
	dev, err := d.find(ctx)
	if err != nil {
		return err
	}
	d.dev = dev
	info, err := d.getInfo()
	if err == nil && int(info.Pairs) < len(d.pairs) {
		err = fmt.Errorf("%w: the device came back with %d pairs, the driver runs %d", ErrProtocol, info.Pairs, len(d.pairs))
	}
	if err == nil {
		_, err = d.cfg.shape(info)
	}
	if err == nil {
		// A replugged device has its pairs stopped; one that only
		// looked gone may not: SET_QUEUE takes stopped pairs only.
		if err = d.vendorOut(usbproto.ReqReset, 0, nil); err == nil {
			d.resets.Add(1)
		}
	}
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.info = info
	d.mu.Unlock()
	d.recoveries.Add(1)
	return d.restart()
}

// restart sets the queues up again, rewinds each pair to its first
// unanswered request, clears the error and starts the transfers.
func (d *Driver) restart() error {
	if err := d.setQueues(); err != nil {
		d.fail(err)
		return d.Err()
	}
	for _, p := range d.pairs {
		p.rewind()
	}
	d.mu.Lock()
	if d.err != nil {
		d.err = nil
		d.failed = make(chan struct{})
	}
	d.mu.Unlock()
	d.start()
	d.wakeAll()
	return nil
}

func (d *Driver) checkOpen() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	return nil
}

// Close stops the transfers, releases the interface and the device, and
// frees the queues' memory. It returns what failed, joined.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	if d.err == nil {
		close(d.failed) // wake every waiter: Err is ErrClosed now
	}
	d.mu.Unlock()
	d.wakeAll()
	close(d.closing) // a Recover waiting for the device gives up
	d.ctl.Lock()
	defer d.ctl.Unlock()
	return d.release()
}

// release stops the transfers and frees everything the driver holds.
func (d *Driver) release() error {
	d.stop()
	var errs []error
	for _, p := range d.pairs {
		errs = append(errs, p.free())
	}
	errs = append(errs, d.closeDev())
	return errors.Join(errs...)
}

func (d *Driver) closeDev() error {
	if d.dev == nil {
		return nil
	}
	err := d.dev.close()
	d.dev = nil
	return err
}

// --- vendor requests (USB.md section 3); d.ctl held ---

func (d *Driver) vendorIn(req uint8, index uint16, n int) ([]byte, error) {
	if d.dev == nil {
		return nil, ErrGone
	}
	b := make([]byte, n)
	got, err := d.dev.control(usbproto.VendorIn, req, 0, index, b, d.cfg.Timeout)
	if err != nil {
		return nil, fmt.Errorf("usbhost: vendor request %#02x: %w", req, err)
	}
	if got < 0 || got > n {
		return nil, fmt.Errorf("%w: vendor request %#02x moved %d bytes of %d", ErrProtocol, req, got, n)
	}
	return b[:got], nil
}

func (d *Driver) vendorOut(req uint8, index uint16, data []byte) error {
	if d.dev == nil {
		return ErrGone
	}
	got, err := d.dev.control(usbproto.VendorOut, req, 0, index, data, d.cfg.Timeout)
	if err != nil {
		return fmt.Errorf("usbhost: vendor request %#02x: %w", req, err)
	}
	if got != len(data) {
		return fmt.Errorf("%w: vendor request %#02x took %d bytes of %d", ErrProtocol, req, got, len(data))
	}
	return nil
}

// getInfo reads GET_INFO and refuses limits the driver cannot run with.
func (d *Driver) getInfo() (usbproto.Info, error) {
	b, err := d.vendorIn(usbproto.ReqGetInfo, 0, usbproto.SizeofInfo)
	if err != nil {
		return usbproto.Info{}, fmt.Errorf("usbhost: GET_INFO: %w", err)
	}
	in, err := usbproto.DecodeInfo(b)
	if err != nil {
		return usbproto.Info{}, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return in, checkInfo(in)
}

// setQueues sends SET_QUEUE for every pair and checks with GET_QUEUE that
// each runs as asked.
func (d *Driver) setQueues() error {
	for _, p := range d.pairs {
		setup := usbproto.QueueSetup{Engine: d.shape.engine, RecordSize: uint32(d.shape.r)}.Encode(nil)
		if err := d.vendorOut(usbproto.ReqSetQueue, uint16(p.index), setup); err != nil {
			return fmt.Errorf("usbhost: SET_QUEUE pair %d: %w", p.index, err)
		}
		q, err := d.queueState(p.index)
		if err != nil {
			return err
		}
		if !q.Running() || q.Engine != d.shape.engine || int(q.RecordSize) != d.shape.r || int(q.ResponseSize) != d.shape.s {
			return fmt.Errorf("%w: pair %d after SET_QUEUE: %+v, want engine %d, R %d, S %d running",
				ErrProtocol, p.index, q, d.shape.engine, d.shape.r, d.shape.s)
		}
		if k := int(q.RecordsPerTransfer); k < d.shape.outRecords && k > 0 {
			return fmt.Errorf("%w: pair %d takes %d records a transfer, the driver sends %d", ErrProtocol, p.index, q.RecordsPerTransfer, d.shape.outRecords)
		}
	}
	return nil
}

func (d *Driver) queueState(pair int) (usbproto.QueueState, error) {
	b, err := d.vendorIn(usbproto.ReqGetQueue, uint16(pair), usbproto.SizeofQueueState)
	if err != nil {
		return usbproto.QueueState{}, fmt.Errorf("usbhost: GET_QUEUE pair %d: %w", pair, err)
	}
	q, err := usbproto.DecodeQueueState(b)
	if err != nil {
		return usbproto.QueueState{}, fmt.Errorf("%w: pair %d: %w", ErrProtocol, pair, err)
	}
	return q, nil
}

// Counters reads the device's counters (GET_COUNTERS).
func (d *Driver) Counters() (usbproto.Counters, error) {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	if err := d.checkOpen(); err != nil {
		return usbproto.Counters{}, err
	}
	b, err := d.vendorIn(usbproto.ReqGetCounters, 0, usbproto.SizeofCounters(usbproto.MaxPairs))
	if err != nil {
		return usbproto.Counters{}, fmt.Errorf("usbhost: GET_COUNTERS: %w", err)
	}
	c, err := usbproto.DecodeCounters(b)
	if err != nil {
		return usbproto.Counters{}, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return c, nil
}

// Stats count what the driver did.
type Stats struct {
	Resets     uint64 // device resets the driver made (Reset, and Recover's)
	Recoveries uint64 // times Recover brought the device back
	Pairs      []PairStats
}

// Stats reads the driver's counters.
func (d *Driver) Stats() Stats {
	st := Stats{Resets: d.resets.Load(), Recoveries: d.recoveries.Load()}
	for _, p := range d.pairs {
		st.Pairs = append(st.Pairs, p.Stats())
	}
	return st
}

// region is the data region of a queue: memory outside the Go heap
// (libusb keeps pointers into it while a transfer is in flight).
type region struct {
	b      []byte
	free   func() error
	device bool // usbfs memory from the device (Config.DeviceMemory)
}

// newRing lays out a queue whose data region is device memory when
// Config.DeviceMemory asks for it and the device gives it, else anonymous
// memory.
func (d *Driver) newRing(cfg ring.Config) (*ring.Queue, region, error) {
	size := cfg.DataSize()
	var reg region
	if d.cfg.DeviceMemory && d.dev != nil {
		b, unmap, err := d.dev.deviceMemory(size)
		if err == nil {
			reg = region{b: b[:size], free: unmap, device: true}
		} else {
			d.cfg.Log.Warn("usbhost: no device memory: anonymous memory instead (usbfs copies each transfer)", "bytes", size, "err", err)
		}
	}
	if reg.b == nil {
		m, err := dma.Anonymous(size, dma.Options{})
		if err != nil {
			return nil, region{}, err
		}
		reg = region{b: m.Bytes()[:size], free: m.Close}
	}
	q, err := ring.Format(ring.AlignedBytes(cfg.MetaSize()), reg.b, cfg)
	if err != nil {
		return nil, region{}, errors.Join(err, reg.free())
	}
	return q, reg, nil
}
