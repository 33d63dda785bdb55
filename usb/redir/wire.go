package redir

// The wire_*.go files own the usbredir binary layouts: the packet header
// (wire_header.go), the control packets (wire_control.go) and the data
// packets (wire_data.go). This file holds what they share: the packet
// types, status, speed and endpoint type codes, capabilities, the
// negotiated Layout, and the table of body sizes per type.
//
// Sources: the protocol description (docs/usb-redirection-protocol.md,
// version 0.7) and the packed structs of usbredirparser/usbredirproto.h
// and usbredirproto-compat.h in the freedesktop spice/usbredir
// repository; the checks usbredirparser.c applies when it reads a packet;
// and the capabilities QEMU's hw/usb/redirect.c advertises. Protocol names
// are kept in comments and error fields; Go names are used in code.
//
// All integers are little-endian and all structs packed (the protocol says
// so; it does not depend on the host).

import (
	"encoding/binary"
	"slices"
	"strconv"
)

var le = binary.LittleEndian

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// Limits. usbredirparser refuses bulk lengths and bytes_per_transfer above
// MaxBulkTransferSize, and packets longer than MaxLength.
const (
	MaxBulkTransferSize = 128 << 20
	MaxLength           = 1024 + MaxBulkTransferSize
	// DefaultMaxLength is the Reader's limit on usb_redir_header.length
	// unless NewReader is given another: the same as usbredirparser's.
	DefaultMaxLength = MaxLength
)

// Type is usb_redir_header.type.
type Type uint32

// Control packets.
const (
	TypeHello                    Type = 0  // usb_redir_hello
	TypeDeviceConnect            Type = 1  // usb_redir_device_connect
	TypeDeviceDisconnect         Type = 2  // usb_redir_device_disconnect
	TypeReset                    Type = 3  // usb_redir_reset
	TypeInterfaceInfo            Type = 4  // usb_redir_interface_info
	TypeEPInfo                   Type = 5  // usb_redir_ep_info
	TypeSetConfiguration         Type = 6  // usb_redir_set_configuration
	TypeGetConfiguration         Type = 7  // usb_redir_get_configuration
	TypeConfigurationStatus      Type = 8  // usb_redir_configuration_status
	TypeSetAltSetting            Type = 9  // usb_redir_set_alt_setting
	TypeGetAltSetting            Type = 10 // usb_redir_get_alt_setting
	TypeAltSettingStatus         Type = 11 // usb_redir_alt_setting_status
	TypeStartISOStream           Type = 12 // usb_redir_start_iso_stream
	TypeStopISOStream            Type = 13 // usb_redir_stop_iso_stream
	TypeISOStreamStatus          Type = 14 // usb_redir_iso_stream_status
	TypeStartInterruptReceiving  Type = 15 // usb_redir_start_interrupt_receiving
	TypeStopInterruptReceiving   Type = 16 // usb_redir_stop_interrupt_receiving
	TypeInterruptReceivingStatus Type = 17 // usb_redir_interrupt_receiving_status
	TypeAllocBulkStreams         Type = 18 // usb_redir_alloc_bulk_streams
	TypeFreeBulkStreams          Type = 19 // usb_redir_free_bulk_streams
	TypeBulkStreamsStatus        Type = 20 // usb_redir_bulk_streams_status
	TypeCancelDataPacket         Type = 21 // usb_redir_cancel_data_packet
	TypeFilterReject             Type = 22 // usb_redir_filter_reject
	TypeFilterFilter             Type = 23 // usb_redir_filter_filter
	TypeDeviceDisconnectAck      Type = 24 // usb_redir_device_disconnect_ack
	TypeStartBulkReceiving       Type = 25 // usb_redir_start_bulk_receiving
	TypeStopBulkReceiving        Type = 26 // usb_redir_stop_bulk_receiving
	TypeBulkReceivingStatus      Type = 27 // usb_redir_bulk_receiving_status
	numControlTypes                   = 28
)

