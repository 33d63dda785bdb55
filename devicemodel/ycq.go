package devicemodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/cpupin"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// Options configure a ycq device.
type Options struct {
	// Queues is the number of queue pairs, 1 to ycqdev.MaxQueuePairs.
	Queues int
	// Identity is what config space says; DefaultIdentity if zero.
	Identity Identity
	// Engines adds engines by ycqdev.RegEngine id to the built-in ones.
	Engines map[uint32]Engine
	// Log receives one line per enable, reset and error.
	Log *slog.Logger
	// Batch bounds the records a queue pair handles between looks at its
	// wake words; default 64.
	Batch int
	// Engine is ycqdev.RegEngine's value after reset; ycqdev.EngineEcho if 0.
	Engine uint32
	// Loops is how many polling loops (goroutines) serve the enabled queue
	// pairs, pair q in loop q mod Loops; default 1, at most the pairs
	// enabled. Give it one per CPU the device may keep busy.
	Loops int
	// CPUs, when not empty, pins the polling loops as DPDK pins lcores:
	// loop l runs on CPU CPUs[l mod len(CPUs)] alone (its goroutine
	// locked to a thread that may run only there), so the scheduler does
	// not move a spinning loop away from the caches holding its queues.
	// Each must be a CPU this process may run on.
	CPUs []int
	// NoResizeAck makes the device never take up a RESIZE request (it
	// still follows links it finds): a device that does not acknowledge,
	// for the host's deadline and rollback.
	NoResizeAck bool
}

// YCQ is the ycq device: per queue pair it consumes the host-to-device
// queue, runs the engine on each record, and writes the responses straight
// into slots it reserves in the device-to-host queue, in host memory. It
// touches queue metadata only with ordered word loads and stores through
// its DMA window (or in its own BAR2), as LAYOUT.md describes for a single
// agent, and takes nothing the host wrote on trust.
type YCQ struct {
	opt     Options
	log     *slog.Logger
	engines map[uint32]Engine
	cfg     *configSpace
	bar2    *dma.Region

	// ctl serializes the control operations (enable, disable, reset,
	// detach, close) from entry to return. Each stops runs in two steps:
	// it takes them under mu, then waits for their goroutines with mu
	// released, since a goroutine may need mu to report an error; ctl
	// keeps another control operation from starting a run meanwhile.
	// Order: ctl before mu; queue pair goroutines take only mu.
	ctl sync.Mutex

	mu      sync.Mutex // registers, state, host; held only briefly
	regs    [ycqdev.BAR0Size]byte
	bar4    [ycqdev.BAR4Size]byte
	status  uint32
	errSet  bool
	host    Host
	run     *runState   // non-nil while enabled
	stopped []*runState // runs an error stopped, whose goroutines may not have returned yet

	// bells wakes a sleeping loop: a doorbell of pair q signals
	// bells[loopOf[q]].
	bells  [ycqdev.MaxQueuePairs]chan struct{}
	loopOf [ycqdev.MaxQueuePairs]atomic.Int32

	doorbells, interrupts, dmaErrors, wakeups atomic.Uint64
	// qrecords and qout count each pair's requests consumed and responses
	// produced. Only the loop serving the pair writes them (release
	// stores, no locked add per batch); RegRecordsIn and RegRecordsOut
	// are their sums.
	qrecords, qout [ycqdev.MaxQueuePairs]atomic.Uint64
	qstatus        [ycqdev.MaxQueuePairs]atomic.Uint32
	// qresize is each pair's RESIZE register, written by the host at any
	// time; qresizeAck and qgen its RESIZE_ACK and GENERATION, written
	// only by the loop serving the pair.
	qresize, qresizeAck, qgen [ycqdev.MaxQueuePairs]atomic.Uint32
}

// runState is one enabled period: its goroutines and how to stop them.
type runState struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

var _ Device = (*YCQ)(nil)

