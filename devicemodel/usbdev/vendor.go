package usbdev

// The vendor control requests of USB.md section 3 and the byte layout of
// each one's data. This file owns those layouts; vendor_test.go pins each
// against literal bytes. A host driver mirrors them from USB.md.

import (
	"fmt"
	"math/bits"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/ycqdev"
)

// Vendor bRequest codes, all with recipient device: bmRequestType
// VendorOut (0x40) or VendorIn (0xC0).
const (
	ReqGetInfo     = 0x01 // IN: Info
	ReqSetQueue    = 0x02 // OUT, wIndex = pair: QueueSetup
	ReqReset       = 0x03 // OUT, no data
	ReqGetCounters = 0x04 // IN: Counters
	ReqGetQueue    = 0x05 // IN, wIndex = pair: QueueState

	VendorOut = reqTypeVendor | reqRecipDevice            // 0x40
	VendorIn  = reqDirIn | reqTypeVendor | reqRecipDevice // 0xC0
)

// Limits (GET_INFO reports them).
const (
	ProtocolVersion       = 1
	DefaultPairs          = 2
	MaxPairs              = 8
	MinRecordSize         = 8
	MaxRecordSize         = 64 << 10
	RecordAlign           = 8 // a record size is a multiple of this (the ring's slot rule)
	MaxRecordsPerTransfer = 256
	MaxTransferBytes      = 256 << 10
	OutWindow             = 4  // OUT transfers a pair holds uncompleted before the device stops reading
	InWindow              = 64 // IN requests a pair holds

	ringBytes    = 512 << 10 // a device ring's data region, at most
	maxRingSlots = 1024
	minRingSlots = 8
)

// GET_INFO's answer.
const (
	offInfoVersion       = 0  // u16 version
	offInfoPairs         = 2  // u8 pairs
	offInfoReserved      = 3  // u8 reserved, 0
	offInfoMaxRecord     = 4  // u32 max_record_size
	offInfoMaxRecords    = 8  // u32 max_records_per_transfer
	offInfoMaxTransfer   = 12 // u32 max_transfer_bytes
	offInfoOutWindow     = 16 // u16 out_window
	offInfoInWindow      = 18 // u16 in_window
	offInfoEngines       = 20 // u32 engines: bit e = engine id e
	SizeofInfo           = 24
	offSetupEngine       = 0 // u32 engine
	offSetupRecordSize   = 4 // u32 record_size
	SizeofQueueSetup     = 8
	offQueueEngine       = 0  // u32 engine, 0 if stopped
	offQueueRecordSize   = 4  // u32 record_size
	offQueueResponseSize = 8  // u32 response_size
	offQueuePerTransfer  = 12 // u32 records_per_transfer
	offQueueRingSlots    = 16 // u16 ring_slots
	offQueueState        = 18 // u16 state (Queue* bits)
	offQueueReserved     = 20 // u32 reserved, 0
	SizeofQueueState     = 24
	offCtrResets         = 0  // u32 resets
	offCtrBadControl     = 4  // u32 bad_control
	offCtrBadPackets     = 8  // u32 bad_packets
	offCtrPairs          = 12 // u8 pairs
	offCtrReserved       = 13 // 3 bytes reserved, 0
	SizeofCountersHeader = 16
	offPairRequests      = 0  // u64 requests
	offPairResponses     = 8  // u64 responses
	offPairOutBytes      = 16 // u64 out_bytes
	offPairInBytes       = 24 // u64 in_bytes
	offPairBadTransfers  = 32 // u64 bad_transfers
	SizeofPairCounters   = 40
)

// QueueState.State bits.
const (
	QueueRunning   = 1 << 0
	QueueOutHalted = 1 << 1
	QueueInHalted  = 1 << 2
	QueueFailed    = 1 << 3
)

// Info is GET_INFO's answer.
type Info struct {
	Version               uint16
	Pairs                 uint8
	MaxRecordSize         uint32
	MaxRecordsPerTransfer uint32
	MaxTransferBytes      uint32
	OutWindow, InWindow   uint16
	Engines               uint32 // bit e set: engine id e is supported
}

