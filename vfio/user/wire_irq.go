package user

// DEVICE_GET_IRQ_INFO (7) and DEVICE_SET_IRQS (8): the device's interrupts.
//
// DEVICE_GET_IRQ_INFO (7): request and reply have the same layout.

import (
	"math"

	"github.com/ycq-dev/ycq/internal/wirebuf"
	"github.com/ycq-dev/ycq/vfio"
)

const (
	sizeofIRQInfo   = 16
	offIRQInfoArgSz = 0  // u32 argsz
	offIRQInfoFlags = 4  // u32 flags
	offIRQInfoIndex = 8  // u32 index
	offIRQInfoCount = 12 // u32 count
)

// IRQInfoFlags are the IRQ info flags.
type IRQInfoFlags uint32

const (
	IRQInfoEventFD    IRQInfoFlags = 1 << 0 // VFIO_IRQ_INFO_EVENTFD
	IRQInfoMaskable   IRQInfoFlags = 1 << 1 // VFIO_IRQ_INFO_MASKABLE
	IRQInfoAutomasked IRQInfoFlags = 1 << 2 // VFIO_IRQ_INFO_AUTOMASKED
	IRQInfoNoResize   IRQInfoFlags = 1 << 3 // VFIO_IRQ_INFO_NORESIZE
)

// IRQInfo is the DEVICE_GET_IRQ_INFO request and reply (struct
// vfio_irq_info). In the request only ArgSz and Index matter.
type IRQInfo struct {
	ArgSz uint32 // argsz; 0 to encode means 16
	Flags IRQInfoFlags
	Index vfio.IRQIndex
	Count uint32 // count: interrupts of this type; 0 = not implemented
}

// Encode appends the 16-byte IRQ info payload.
func (q IRQInfo) Encode(b []byte) []byte {
	b, s := wirebuf.Grow(b, sizeofIRQInfo)
	le.PutUint32(s[offIRQInfoArgSz:], orSize(q.ArgSz, sizeofIRQInfo))
	le.PutUint32(s[offIRQInfoFlags:], uint32(q.Flags))
	le.PutUint32(s[offIRQInfoIndex:], uint32(q.Index))
	le.PutUint32(s[offIRQInfoCount:], q.Count)
	return b
}

// DecodeIRQInfo decodes a DEVICE_GET_IRQ_INFO request or reply: at least 16
// bytes, argsz >= 16.
func DecodeIRQInfo(p []byte) (IRQInfo, error) {
	if err := needArgSz(CmdDeviceGetIRQInfo, p, sizeofIRQInfo); err != nil {
		return IRQInfo{}, err
	}
	return IRQInfo{
		ArgSz: le.Uint32(p[offIRQInfoArgSz:]),
		Flags: IRQInfoFlags(le.Uint32(p[offIRQInfoFlags:])),
		Index: vfio.IRQIndex(le.Uint32(p[offIRQInfoIndex:])),
		Count: le.Uint32(p[offIRQInfoCount:]),
	}, nil
}

// ---------------------------------------------------------------------------
// DEVICE_SET_IRQS (8): request only; the reply has no payload.

const (
	sizeofIRQSet   = 20
	offIRQSetArgSz = 0  // u32 argsz
	offIRQSetFlags = 4  // u32 flags
	offIRQSetIndex = 8  // u32 index
	offIRQSetStart = 12 // u32 start
	offIRQSetCount = 16 // u32 count
	offIRQSetData  = 20 // count bool bytes with DATA_BOOL; nothing otherwise
)

// IRQSetFlags are the SET_IRQS flags: exactly one DATA_* and one ACTION_*.
type IRQSetFlags uint32

const (
	IRQSetDataNone      IRQSetFlags = 1 << 0 // VFIO_IRQ_SET_DATA_NONE
	IRQSetDataBool      IRQSetFlags = 1 << 1 // VFIO_IRQ_SET_DATA_BOOL: count bool bytes follow
	IRQSetDataEventFD   IRQSetFlags = 1 << 2 // VFIO_IRQ_SET_DATA_EVENTFD: fds in SCM_RIGHTS; none = de-assign
	IRQSetActionMask    IRQSetFlags = 1 << 3 // VFIO_IRQ_SET_ACTION_MASK
	IRQSetActionUnmask  IRQSetFlags = 1 << 4 // VFIO_IRQ_SET_ACTION_UNMASK
	IRQSetActionTrigger IRQSetFlags = 1 << 5 // VFIO_IRQ_SET_ACTION_TRIGGER

	irqSetDataMask   = IRQSetDataNone | IRQSetDataBool | IRQSetDataEventFD
	irqSetActionMask = IRQSetActionMask | IRQSetActionUnmask | IRQSetActionTrigger
)