// NewYCQ makes a device with its BAR2 memory.
func NewYCQ(opt Options) (*YCQ, error) {
	if opt.Queues < 1 || opt.Queues > ycqdev.MaxQueuePairs {
		return nil, fmt.Errorf("devicemodel: %d queue pairs: want 1 to %d", opt.Queues, ycqdev.MaxQueuePairs)
	}
	if opt.Identity == (Identity{}) {
		opt.Identity = DefaultIdentity
	}
	if opt.Batch <= 0 {
		opt.Batch = 64
	}
	if opt.Engine == 0 {
		opt.Engine = ycqdev.EngineEcho
	}
	engines := Engines()
	for id, e := range opt.Engines {
		engines[id] = e
	}
	if engines[opt.Engine] == nil {
		return nil, fmt.Errorf("devicemodel: no engine %d", opt.Engine)
	}
	if len(opt.CPUs) > 0 {
		allowed, err := cpupin.Allowed()
		if err != nil {
			return nil, err
		}
		for _, c := range opt.CPUs {
			if !slices.Contains(allowed, c) {
				return nil, fmt.Errorf("devicemodel: %w: CPU %d is not one this process may run on (%v)", cpupin.ErrCPU, c, allowed)
			}
		}
	}
	bar2, err := dma.Memfd("ycq-bar2", ycqdev.BAR2Size, dma.Options{})
	if err != nil {
		return nil, err
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &YCQ{opt: opt, log: log, engines: engines, cfg: newConfigSpace(opt.Identity, opt.Queues+1), bar2: bar2}
	for i := range d.bells {
		d.bells[i] = make(chan struct{}, 1)
	}
	d.resetRegs()
	return d, nil
}

// Close stops the device and releases its BAR2 memory.
func (d *YCQ) Close() error {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	d.stop()
	return d.bar2.Close()
}

func (d *YCQ) vectors() uint32 { return uint32(d.opt.Queues) + 1 }

// Info implements Device.
func (d *YCQ) Info() vfio.DeviceInfo {
	return vfio.DeviceInfo{Reset: true, PCI: true, NumRegions: uint32(vfio.NumPCIRegions), NumIRQs: uint32(vfio.NumPCIIRQs)}
}

// Region implements Device.
func (d *YCQ) Region(idx vfio.RegionIndex) Region {
	rw := vfio.RegionRead | vfio.RegionWrite
	r := Region{Info: vfio.RegionInfo{Index: idx}, FD: -1}
	switch idx {
	case vfio.BAR0:
		r.Info.Flags, r.Info.Size = rw, ycqdev.BAR0Size
	case vfio.BAR2:
		r.Info.Flags, r.Info.Size = rw|vfio.RegionMmap, ycqdev.BAR2Size
		r.Info.Areas = []vfio.Area{{Offset: 0, Size: ycqdev.BAR2Size}}
		r.FD = d.bar2.FD()
	case vfio.BAR4:
		r.Info.Flags, r.Info.Size = rw, ycqdev.BAR4Size
	case vfio.ConfigRegion:
		r.Info.Flags, r.Info.Size = rw, cfgSize
	}
	return r
}

// IRQ implements Device.
func (d *YCQ) IRQ(idx vfio.IRQIndex) vfio.IRQInfo {
	i := vfio.IRQInfo{Index: idx}
	switch idx {
	case vfio.IRQINTx:
		i.Flags, i.Count = vfio.IRQEventfd|vfio.IRQMaskable|vfio.IRQAutomasked, 1
	case vfio.IRQMSIX:
		i.Flags, i.Count = vfio.IRQEventfd|vfio.IRQNoResize, d.vectors()
	case vfio.IRQErr, vfio.IRQReq:
		i.Flags, i.Count = vfio.IRQEventfd, 1
	}
	return i
}

// Attach implements Device.
func (d *YCQ) Attach(h Host) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.host = h
}

// Detach implements Device: the client is gone, so the device stops and
// returns to its power-on state, as after a function reset.
func (d *YCQ) Detach() {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	d.stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.host = nil
	d.resetRegs()
	d.cfg.reset()
}

// Reset implements Device (DEVICE_RESET): a function-level reset.
func (d *YCQ) Reset() error {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	d.stop()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.resetRegs()
	d.cfg.reset()
	d.log.Info("device reset")
	return nil
}