// Encode appends the info's SizeofInfo bytes to b.
func (in Info) Encode(b []byte) []byte {
	var p [SizeofInfo]byte
	le.PutUint16(p[offInfoVersion:], in.Version)
	p[offInfoPairs] = in.Pairs
	p[offInfoReserved] = 0
	le.PutUint32(p[offInfoMaxRecord:], in.MaxRecordSize)
	le.PutUint32(p[offInfoMaxRecords:], in.MaxRecordsPerTransfer)
	le.PutUint32(p[offInfoMaxTransfer:], in.MaxTransferBytes)
	le.PutUint16(p[offInfoOutWindow:], in.OutWindow)
	le.PutUint16(p[offInfoInWindow:], in.InWindow)
	le.PutUint32(p[offInfoEngines:], in.Engines)
	return append(b, p[:]...)
}

// DecodeInfo decodes GET_INFO's answer.
func DecodeInfo(p []byte) (Info, error) {
	if len(p) != SizeofInfo {
		return Info{}, fmt.Errorf("%w: GET_INFO: %d bytes, want %d", ErrLayout, len(p), SizeofInfo)
	}
	return Info{
		Version:               le.Uint16(p[offInfoVersion:]),
		Pairs:                 p[offInfoPairs],
		MaxRecordSize:         le.Uint32(p[offInfoMaxRecord:]),
		MaxRecordsPerTransfer: le.Uint32(p[offInfoMaxRecords:]),
		MaxTransferBytes:      le.Uint32(p[offInfoMaxTransfer:]),
		OutWindow:             le.Uint16(p[offInfoOutWindow:]),
		InWindow:              le.Uint16(p[offInfoInWindow:]),
		Engines:               le.Uint32(p[offInfoEngines:]),
	}, nil
}

// QueueSetup is SET_QUEUE's data.
type QueueSetup struct {
	Engine     uint32 // a ycqdev.Engine* id
	RecordSize uint32
}

// Encode appends the setup's SizeofQueueSetup bytes to b.
func (s QueueSetup) Encode(b []byte) []byte {
	var p [SizeofQueueSetup]byte
	le.PutUint32(p[offSetupEngine:], s.Engine)
	le.PutUint32(p[offSetupRecordSize:], s.RecordSize)
	return append(b, p[:]...)
}

// DecodeQueueSetup decodes SET_QUEUE's data (which a host sent: hostile).
func DecodeQueueSetup(p []byte) (QueueSetup, error) {
	if len(p) != SizeofQueueSetup {
		return QueueSetup{}, fmt.Errorf("%w: SET_QUEUE: %d bytes, want %d", ErrLayout, len(p), SizeofQueueSetup)
	}
	return QueueSetup{Engine: le.Uint32(p[offSetupEngine:]), RecordSize: le.Uint32(p[offSetupRecordSize:])}, nil
}

// QueueState is GET_QUEUE's answer.
type QueueState struct {
	Engine             uint32
	RecordSize         uint32
	ResponseSize       uint32
	RecordsPerTransfer uint32
	RingSlots          uint16
	State              uint16 // Queue* bits
}

// Encode appends the state's SizeofQueueState bytes to b.
func (s QueueState) Encode(b []byte) []byte {
	var p [SizeofQueueState]byte
	le.PutUint32(p[offQueueEngine:], s.Engine)
	le.PutUint32(p[offQueueRecordSize:], s.RecordSize)
	le.PutUint32(p[offQueueResponseSize:], s.ResponseSize)
	le.PutUint32(p[offQueuePerTransfer:], s.RecordsPerTransfer)
	le.PutUint16(p[offQueueRingSlots:], s.RingSlots)
	le.PutUint16(p[offQueueState:], s.State)
	le.PutUint32(p[offQueueReserved:], 0)
	return append(b, p[:]...)
}

// DecodeQueueState decodes GET_QUEUE's answer.
func DecodeQueueState(p []byte) (QueueState, error) {
	if len(p) != SizeofQueueState {
		return QueueState{}, fmt.Errorf("%w: GET_QUEUE: %d bytes, want %d", ErrLayout, len(p), SizeofQueueState)
	}
	return QueueState{
		Engine:             le.Uint32(p[offQueueEngine:]),
		RecordSize:         le.Uint32(p[offQueueRecordSize:]),
		ResponseSize:       le.Uint32(p[offQueueResponseSize:]),
		RecordsPerTransfer: le.Uint32(p[offQueuePerTransfer:]),
		RingSlots:          le.Uint16(p[offQueueRingSlots:]),
		State:              le.Uint16(p[offQueueState:]),
	}, nil
}