// Data packets.
const (
	TypeControlPacket      Type = 100 // usb_redir_control_packet
	TypeBulkPacket         Type = 101 // usb_redir_bulk_packet
	TypeISOPacket          Type = 102 // usb_redir_iso_packet
	TypeInterruptPacket    Type = 103 // usb_redir_interrupt_packet
	TypeBufferedBulkPacket Type = 104 // usb_redir_buffered_bulk_packet
)

// typeInfo is what the framing knows about a type before decoding it.
type typeInfo struct {
	name string
	// from is the role that may send it: 0 means either.
	from Role
	// size returns the fixed part (the type specific header) in layout l.
	size func(l Layout) int
	// data: bytes may follow the fixed part (the capability array of a
	// hello, the filter string, the data of a data packet).
	data bool
}

func fixed(n int) func(Layout) int { return func(Layout) int { return n } }

var controlTypes = [numControlTypes]typeInfo{
	TypeHello:                    {"hello", 0, fixed(sizeofHello), true},
	TypeDeviceConnect:            {"device_connect", RoleHost, sizeofDeviceConnectIn, false},
	TypeDeviceDisconnect:         {"device_disconnect", RoleHost, fixed(0), false},
	TypeReset:                    {"reset", RoleGuest, fixed(0), false},
	TypeInterfaceInfo:            {"interface_info", RoleHost, fixed(sizeofInterfaceInfo), false},
	TypeEPInfo:                   {"ep_info", RoleHost, sizeofEPInfoIn, false},
	TypeSetConfiguration:         {"set_configuration", RoleGuest, fixed(sizeofSetConfiguration), false},
	TypeGetConfiguration:         {"get_configuration", RoleGuest, fixed(0), false},
	TypeConfigurationStatus:      {"configuration_status", RoleHost, fixed(sizeofConfigurationStatus), false},
	TypeSetAltSetting:            {"set_alt_setting", RoleGuest, fixed(sizeofSetAltSetting), false},
	TypeGetAltSetting:            {"get_alt_setting", RoleGuest, fixed(sizeofGetAltSetting), false},
	TypeAltSettingStatus:         {"alt_setting_status", RoleHost, fixed(sizeofAltSettingStatus), false},
	TypeStartISOStream:           {"start_iso_stream", RoleGuest, fixed(sizeofStartISOStream), false},
	TypeStopISOStream:            {"stop_iso_stream", RoleGuest, fixed(sizeofEndpointOnly), false},
	TypeISOStreamStatus:          {"iso_stream_status", RoleHost, fixed(sizeofEndpointStatus), false},
	TypeStartInterruptReceiving:  {"start_interrupt_receiving", RoleGuest, fixed(sizeofEndpointOnly), false},
	TypeStopInterruptReceiving:   {"stop_interrupt_receiving", RoleGuest, fixed(sizeofEndpointOnly), false},
	TypeInterruptReceivingStatus: {"interrupt_receiving_status", RoleHost, fixed(sizeofEndpointStatus), false},
	TypeAllocBulkStreams:         {"alloc_bulk_streams", RoleGuest, fixed(sizeofAllocBulkStreams), false},
	TypeFreeBulkStreams:          {"free_bulk_streams", RoleGuest, fixed(sizeofFreeBulkStreams), false},
	TypeBulkStreamsStatus:        {"bulk_streams_status", RoleHost, fixed(sizeofBulkStreamsStatus), false},
	TypeCancelDataPacket:         {"cancel_data_packet", RoleGuest, fixed(0), false},
	TypeFilterReject:             {"filter_reject", RoleGuest, fixed(0), false},
	TypeFilterFilter:             {"filter_filter", 0, fixed(0), true},
	TypeDeviceDisconnectAck:      {"device_disconnect_ack", RoleGuest, fixed(0), false},
	TypeStartBulkReceiving:       {"start_bulk_receiving", RoleGuest, fixed(sizeofStartBulkReceiving), false},
	TypeStopBulkReceiving:        {"stop_bulk_receiving", RoleGuest, fixed(sizeofStopBulkReceiving), false},
	TypeBulkReceivingStatus:      {"bulk_receiving_status", RoleHost, fixed(sizeofBulkReceivingStatus), false},
}