// resetRegs puts every register at its power-on value.
func (d *YCQ) resetRegs() {
	clear(d.regs[:])
	clear(d.bar4[:])
	d.status, d.errSet = 0, false
	le := binary.LittleEndian
	le.PutUint32(d.regs[ycqdev.RegEngine:], d.opt.Engine)
	le.PutUint32(d.regs[ycqdev.RegNumQueues:], uint32(d.opt.Queues))
	le.PutUint32(d.regs[ycqdev.RegErrorVector:], uint32(d.opt.Queues))
	le.PutUint32(d.regs[ycqdev.RegErrorQueue:], ycqdev.NoQueue)
	for _, c := range []*atomic.Uint64{&d.doorbells, &d.interrupts, &d.dmaErrors, &d.wakeups} {
		c.Store(0)
	}
	for q := range d.opt.Queues {
		le.PutUint32(d.regs[ycqdev.QueueReg(q, ycqdev.RegQVector):], uint32(q))
		d.qstatus[q].Store(0)
		d.qrecords[q].Store(0)
		d.qout[q].Store(0)
		d.qresize[q].Store(0)
		d.qresizeAck[q].Store(0)
		d.qgen[q].Store(0)
	}
}

// ReadRegion implements Device.
func (d *YCQ) ReadRegion(idx vfio.RegionIndex, off uint64, b []byte) error {
	switch idx {
	case vfio.ConfigRegion:
		d.cfg.read(off, b)
	case vfio.BAR0:
		d.readBAR0(off, b)
	case vfio.BAR2:
		copy(b, d.bar2.Bytes()[off:])
	case vfio.BAR4:
		d.mu.Lock()
		copy(b, d.bar4[off:])
		d.mu.Unlock()
	default:
		return fmt.Errorf("%w: %v", vfio.ErrNoRegion, idx)
	}
	return nil
}

// WriteRegion implements Device.
func (d *YCQ) WriteRegion(idx vfio.RegionIndex, off uint64, b []byte) error {
	switch idx {
	case vfio.ConfigRegion:
		d.cfg.write(off, b)
	case vfio.BAR0:
		d.writeBAR0(off, b)
	case vfio.BAR2:
		copy(d.bar2.Bytes()[off:], b)
	case vfio.BAR4:
		d.mu.Lock()
		if off < ycqdev.MSIXPBAOff { // the pending bits are read-only
			copy(d.bar4[off:min(ycqdev.MSIXPBAOff, off+uint64(len(b)))], b)
		}
		d.mu.Unlock()
	default:
		return fmt.Errorf("%w: %v", vfio.ErrNoRegion, idx)
	}
	return nil
}

// readBAR0 reads registers: the stored ones, with the read-only ones
// filled in from the device's state.
func (d *YCQ) readBAR0(off uint64, b []byte) {
	d.mu.Lock()
	view := d.regs
	st := d.status
	d.mu.Unlock()
	le := binary.LittleEndian
	le.PutUint32(view[ycqdev.RegID:], ycqdev.RegIDValue)
	le.PutUint32(view[ycqdev.RegVersion:], ycqdev.RegVersionV1)
	le.PutUint32(view[ycqdev.RegFeatures:], ycqdev.FeatureMetaInBAR2|ycqdev.FeatureMSIX|ycqdev.FeatureResize)
	le.PutUint32(view[ycqdev.RegMaxQueues:], uint32(d.opt.Queues))
	le.PutUint32(view[ycqdev.RegControl:], le.Uint32(view[ycqdev.RegControl:])&ycqdev.ControlEnable)
	le.PutUint32(view[ycqdev.RegStatus:], st)
	le.PutUint32(view[ycqdev.RegBAR2Size:], ycqdev.BAR2Size)
	var in, out uint64
	for q := range d.opt.Queues {
		in += d.qrecords[q].Load()
		out += d.qout[q].Load()
	}
	le.PutUint64(view[ycqdev.RegRecordsIn:], in)
	le.PutUint64(view[ycqdev.RegRecordsOut:], out)
	le.PutUint64(view[ycqdev.RegDoorbells:], d.doorbells.Load())
	le.PutUint64(view[ycqdev.RegInterrupts:], d.interrupts.Load())
	le.PutUint64(view[ycqdev.RegDMAErrors:], d.dmaErrors.Load())
	le.PutUint64(view[ycqdev.RegWakeups:], d.wakeups.Load())
	for q := range d.opt.Queues {
		le.PutUint32(view[ycqdev.QueueReg(q, ycqdev.RegQDoorbell):], 0)
		le.PutUint32(view[ycqdev.QueueReg(q, ycqdev.RegQStatus):], d.qstatus[q].Load())
		le.PutUint64(view[ycqdev.QueueReg(q, ycqdev.RegQRecords):], d.qrecords[q].Load())
		le.PutUint32(view[ycqdev.QueueReg(q, ycqdev.RegQResize):], d.qresize[q].Load())
		le.PutUint32(view[ycqdev.QueueReg(q, ycqdev.RegQResizeAck):], d.qresizeAck[q].Load())
		le.PutUint32(view[ycqdev.QueueReg(q, ycqdev.RegQGeneration):], d.qgen[q].Load())
	}
	copy(b, view[off:])
}

