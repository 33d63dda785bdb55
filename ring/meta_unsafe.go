package ring

import (
	"sync/atomic"
	"unsafe"
)

// This file is the only place in package ring that turns metadata bytes into
// typed words. The overlay structs below mirror layout.go; the assertions at
// the end fail to compile if a field drifts from its named offset.

// header overlays the header line.
type header struct {
	magic      atomic.Uint32
	version    atomic.Uint32
	features   atomic.Uint32
	descOffset atomic.Uint32
	slots      atomic.Uint32
	slotSize   atomic.Uint32
	metaSize   atomic.Uint64
	dataSize   atomic.Uint64
	descSize   atomic.Uint32
	generation atomic.Uint32
}

// prodLine overlays the producer line.
type prodLine struct {
	cursor         atomic.Uint64
	rolledBack     atomic.Uint64
	spare          atomic.Uint64 // OffProdSpare
	aborted        atomic.Uint64
	full           atomic.Uint64
	corrupt        atomic.Uint64
	wakeSent       atomic.Uint64
	wakeSuppressed atomic.Uint64
}

// consLine overlays the consumer line.
type consLine struct {
	cursor         atomic.Uint64
	returned       atomic.Uint64
	spare          atomic.Uint64 // OffConsSpare
	skipped        atomic.Uint64
	empty          atomic.Uint64
	corrupt        atomic.Uint64
	wakeSent       atomic.Uint64
	wakeSuppressed atomic.Uint64
}

// wakeLine overlays a wake line.
type wakeLine struct {
	futex   atomic.Uint32
	waiters atomic.Uint32
}

// slotDesc overlays one descriptor. The layout defines it as two u32 words,
// the stamp (offset 0) and the info word (offset 4); on a little-endian host
// they form one u64 with the stamp in the low half. A producer publishes
// length, flags and stamp in one store, and a consumer reads all three in one
// load; agents that use 32-bit accesses see exactly the same bytes.
type slotDesc struct {
	word atomic.Uint64
}

func packDesc(seq, length, flags uint32) uint64 {
	return uint64(seq) | uint64(length&InfoLenMask|flags<<InfoFlagsShift)<<32
}

func unpackDesc(v uint64) (seq, length, flags uint32) {
	info := uint32(v >> 32)
	return uint32(v), info & InfoLenMask, info >> InfoFlagsShift
}

// linkLine overlays the link line.
type linkLine struct {
	next     atomic.Uint32
	slots    atomic.Uint32
	left     atomic.Uint32
	_        uint32
	metaAddr atomic.Uint64
	dataAddr atomic.Uint64
}

// link is the link line, two lines past the items wake line (view checked
// the region holds the whole layout; a Queue keeps no pointer of its own
// for it, to stay 128 bytes).
func (m metaView) link() *linkLine {
	return (*linkLine)(unsafe.Add(unsafe.Pointer(m.items), OffLink-OffItemsFutex))
}

// metaView holds typed pointers into a metadata region. Every pointer is
// taken from a bounds-checked reslice, so a bad offset panics here at
// construction instead of touching stray memory later.
type metaView struct {
	hdr   *header
	prod  *prodLine
	cons  *consLine
	items *wakeLine
	space *wakeLine
	descs []slotDesc
}

// aligned reports whether b starts on an n-byte boundary (n a power of two).
func aligned(b []byte, n uintptr) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))&(n-1) == 0
}

// hostLittleEndian reports whether this machine stores words little-endian,
// as the layout requires for the atomic overlay.
func hostLittleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// viewHeader overlays just the header; the caller has checked
// len(meta) >= lineSize and 8-byte alignment.
func viewHeader(meta []byte) *header {
	return (*header)(unsafe.Pointer(&meta[OffMagic:][:lineSize][0]))
}

// view overlays a whole metadata region of the given slot count; the caller
// has checked len(meta) >= MetaSize(slots) and 8-byte alignment.
func view(meta []byte, slots int) metaView {
	d := meta[OffDescs:][:slots*DescSize]
	return metaView{
		hdr:   viewHeader(meta),
		prod:  (*prodLine)(unsafe.Pointer(&meta[OffProdCursor:][:lineSize][0])),
		cons:  (*consLine)(unsafe.Pointer(&meta[OffConsCursor:][:lineSize][0])),
		items: (*wakeLine)(unsafe.Pointer(&meta[OffItemsFutex:][:lineSize][0])),
		space: (*wakeLine)(unsafe.Pointer(&meta[OffSpaceFutex:][:lineSize][0])),
		descs: unsafe.Slice((*slotDesc)(unsafe.Pointer(&d[0])), slots),
	}
}

