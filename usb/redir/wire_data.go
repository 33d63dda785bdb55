package redir

import "github.com/ycq-dev/ycq/internal/wirebuf"

// The data packets (types 100-104): a type specific header, then the
// transfer's data. The data goes one way only, the endpoint's: a guest
// sends data to an OUT endpoint, the host returns data from an IN one.
// The other way the packet is the header alone, its length field the
// length asked for (guest) or done (host). The decoders check this given
// the sender's role, as usbredirparser does, and return the data as a
// slice of their input, never a copy.

// control_packet (struct usb_redir_control_packet_header).
const (
	offControlEndpoint    = 0 // u8 endpoint
	offControlRequest     = 1 // u8 request (bRequest)
	offControlRequestType = 2 // u8 requesttype (bmRequestType)
	offControlStatus      = 3 // u8 status (host's answer only)
	offControlValue       = 4 // u16 value (wValue)
	offControlIndex       = 6 // u16 index (wIndex)
	offControlLength      = 8 // u16 length (wLength, then the length done)
	sizeofControlPacket   = 10
)

// bulk_packet (struct usb_redir_bulk_packet_header); length_high only with
// Layout.BulkLength32.
const (
	offBulkEndpoint       = 0 // u8 endpoint
	offBulkStatus         = 1 // u8 status
	offBulkLength         = 2 // u16 length: the low 16 bits
	offBulkStreamID       = 4 // u32 stream_id
	offBulkLengthHigh     = 8 // u16 length_high: the high 16 bits
	sizeofBulkPacket16    = 8
	sizeofBulkPacket32    = 10
	bulkLengthHighShift   = 16
	bulkLength16Mask      = 0xffff
	sizeofISOPacket       = 4 // struct usb_redir_iso_packet_header
	sizeofInterruptPacket = 4 // struct usb_redir_interrupt_packet_header
)

// iso_packet and interrupt_packet share a layout.
const (
	offSmallEndpoint = 0 // u8 endpoint
	offSmallStatus   = 1 // u8 status
	offSmallLength   = 2 // u16 length
)

// buffered_bulk_packet (struct usb_redir_buffered_bulk_packet_header).
const (
	offBufBulkStreamID       = 0 // u32 stream_id
	offBufBulkLength         = 4 // u32 length
	offBufBulkEndpoint       = 8 // u8 endpoint
	offBufBulkStatus         = 9 // u8 status
	sizeofBufferedBulkPacket = 10
)

func sizeofBulkPacketIn(l Layout) int {
	if l.BulkLength32 {
		return sizeofBulkPacket32
	}
	return sizeofBulkPacket16
}

// DataPacket is a data packet's body. Its data can be written separately
// from its header (Writer does, so the data is never copied).
type DataPacket interface {
	Body
	// EncodeHeader appends the type specific header alone.
	EncodeHeader(b []byte, l Layout) []byte
	// Payload is the data that follows it (nil in the dataless direction).
	Payload() []byte
}

// HasData reports whether a data packet to or from endpoint address ep,
// sent by from, carries data: the guest's to an OUT endpoint, the host's
// from an IN one.
func HasData(ep uint8, from Role) bool {
	return (ep&endpointIn != 0) == (from == RoleHost)
}

func needRole(from Role) error {
	if from != RoleHost && from != RoleGuest {
		return invalidf("sender role %d is neither usb-host nor usb-guest", from)
	}
	return nil
}

// checkData checks the data of a data packet of type t against its length
// field, given the endpoint and the sender.
func checkData(t Type, ep uint8, length uint64, data []byte, from Role) error {
	if HasData(ep, from) {
		if uint64(len(data)) != length {
			return malformed(t, "length", "%d, but %d bytes of data follow (endpoint 0x%02x, from the %s)", length, len(data), ep, from)
		}
		return nil
	}
	if len(data) != 0 {
		return malformed(t, "data", "%d bytes where none may be (endpoint 0x%02x, from the %s)", len(data), ep, from)
	}
	switch {
	case t == TypeISOPacket:
		return malformed(t, "endpoint", "iso packet without data (endpoint 0x%02x) from the %s: wrong direction", ep, from)
	case t == TypeInterruptPacket && from == RoleGuest:
		return malformed(t, "endpoint", "interrupt packet for IN endpoint 0x%02x from the usb-guest: use start_interrupt_receiving", ep)
	case t == TypeBufferedBulkPacket:
		return malformed(t, "endpoint", "buffered bulk packet for OUT endpoint 0x%02x", ep)
	}
	return nil
}

// ControlPacket is a control transfer (usb_redir_control_packet, guest to
// host and the host's answer with the same id).
type ControlPacket struct {
	Endpoint    uint8
	Request     uint8
	RequestType uint8
	Status      Status
	Value       uint16
	Index       uint16
	Length      uint16
	Data        []byte
}