// writable reports whether byte o of BAR0 is a writable register byte
// now; queue registers are frozen while the device runs.
func (d *YCQ) writable(o uint64, running bool) bool {
	in := func(reg, size uint64) bool { return o >= reg && o < reg+size }
	switch {
	case in(ycqdev.RegControl, 4):
		return true
	case in(ycqdev.RegEngine, 4), in(ycqdev.RegErrorVector, 4), in(ycqdev.RegNumQueues, 4):
		return !running
	case o >= ycqdev.QueueBase && o < ycqdev.QueueReg(d.opt.Queues, 0):
		r := (o - ycqdev.QueueBase) % ycqdev.QueueStride
		in := func(reg, size uint64) bool { return r >= reg && r < reg+size }
		return !running && (in(ycqdev.RegQH2DMeta, 32) || in(ycqdev.RegQSlots, 16))
	}
	return false
}

// writeBAR0 applies a register write and its side effects.
func (d *YCQ) writeBAR0(off uint64, b []byte) {
	// Doorbells need no lock: they only wake the loop serving the pair.
	// Nor does RESIZE, which the loop reads between its batches; a write
	// of it wakes the loop too.
	for q := range d.opt.Queues {
		if r := ycqdev.QueueReg(q, ycqdev.RegQResize); off == r && len(b) == 4 {
			d.qresize[q].Store(binary.LittleEndian.Uint32(b))
			d.ring(q)
			return
		}
		if r := ycqdev.QueueReg(q, ycqdev.RegQDoorbell); off < r+4 && off+uint64(len(b)) > r {
			d.doorbells.Add(1)
			d.ring(q)
		}
	}
	d.ctl.Lock()
	defer d.ctl.Unlock()
	d.mu.Lock()
	le := binary.LittleEndian
	before := le.Uint32(d.regs[ycqdev.RegControl:])
	running := d.run != nil
	for i, v := range b {
		if o := off + uint64(i); d.writable(o, running) {
			d.regs[o] = v
		}
	}
	ctl := le.Uint32(d.regs[ycqdev.RegControl:])
	d.mu.Unlock()
	switch {
	case ctl&ycqdev.ControlReset != 0:
		d.stop()
		d.mu.Lock()
		d.resetRegs()
		d.mu.Unlock()
		d.log.Info("reset by register")
	case ctl&ycqdev.ControlEnable != 0 && before&ycqdev.ControlEnable == 0:
		d.stop() // goroutines of a run an error stopped must be gone
		d.mu.Lock()
		d.enableLocked()
		d.mu.Unlock()
	case ctl&ycqdev.ControlEnable == 0 && before&ycqdev.ControlEnable != 0:
		d.stop()
		d.mu.Lock()
		d.status &^= ycqdev.StatusEnabled
		d.mu.Unlock()
	}
}

// ring wakes the loop serving pair q.
func (d *YCQ) ring(q int) {
	select {
	case d.bells[d.loopOf[q].Load()] <- struct{}{}:
	default:
	}
}

// queueConfig is one queue pair's registers.
type queueConfig struct {
	h2dMeta, h2dData, d2hMeta, d2hData uint64
	slots, slotSize, flags, vector     uint32
}