// Compile-time checks that each overlay field sits at its named offset. An
// array length that is negative or a non-zero array assigned to a zero-length
// one does not compile.
var (
	_ [0]struct{} = [unsafe.Offsetof(header{}.magic) - OffMagic]struct{}{}
	_ [0]struct{} = [unsafe.Offsetof(header{}.version) - OffVersion]struct{}{}
	_ [0]struct{} = [unsafe.Offsetof(header{}.features) - OffFeatures]struct{}{}
	_ [0]struct{} = [unsafe.Offsetof(header{}.descOffset) - OffDescOffset]struct{}{}
	_ [0]struct{} = [unsafe.Offsetof(header{}.slots) - OffSlots]struct{}{}
	_ [0]struct{} = [unsafe.Offsetof(header{}.slotSize) - OffSlotSize]struct{}{}
	_ [0]struct{} = [unsafe.Offsetof(header{}.metaSize) - OffMetaSize]struct{}{}
	_ [0]struct{} = [unsafe.Offsetof(header{}.dataSize) - OffDataSize]struct{}{}
	_ [0]struct{} = [unsafe.Offsetof(header{}.descSize) - OffDescSize]struct{}{}
	_ [0]struct{} = [unsafe.Offsetof(header{}.generation) - OffGeneration]struct{}{}

	_ [0]struct{} = [OffProdCursor + unsafe.Offsetof(prodLine{}.cursor) - OffProdCursor]struct{}{}
	_ [0]struct{} = [OffProdCursor + unsafe.Offsetof(prodLine{}.rolledBack) - OffProdRolledBack]struct{}{}
	_ [0]struct{} = [OffProdCursor + unsafe.Offsetof(prodLine{}.spare) - OffProdSpare]struct{}{}
	_ [0]struct{} = [OffProdCursor + unsafe.Offsetof(prodLine{}.aborted) - OffProdAborted]struct{}{}
	_ [0]struct{} = [OffProdCursor + unsafe.Offsetof(prodLine{}.full) - OffProdFull]struct{}{}
	_ [0]struct{} = [OffProdCursor + unsafe.Offsetof(prodLine{}.corrupt) - OffProdCorrupt]struct{}{}
	_ [0]struct{} = [OffProdCursor + unsafe.Offsetof(prodLine{}.wakeSent) - OffProdWakeSent]struct{}{}
	_ [0]struct{} = [OffProdCursor + unsafe.Offsetof(prodLine{}.wakeSuppressed) - OffProdWakeSuppressed]struct{}{}

	_ [0]struct{} = [OffLink + unsafe.Offsetof(linkLine{}.next) - OffLinkNext]struct{}{}
	_ [0]struct{} = [OffLink + unsafe.Offsetof(linkLine{}.slots) - OffLinkSlots]struct{}{}
	_ [0]struct{} = [OffLink + unsafe.Offsetof(linkLine{}.left) - OffLinkLeft]struct{}{}
	_ [0]struct{} = [OffLink + unsafe.Offsetof(linkLine{}.metaAddr) - OffLinkMetaAddr]struct{}{}
	_ [0]struct{} = [OffLink + unsafe.Offsetof(linkLine{}.dataAddr) - OffLinkDataAddr]struct{}{}

	_ [0]struct{} = [OffConsCursor + unsafe.Offsetof(consLine{}.cursor) - OffConsCursor]struct{}{}
	_ [0]struct{} = [OffConsCursor + unsafe.Offsetof(consLine{}.returned) - OffConsReturned]struct{}{}
	_ [0]struct{} = [OffConsCursor + unsafe.Offsetof(consLine{}.spare) - OffConsSpare]struct{}{}
	_ [0]struct{} = [OffConsCursor + unsafe.Offsetof(consLine{}.skipped) - OffConsSkipped]struct{}{}
	_ [0]struct{} = [OffConsCursor + unsafe.Offsetof(consLine{}.empty) - OffConsEmpty]struct{}{}
	_ [0]struct{} = [OffConsCursor + unsafe.Offsetof(consLine{}.corrupt) - OffConsCorrupt]struct{}{}
	_ [0]struct{} = [OffConsCursor + unsafe.Offsetof(consLine{}.wakeSent) - OffConsWakeSent]struct{}{}
	_ [0]struct{} = [OffConsCursor + unsafe.Offsetof(consLine{}.wakeSuppressed) - OffConsWakeSuppressed]struct{}{}

	_ [0]struct{} = [OffItemsFutex + unsafe.Offsetof(wakeLine{}.waiters) - OffItemsWaiters]struct{}{}
	_ [0]struct{} = [OffSpaceFutex + unsafe.Offsetof(wakeLine{}.waiters) - OffSpaceWaiters]struct{}{}

	_ [0]struct{} = [unsafe.Offsetof(slotDesc{}.word) - DescOffSeq]struct{}{}
	_ [0]struct{} = [unsafe.Sizeof(slotDesc{}) - DescSize]struct{}{}
	_ [0]struct{} = [unsafe.Sizeof(prodLine{}) - lineSize]struct{}{}
	_ [0]struct{} = [unsafe.Sizeof(consLine{}) - lineSize]struct{}{}
	_ [0]struct{} = [DescOffInfo - DescOffSeq - 4]struct{}{}
)
