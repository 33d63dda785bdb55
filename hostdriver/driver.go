// Package hostdriver drives the ycq device (ycqdev/REGISTERS.md)
// through a vfio.Device: the Go device model over a vfio-user socket, or
// the same device bound to vfio-pci through kernel VFIO, with the same code.
//
// Open resets the device, allocates DMA memory, lays out the queue pairs
// (metadata in host memory, or in the device's BAR2), maps the memory into
// the device's IOMMU view, programs the registers, wires one MSI-X vector
// per pair plus one for errors to eventfds, and enables the device. Then
// each Pair moves records both ways, zero-copy: reserve a slot in the
// host-to-device queue, fill it, publish it; receive responses by consuming
// the device-to-host queue in place. The doorbell is rung only when the
// device sleeps, and the device raises an interrupt only when a host
// goroutine sleeps.
//
// To drive every pair from one goroutine, run to completion (one busy
// thread however many pairs), use a Stream; the Pair methods suit a
// goroutine per side instead.
//
// With Config.Resizable the queues are RESIZABLE and Pair.Resize changes a
// pair's slot count while it streams: the device follows, acknowledging
// through its registers, and the old generation's DMA memory is given
// back before Resize returns.
//
// A Pair is safe for any number of goroutines on both sides. The driver
// takes nothing from the device on trust: a device error, a reset, a
// device that goes away, garbage in the shared metadata or spurious
// interrupts give typed errors (DeviceError, ErrGone), never a crash and
// never a wait without an end; errors say which requests were not
// completed, and responses the device published stay readable.
package hostdriver

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// Config says how to bring the device up.
type Config struct {
	// Queues is the number of queue pairs; all the device has if 0.
	Queues int
	// Slots and SlotSize shape both queues of every pair; 256 and 4096 if
	// 0. Responses need room too: an echo needs the request's size.
	Slots, SlotSize int
	// Engine is the device's engine (ycqdev.Engine*); the device's
	// own choice if 0.
	Engine uint32
	// MetaInBAR2 puts the queues' metadata in the device's BAR2 memory
	// (mapped here) instead of host memory.
	MetaInBAR2 bool
	// Polling waits by spinning instead of on interrupts.
	Polling bool
	// Huge backs the DMA memory with 2 MiB pages when the system has some.
	Huge bool
	// Health is how often a waiting goroutine looks at the device's status
	// registers, so that a device that stopped or vanished without an
	// interrupt is noticed; 50 ms if 0.
	Health time.Duration
	// IOVABase is where DMA addresses start; 4 GiB if 0.
	IOVABase uint64
	// Resizable formats every queue RESIZABLE, so that Pair.Resize can
	// change a pair's slot count while it runs. The device must follow
	// resizes (ycqdev.FeatureResize), and the metadata must be in host
	// memory (not MetaInBAR2). The hot paths then take a read lock a call
	// (Pair.Resize takes it for writing while it gives a generation back).
	Resizable bool
	// ResizeDeadline bounds each wait of a Resize for the device (its
	// acknowledgement, its move to the new generation) and for the old
	// generation to drain; 2 s if 0.
	ResizeDeadline time.Duration
	Log            *slog.Logger
}