// dataTypes is indexed by type - TypeControlPacket.
var dataTypes = [...]typeInfo{
	{"control_packet", 0, fixed(sizeofControlPacket), true},                   // TypeControlPacket
	{"bulk_packet", 0, sizeofBulkPacketIn, true},                              // TypeBulkPacket
	{"iso_packet", 0, fixed(sizeofISOPacket), true},                           // TypeISOPacket
	{"interrupt_packet", 0, fixed(sizeofInterruptPacket), true},               // TypeInterruptPacket
	{"buffered_bulk_packet", RoleHost, fixed(sizeofBufferedBulkPacket), true}, // TypeBufferedBulkPacket
}

func (t Type) info() (typeInfo, bool) {
	switch {
	case t < numControlTypes:
		return controlTypes[t], true
	case t >= TypeControlPacket && t-TypeControlPacket < Type(len(dataTypes)):
		return dataTypes[t-TypeControlPacket], true
	}
	return typeInfo{}, false
}

// String returns the protocol name without the usb_redir_ prefix.
func (t Type) String() string {
	if ti, ok := t.info(); ok {
		return ti.name
	}
	return "type(" + itoa(uint64(t)) + ")"
}

// Known reports whether t is a packet type of protocol version 0.7.
func (t Type) Known() bool { _, ok := t.info(); return ok }

// IsData reports whether t is a data packet (types 100 and up): the
// usb-host answers it asynchronously, with the same id.
func (t Type) IsData() bool { return t >= TypeControlPacket }

// SentBy reports whether a peer in role r may send packets of type t.
// Unknown types are sent by no one.
func (t Type) SentBy(r Role) bool {
	ti, ok := t.info()
	return ok && (r == RoleHost || r == RoleGuest) && (ti.from == 0 || ti.from == r)
}

// checkBody checks the length of a body of type t, sent by from (0: do not
// check the sender), against layout l, and returns the fixed part's size.
func checkBody(t Type, n int, l Layout, from Role) (int, error) {
	ti, ok := t.info()
	if !ok {
		return 0, malformed(t, "type", "unknown packet type %d", uint32(t))
	}
	if from != 0 && !t.SentBy(from) {
		return 0, malformed(t, "type", "a %s may not send %s", from, t)
	}
	size := ti.size(l)
	switch {
	case n < size:
		return 0, malformed(t, "length", "%d bytes, need %d", n, size)
	case n > size && !ti.data:
		return 0, malformed(t, "length", "%d bytes, want exactly %d", n, size)
	}
	return size, nil
}

// Role is a side of the protocol.
type Role uint8

const (
	// RoleHost is the usb-host: the side that has the device and makes it
	// available (usbredirserver, usbredirect, a device model).
	RoleHost Role = 1
	// RoleGuest is the usb-guest: the side that uses the device (QEMU's
	// usb-redir device).
	RoleGuest Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleHost:
		return "usb-host"
	case RoleGuest:
		return "usb-guest"
	}
	return "role(" + itoa(uint64(r)) + ")"
}

// Status is the status field of the replies and data packets.
type Status uint8

const (
	StatusSuccess   Status = 0 // usb_redir_success
	StatusCancelled Status = 1 // usb_redir_cancelled: the transfer was cancelled
	StatusInval     Status = 2 // usb_redir_inval: invalid packet type, length, endpoint...
	StatusIOError   Status = 3 // usb_redir_ioerror
	StatusStall     Status = 4 // usb_redir_stall
	StatusTimeout   Status = 5 // usb_redir_timeout
	StatusBabble    Status = 6 // usb_redir_babble (since 0.4.2)
)

// Speed is device_connect's speed.
type Speed uint8

const (
	SpeedLow     Speed = 0   // usb_redir_speed_low
	SpeedFull    Speed = 1   // usb_redir_speed_full
	SpeedHigh    Speed = 2   // usb_redir_speed_high
	SpeedSuper   Speed = 3   // usb_redir_speed_super
	SpeedUnknown Speed = 255 // usb_redir_speed_unknown
)

