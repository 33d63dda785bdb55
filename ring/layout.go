package ring

// The metadata region, layout version 1. This file is the only definition of
// it: every other file names these constants, LAYOUT.md describes them in
// prose, ycq_ring.h is generated from them, and layout_test.go pins them
// against literal bytes. The offsets are exported for agents that implement
// a side of a queue without this package's Queue, as a device does through
// its DMA window (see devicemodel).
//
// All fields are little-endian. Offsets are from the start of the metadata
// region, which must be at least 8-byte aligned (64 is recommended).
//
//	offset  size  line
//	0       64    header: identity and geometry, written once by Format
//	64      64    producer line: producer cursor and producer counters
//	128     64    consumer line: consumer cursor and consumer counters
//	192     64    items wake line: consumers sleep here for items
//	256     64    space wake line: producers sleep here for space
//	320     64    link line: a RESIZABLE queue's next generation (zero otherwise)
//	384     8*N   slot descriptors, one per slot
const (
	// Magic is the first word of every metadata region: the bytes "YCQ1".
	Magic = 0x31514359
	// Version is the layout version this package writes and accepts.
	Version = 1

	lineSize = 64

	// Header line. Written by Format before any other agent attaches;
	// read-only afterwards.
	OffMagic      = 0  // u32 Magic
	OffVersion    = 4  // u32 Version
	OffFeatures   = 8  // u32 feature bits (Feature*)
	OffDescOffset = 12 // u32 offset of descriptor 0 (OffDescs)
	OffSlots      = 16 // u32 slot count N, a power of two
	OffSlotSize   = 20 // u32 bytes per slot in the data region, a multiple of 8
	OffMetaSize   = 24 // u64 bytes of metadata the layout uses: MetaSize(N)
	OffDataSize   = 32 // u64 bytes of data region used: N * slot size
	OffDescSize   = 40 // u32 bytes per descriptor (DescSize)
	OffGeneration = 44 // u32 generation of a RESIZABLE queue, from 1; 0 otherwise
	// 48..63 reserved: written as zero, ignored on read.

	// Producer line. Written only by producers.
	OffProdCursor         = 64  // u64 next position a producer reserves
	OffProdRolledBack     = 72  // u64 counter: slots given back by moving the cursor back
	OffProdSpare          = 80  // u64 zero; ignored on read (records published follow from the stamps)
	OffProdAborted        = 88  // u64 counter: slots aborted (holes and rolled back)
	OffProdFull           = 96  // u64 counter: reserve attempts refused as full
	OffProdCorrupt        = 104 // u64 counter: corruption detected by producers
	OffProdWakeSent       = 112 // u64 counter: wakeups sent to consumers
	OffProdWakeSuppressed = 120 // u64 counter: wakeups skipped, nobody slept

	// Consumer line. Written only by consumers.
	OffConsCursor         = 128 // u64 next position a consumer reserves
	OffConsReturned       = 136 // u64 counter: records given back unread
	OffConsSpare          = 144 // u64 zero; ignored on read (records released follow from the stamps)
	OffConsSkipped        = 152 // u64 counter: aborted slots passed over (net of given back)
	OffConsEmpty          = 160 // u64 counter: reserve attempts refused as empty
	OffConsCorrupt        = 168 // u64 counter: corruption detected by consumers
	OffConsWakeSent       = 176 // u64 counter: wakeups sent to producers
	OffConsWakeSuppressed = 184 // u64 counter: wakeups skipped, nobody slept

	// Items wake line: consumers wait here for published records.
	OffItemsFutex   = 192 // u32 bumped after a publish when someone sleeps
	OffItemsWaiters = 196 // u32 number of consumers asleep on the futex word
	// Space wake line: producers wait here for released slots.
	OffSpaceFutex   = 256 // u32 bumped after a release when someone sleeps
	OffSpaceWaiters = 260 // u32 number of producers asleep on the futex word

	// Link line: how a RESIZABLE queue names the generation that follows
	// it (LAYOUT.md, "Resizing"); zero in any other queue. Written by the
	// agent that resizes, but for link_left.
	OffLink         = 320
	OffLinkNext     = 320 // u32 generation of the next queue; 0 until a resize names it
	OffLinkSlots    = 324 // u32 slot count of the next queue
	OffLinkLeft     = 328 // u32 written by consumers: link_next once they drained this queue and moved on
	OffLinkMetaAddr = 336 // u64 the next queue's metadata, for agents that reach memory by address (a device: an IOVA); 0 if passed otherwise
	OffLinkDataAddr = 344 // u64 the next queue's data region, likewise
	// 332..335 and 352..383 reserved: written as zero, ignored on read.

	// Descriptor table: one 8-byte descriptor per slot, 8 to a cache line.
	OffDescs = 384
	DescSize = 8
	// Fields of one descriptor, relative to its start.
	DescOffSeq  = 0 // u32 sequence stamp (see LAYOUT.md)
	DescOffInfo = 4 // u32 bits 0-23 payload length, bits 24-31 Flag* bits
	// The info word.
	InfoLenMask    = 1<<24 - 1
	InfoFlagsShift = 24
)

// Feature bits in the header. Bits 0-15 change how the queue must be driven:
// an agent that does not know one of them must not attach. Bits 16-31 are
// informational and may be ignored.
const (
	// FeatureSingleProducer: exactly one agent produces. It may advance the
	// producer cursor with a plain store instead of compare-and-swap.
	FeatureSingleProducer = 1 << 0
	// FeatureSingleConsumer: exactly one agent consumes, likewise.
	FeatureSingleConsumer = 1 << 1

	// FeatureResizable: the queue is one generation of a resizable queue.
	// Its producer cursor may carry the sealed bit (Sealed), and its link
	// line may name the next generation. An agent that does not follow
	// resizes must not attach.
	FeatureResizable = 1 << 2

	featuresKnown = FeatureSingleProducer | FeatureSingleConsumer | FeatureResizable
	// FeaturesIncompatMask covers the bits an agent must understand.
	FeaturesIncompatMask = 0xffff
)

// Sealed is the bit a resize sets in a RESIZABLE queue's producer cursor:
// no producer reserves there any more, and the cursor without it is the
// generation's final position.
const Sealed = 1 << 63

// Descriptor flag bits, stored in bits 24-31 of the info word.
const (
	// FlagAborted marks a slot a producer gave up after it reserved it.
	// Consumers pass over it; it never appears in a ReadRun.
	FlagAborted = 1 << 0
)

// Geometry limits.
const (
	MinSlots    = 2
	MaxSlots    = 1 << 24
	MaxSlotSize = 1 << 23
	slotAlign   = 8
)

// MetaSize is the number of metadata bytes a queue of the given slot count
// uses. The metadata region may be larger; the rest is left alone.
func MetaSize(slots int) int { return OffDescs + slots*DescSize }