func (c *Config) defaults(maxQueues int) error {
	if c.Queues == 0 {
		c.Queues = maxQueues
	}
	if c.Queues < 1 || c.Queues > maxQueues {
		return fmt.Errorf("%w: %d queue pairs: the device has 1 to %d", ErrConfig, c.Queues, maxQueues)
	}
	if c.Slots == 0 {
		c.Slots = 256
	}
	if c.SlotSize == 0 {
		c.SlotSize = 4096
	}
	if err := (ring.Config{Slots: c.Slots, SlotSize: c.SlotSize}).Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if c.Slots > ycqdev.MaxSlots {
		return fmt.Errorf("%w: %d slots: the device takes at most %d", ErrConfig, c.Slots, ycqdev.MaxSlots)
	}
	if c.Health <= 0 {
		c.Health = 50 * time.Millisecond
	}
	if c.IOVABase == 0 {
		c.IOVABase = 1 << 32
	}
	if c.Resizable && c.MetaInBAR2 {
		return fmt.Errorf("%w: resizable queues keep their metadata in host memory, not BAR2", ErrConfig)
	}
	if c.ResizeDeadline <= 0 {
		c.ResizeDeadline = 2 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Driver is one brought-up ycq device.
type Driver struct {
	dev vfio.Device
	cfg Config
	log *slog.Logger

	mem   *dma.Region  // every queue's memory, one mapping
	rpMu  sync.Mutex   // rpage: noteResizes against teardown
	rpage *dma.Region  // the resize page (resizepage.go) of a resizable driver, else nil
	iova  uint64       // where mem starts in the device's view
	bar2  vfio.Mapping // when MetaInBAR2
	pairs []*Pair
	alloc *dma.IOVAAllocator // the device's addresses: mem, then resized generations

	// ctl makes Reset, Recover and Pair.Resize exclusive: a resize does
	// not race a reset of the device it waits for, and a reset programs
	// the queue registers of a generation that stays.
	ctl sync.Mutex

	engine   uint32     // the device's engine, read after programming
	irqs     []*os.File // one eventfd per MSI-X vector; nil when polling
	irqWG    sync.WaitGroup
	errVec   uint32
	spurious atomic.Uint64 // interrupts with nothing to do

	mu     sync.Mutex
	failed error // sticky: the device error, reset or loss that stopped the driver
	gen    chan struct{}
	closed bool
}

// Open brings the device up.
func Open(dev vfio.Device, cfg Config) (_ *Driver, err error) {
	if err := checkID(dev); err != nil {
		return nil, err
	}
	maxQ, err := vfio.Read32(dev, vfio.BAR0, ycqdev.RegMaxQueues)
	if err != nil {
		return nil, gone(err)
	}
	if err := cfg.defaults(int(min(maxQ, ycqdev.MaxQueuePairs))); err != nil {
		return nil, err
	}
	if cfg.Resizable {
		f, err := vfio.Read32(dev, vfio.BAR0, ycqdev.RegFeatures)
		if err != nil {
			return nil, gone(err)
		}
		if f&ycqdev.FeatureResize == 0 {
			return nil, fmt.Errorf("%w: resizable queues: the device does not follow resizes (FEATURES %#x)", ErrConfig, f)
		}
	}
	d := &Driver{dev: dev, cfg: cfg, log: cfg.Log, errVec: uint32(cfg.Queues), gen: make(chan struct{})}
	defer func() {
		if err != nil {
			d.teardown()
		}
	}()
	if err := d.reg32(ycqdev.RegControl, ycqdev.ControlReset); err != nil {
		return nil, err
	}
	if err := enableBusMaster(dev); err != nil {
		return nil, err
	}
	if err := d.allocate(); err != nil {
		return nil, err
	}
	if err := d.program(); err != nil {
		return nil, err
	}
	if d.engine, err = vfio.Read32(dev, vfio.BAR0, ycqdev.RegEngine); err != nil {
		return nil, gone(err)
	}
	if !cfg.Polling {
		if err := d.wireInterrupts(); err != nil {
			return nil, err
		}
	}
	if err := d.enable(); err != nil {
		return nil, err
	}
	d.log.Info("device up", "queue_pairs", cfg.Queues, "slots", cfg.Slots, "slot_size", cfg.SlotSize,
		"meta_in_bar2", cfg.MetaInBAR2, "polling", cfg.Polling, "huge", d.mem.Huge())
	return d, nil
}

func checkID(dev vfio.Device) error {
	id, err := vfio.Read32(dev, vfio.BAR0, ycqdev.RegID)
	if err != nil {
		return gone(err)
	}
	ver, err := vfio.Read32(dev, vfio.BAR0, ycqdev.RegVersion)
	if err != nil {
		return gone(err)
	}
	if id != ycqdev.RegIDValue || ver != ycqdev.RegVersionV1 {
		return fmt.Errorf("%w: BAR0 ID %#x version %d: not a ycq device of register map version %d",
			ErrNotYCQ, id, ver, ycqdev.RegVersionV1)
	}
	return nil
}

// Config space command register bits.
const (
	pciCommand          = 0x04
	pciCommandMemory    = 1 << 1
	pciCommandBusMaster = 1 << 2
)

func enableBusMaster(dev vfio.Device) error {
	cmd, err := vfio.ReadConfig16(dev, pciCommand)
	if err != nil {
		return gone(err)
	}
	return gone(vfio.WriteConfig16(dev, pciCommand, cmd|pciCommandMemory|pciCommandBusMaster))
}

// pairLayout is where one pair's four areas lie, as offsets into the DMA
// memory (or BAR2, for metadata with MetaInBAR2).
type pairLayout struct{ h2dMeta, h2dData, d2hMeta, d2hData uint64 }

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

// allocate lays every pair out in one DMA region, maps it for the device,
// and formats the queues.
func (d *Driver) allocate() error {
	c := d.cfg
	meta := roundUp(uint64(ring.MetaSize(c.Slots)), dma.PageSize)
	data := roundUp(uint64(c.Slots*c.SlotSize), dma.PageSize)
	var layouts []pairLayout
	var off, barOff uint64
	for range c.Queues {
		var l pairLayout
		if c.MetaInBAR2 {
			l.h2dMeta, l.d2hMeta = barOff, barOff+meta
			barOff += 2 * meta
		} else {
			l.h2dMeta, l.d2hMeta = off, off+meta
			off += 2 * meta
		}
		l.h2dData, l.d2hData = off, off+data
		off += 2 * data
		layouts = append(layouts, l)
	}
	if c.MetaInBAR2 {
		size, err := vfio.Read32(d.dev, vfio.BAR0, ycqdev.RegBAR2Size)
		if err != nil {
			return gone(err)
		}
		if barOff > uint64(size) {
			return fmt.Errorf("%w: %d pairs of %d slots need %d bytes of BAR2 for metadata; it has %d",
				ErrConfig, c.Queues, c.Slots, barOff, size)
		}
		if d.bar2, err = d.dev.MapRegion(vfio.BAR2, 0, uint64(size)); err != nil {
			return fmt.Errorf("map BAR2: %w", gone(err))
		}
	}
	var err error
	if d.mem, err = dma.Memfd("ycq-hostdriver", int(off), dma.Options{Huge: c.Huge}); err != nil {
		return err
	}
	if fb := d.mem.HugeFallback(); fb != "" {
		d.log.Info("DMA memory on 4 KiB pages", "reason", fb)
	}
	alloc, err := dma.NewIOVAAllocator(c.IOVABase, c.IOVABase+1<<36, dma.PageSize)
	if err != nil {
		return err
	}
	d.alloc = alloc
	iova, err := alloc.AllocAligned(uint64(d.mem.Size()), dma.HugePageSize)
	if err != nil {
		return err
	}
	if err := d.dev.MapDMA(vfio.IOVA(iova), d.mem, 0, uint64(d.mem.Size()), vfio.DMARead|vfio.DMAWrite); err != nil {
		return fmt.Errorf("map %d bytes of DMA memory at IOVA %#x: %w", d.mem.Size(), iova, gone(err))
	}
	d.iova = iova
	b := d.mem.Bytes()
	metaBytes := func(o uint64) []byte {
		if c.MetaInBAR2 {
			return d.bar2.Bytes()[o:][:meta]
		}
		return b[o:][:meta]
	}
	for i, l := range layouts {
		p := &Pair{d: d, index: i, layout: l}
		h2dCfg, d2hCfg := d.queueConfigs(c.Slots, 1)
		var err error
		if p.h2d, err = ring.Format(metaBytes(l.h2dMeta), b[l.h2dData:][:data], h2dCfg); err != nil {
			return err
		}
		if p.d2h, err = ring.Format(metaBytes(l.d2hMeta), b[l.d2hData:][:data], d2hCfg); err != nil {
			return err
		}
		meta := func(o uint64) uint64 { return d.iova + o }
		if c.MetaInBAR2 {
			meta = func(o uint64) uint64 { return o }
		}
		p.regs = queueRegs{h2dMeta: meta(l.h2dMeta), h2dData: d.iova + l.h2dData,
			d2hMeta: meta(l.d2hMeta), d2hData: d.iova + l.d2hData, slots: uint32(c.Slots)}
		if c.Resizable {
			if err := p.startResizable(); err != nil {
				return err
			}
		}
		d.pairs = append(d.pairs, p)
	}
	if c.Resizable {
		if err := d.newResizePage(len(d.pairs)); err != nil {
			return err
		}
		for _, p := range d.pairs {
			p.noteResizes()
		}
	}
	return nil
}

// queueConfigs are the formats of a pair's two queues of slots slots:
// the device alone consumes the first and alone produces into the second;
// gen is the generation of resizable ones.
func (d *Driver) queueConfigs(slots int, gen uint32) (h2d, d2h ring.Config) {
	h2d = ring.Config{Slots: slots, SlotSize: d.cfg.SlotSize, SingleConsumer: true}
	d2h = ring.Config{Slots: slots, SlotSize: d.cfg.SlotSize, SingleProducer: true}
	if d.cfg.Resizable {
		h2d.Resizable, h2d.Generation = true, gen
		d2h.Resizable, d2h.Generation = true, gen
	}
	return h2d, d2h
}

// queueRegs are the values of a pair's queue registers: where the device
// finds the generation it attaches at enable.
type queueRegs struct {
	h2dMeta, h2dData, d2hMeta, d2hData uint64
	slots                              uint32
}

// program writes every register the device reads at enable.
func (d *Driver) program() error {
	c := d.cfg
	if c.Engine != 0 {
		if err := d.reg32(ycqdev.RegEngine, c.Engine); err != nil {
			return err
		}
	}
	if err := d.reg32(ycqdev.RegNumQueues, uint32(c.Queues)); err != nil {
		return err
	}
	if err := d.reg32(ycqdev.RegErrorVector, d.errVec); err != nil {
		return err
	}
	for _, p := range d.pairs {
		q := func(reg uint64) uint64 { return ycqdev.QueueReg(p.index, reg) }
		flags := uint32(0)
		if c.MetaInBAR2 {
			flags = ycqdev.QFlagMetaInBAR2
		}
		r := p.regs
		for _, w := range []struct {
			reg uint64
			v   uint64
		}{
			{ycqdev.RegQH2DMeta, r.h2dMeta}, {ycqdev.RegQH2DData, r.h2dData},
			{ycqdev.RegQD2HMeta, r.d2hMeta}, {ycqdev.RegQD2HData, r.d2hData},
		} {
			if err := d.reg64(q(w.reg), w.v); err != nil {
				return err
			}
		}
		for _, w := range []struct {
			reg uint64
			v   uint32
		}{
			{ycqdev.RegQSlots, r.slots}, {ycqdev.RegQSlotSize, uint32(c.SlotSize)},
			{ycqdev.RegQFlags, flags}, {ycqdev.RegQVector, uint32(p.index)},
		} {
			if err := d.reg32(q(w.reg), w.v); err != nil {
				return err
			}
		}
	}
	return nil
}

// wireInterrupts gives every MSI-X vector an eventfd and a goroutine that
// turns its signals into wakeups.
func (d *Driver) wireInterrupts() error {
	info, err := d.dev.IRQInfo(vfio.IRQMSIX)
	if err != nil {
		return gone(err)
	}
	n := uint32(d.cfg.Queues) + 1
	if info.Count < n {
		return fmt.Errorf("%w: %d MSI-X vectors, %d needed (one a pair and one for errors)", ErrConfig, info.Count, n)
	}
	fds := make([]int, n)
	for i := range fds {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			return fmt.Errorf("eventfd: %w", err)
		}
		fds[i] = fd
		d.irqs = append(d.irqs, os.NewFile(uintptr(fd), fmt.Sprintf("ycq-msix-%d", i)))
	}
	if err := d.dev.SetIRQs(vfio.IRQMSIX, 0, fds); err != nil {
		return fmt.Errorf("wire MSI-X: %w", gone(err))
	}
	for i, f := range d.irqs {
		d.irqWG.Go(func() { d.irqLoop(uint32(i), f) })
	}
	return nil
}

// irqLoop waits for one vector's interrupts.
func (d *Driver) irqLoop(vector uint32, f *os.File) {
	var buf [8]byte
	for {
		if _, err := f.Read(buf[:]); err != nil {
			return // closed
		}
		if vector == d.errVec {
			d.checkHealth()
			continue
		}
		if int(vector) < len(d.pairs) {
			d.pairs[vector].interrupt()
		}
	}
}

// enable starts the device and checks that it accepted everything.
func (d *Driver) enable() error {
	if err := d.reg32(ycqdev.RegControl, ycqdev.ControlEnable); err != nil {
		return err
	}
	st, err := d.status()
	if err != nil {
		return err
	}
	if st&ycqdev.StatusEnabled == 0 {
		return d.deviceError("enable")
	}
	return nil
}

func (d *Driver) reg32(off uint64, v uint32) error {
	return gone(vfio.Write32(d.dev, vfio.BAR0, off, v))
}

func (d *Driver) reg64(off uint64, v uint64) error {
	return gone(vfio.Write64(d.dev, vfio.BAR0, off, v))
}

func (d *Driver) status() (uint32, error) {
	st, err := vfio.Read32(d.dev, vfio.BAR0, ycqdev.RegStatus)
	return st, gone(err)
}

// Pairs returns the queue pairs.
func (d *Driver) Pairs() []*Pair { return d.pairs }

// Pair returns queue pair i.
func (d *Driver) Pair(i int) *Pair { return d.pairs[i] }

// Err returns the error that stopped the driver, or nil while it runs.
func (d *Driver) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.failed
}