// EndpointType is ep_info's type: the USB transfer type codes.
type EndpointType uint8

const (
	EPControl   EndpointType = 0   // usb_redir_type_control
	EPISO       EndpointType = 1   // usb_redir_type_iso
	EPBulk      EndpointType = 2   // usb_redir_type_bulk
	EPInterrupt EndpointType = 3   // usb_redir_type_interrupt
	EPInvalid   EndpointType = 255 // usb_redir_type_invalid: no such endpoint
)

// endpointIn is the direction bit of an endpoint address.
const endpointIn = 0x80

// Cap is a capability: a bit number in hello's capability array.
type Cap uint

const (
	CapBulkStreams          Cap = 0 // usb_redir_cap_bulk_streams: USB 3 bulk streams; ep_info has max_streams
	CapConnectDeviceVersion Cap = 1 // usb_redir_cap_connect_device_version: device_connect has device_version_bcd
	CapFilter               Cap = 2 // usb_redir_cap_filter: filter_reject and filter_filter
	CapDeviceDisconnectAck  Cap = 3 // usb_redir_cap_device_disconnect_ack
	CapEPInfoMaxPacketSize  Cap = 4 // usb_redir_cap_ep_info_max_packet_size: ep_info has max_packet_size
	Cap64BitIDs             Cap = 5 // usb_redir_cap_64bits_ids: the header's id is 64 bits
	Cap32BitBulkLength      Cap = 6 // usb_redir_cap_32bits_bulk_length: bulk_packet has length_high
	CapBulkReceiving        Cap = 7 // usb_redir_cap_bulk_receiving: buffered bulk input
)

// Caps is hello's capability array: bit c%32 of word c/32 is capability c.
type Caps []uint32

// Has reports whether capability c is set.
func (cs Caps) Has(c Cap) bool {
	return uint64(c)/32 < uint64(len(cs)) && cs[c/32]&(1<<(c%32)) != 0
}

// With returns cs with the given capabilities set, growing it as needed.
// It does not modify cs.
func (cs Caps) With(c ...Cap) Caps {
	out := slices.Clone(cs)
	for _, c := range c {
		for uint64(len(out)) <= uint64(c)/32 {
			out = append(out, 0)
		}
		out[c/32] |= 1 << (c % 32)
	}
	return out
}

// Layout is what the two hellos decided about the wire format: the fields
// that are sent only when both sides advertised a capability. The zero
// Layout is the one that holds before the peer's hello has arrived (and
// for the hello packets themselves): 32-bit ids, no optional fields.
type Layout struct {
	IDs64           bool // both have Cap64BitIDs: the header is 16 bytes
	DeviceVersion   bool // both have CapConnectDeviceVersion: device_connect is 10 bytes
	EPMaxPacketSize bool // both have CapEPInfoMaxPacketSize: ep_info has max_packet_size
	EPMaxStreams    bool // both have CapBulkStreams (and so CapEPInfoMaxPacketSize): ep_info has max_streams
	BulkLength32    bool // both have Cap32BitBulkLength: bulk_packet has length_high
}

// Negotiate returns the layout two sides with these capabilities use once
// each has seen the other's hello. As usbredirparser does, it treats
// CapBulkStreams as absent on a side that lacks CapEPInfoMaxPacketSize
// (the protocol forbids advertising one without the other).
func Negotiate(ours, peers Caps) Layout {
	both := func(c Cap) bool { return ours.Has(c) && peers.Has(c) }
	l := Layout{
		IDs64:           both(Cap64BitIDs),
		DeviceVersion:   both(CapConnectDeviceVersion),
		EPMaxPacketSize: both(CapEPInfoMaxPacketSize),
		BulkLength32:    both(Cap32BitBulkLength),
	}
	l.EPMaxStreams = l.EPMaxPacketSize && both(CapBulkStreams)
	return l
}

// MaxBulkLength is the largest bulk_packet length the layout can carry.
func (l Layout) MaxBulkLength() int {
	if l.BulkLength32 {
		return MaxBulkTransferSize
	}
	return 0xffff
}
