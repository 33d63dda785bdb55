package usbproto

// The byte layout of each vendor request's data (USB.md section 3). This
// file owns them; layout_test.go pins each against literal bytes.

// GET_INFO's answer.
const (
	offInfoVersion     = 0  // u16 version
	offInfoPairs       = 2  // u8 pairs
	offInfoReserved    = 3  // u8 reserved, 0
	offInfoMaxRecord   = 4  // u32 max_record_size
	offInfoMaxRecords  = 8  // u32 max_records_per_transfer
	offInfoMaxTransfer = 12 // u32 max_transfer_bytes
	offInfoOutWindow   = 16 // u16 out_window
	offInfoInWindow    = 18 // u16 in_window
	offInfoEngines     = 20 // u32 engines: bit e = engine id e
	SizeofInfo         = 24
)

// SET_QUEUE's data.
const (
	offSetupEngine     = 0 // u32 engine
	offSetupRecordSize = 4 // u32 record_size
	SizeofQueueSetup   = 8
)

// GET_QUEUE's answer.
const (
	offQueueEngine       = 0  // u32 engine, 0 if stopped
	offQueueRecordSize   = 4  // u32 record_size
	offQueueResponseSize = 8  // u32 response_size
	offQueuePerTransfer  = 12 // u32 records_per_transfer
	offQueueRingSlots    = 16 // u16 ring_slots
	offQueueState        = 18 // u16 state (Queue* bits)
	offQueueReserved     = 20 // u32 reserved, 0
	SizeofQueueState     = 24
)

// GET_COUNTERS' answer: a header, then one block per pair.
const (
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

// SizeofCounters is GET_COUNTERS' answer for a device of pairs pairs.
func SizeofCounters(pairs int) int { return SizeofCountersHeader + pairs*SizeofPairCounters }

// QueueState.State bits.
const (
	QueueRunning   = 1 << 0
	QueueOutHalted = 1 << 1
	QueueInHalted  = 1 << 2
	QueueFailed    = 1 << 3 // an engine error stopped the pair; RESET clears it
)

// Info is GET_INFO's answer: what the device can do.
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

// DecodeInfo decodes GET_INFO's answer: exactly SizeofInfo bytes, the
// reserved byte 0.
func DecodeInfo(p []byte) (Info, error) {
	if len(p) != SizeofInfo {
		return Info{}, layoutErr(ReqGetInfo, p, "want %d bytes", SizeofInfo)
	}
	if err := zero(ReqGetInfo, p, offInfoReserved, offInfoReserved+1); err != nil {
		return Info{}, err
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

// DecodeQueueSetup decodes SET_QUEUE's data: exactly SizeofQueueSetup
// bytes.
func DecodeQueueSetup(p []byte) (QueueSetup, error) {
	if len(p) != SizeofQueueSetup {
		return QueueSetup{}, layoutErr(ReqSetQueue, p, "want %d bytes", SizeofQueueSetup)
	}
	return QueueSetup{Engine: le.Uint32(p[offSetupEngine:]), RecordSize: le.Uint32(p[offSetupRecordSize:])}, nil
}

// QueueState is GET_QUEUE's answer for one pair; all zero but State's
// halt bits while the pair is stopped.
type QueueState struct {
	Engine             uint32
	RecordSize         uint32
	ResponseSize       uint32
	RecordsPerTransfer uint32
	RingSlots          uint16
	State              uint16 // Queue* bits
}

// Running reports whether the pair runs (State's QueueRunning bit).
func (s QueueState) Running() bool { return s.State&QueueRunning != 0 }

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

// DecodeQueueState decodes GET_QUEUE's answer: exactly SizeofQueueState
// bytes, the reserved field 0.
func DecodeQueueState(p []byte) (QueueState, error) {
	if len(p) != SizeofQueueState {
		return QueueState{}, layoutErr(ReqGetQueue, p, "want %d bytes", SizeofQueueState)
	}
	if err := zero(ReqGetQueue, p, offQueueReserved, SizeofQueueState); err != nil {
		return QueueState{}, err
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

// PairCounters are one pair's counters in GET_COUNTERS, zeroed by RESET.
type PairCounters struct {
	Requests     uint64 // records accepted from OUT transfers
	Responses    uint64 // responses sent in IN completions
	OutBytes     uint64 // bytes of OUT transfers accepted
	InBytes      uint64 // bytes sent in IN completions
	BadTransfers uint64 // transfers refused
}

// Counters is GET_COUNTERS' answer.
type Counters struct {
	Resets     uint32 // RESETs and bus resets since the device was made
	BadControl uint32 // control requests answered with STALL
	BadPackets uint32 // usbredir packets refused
	Pairs      []PairCounters
}

// Encode appends the counters' SizeofCounters(len(c.Pairs)) bytes to b;
// c has at most MaxPairs pairs.
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

// DecodeCounters decodes GET_COUNTERS' answer: a header naming at most
// MaxPairs pairs, its reserved bytes 0, and exactly that many pair blocks.
func DecodeCounters(p []byte) (Counters, error) {
	if len(p) < SizeofCountersHeader {
		return Counters{}, layoutErr(ReqGetCounters, p, "want at least the %d-byte header", SizeofCountersHeader)
	}
	n := int(p[offCtrPairs])
	switch {
	case n > MaxPairs:
		return Counters{}, layoutErr(ReqGetCounters, p, "the header names %d pairs, at most %d", n, MaxPairs)
	case len(p) != SizeofCounters(n):
		return Counters{}, layoutErr(ReqGetCounters, p, "want %d bytes for %d pairs", SizeofCounters(n), n)
	}
	if err := zero(ReqGetCounters, p, offCtrReserved, SizeofCountersHeader); err != nil {
		return Counters{}, err
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

// zero refuses p unless its bytes [from, to), a reserved field, are 0.
func zero(req uint8, p []byte, from, to int) error {
	for i, v := range p[from:to] {
		if v != 0 {
			return layoutErr(req, p, "reserved byte %d is %#02x, want 0", from+i, v)
		}
	}
	return nil
}
