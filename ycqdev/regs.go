package ycqdev

// The ycq device's register map, version 1. This file is its only
// definition; REGISTERS.md describes it and regs_test.go pins it. All
// registers are little-endian and accessed with naturally aligned 4- or
// 8-byte reads and writes.
//
//	BAR0  16 KiB  registers: global block, then one block per queue pair
//	BAR2   1 MiB  device memory for queue metadata (mmappable, optional use)
//	BAR4   4 KiB  MSI-X table (offset 0) and pending bit array (offset 2048)
const (
	// RegID reads "YCQD".
	RegIDValue      = 0x44514359
	RegVersionV1    = 1
	BAR0Size        = 16 << 10
	BAR2Size        = 1 << 20
	BAR4Size        = 4 << 10
	MSIXTableOff    = 0
	MSIXPBAOff      = 2048
	SizeofMSIXEntry = 16

	// MaxQueuePairs is the most queue pairs a device can have (and the
	// register blocks BAR0 holds).
	MaxQueuePairs = 64

	// MaxSlots is the most slots a queue of a pair can have (RegQSlots);
	// the fewest is ring.MinSlots, and the count is a power of two.
	MaxSlots = 1 << 16
)

// Global registers in BAR0.
const (
	RegID          = 0x00 // u32 RO RegIDValue
	RegVersion     = 0x04 // u32 RO register map version
	RegFeatures    = 0x08 // u32 RO Feature* bits
	RegMaxQueues   = 0x0C // u32 RO queue pairs this device has
	RegControl     = 0x10 // u32 RW Control* bits
	RegStatus      = 0x14 // u32 RO Status* bits
	RegErrorCode   = 0x18 // u32 RO first error since enable (Code*), 0 if none
	RegErrorQueue  = 0x1C // u32 RO queue pair of that error, or NoQueue
	RegErrorAddr   = 0x20 // u64 RO the address or value the error is about
	RegEngine      = 0x28 // u32 RW Engine*; takes effect at enable
	RegErrorVector = 0x2C // u32 RW MSI-X vector raised on an error
	RegNumQueues   = 0x30 // u32 RW queue pairs to run, 1 to RegMaxQueues; read at enable
	RegBAR2Size    = 0x34 // u32 RO bytes of BAR2 metadata memory
	RegRecordsIn   = 0x40 // u64 RO records consumed, all queue pairs
	RegRecordsOut  = 0x48 // u64 RO records produced, all queue pairs
	RegDoorbells   = 0x50 // u64 RO doorbell writes received
	RegInterrupts  = 0x58 // u64 RO interrupts raised
	RegDMAErrors   = 0x60 // u64 RO DMA faults
	RegWakeups     = 0x68 // u64 RO times a queue pair went to sleep and was woken

	// QueueBase is where queue pair 0's block starts; QueueStride apart.
	QueueBase   = 0x100
	QueueStride = 0x80
)

// Registers of one queue pair, relative to QueueBase + q*QueueStride. "H2D"
// is the host-to-device queue (the host produces, the device consumes);
// "D2H" the device-to-host queue (the device produces, the host consumes).
const (
	RegQH2DMeta  = 0x00 // u64 RW IOVA of the H2D metadata, or its BAR2 offset (QFlagMetaInBAR2)
	RegQH2DData  = 0x08 // u64 RW IOVA of the H2D data region
	RegQD2HMeta  = 0x10 // u64 RW IOVA or BAR2 offset of the D2H metadata
	RegQD2HData  = 0x18 // u64 RW IOVA of the D2H data region
	RegQSlots    = 0x20 // u32 RW slots in each queue (both the same)
	RegQSlotSize = 0x24 // u32 RW slot size of each queue
	RegQFlags    = 0x28 // u32 RW QFlag* bits
	RegQVector   = 0x2C // u32 RW MSI-X vector for this pair's events
	RegQDoorbell = 0x30 // u32 WO any value: the host published or released; read as 0
	RegQStatus   = 0x34 // u32 RO QStatus* bits
	RegQRecords  = 0x38 // u64 RO records this pair consumed
	// Resizing (FeatureResize; REGISTERS.md, "Resizing a queue pair").
	RegQResize     = 0x40 // u32 RW generation the host is about to name in both queues' link lines; writable while running, wakes the pair
	RegQResizeAck  = 0x44 // u32 RO the last RESIZE value the device took up: it now follows the link lines up to that generation
	RegQGeneration = 0x48 // u32 RO generation the device uses in both queues; 0 for queues that are not resizable
)

// RegFeatures bits.
const (
	FeatureMetaInBAR2 = 1 << 0 // queue metadata may live in BAR2
	FeatureMSIX       = 1 << 1 // interrupts are MSI-X, one vector a pair plus one for errors
	FeatureResize     = 1 << 2 // the device follows resizes of RESIZABLE queues (RegQResize)
)

// RegControl bits.
const (
	ControlEnable = 1 << 0 // 1: read the queue registers, check the queues, run
	ControlReset  = 1 << 1 // write 1: stop, clear every register, as DEVICE_RESET; reads 0
)

// RegStatus bits.
const (
	StatusEnabled = 1 << 0 // running; queue registers are read-only
	StatusError   = 1 << 1 // stopped on an error; RegErrorCode says which
)

// RegQFlags bits.
const (
	QFlagMetaInBAR2 = 1 << 0
)

// RegQStatus bits.
const (
	QStatusRunning  = 1 << 0
	QStatusError    = 1 << 1
	QStatusSleeping = 1 << 2 // waiting for a doorbell
)

// NoQueue is RegErrorQueue when an error is not about one queue pair.
const NoQueue = 0xFFFFFFFF

// Error codes in RegErrorCode.
const (
	CodeNone         = 0
	CodeBadConfig    = 1 // a register holds a value the device cannot run with
	CodeBadMetadata  = 2 // a queue's metadata header does not match its registers
	CodeDMAFault     = 3 // an access to host memory the host did not map
	CodeCorruptQueue = 4 // queue state no correct host writes, seen while running
	CodeBadRecord    = 5 // a record the engine cannot take (for example too long)
)

// Engines in RegEngine: what the device does with each record it consumes.
const (
	EngineEcho   = 1 // a response equal to the request
	EngineCRC32C = 2 // an 8-byte response: CRC-32C of the request, then its length
	EngineSink   = 3 // no response
	EngineSource = 4 // the request's first u32 (at least 1) asks for that many full-slot responses
)

// QueueReg returns the BAR0 offset of queue pair q's register reg (one of
// the RegQ* offsets).
func QueueReg(q int, reg uint64) uint64 { return QueueBase + uint64(q)*QueueStride + reg }