// wakeAll wakes every waiting goroutine of every pair.
func (d *Driver) wakeAll() {
	for _, p := range d.pairs {
		p.interrupt()
	}
}

// fail stops the driver with err, the first time, and wakes every waiter.
func (d *Driver) fail(err error) {
	d.mu.Lock()
	if d.failed == nil {
		d.failed = err
		d.log.Warn("driver stopped", "err", err)
	}
	d.mu.Unlock()
	d.wakeAll()
}

// checkHealth reads the device's status; a device that stopped, was reset
// or went away stops the driver. It returns the driver's error, if any.
func (d *Driver) checkHealth() error {
	if err := d.Err(); err != nil {
		return err
	}
	st, err := d.status()
	switch {
	case err != nil:
		d.fail(d.withIncomplete(err))
	case st&ycqdev.StatusError != 0:
		d.fail(d.deviceError("running"))
	case st&ycqdev.StatusEnabled == 0:
		d.fail(d.withIncomplete(fmt.Errorf("%w: the device is no longer enabled (it was reset)", ErrReset)))
	default:
		d.spurious.Add(1)
	}
	return d.Err()
}

// Close stops the device, unmaps the DMA memory and closes everything. A
// device that is gone does not make Close fail.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	if d.failed == nil {
		d.failed = ErrClosed
	}
	d.mu.Unlock()
	d.wakeAll()
	return d.teardown()
}