func (ControlPacket) Type() Type        { return TypeControlPacket }
func (c ControlPacket) Payload() []byte { return c.Data }
func (c ControlPacket) Encode(b []byte, l Layout) []byte {
	return append(c.EncodeHeader(b, l), c.Data...)
}

func (c ControlPacket) EncodeHeader(b []byte, _ Layout) []byte {
	b, s := wirebuf.Grow(b, sizeofControlPacket)
	s[offControlEndpoint] = c.Endpoint
	s[offControlRequest] = c.Request
	s[offControlRequestType] = c.RequestType
	s[offControlStatus] = uint8(c.Status)
	le.PutUint16(s[offControlValue:], c.Value)
	le.PutUint16(s[offControlIndex:], c.Index)
	le.PutUint16(s[offControlLength:], c.Length)
	return b
}

// DecodeControlPacket decodes a control_packet body sent by from. Data
// aliases p.
func DecodeControlPacket(p []byte, from Role) (ControlPacket, error) {
	if err := needRole(from); err != nil {
		return ControlPacket{}, err
	}
	n, err := checkBody(TypeControlPacket, len(p), Layout{}, 0)
	if err != nil {
		return ControlPacket{}, err
	}
	c := ControlPacket{
		Endpoint:    p[offControlEndpoint],
		Request:     p[offControlRequest],
		RequestType: p[offControlRequestType],
		Status:      Status(p[offControlStatus]),
		Value:       le.Uint16(p[offControlValue:]),
		Index:       le.Uint16(p[offControlIndex:]),
		Length:      le.Uint16(p[offControlLength:]),
		Data:        wirebuf.NilIfEmpty(p[n:]),
	}
	if err := checkData(TypeControlPacket, c.Endpoint, uint64(c.Length), c.Data, from); err != nil {
		return ControlPacket{}, err
	}
	return c, nil
}

// BulkPacket is a bulk transfer (usb_redir_bulk_packet, guest to host and
// the host's answer with the same id).
type BulkPacket struct {
	Endpoint uint8
	Status   Status
	// Length is length, with length_high above it in a Layout with
	// BulkLength32; at most Layout.MaxBulkLength.
	Length   uint32
	StreamID uint32
	Data     []byte
}

func (BulkPacket) Type() Type        { return TypeBulkPacket }
func (c BulkPacket) Payload() []byte { return c.Data }
func (c BulkPacket) Encode(b []byte, l Layout) []byte {
	return append(c.EncodeHeader(b, l), c.Data...)
}

func (c BulkPacket) EncodeHeader(b []byte, l Layout) []byte {
	b, s := wirebuf.Grow(b, sizeofBulkPacketIn(l))
	s[offBulkEndpoint] = c.Endpoint
	s[offBulkStatus] = uint8(c.Status)
	le.PutUint16(s[offBulkLength:], uint16(c.Length&bulkLength16Mask))
	le.PutUint32(s[offBulkStreamID:], c.StreamID)
	if l.BulkLength32 {
		le.PutUint16(s[offBulkLengthHigh:], uint16(c.Length>>bulkLengthHighShift))
	}
	return b
}

// DecodeBulkPacket decodes a bulk_packet body in layout l sent by from.
// Data aliases p. A length above MaxBulkTransferSize is refused.
func DecodeBulkPacket(p []byte, l Layout, from Role) (BulkPacket, error) {
	if err := needRole(from); err != nil {
		return BulkPacket{}, err
	}
	n, err := checkBody(TypeBulkPacket, len(p), l, 0)
	if err != nil {
		return BulkPacket{}, err
	}
	c := BulkPacket{
		Endpoint: p[offBulkEndpoint],
		Status:   Status(p[offBulkStatus]),
		Length:   uint32(le.Uint16(p[offBulkLength:])),
		StreamID: le.Uint32(p[offBulkStreamID:]),
		Data:     wirebuf.NilIfEmpty(p[n:]),
	}
	if l.BulkLength32 {
		c.Length |= uint32(le.Uint16(p[offBulkLengthHigh:])) << bulkLengthHighShift
	}
	if c.Length > MaxBulkTransferSize {
		return BulkPacket{}, malformed(TypeBulkPacket, "length_high", "length %d exceeds %d", c.Length, MaxBulkTransferSize)
	}
	if err := checkData(TypeBulkPacket, c.Endpoint, uint64(c.Length), c.Data, from); err != nil {
		return BulkPacket{}, err
	}
	return c, nil
}

// ISOPacket is one isochronous packet of a started stream
// (usb_redir_iso_packet, in the endpoint's direction only).
type ISOPacket struct {
	Endpoint uint8
	Status   Status
	Length   uint16
	Data     []byte
}