func (d *YCQ) queueConfig(q int) queueConfig {
	le := binary.LittleEndian
	r := func(reg uint64) []byte { return d.regs[ycqdev.QueueReg(q, reg):] }
	return queueConfig{
		h2dMeta: le.Uint64(r(ycqdev.RegQH2DMeta)), h2dData: le.Uint64(r(ycqdev.RegQH2DData)),
		d2hMeta: le.Uint64(r(ycqdev.RegQD2HMeta)), d2hData: le.Uint64(r(ycqdev.RegQD2HData)),
		slots: le.Uint32(r(ycqdev.RegQSlots)), slotSize: le.Uint32(r(ycqdev.RegQSlotSize)),
		flags: le.Uint32(r(ycqdev.RegQFlags)), vector: le.Uint32(r(ycqdev.RegQVector)),
	}
}

// queuePair is a running queue pair's state, owned by its goroutine.
type queuePair struct {
	q       int
	h2d     farConsumer
	d2h     farProducer
	vector  uint32
	engine  Engine
	in, out []byte
	// blocked: the last step stopped on a full device-to-host queue, so
	// the pair waits for space there rather than for requests.
	blocked bool
	// A request whose responses are not all written yet.
	pending   bool
	req       []byte // the request: in place, or a copy in in
	responses int
	next      int
	// Resizing: resizable, when either queue is RESIZABLE; acked, the
	// RESIZE value the device took up last (it follows the device-to-host
	// link once a batch until that queue is in that generation).
	resizable bool
	acked     uint32
	slotSize  int
	// pin maps [a, a+n) of host memory for the pair, adding its release
	// to rel; bar2 is the device's BAR2, when the metadata lives there.
	pin  func(a, n uint64, perm vfio.Perm, rel *[]func()) space
	bar2 space
}

// release gives back the pair's pinned views.
func (p *queuePair) release() {
	releaseAll(&p.h2d.releases)
	releaseAll(&p.d2h.releases)
}

func releaseAll(rel *[]func()) {
	for _, r := range *rel {
		r()
	}
	*rel = nil
}

// enableLocked checks every queue pair the host configured and starts
// them, or records the first problem as the device error. No run may be
// going: the caller holds ctl and has stopped them.
func (d *YCQ) enableLocked() {
	le := binary.LittleEndian
	d.status &^= ycqdev.StatusError
	d.errSet = false
	n := int(le.Uint32(d.regs[ycqdev.RegNumQueues:]))
	engineID := le.Uint32(d.regs[ycqdev.RegEngine:])
	engine, ok := d.engines[engineID]
	var pairs []*queuePair
	var err error
	switch {
	case d.host == nil:
		err = &queueError{code: ycqdev.CodeBadConfig, reason: "no host is attached"}
	case !d.cfg.busMaster():
		err = &queueError{code: ycqdev.CodeBadConfig, reason: "bus mastering is off in the command register: the device may not do DMA"}
	case n < 1 || n > d.opt.Queues:
		err = qerr(ycqdev.CodeBadConfig, uint64(n), "%d queue pairs: the device has 1 to %d", n, d.opt.Queues)
	case !ok:
		err = qerr(ycqdev.CodeBadConfig, uint64(engineID), "no engine %d", engineID)
	}
	errQueue := uint32(ycqdev.NoQueue)
	run := &runState{stop: make(chan struct{})}
	for q := 0; err == nil && q < n; q++ {
		var p *queuePair
		p, err = d.setupPair(run, q, d.queueConfig(q), engine)
		if err != nil {
			errQueue = uint32(q)
		} else {
			pairs = append(pairs, p)
		}
	}
	if err != nil {
		for _, p := range pairs {
			p.release()
		}
		d.failLocked(errQueue, err)
		return
	}
	loops := make([][]*queuePair, min(max(d.opt.Loops, 1), len(pairs)))
	for i, p := range pairs {
		l := i % len(loops)
		loops[l] = append(loops[l], p)
		d.loopOf[p.q].Store(int32(l))
		d.qstatus[p.q].Store(ycqdev.QStatusRunning)
	}
	for l, ps := range loops {
		// Drop a doorbell rung before the enable: the loop looks anyway.
		select {
		case <-d.bells[l]:
		default:
		}
		var cpus []int
		if len(d.opt.CPUs) > 0 {
			cpus = []int{d.opt.CPUs[l%len(d.opt.CPUs)]}
		}
		run.wg.Go(func() { d.runLoop(run, d.bells[l], ps, cpus) })
	}
	d.run = run
	d.status |= ycqdev.StatusEnabled
	d.log.Info("enabled", "queue_pairs", n, "engine", EngineName(engineID))
}

