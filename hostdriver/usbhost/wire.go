package usbhost

// The device's side of the wire, from devicemodel/usbdev/USB.md (contract
// version 1): identity, endpoints, the vendor control requests and the
// byte layout of each one's data. This file owns those layouts on the host
// side (hostdriver may not import devicemodel); wire_test.go pins each
// against literal bytes. Every multi-byte field is little-endian.

import (
	"encoding/binary"
	"fmt"

	"github.com/ycq-dev/ycq/ycqdev"
)

var le = binary.LittleEndian

// Identity (USB.md section 1).
const (
	DefaultVendor  = 0x1209 // pid.codes
	DefaultProduct = 0x0001 // pid.codes test PID
	configValue    = 1      // the only configuration
	interfaceNum   = 0      // the only interface, alternate setting 0
)

// Endpoint addresses of pair i (section 2).
func outEndpoint(pair int) uint8 { return 0x01 + uint8(pair) }
func inEndpoint(pair int) uint8  { return 0x81 + uint8(pair) }

// Vendor requests (section 3), all with recipient device.
const (
	reqGetInfo     = 0x01 // IN: info
	reqSetQueue    = 0x02 // OUT, wIndex = pair: queue setup
	reqReset       = 0x03 // OUT, no data
	reqGetCounters = 0x04 // IN: counters
	reqGetQueue    = 0x05 // IN, wIndex = pair: queue state

	vendorOut = 0x40 // bmRequestType: vendor, host to device, device
	vendorIn  = 0xC0 // bmRequestType: vendor, device to host, device
)

// Limits of contract version 1.
const (
	protocolVersion = 1
	maxPairs        = 8
	minRecordSize   = 8
	recordAlign     = 8
)

// GET_INFO's answer.
const (
	offInfoVersion     = 0  // u16 version
	offInfoPairs       = 2  // u8 pairs
	offInfoMaxRecord   = 4  // u32 max_record_size
	offInfoMaxRecords  = 8  // u32 max_records_per_transfer
	offInfoMaxTransfer = 12 // u32 max_transfer_bytes
	offInfoOutWindow   = 16 // u16 out_window
	offInfoInWindow    = 18 // u16 in_window
	offInfoEngines     = 20 // u32 engines: bit e = engine id e
	sizeofInfo         = 24
)

// SET_QUEUE's data.
const (
	offSetupEngine     = 0 // u32 engine
	offSetupRecordSize = 4 // u32 record_size
	sizeofQueueSetup   = 8
)

// GET_QUEUE's answer.
const (
	offQueueEngine       = 0  // u32 engine, 0 if stopped
	offQueueRecordSize   = 4  // u32 record_size
	offQueueResponseSize = 8  // u32 response_size
	offQueuePerTransfer  = 12 // u32 records_per_transfer
	offQueueRingSlots    = 16 // u16 ring_slots
	offQueueState        = 18 // u16 state
	sizeofQueueState     = 24

	queueRunning   = 1 << 0
	queueOutHalted = 1 << 1
	queueInHalted  = 1 << 2
	queueFailed    = 1 << 3
)

// GET_COUNTERS' answer: a header, then one block per pair.
const (
	offCtrResets         = 0  // u32 resets
	offCtrBadControl     = 4  // u32 bad_control
	offCtrBadPackets     = 8  // u32 bad_packets
	offCtrPairs          = 12 // u8 pairs
	sizeofCountersHeader = 16
	offPairRequests      = 0  // u64 requests
	offPairResponses     = 8  // u64 responses
	offPairOutBytes      = 16 // u64 out_bytes
	offPairInBytes       = 24 // u64 in_bytes
	offPairBadTransfers  = 32 // u64 bad_transfers
	sizeofPairCounters   = 40
)

// Info is the device's GET_INFO answer: what it can do.
type Info struct {
	Version               uint16
	Pairs                 int
	MaxRecordSize         int
	MaxRecordsPerTransfer int
	MaxTransferBytes      int
	OutWindow, InWindow   int
	Engines               uint32 // bit e set: engine id e is supported
}

// decodeInfo decodes and checks GET_INFO's answer; a device that claims
// limits outside the contract's is refused rather than trusted.
func decodeInfo(p []byte) (Info, error) {
	if len(p) != sizeofInfo {
		return Info{}, fmt.Errorf("%w: GET_INFO: %d bytes, want %d", ErrProtocol, len(p), sizeofInfo)
	}
	in := Info{
		Version:               le.Uint16(p[offInfoVersion:]),
		Pairs:                 int(p[offInfoPairs]),
		MaxRecordSize:         int(le.Uint32(p[offInfoMaxRecord:])),
		MaxRecordsPerTransfer: int(le.Uint32(p[offInfoMaxRecords:])),
		MaxTransferBytes:      int(le.Uint32(p[offInfoMaxTransfer:])),
		OutWindow:             int(le.Uint16(p[offInfoOutWindow:])),
		InWindow:              int(le.Uint16(p[offInfoInWindow:])),
		Engines:               le.Uint32(p[offInfoEngines:]),
	}
	switch {
	case in.Version != protocolVersion:
		return in, fmt.Errorf("%w: GET_INFO: version %d, want %d", ErrProtocol, in.Version, protocolVersion)
	case in.Pairs < 1 || in.Pairs > maxPairs:
		return in, fmt.Errorf("%w: GET_INFO: %d pairs, want 1 to %d", ErrProtocol, in.Pairs, maxPairs)
	case in.MaxRecordSize < minRecordSize || in.MaxRecordSize > 1<<24:
		return in, fmt.Errorf("%w: GET_INFO: max_record_size %d", ErrProtocol, in.MaxRecordSize)
	case in.MaxRecordsPerTransfer < 1 || in.MaxRecordsPerTransfer > 1<<16:
		return in, fmt.Errorf("%w: GET_INFO: max_records_per_transfer %d", ErrProtocol, in.MaxRecordsPerTransfer)
	case in.MaxTransferBytes < minRecordSize || in.MaxTransferBytes > 1<<26:
		return in, fmt.Errorf("%w: GET_INFO: max_transfer_bytes %d", ErrProtocol, in.MaxTransferBytes)
	case in.OutWindow < 1 || in.InWindow < 1:
		return in, fmt.Errorf("%w: GET_INFO: windows %d OUT, %d IN", ErrProtocol, in.OutWindow, in.InWindow)
	}
	return in, nil
}