// PairCounters are one pair's counters in GET_COUNTERS.
type PairCounters struct {
	Requests, Responses, OutBytes, InBytes, BadTransfers uint64
}

// Counters is GET_COUNTERS's answer.
type Counters struct {
	Resets, BadControl, BadPackets uint32
	Pairs                          []PairCounters
}

// Encode appends the counters (SizeofCountersHeader + SizeofPairCounters
// a pair) to b.
func (c Counters) Encode(b []byte) []byte {
	var h [SizeofCountersHeader]byte
	le.PutUint32(h[offCtrResets:], c.Resets)
	le.PutUint32(h[offCtrBadControl:], c.BadControl)
	le.PutUint32(h[offCtrBadPackets:], c.BadPackets)
	h[offCtrPairs] = uint8(len(c.Pairs))
	clear(h[offCtrReserved:SizeofCountersHeader])
	b = append(b, h[:]...)
	for _, pc := range c.Pairs {
		var p [SizeofPairCounters]byte
		le.PutUint64(p[offPairRequests:], pc.Requests)
		le.PutUint64(p[offPairResponses:], pc.Responses)
		le.PutUint64(p[offPairOutBytes:], pc.OutBytes)
		le.PutUint64(p[offPairInBytes:], pc.InBytes)
		le.PutUint64(p[offPairBadTransfers:], pc.BadTransfers)
		b = append(b, p[:]...)
	}
	return b
}

// DecodeCounters decodes GET_COUNTERS's answer.
func DecodeCounters(p []byte) (Counters, error) {
	if len(p) < SizeofCountersHeader {
		return Counters{}, fmt.Errorf("%w: GET_COUNTERS: %d bytes, want at least %d", ErrLayout, len(p), SizeofCountersHeader)
	}
	n := int(p[offCtrPairs])
	if n > MaxPairs || len(p) != SizeofCountersHeader+n*SizeofPairCounters {
		return Counters{}, fmt.Errorf("%w: GET_COUNTERS: %d bytes for %d pairs", ErrLayout, len(p), n)
	}
	c := Counters{
		Resets:     le.Uint32(p[offCtrResets:]),
		BadControl: le.Uint32(p[offCtrBadControl:]),
		BadPackets: le.Uint32(p[offCtrBadPackets:]),
		Pairs:      make([]PairCounters, n),
	}
	for i := range c.Pairs {
		q := p[SizeofCountersHeader+i*SizeofPairCounters:][:SizeofPairCounters]
		c.Pairs[i] = PairCounters{
			Requests:     le.Uint64(q[offPairRequests:]),
			Responses:    le.Uint64(q[offPairResponses:]),
			OutBytes:     le.Uint64(q[offPairOutBytes:]),
			InBytes:      le.Uint64(q[offPairInBytes:]),
			BadTransfers: le.Uint64(q[offPairBadTransfers:]),
		}
	}
	return c, nil
}

// ResponseSize is the size of each response of engine for records of
// recordSize bytes (USB.md section 3). An engine the contract does not
// name (one given in Options.Engines) answers full slots, as echo does.
func ResponseSize(engine uint32, recordSize int) int {
	switch engine {
	case ycqdev.EngineCRC32C:
		return devicemodel.CRCResponseSize
	case ycqdev.EngineSink:
		return 0
	}
	return recordSize
}

// RecordsPerTransfer is k_max for records of recordSize bytes.
func RecordsPerTransfer(recordSize int) int {
	return min(MaxRecordsPerTransfer, MaxTransferBytes/recordSize)
}

// RingSlots is the slot count of a pair's device rings for records of
// recordSize bytes.
func RingSlots(recordSize int) int {
	n := ringBytes / recordSize
	if n < 1 {
		return minRingSlots
	}
	p := 1 << (bits.Len(uint(n)) - 1) // largest power of two <= n
	return min(max(p, minRingSlots), maxRingSlots)
}

// checkRecordSize reports why recordSize is not a valid record size.
func checkRecordSize(recordSize uint32) error {
	if recordSize < MinRecordSize || recordSize > MaxRecordSize || recordSize%RecordAlign != 0 {
		return fmt.Errorf("%w: record size %d: want a multiple of %d in [%d, %d]", ErrRequest, recordSize, RecordAlign, MinRecordSize, MaxRecordSize)
	}
	return nil
}