// setupPair checks one queue pair's registers and its queues' headers, and
// pins the host memory it will use, where the host can pin.
func (d *YCQ) setupPair(run *runState, q int, c queueConfig, engine Engine) (_ *queuePair, err error) {
	geometry := ring.Config{Slots: int(c.slots), SlotSize: int(c.slotSize)}
	if err := geometry.Validate(); err != nil {
		value := uint64(c.slots) // the register the error is about
		if (ring.Config{Slots: int(c.slots), SlotSize: 8}).Validate() == nil {
			value = uint64(c.slotSize)
		}
		return nil, qerr(ycqdev.CodeBadConfig, value, "queue pair %d: %v", q, err)
	}
	if c.slots > ycqdev.MaxSlots {
		return nil, qerr(ycqdev.CodeBadConfig, uint64(c.slots), "queue pair %d: %d slots: the device takes at most %d", q, c.slots, ycqdev.MaxSlots)
	}
	if c.flags&^ycqdev.QFlagMetaInBAR2 != 0 {
		return nil, qerr(ycqdev.CodeBadConfig, uint64(c.flags), "queue pair %d: unknown flags %#x", q, c.flags)
	}
	if c.vector >= d.vectors() {
		return nil, qerr(ycqdev.CodeBadConfig, uint64(c.vector), "queue pair %d: vector %d: the device has %d", q, c.vector, d.vectors())
	}
	host := hostSpace{d.host}
	var h2dMeta, d2hMeta space = host, host
	p := &queuePair{q: q, vector: c.vector, engine: engine, in: make([]byte, c.slotSize), out: make([]byte, c.slotSize), slotSize: int(c.slotSize)}
	defer func() {
		if err != nil {
			p.release()
		}
	}()
	// pin returns a direct view of [a, a+n) if the host can give one, or
	// the host itself.
	pin := func(a, n uint64, perm vfio.Perm, rel *[]func()) space {
		pinner, ok := d.host.(Pinner)
		if !ok {
			return host
		}
		b, release, err := pinner.Pin(vfio.IOVA(a), n, perm, func() { d.revoked(run, q) })
		if err != nil {
			return host
		}
		*rel = append(*rel, release)
		return localSpace{b: b, base: a}
	}
	p.pin = pin
	metaSize := uint64(geometry.MetaSize())
	dataSize := uint64(geometry.DataSize())
	if c.flags&ycqdev.QFlagMetaInBAR2 != 0 {
		size := metaSize
		for _, m := range []uint64{c.h2dMeta, c.d2hMeta} {
			if m%8 != 0 || m > ycqdev.BAR2Size || size > ycqdev.BAR2Size-m {
				return nil, qerr(ycqdev.CodeBadConfig, m, "queue pair %d: metadata at BAR2 offset %#x: %d bytes do not fit in the %d-byte BAR2, 8-byte aligned", q, m, size, ycqdev.BAR2Size)
			}
		}
		h2dMeta = newLocalSpace(d.bar2.Bytes())
		d2hMeta = h2dMeta
		p.bar2 = h2dMeta
	} else {
		h2dMeta = pin(c.h2dMeta, metaSize, vfio.DMARead|vfio.DMAWrite, &p.h2d.releases)
		d2hMeta = pin(c.d2hMeta, metaSize, vfio.DMARead|vfio.DMAWrite, &p.d2h.releases)
	}
	// The device follows resizes (ycqdev.FeatureResize): it attaches a
	// RESIZABLE queue as an agent that follows its links.
	follow := geometry
	follow.Resizable = true
	h2d, err := ring.AttachConsumer(h2dMeta, c.h2dMeta, follow)
	if err != nil {
		return nil, deviceError(err, c.h2dMeta)
	}
	d2h, err := ring.AttachProducer(d2hMeta, c.d2hMeta, follow)
	if err != nil {
		return nil, deviceError(err, c.d2hMeta)
	}
	p.h2d.AgentConsumer, p.h2d.dataAddr = h2d, c.h2dData
	p.h2d.data = pin(c.h2dData, dataSize, vfio.DMARead, &p.h2d.releases)
	p.d2h.AgentProducer, p.d2h.dataAddr = d2h, c.d2hData
	p.d2h.data = pin(c.d2hData, dataSize, vfio.DMAWrite, &p.d2h.releases)
	p.resizable = h2d.Generation() != 0 || d2h.Generation() != 0
	if p.resizable {
		// After a reset in the middle of a resize the host may have
		// named generations past the one the registers give: catch up
		// with the device-to-host link now (the host-to-device one is
		// followed once drained, as always).
		if err := d.followD2H(p); err != nil {
			return nil, deviceError(err, c.d2hMeta)
		}
		d.generationNow(p)
	}
	return p, nil
}