func (ISOPacket) Type() Type        { return TypeISOPacket }
func (c ISOPacket) Payload() []byte { return c.Data }
func (c ISOPacket) Encode(b []byte, l Layout) []byte {
	return append(c.EncodeHeader(b, l), c.Data...)
}

func (c ISOPacket) EncodeHeader(b []byte, _ Layout) []byte {
	return encodeSmall(b, c.Endpoint, c.Status, c.Length)
}

func encodeSmall(b []byte, ep uint8, st Status, length uint16) []byte {
	b, s := wirebuf.Grow(b, sizeofISOPacket)
	s[offSmallEndpoint] = ep
	s[offSmallStatus] = uint8(st)
	le.PutUint16(s[offSmallLength:], length)
	return b
}

// DecodeISOPacket decodes an iso_packet body sent by from: it must carry
// data (guest to an OUT endpoint, host from an IN one). Data aliases p.
func DecodeISOPacket(p []byte, from Role) (ISOPacket, error) {
	if err := needRole(from); err != nil {
		return ISOPacket{}, err
	}
	n, err := checkBody(TypeISOPacket, len(p), Layout{}, 0)
	if err != nil {
		return ISOPacket{}, err
	}
	c := ISOPacket{
		Endpoint: p[offSmallEndpoint],
		Status:   Status(p[offSmallStatus]),
		Length:   le.Uint16(p[offSmallLength:]),
		Data:     wirebuf.NilIfEmpty(p[n:]),
	}
	if err := checkData(TypeISOPacket, c.Endpoint, uint64(c.Length), c.Data, from); err != nil {
		return ISOPacket{}, err
	}
	return c, nil
}

// InterruptPacket is an interrupt transfer (usb_redir_interrupt_packet):
// for an OUT endpoint the guest's request and the host's answer with its
// id; for an IN endpoint, once receiving started, host to guest only.
type InterruptPacket struct {
	Endpoint uint8
	Status   Status
	Length   uint16
	Data     []byte
}

func (InterruptPacket) Type() Type        { return TypeInterruptPacket }
func (c InterruptPacket) Payload() []byte { return c.Data }
func (c InterruptPacket) Encode(b []byte, l Layout) []byte {
	return append(c.EncodeHeader(b, l), c.Data...)
}

func (c InterruptPacket) EncodeHeader(b []byte, _ Layout) []byte {
	return encodeSmall(b, c.Endpoint, c.Status, c.Length)
}

// DecodeInterruptPacket decodes an interrupt_packet body sent by from.
// Data aliases p.
func DecodeInterruptPacket(p []byte, from Role) (InterruptPacket, error) {
	if err := needRole(from); err != nil {
		return InterruptPacket{}, err
	}
	n, err := checkBody(TypeInterruptPacket, len(p), Layout{}, 0)
	if err != nil {
		return InterruptPacket{}, err
	}
	c := InterruptPacket{
		Endpoint: p[offSmallEndpoint],
		Status:   Status(p[offSmallStatus]),
		Length:   le.Uint16(p[offSmallLength:]),
		Data:     wirebuf.NilIfEmpty(p[n:]),
	}
	if err := checkData(TypeInterruptPacket, c.Endpoint, uint64(c.Length), c.Data, from); err != nil {
		return InterruptPacket{}, err
	}
	return c, nil
}

// BufferedBulkPacket is one completed transfer of buffered bulk receiving
// (usb_redir_buffered_bulk_packet, host to guest only, always with data).
type BufferedBulkPacket struct {
	StreamID uint32
	Length   uint32
	Endpoint uint8
	Status   Status
	Data     []byte
}

func (BufferedBulkPacket) Type() Type        { return TypeBufferedBulkPacket }
func (c BufferedBulkPacket) Payload() []byte { return c.Data }
func (c BufferedBulkPacket) Encode(b []byte, l Layout) []byte {
	return append(c.EncodeHeader(b, l), c.Data...)
}

func (c BufferedBulkPacket) EncodeHeader(b []byte, _ Layout) []byte {
	b, s := wirebuf.Grow(b, sizeofBufferedBulkPacket)
	le.PutUint32(s[offBufBulkStreamID:], c.StreamID)
	le.PutUint32(s[offBufBulkLength:], c.Length)
	s[offBufBulkEndpoint] = c.Endpoint
	s[offBufBulkStatus] = uint8(c.Status)
	return b
}