// IRQSet is the DEVICE_SET_IRQS request (struct vfio_irq_set). Eventfds
// travel in SCM_RIGHTS, never in the body; QEMU splits large sets into
// messages of at most max_msg_fds fds, each with argsz 20.
type IRQSet struct {
	ArgSz uint32 // argsz; 0 to encode means 20+len(Data)
	Flags IRQSetFlags
	Index vfio.IRQIndex
	Start uint32
	Count uint32
	// Data holds Count bool bytes with IRQSetDataBool, nothing otherwise.
	// A decoded Data aliases the payload.
	Data []byte
}

// Encode appends the SET_IRQS payload: the 20-byte struct and Data as given.
func (q IRQSet) Encode(b []byte) ([]byte, error) {
	if uint64(len(q.Data)) > math.MaxUint32-sizeofIRQSet {
		return b, invalidf("SET_IRQS data of %d bytes does not fit argsz", len(q.Data))
	}
	b, s := wirebuf.Grow(b, sizeofIRQSet)
	le.PutUint32(s[offIRQSetArgSz:], orSize(q.ArgSz, uint32(sizeofIRQSet+len(q.Data))))
	le.PutUint32(s[offIRQSetFlags:], uint32(q.Flags))
	le.PutUint32(s[offIRQSetIndex:], uint32(q.Index))
	le.PutUint32(s[offIRQSetStart:], q.Start)
	le.PutUint32(s[offIRQSetCount:], q.Count)
	return append(b, q.Data...), nil
}

// DecodeIRQSet decodes a DEVICE_SET_IRQS request: at least 20 bytes, argsz
// >= 20, flags with exactly one DATA_* bit, exactly one ACTION_* bit and
// nothing else; with DATA_BOOL the count bool bytes must be present. argsz
// is not compared with the payload: QEMU rewrites it to 20 for eventfd sets
// while the kernel's habit is 20 + 4*count. Trailing bytes are ignored.
func DecodeIRQSet(p []byte) (IRQSet, error) {
	const cmd = CmdDeviceSetIRQs
	if err := needArgSz(cmd, p, sizeofIRQSet); err != nil {
		return IRQSet{}, err
	}
	q := IRQSet{
		ArgSz: le.Uint32(p[offIRQSetArgSz:]),
		Flags: IRQSetFlags(le.Uint32(p[offIRQSetFlags:])),
		Index: vfio.IRQIndex(le.Uint32(p[offIRQSetIndex:])),
		Start: le.Uint32(p[offIRQSetStart:]),
		Count: le.Uint32(p[offIRQSetCount:]),
	}
	if extra := q.Flags &^ (irqSetDataMask | irqSetActionMask); extra != 0 {
		return IRQSet{}, malformed(cmd, "flags", "unknown bits %#x", uint32(extra))
	}
	if d := q.Flags & irqSetDataMask; d == 0 || d&(d-1) != 0 {
		return IRQSet{}, malformed(cmd, "flags", "%#x must have exactly one DATA_* bit", uint32(q.Flags))
	}
	if a := q.Flags & irqSetActionMask; a == 0 || a&(a-1) != 0 {
		return IRQSet{}, malformed(cmd, "flags", "%#x must have exactly one ACTION_* bit", uint32(q.Flags))
	}
	if q.Flags&IRQSetDataBool != 0 {
		if avail := uint64(len(p) - sizeofIRQSet); uint64(q.Count) > avail {
			return IRQSet{}, malformed(cmd, "count", "%d bools claimed, %d bytes present", q.Count, avail)
		}
		q.Data = wirebuf.NilIfEmpty(p[offIRQSetData : offIRQSetData+int(q.Count)])
	}
	return q, nil
}