// revoked is called when the host unmaps memory a running pair holds
// pinned: the device stops with a DMA fault, without waiting (the caller
// is the unmap, which waits for the pins).
func (d *YCQ) revoked(run *runState, q int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run != run {
		return // stopping already; its goroutines release their pins as they end
	}
	d.failLocked(uint32(q), &queueError{code: ycqdev.CodeDMAFault, reason: "the host unmapped memory of a running queue pair"})
	d.run = nil
	d.stopped = append(d.stopped, run)
	close(run.stop)
}

// failLocked stops the device on an error: the first error is the one the
// registers keep. It raises the error vector.
func (d *YCQ) failLocked(q uint32, err error) {
	var qe *queueError
	if !errors.As(err, &qe) {
		qe = &queueError{code: ycqdev.CodeBadConfig, reason: err.Error()}
	}
	if !d.errSet {
		le := binary.LittleEndian
		le.PutUint32(d.regs[ycqdev.RegErrorCode:], qe.code)
		le.PutUint32(d.regs[ycqdev.RegErrorQueue:], q)
		le.PutUint64(d.regs[ycqdev.RegErrorAddr:], qe.addr)
		d.errSet = true
	}
	if qe.code == ycqdev.CodeDMAFault {
		d.dmaErrors.Add(1)
	}
	d.status |= ycqdev.StatusError
	d.status &^= ycqdev.StatusEnabled
	binary.LittleEndian.PutUint32(d.regs[ycqdev.RegControl:], 0)
	if q != ycqdev.NoQueue {
		d.qstatus[q].Store(ycqdev.QStatusError)
	}
	d.log.Warn("device error", "code", qe.code, "queue_pair", int32(q), "addr", fmt.Sprintf("%#x", qe.addr), "err", qe.reason)
	d.raise(binary.LittleEndian.Uint32(d.regs[ycqdev.RegErrorVector:]))
}

// raise signals an MSI-X vector, or INTx when the host set no MSI-X.
func (d *YCQ) raise(vector uint32) {
	if d.host == nil {
		return
	}
	d.interrupts.Add(1)
	if d.host.Interrupt(vfio.IRQMSIX, vector) != nil {
		d.host.Interrupt(vfio.IRQINTx, 0)
	}
}

// stop stops the queue pairs' goroutines and waits for them, and for
// those of runs an error stopped. The caller holds ctl, not mu.
func (d *YCQ) stop() {
	d.mu.Lock()
	runs := d.takeRunsLocked()
	d.mu.Unlock()
	for _, r := range runs {
		r.wg.Wait()
	}
	if len(runs) == 0 {
		return
	}
	for q := range d.opt.Queues {
		if d.qstatus[q].Load()&ycqdev.QStatusError == 0 {
			d.qstatus[q].Store(0)
		}
	}
}

// takeRunsLocked tells the running run, if any, to stop, and returns it
// with the runs an error stopped, for the caller to wait for.
func (d *YCQ) takeRunsLocked() []*runState {
	runs := d.stopped
	d.stopped = nil
	if d.run != nil {
		close(d.run.stop)
		runs = append(runs, d.run)
		d.run = nil
	}
	return runs
}