// DecodeBufferedBulkPacket decodes a buffered_bulk_packet body sent by
// from, which must be the host, for an IN endpoint. Data aliases p.
func DecodeBufferedBulkPacket(p []byte, from Role) (BufferedBulkPacket, error) {
	if err := needRole(from); err != nil {
		return BufferedBulkPacket{}, err
	}
	n, err := checkBody(TypeBufferedBulkPacket, len(p), Layout{}, from)
	if err != nil {
		return BufferedBulkPacket{}, err
	}
	c := BufferedBulkPacket{
		StreamID: le.Uint32(p[offBufBulkStreamID:]),
		Length:   le.Uint32(p[offBufBulkLength:]),
		Endpoint: p[offBufBulkEndpoint],
		Status:   Status(p[offBufBulkStatus]),
		Data:     wirebuf.NilIfEmpty(p[n:]),
	}
	if c.Length > MaxBulkTransferSize {
		return BufferedBulkPacket{}, malformed(TypeBufferedBulkPacket, "length", "%d exceeds %d", c.Length, MaxBulkTransferSize)
	}
	if err := checkData(TypeBufferedBulkPacket, c.Endpoint, uint64(c.Length), c.Data, from); err != nil {
		return BufferedBulkPacket{}, err
	}
	return c, nil
}

// Decode decodes the body p of a packet of type t, sent by from, in layout
// l, into the matching type of this package (a value, not a pointer). It
// refuses unknown types and types from's role may not send. Data packets'
// data aliases p. Decode boxes the value; a caller that must not allocate
// switches on t and calls the typed decoder.
func Decode(t Type, p []byte, l Layout, from Role) (Body, error) {
	if err := needRole(from); err != nil {
		return nil, err
	}
	if _, err := checkBody(t, len(p), l, from); err != nil {
		return nil, err
	}
	switch t {
	case TypeHello:
		return box(DecodeHello(p))
	case TypeDeviceConnect:
		return box(DecodeDeviceConnect(p, l))
	case TypeDeviceDisconnect:
		return box(decodeEmpty[DeviceDisconnect](t, p))
	case TypeReset:
		return box(decodeEmpty[Reset](t, p))
	case TypeInterfaceInfo:
		return box(DecodeInterfaceInfo(p))
	case TypeEPInfo:
		return box(DecodeEPInfo(p, l))
	case TypeSetConfiguration:
		return box(DecodeSetConfiguration(p))
	case TypeGetConfiguration:
		return box(decodeEmpty[GetConfiguration](t, p))
	case TypeConfigurationStatus:
		return box(DecodeConfigurationStatus(p))
	case TypeSetAltSetting:
		return box(DecodeSetAltSetting(p))
	case TypeGetAltSetting:
		return box(DecodeGetAltSetting(p))
	case TypeAltSettingStatus:
		return box(DecodeAltSettingStatus(p))
	case TypeStartISOStream:
		return box(DecodeStartISOStream(p))
	case TypeStopISOStream:
		return box(DecodeStopISOStream(p))
	case TypeISOStreamStatus:
		return box(DecodeISOStreamStatus(p))
	case TypeStartInterruptReceiving:
		return box(DecodeStartInterruptReceiving(p))
	case TypeStopInterruptReceiving:
		return box(DecodeStopInterruptReceiving(p))
	case TypeInterruptReceivingStatus:
		return box(DecodeInterruptReceivingStatus(p))
	case TypeAllocBulkStreams:
		return box(DecodeAllocBulkStreams(p))
	case TypeFreeBulkStreams:
		return box(DecodeFreeBulkStreams(p))
	case TypeBulkStreamsStatus:
		return box(DecodeBulkStreamsStatus(p))
	case TypeCancelDataPacket:
		return box(decodeEmpty[CancelDataPacket](t, p))
	case TypeFilterReject:
		return box(decodeEmpty[FilterReject](t, p))
	case TypeFilterFilter:
		return box(DecodeFilterFilter(p))
	case TypeDeviceDisconnectAck:
		return box(decodeEmpty[DeviceDisconnectAck](t, p))
	case TypeStartBulkReceiving:
		return box(DecodeStartBulkReceiving(p))
	case TypeStopBulkReceiving:
		return box(DecodeStopBulkReceiving(p))
	case TypeBulkReceivingStatus:
		return box(DecodeBulkReceivingStatus(p))
	case TypeControlPacket:
		return box(DecodeControlPacket(p, from))
	case TypeBulkPacket:
		return box(DecodeBulkPacket(p, l, from))
	case TypeISOPacket:
		return box(DecodeISOPacket(p, from))
	case TypeInterruptPacket:
		return box(DecodeInterruptPacket(p, from))
	case TypeBufferedBulkPacket:
		return box(DecodeBufferedBulkPacket(p, from))
	}
	return nil, malformed(t, "type", "unknown packet type %d", uint32(t)) // unreachable: checkBody knows every type
}

func box[B Body](b B, err error) (Body, error) {
	if err != nil {
		return nil, err
	}
	return b, nil
}
