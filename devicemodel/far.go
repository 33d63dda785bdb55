package devicemodel

import (
	"fmt"

	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// space is an address space the device reaches queue memory through:
// host memory by IOVA (through the Host), or its own BAR2 memory by offset.
// Word accesses are single, naturally aligned, with acquire/release order.
type space interface {
	Load32(a uint64) (uint32, error)
	Store32(a uint64, v uint32) error
	Load64(a uint64) (uint64, error)
	Store64(a uint64, v uint64) error
	Read(a uint64, b []byte) error
	Write(a uint64, b []byte) error
	// Slice returns [a, a+n) in place, when the space is directly
	// addressable; ok is false otherwise (use Read and Write).
	Slice(a uint64, n int) (b []byte, ok bool)
}

// hostSpace is host memory through the client's DMA mappings.
type hostSpace struct{ h Host }

func (s hostSpace) Load32(a uint64) (uint32, error)  { return s.h.Load32(vfio.IOVA(a)) }
func (s hostSpace) Store32(a uint64, v uint32) error { return s.h.Store32(vfio.IOVA(a), v) }
func (s hostSpace) Load64(a uint64) (uint64, error)  { return s.h.Load64(vfio.IOVA(a)) }
func (s hostSpace) Store64(a uint64, v uint64) error { return s.h.Store64(vfio.IOVA(a), v) }
func (s hostSpace) Read(a uint64, b []byte) error    { return s.h.Read(vfio.IOVA(a), b) }
func (s hostSpace) Write(a uint64, b []byte) error   { return s.h.Write(vfio.IOVA(a), b) }
func (s hostSpace) Slice(uint64, int) ([]byte, bool) { return nil, false }

// queueError is a device error about one queue: a code for ycqdev.RegErrorCode and
// the address or value for ycqdev.RegErrorAddr.
type queueError struct {
	code   uint32
	addr   uint64
	reason string
}

func (e *queueError) Error() string { return e.reason }

func qerr(code uint32, addr uint64, format string, args ...any) *queueError {
	return &queueError{code: code, addr: addr, reason: fmt.Sprintf(format, args...)}
}

// farQueue is the device's side of one queue: it alone consumes (H2D) or
// alone produces (D2H), with plain ordered loads and stores, as LAYOUT.md
// describes. Its geometry and cursor live here, in device memory; the
// metadata copy of the cursor is for the host's statistics only.
type farQueue struct {
	meta, data         space
	metaAddr, dataAddr uint64
	slots, slotSize    uint32
	pos                uint64 // this side's cursor
}

// attach checks the queue's header against the registers the host wrote,
// and reads this side's cursor. consumer says which side the device is.
func (f *farQueue) attach(consumer bool) error {
	want := map[uint64]uint64{
		ring.OffMagic:      ring.Magic,
		ring.OffVersion:    ring.Version,
		ring.OffDescOffset: ring.OffDescs,
		ring.OffSlots:      uint64(f.slots),
		ring.OffSlotSize:   uint64(f.slotSize),
		ring.OffDescSize:   ring.DescSize,
	}
	for off, w := range want {
		v, err := f.meta.Load32(f.metaAddr + off)
		if err != nil {
			return f.dmaErr(f.metaAddr+off, err)
		}
		if uint64(v) != w {
			return qerr(ycqdev.CodeBadMetadata, f.metaAddr+off, "metadata word at +%d is %#x, %#x expected", off, v, w)
		}
	}
	features, err := f.meta.Load32(f.metaAddr + ring.OffFeatures)
	if err != nil {
		return f.dmaErr(f.metaAddr+ring.OffFeatures, err)
	}
	need, what := uint32(ring.FeatureSingleProducer), "single producer"
	if consumer {
		need, what = ring.FeatureSingleConsumer, "single consumer"
	}
	if features&need == 0 {
		return qerr(ycqdev.CodeBadMetadata, uint64(features), "the queue is not formatted %s; the device is the only agent of its side", what)
	}
	if unknown := features & ring.FeaturesIncompatMask &^ (ring.FeatureSingleProducer | ring.FeatureSingleConsumer); unknown != 0 {
		return qerr(ycqdev.CodeBadMetadata, uint64(features), "unknown required feature bits %#x", unknown)
	}
	for off, w := range map[uint64]uint64{
		ring.OffMetaSize: uint64(ring.MetaSize(int(f.slots))),
		ring.OffDataSize: uint64(f.slots) * uint64(f.slotSize),
	} {
		v, err := f.meta.Load64(f.metaAddr + off)
		if err != nil {
			return f.dmaErr(f.metaAddr+off, err)
		}
		if v != w {
			return qerr(ycqdev.CodeBadMetadata, f.metaAddr+off, "metadata word at +%d is %d, %d expected", off, v, w)
		}
	}
	cursor := uint64(ring.OffProdCursor)
	if consumer {
		cursor = ring.OffConsCursor
	}
	f.pos, err = f.meta.Load64(f.metaAddr + cursor)
	if err != nil {
		return f.dmaErr(f.metaAddr+cursor, err)
	}
	return nil
}

func (f *farQueue) dmaErr(addr uint64, err error) error {
	return qerr(ycqdev.CodeDMAFault, addr, "%v", err)
}

func (f *farQueue) desc(p uint64) uint64 {
	return f.metaAddr + ring.OffDescs + ring.DescSize*(p%uint64(f.slots))
}
func (f *farQueue) slot(p uint64) uint64 { return f.dataAddr + (p%uint64(f.slots))*uint64(f.slotSize) }

// peek looks at the record at the consumer's position: ok false when none
// is published yet. Aborted slots are released and passed over here.
func (f *farQueue) peek() (length uint32, ok bool, err error) {
	for range f.slots {
		p := f.pos
		w, err := f.meta.Load64(f.desc(p))
		if err != nil {
			return 0, false, f.dmaErr(f.desc(p), err)
		}
		seq, info := uint32(w), uint32(w>>32)
		switch {
		case seq == uint32(p)+1 && info <= f.slotSize:
			return info, true, nil
		case seq == uint32(p)+1 && info&^ring.InfoLenMask == ring.FlagAborted<<ring.InfoFlagsShift && info&ring.InfoLenMask == 0:
			if err := f.release(); err != nil {
				return 0, false, err
			}
			if err := f.sync(ring.OffConsCursor, ring.OffConsSkipped, 1); err != nil {
				return 0, false, err
			}
		case seq == uint32(p), seq == uint32(p)+1-f.slots:
			return 0, false, nil
		default:
			return 0, false, qerr(ycqdev.CodeCorruptQueue, f.desc(p), "slot %d descriptor %#x at position %d: no host writes that", p%uint64(f.slots), w, p)
		}
	}
	return 0, false, nil
}

// release hands the slot at the consumer's position back and moves on. The
// cursor in metadata is stored by sync, once for a batch: LAYOUT.md lets a
// single consumer move its cursor once for a run.
func (f *farQueue) release() error {
	p := f.pos
	if err := f.meta.Store64(f.desc(p), uint64(uint32(p)+f.slots)); err != nil {
		return f.dmaErr(f.desc(p), err)
	}
	f.pos++
	return nil
}

// sync stores this side's cursor (ring.OffProdCursor or ring.OffConsCursor)
// and adds n to one of its counters. The device syncs after each batch and
// before it stops, so whenever it is stopped the cursors agree with the
// stamps, which is what the host reads after a reset.
func (f *farQueue) sync(cursorOff, counterOff, n uint64) error {
	if err := f.meta.Store64(f.metaAddr+cursorOff, f.pos); err != nil {
		return f.dmaErr(f.metaAddr+cursorOff, err)
	}
	return f.add(counterOff, n)
}

// free reports whether the producer's next slot is free.
func (f *farQueue) free() (bool, error) {
	p := f.pos
	seq, err := f.meta.Load32(f.desc(p))
	if err != nil {
		return false, f.dmaErr(f.desc(p), err)
	}
	switch seq {
	case uint32(p):
		return true, nil
	case uint32(p) - f.slots, uint32(p) - f.slots + 1:
		return false, nil
	}
	return false, qerr(ycqdev.CodeCorruptQueue, f.desc(p), "slot %d stamp %#x at position %d: no host writes that", p%uint64(f.slots), seq, p)
}

// publish makes the producer's next slot a record of length bytes: the
// payload was written before; the descriptor (length, then stamp, in one
// ordered store) after. The cursor is stored by sync, as for release.
func (f *farQueue) publish(length uint32) error {
	p := f.pos
	if err := f.meta.Store64(f.desc(p), uint64(uint32(p)+1)|uint64(length)<<32); err != nil {
		return f.dmaErr(f.desc(p), err)
	}
	f.pos++
	return nil
}

// add adds n to a counter of the device's side.
func (f *farQueue) add(off, n uint64) error {
	v, err := f.meta.Load64(f.metaAddr + off)
	if err == nil {
		err = f.meta.Store64(f.metaAddr+off, v+n)
	}
	if err != nil {
		return f.dmaErr(f.metaAddr+off, err)
	}
	return nil
}

// waiters reads the number of host agents asleep on one of the queue's wake
// lines (ring.OffItemsWaiters or ring.OffSpaceWaiters).
func (f *farQueue) waiters(off uint64) (uint32, error) {
	v, err := f.meta.Load32(f.metaAddr + off)
	if err != nil {
		return 0, f.dmaErr(f.metaAddr+off, err)
	}
	return v, nil
}

// wake bumps a wake line's futex word, as a waker must before it signals,
// and counts the wakeup on the device's side of the queue.
func (f *farQueue) wake(futexOff, counterOff uint64) error {
	v, err := f.meta.Load32(f.metaAddr + futexOff)
	if err == nil {
		err = f.meta.Store32(f.metaAddr+futexOff, v+1)
	}
	if err != nil {
		return f.dmaErr(f.metaAddr+futexOff, err)
	}
	return f.add(counterOff, 1)
}

// sleep registers (delta 1) or unregisters (delta -1) the device as a
// sleeper on a wake line. The device is the only one that ever sleeps on
// the lines it uses, so a plain load and store suffice.
func (f *farQueue) sleep(waitersOff uint64, delta int32) error {
	v, err := f.meta.Load32(f.metaAddr + waitersOff)
	if err == nil {
		err = f.meta.Store32(f.metaAddr+waitersOff, uint32(int32(v)+delta))
	}
	if err != nil {
		return f.dmaErr(f.metaAddr+waitersOff, err)
	}
	return nil
}
