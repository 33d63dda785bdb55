package usbproto

// Identity, endpoints, vendor requests and limits of USB.md (sections 1
// to 3), and the per-pair limits that follow from a record size.

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/ycq-dev/ycq/ycqdev"
)

var le = binary.LittleEndian

// Identity (USB.md section 1) and the one configuration and interface
// (section 2).
const (
	VendorID   = 0x1209 // idVendor: pid.codes
	ProductID  = 0x0001 // idProduct: pid.codes test PID
	BCDUSB     = 0x0200 // bcdUSB: USB 2.0, high speed
	BCDDevice  = 0x0100 // bcdDevice
	MaxPacket0 = 64     // bMaxPacketSize0
	BulkPacket = 512    // wMaxPacketSize of every bulk endpoint (high speed)

	Configuration = 1    // bConfigurationValue of the only configuration
	InterfaceNum  = 0    // bInterfaceNumber of the only interface
	AltSetting    = 0    // bAlternateSetting, the only one
	ClassVendor   = 0xFF // bInterfaceClass: vendor specific (SubClass and Protocol 0)

	LangEnglishUS = 0x0409 // string 0's only LANGID
	Manufacturer  = "ycq"  // string 1, iManufacturer
	Product       = "ycq usb far processor"
)

// Endpoint addresses (USB.md section 2): pair i has bulk OUT endpoint
// 0x01+i and bulk IN endpoint 0x81+i.
const (
	EndpointDirIn   = 0x80 // bEndpointAddress bit 7: IN, device to host
	endpointNumMask = 0x0F
	outEndpointBase = 0x01
	inEndpointBase  = EndpointDirIn | outEndpointBase
)

// OutEndpoint is pair's bulk OUT endpoint address.
func OutEndpoint(pair int) uint8 { return outEndpointBase + uint8(pair) }

// InEndpoint is pair's bulk IN endpoint address.
func InEndpoint(pair int) uint8 { return inEndpointBase + uint8(pair) }

// EndpointPair is the pair whose bulk endpoint (OUT or IN) ep is, if ep is
// one of a device of MaxPairs pairs; a caller checks the pair against the
// pairs its device has.
func EndpointPair(ep uint8) (int, bool) {
	n := int(ep & endpointNumMask)
	if ep&^(EndpointDirIn|endpointNumMask) != 0 || n < outEndpointBase || n >= outEndpointBase+MaxPairs {
		return 0, false
	}
	return n - outEndpointBase, true
}

// Vendor bRequest codes (USB.md section 3), all with recipient device.
const (
	ReqGetInfo     = 0x01 // IN: Info
	ReqSetQueue    = 0x02 // OUT, wIndex = pair: QueueSetup
	ReqReset       = 0x03 // OUT, no data
	ReqGetCounters = 0x04 // IN: Counters
	ReqGetQueue    = 0x05 // IN, wIndex = pair: QueueState
)

// bmRequestType of the vendor requests.
const (
	VendorOut = 0x40 // bit 7 0: host to device; bits 6..5 2: vendor; bits 4..0 0: device
	VendorIn  = 0xC0 // bit 7 1: device to host; vendor; device
)

// RequestName is a vendor bRequest's name in USB.md.
func RequestName(req uint8) string {
	switch req {
	case ReqGetInfo:
		return "GET_INFO"
	case ReqSetQueue:
		return "SET_QUEUE"
	case ReqReset:
		return "RESET"
	case ReqGetCounters:
		return "GET_COUNTERS"
	case ReqGetQueue:
		return "GET_QUEUE"
	}
	return fmt.Sprintf("vendor request %#02x", req)
}

// Limits of contract version 1 (GET_INFO reports the device's).
const (
	ProtocolVersion       = 1
	MaxPairs              = 8
	MinRecordSize         = 8
	MaxRecordSize         = 64 << 10
	RecordAlign           = 8 // a record size is a multiple of this (the ring's slot rule)
	MaxRecordsPerTransfer = 256
	MaxTransferBytes      = 256 << 10
	OutWindow             = 4       // OUT transfers a pair holds uncompleted before the device stops reading
	InWindow              = 64      // IN requests a pair holds
	MaxSourceResponses    = 1 << 20 // the most responses one source record asks for

	sizeofCRCResponse = 8 // crc32c's response: CRC-32C of the record (u32), then R (u32)

	ringBytes    = 512 << 10 // a device ring's data region, at most
	maxRingSlots = 1024
	minRingSlots = 8
)

// ResponseSize is S, the size of each response of engine for records of
// recordSize bytes (USB.md section 3): 8 for crc32c, 0 for sink (it never
// answers), the record size for echo and source. An engine the contract
// does not name (one a device model adds) answers full slots, as echo
// does.
func ResponseSize(engine uint32, recordSize int) int {
	switch engine {
	case ycqdev.EngineCRC32C:
		return sizeofCRCResponse
	case ycqdev.EngineSink:
		return 0
	}
	return recordSize
}

// Responses is how many responses a built-in engine sends for record rec:
// none for sink, one for echo and crc32c, and for source the record's
// first u32 (0, or a record shorter than 4 bytes, means 1; at most
// MaxSourceResponses).
func Responses(engine uint32, rec []byte) int {
	switch engine {
	case ycqdev.EngineSink:
		return 0
	case ycqdev.EngineSource:
		if len(rec) < 4 {
			return 1
		}
		return int(min(max(le.Uint32(rec), 1), MaxSourceResponses))
	}
	return 1
}

// RecordsPerTransfer is k_max, the most records one OUT transfer carries,
// for records of recordSize bytes (1 to MaxRecordSize).
func RecordsPerTransfer(recordSize int) int {
	return min(MaxRecordsPerTransfer, MaxTransferBytes/recordSize)
}

// RingSlots is the slot count of each of a pair's device rings for records
// of recordSize bytes (1 to MaxRecordSize): the largest power of two that
// fits 512 KiB of slots, within 8 to 1024.
func RingSlots(recordSize int) int {
	n := ringBytes / recordSize
	if n < 1 {
		return minRingSlots
	}
	p := 1 << (bits.Len(uint(n)) - 1) // largest power of two <= n
	return min(max(p, minRingSlots), maxRingSlots)
}

// ValidRecordSize reports whether SET_QUEUE may name recordSize: a
// multiple of RecordAlign from MinRecordSize to MaxRecordSize.
func ValidRecordSize(recordSize int) bool {
	return recordSize >= MinRecordSize && recordSize <= MaxRecordSize && recordSize%RecordAlign == 0
}