// encodeQueueSetup is SET_QUEUE's data.
func encodeQueueSetup(engine uint32, recordSize int) []byte {
	p := make([]byte, sizeofQueueSetup)
	le.PutUint32(p[offSetupEngine:], engine)
	le.PutUint32(p[offSetupRecordSize:], uint32(recordSize))
	return p
}

// QueueState is the device's GET_QUEUE answer for one pair.
type QueueState struct {
	Engine             uint32
	RecordSize         int
	ResponseSize       int
	RecordsPerTransfer int
	RingSlots          int
	State              uint16 // running 1, OUT halted 2, IN halted 4, failed 8
}

// Running reports whether the pair runs.
func (q QueueState) Running() bool { return q.State&queueRunning != 0 }

func decodeQueueState(p []byte) (QueueState, error) {
	if len(p) != sizeofQueueState {
		return QueueState{}, fmt.Errorf("%w: GET_QUEUE: %d bytes, want %d", ErrProtocol, len(p), sizeofQueueState)
	}
	return QueueState{
		Engine:             le.Uint32(p[offQueueEngine:]),
		RecordSize:         int(le.Uint32(p[offQueueRecordSize:])),
		ResponseSize:       int(le.Uint32(p[offQueueResponseSize:])),
		RecordsPerTransfer: int(le.Uint32(p[offQueuePerTransfer:])),
		RingSlots:          int(le.Uint16(p[offQueueRingSlots:])),
		State:              le.Uint16(p[offQueueState:]),
	}, nil
}

// Counters is the device's GET_COUNTERS answer.
type Counters struct {
	Resets, BadControl, BadPackets uint32
	Pairs                          []PairCounters
}

// PairCounters are one pair's device-side counters, zeroed by RESET.
type PairCounters struct {
	Requests, Responses, OutBytes, InBytes, BadTransfers uint64
}

func countersSize(pairs int) int { return sizeofCountersHeader + sizeofPairCounters*pairs }

func decodeCounters(p []byte) (Counters, error) {
	if len(p) < sizeofCountersHeader {
		return Counters{}, fmt.Errorf("%w: GET_COUNTERS: %d bytes, want at least %d", ErrProtocol, len(p), sizeofCountersHeader)
	}
	c := Counters{
		Resets:     le.Uint32(p[offCtrResets:]),
		BadControl: le.Uint32(p[offCtrBadControl:]),
		BadPackets: le.Uint32(p[offCtrBadPackets:]),
	}
	n := int(p[offCtrPairs])
	if n > maxPairs || len(p) != countersSize(n) {
		return c, fmt.Errorf("%w: GET_COUNTERS: %d bytes for %d pairs, want %d", ErrProtocol, len(p), n, countersSize(min(n, maxPairs)))
	}
	for i := range n {
		b := p[sizeofCountersHeader+sizeofPairCounters*i:][:sizeofPairCounters]
		c.Pairs = append(c.Pairs, PairCounters{
			Requests:     le.Uint64(b[offPairRequests:]),
			Responses:    le.Uint64(b[offPairResponses:]),
			OutBytes:     le.Uint64(b[offPairOutBytes:]),
			InBytes:      le.Uint64(b[offPairInBytes:]),
			BadTransfers: le.Uint64(b[offPairBadTransfers:]),
		})
	}
	return c, nil
}

// responseSize is S for engine and record size R (USB.md section 3,
// SET_QUEUE): 0 for an engine that never answers.
func responseSize(engine uint32, r int) int {
	switch engine {
	case engineCRC32C:
		return 8
	case engineSink:
		return 0
	default:
		return r
	}
}

// Engines, as ycqdev numbers them.
const (
	engineEcho   = ycqdev.EngineEcho
	engineCRC32C = ycqdev.EngineCRC32C
	engineSink   = ycqdev.EngineSink
	engineSource = ycqdev.EngineSource

	maxSourceResponses = 1 << 20
)

// answers is how many responses the device sends for record rec under
// engine: one for echo and crc32c, none for sink, and for source the
// record's first u32 (0 means 1, at most 2^20).
func answers(engine uint32, rec []byte) int {
	switch engine {
	case engineSink:
		return 0
	case engineSource:
		if len(rec) < 4 {
			return 1
		}
		n := int(le.Uint32(rec))
		return min(max(n, 1), maxSourceResponses)
	default:
		return 1
	}
}