// teardown undoes Open, as far as it got.
func (d *Driver) teardown() error {
	var errs []error
	if err := d.reg32(ycqdev.RegControl, ycqdev.ControlReset); err != nil && !errors.Is(err, ErrGone) {
		errs = append(errs, err)
	}
	for _, p := range d.pairs {
		errs = append(errs, p.freeGenerations())
	}
	if d.irqs != nil {
		if err := d.dev.SetIRQs(vfio.IRQMSIX, 0, nil); err != nil && !errors.Is(gone(err), ErrGone) {
			errs = append(errs, err)
		}
		for _, f := range d.irqs {
			f.Close()
		}
		d.irqWG.Wait()
		d.irqs = nil
	}
	if d.mem != nil {
		if d.iova != 0 {
			if err := d.dev.UnmapDMA(vfio.IOVA(d.iova), uint64(d.mem.Size())); err != nil && !errors.Is(gone(err), ErrGone) {
				errs = append(errs, err)
			}
			d.iova = 0
		}
		errs = append(errs, d.mem.Close())
		d.mem = nil
	}
	if d.bar2 != nil {
		errs = append(errs, d.bar2.Close())
		d.bar2 = nil
	}
	d.rpMu.Lock()
	if d.rpage != nil {
		errs = append(errs, d.rpage.Close())
		d.rpage = nil
	}
	d.rpMu.Unlock()
	return errors.Join(errs...)
}
