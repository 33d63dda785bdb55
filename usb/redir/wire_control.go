package redir

// The control packets (types 0-27): the type specific headers of
// usbredirproto.h, each with named sizes and offsets. None but hello and
// filter_filter carries data after its fixed part, and the length of each
// is exact: checkBody (wire.go) refuses anything else.

import (
	"bytes"

	"github.com/ycq-dev/ycq/internal/wirebuf"
)

// Body is a packet's body: everything after the header. Every packet type
// of this package implements it.
type Body interface {
	// Type is the packet type the body belongs to.
	Type() Type
	// Encode appends the body in layout l. Fields are written as given
	// (fields a layout does not carry are left out, wider values are
	// truncated to their field), so tests can build hostile packets.
	Encode(b []byte, l Layout) []byte
}

// hello (struct usb_redir_hello_header): a NUL-terminated version string
// in a 64-byte field, then the capability array, u32 words to the end.
const (
	sizeofHello      = 64
	offHelloVersion  = 0
	sizeofHelloVer   = 64
	offHelloCaps     = 64
	sizeofCapWord    = 4
	maxHelloCapWords = 64 // 2048 capabilities; 0.7 defines 8
)

// Hello is the first packet each side sends (usb_redir_hello), always with
// a 32-bit id of 0.
type Hello struct {
	// Version is free text for logs ("qemu usb-redir guest 9.2.0"), at
	// most 63 bytes on the wire; Encode truncates a longer one.
	Version string
	Caps    Caps
}

func (Hello) Type() Type { return TypeHello }

func (h Hello) Encode(b []byte, _ Layout) []byte {
	b, s := wirebuf.Grow(b, sizeofHello+len(h.Caps)*sizeofCapWord)
	copy(s[offHelloVersion:offHelloVersion+sizeofHelloVer-1], h.Version)
	for i, w := range h.Caps {
		le.PutUint32(s[offHelloCaps+i*sizeofCapWord:], w)
	}
	return b
}

// DecodeHello decodes a hello body. The version must be NUL-terminated
// inside its 64 bytes (bytes after the NUL are ignored); the capability
// array must be whole words, at most 64 of them.
func DecodeHello(p []byte) (Hello, error) {
	if _, err := checkBody(TypeHello, len(p), Layout{}, 0); err != nil {
		return Hello{}, err
	}
	ver := p[offHelloVersion : offHelloVersion+sizeofHelloVer]
	end := bytes.IndexByte(ver, 0)
	if end < 0 {
		return Hello{}, malformed(TypeHello, "version", "no NUL in its %d bytes", sizeofHelloVer)
	}
	capBytes := p[offHelloCaps:]
	if len(capBytes)%sizeofCapWord != 0 {
		return Hello{}, malformed(TypeHello, "capabilities", "%d bytes is not a whole number of u32 words", len(capBytes))
	}
	n := len(capBytes) / sizeofCapWord
	if n > maxHelloCapWords {
		return Hello{}, malformed(TypeHello, "capabilities", "%d words, at most %d", n, maxHelloCapWords)
	}
	h := Hello{Version: string(ver[:end])}
	if n > 0 {
		h.Caps = make(Caps, n)
		for i := range h.Caps {
			h.Caps[i] = le.Uint32(capBytes[i*sizeofCapWord:])
		}
	}
	return h, nil
}

// device_connect (struct usb_redir_device_connect_header); without
// device_version_bcd unless Layout.DeviceVersion.
const (
	offConnectSpeed         = 0 // u8 speed
	offConnectClass         = 1 // u8 device_class
	offConnectSubClass      = 2 // u8 device_subclass
	offConnectProtocol      = 3 // u8 device_protocol
	offConnectVendorID      = 4 // u16 vendor_id
	offConnectProductID     = 6 // u16 product_id
	offConnectDeviceVersion = 8 // u16 device_version_bcd
	sizeofConnectNoVersion  = 8
	sizeofConnect           = 10
)

func sizeofDeviceConnectIn(l Layout) int {
	if l.DeviceVersion {
		return sizeofConnect
	}
	return sizeofConnectNoVersion
}

// DeviceConnect announces a device (usb_redir_device_connect, host to
// guest). The host sends ep_info and interface_info before it.
type DeviceConnect struct {
	Speed            Speed
	Class            uint8
	SubClass         uint8
	Protocol         uint8
	VendorID         uint16
	ProductID        uint16
	DeviceVersionBCD uint16 // only with Layout.DeviceVersion
}

func (DeviceConnect) Type() Type { return TypeDeviceConnect }

func (d DeviceConnect) Encode(b []byte, l Layout) []byte {
	b, s := wirebuf.Grow(b, sizeofDeviceConnectIn(l))
	s[offConnectSpeed] = uint8(d.Speed)
	s[offConnectClass] = d.Class
	s[offConnectSubClass] = d.SubClass
	s[offConnectProtocol] = d.Protocol
	le.PutUint16(s[offConnectVendorID:], d.VendorID)
	le.PutUint16(s[offConnectProductID:], d.ProductID)
	if l.DeviceVersion {
		le.PutUint16(s[offConnectDeviceVersion:], d.DeviceVersionBCD)
	}
	return b
}

// DecodeDeviceConnect decodes a device_connect body in layout l.
func DecodeDeviceConnect(p []byte, l Layout) (DeviceConnect, error) {
	if _, err := checkBody(TypeDeviceConnect, len(p), l, 0); err != nil {
		return DeviceConnect{}, err
	}
	d := DeviceConnect{
		Speed:     Speed(p[offConnectSpeed]),
		Class:     p[offConnectClass],
		SubClass:  p[offConnectSubClass],
		Protocol:  p[offConnectProtocol],
		VendorID:  le.Uint16(p[offConnectVendorID:]),
		ProductID: le.Uint16(p[offConnectProductID:]),
	}
	if l.DeviceVersion {
		d.DeviceVersionBCD = le.Uint16(p[offConnectDeviceVersion:])
	}
	return d, nil
}

// interface_info (struct usb_redir_interface_info_header).
const (
	MaxInterfaces          = 32
	offIfaceCount          = 0   // u32 interface_count
	offIfaceNumber         = 4   // u8 interface[32]
	offIfaceClass          = 36  // u8 interface_class[32]
	offIfaceSubClass       = 68  // u8 interface_subclass[32]
	offIfaceProtocol       = 100 // u8 interface_protocol[32]
	sizeofInterfaceInfo    = 132
	sizeofInterfaceInfoArr = MaxInterfaces
)

// InterfaceInfo lists the interfaces of the active configuration
// (usb_redir_interface_info, host to guest). Entries at Count and above
// are carried as they are.
type InterfaceInfo struct {
	Count    uint32 // interface_count, at most 32
	Number   [MaxInterfaces]uint8
	Class    [MaxInterfaces]uint8
	SubClass [MaxInterfaces]uint8
	Protocol [MaxInterfaces]uint8
}

func (InterfaceInfo) Type() Type { return TypeInterfaceInfo }

func (f InterfaceInfo) Encode(b []byte, _ Layout) []byte {
	b, s := wirebuf.Grow(b, sizeofInterfaceInfo)
	le.PutUint32(s[offIfaceCount:], f.Count)
	copy(s[offIfaceNumber:][:sizeofInterfaceInfoArr], f.Number[:])
	copy(s[offIfaceClass:][:sizeofInterfaceInfoArr], f.Class[:])
	copy(s[offIfaceSubClass:][:sizeofInterfaceInfoArr], f.SubClass[:])
	copy(s[offIfaceProtocol:][:sizeofInterfaceInfoArr], f.Protocol[:])
	return b
}

// DecodeInterfaceInfo decodes an interface_info body; interface_count
// above 32 is refused.
func DecodeInterfaceInfo(p []byte) (InterfaceInfo, error) {
	if _, err := checkBody(TypeInterfaceInfo, len(p), Layout{}, 0); err != nil {
		return InterfaceInfo{}, err
	}
	f := InterfaceInfo{Count: le.Uint32(p[offIfaceCount:])}
	if f.Count > MaxInterfaces {
		return InterfaceInfo{}, malformed(TypeInterfaceInfo, "interface_count", "%d, at most %d", f.Count, MaxInterfaces)
	}
	copy(f.Number[:], p[offIfaceNumber:])
	copy(f.Class[:], p[offIfaceClass:])
	copy(f.SubClass[:], p[offIfaceSubClass:])
	copy(f.Protocol[:], p[offIfaceProtocol:])
	return f, nil
}

// ep_info (struct usb_redir_ep_info_header): one entry per endpoint,
// OUT 0-15 then IN 0-15 (index = (address&0x80)>>3 | address&0x0f).
// max_packet_size only with Layout.EPMaxPacketSize, max_streams only with
// Layout.EPMaxStreams.
const (
	MaxEndpoints           = 32
	offEPType              = 0   // u8 type[32]
	offEPInterval          = 32  // u8 interval[32]
	offEPInterface         = 64  // u8 interface[32]
	offEPMaxPacketSize     = 96  // u16 max_packet_size[32]
	offEPMaxStreams        = 160 // u32 max_streams[32]
	sizeofEPInfoBase       = 96
	sizeofEPInfoPacketSize = 160
	sizeofEPInfo           = 288
)

func sizeofEPInfoIn(l Layout) int {
	switch {
	case l.EPMaxStreams:
		return sizeofEPInfo
	case l.EPMaxPacketSize:
		return sizeofEPInfoPacketSize
	}
	return sizeofEPInfoBase
}

// EndpointIndex is the ep_info index of endpoint address addr.
func EndpointIndex(addr uint8) int { return int(addr&endpointIn)>>3 | int(addr&0x0f) }

// EPInfo describes every endpoint of the active configuration and
// alternate settings (usb_redir_ep_info, host to guest).
type EPInfo struct {
	EPType        [MaxEndpoints]EndpointType // EPInvalid for an absent endpoint
	Interval      [MaxEndpoints]uint8
	Interface     [MaxEndpoints]uint8
	MaxPacketSize [MaxEndpoints]uint16 // only with Layout.EPMaxPacketSize
	MaxStreams    [MaxEndpoints]uint32 // only with Layout.EPMaxStreams
}

func (EPInfo) Type() Type { return TypeEPInfo }

func (e EPInfo) Encode(b []byte, l Layout) []byte {
	n := sizeofEPInfoIn(l)
	b, s := wirebuf.Grow(b, n)
	for i := range MaxEndpoints {
		s[offEPType+i] = uint8(e.EPType[i])
		s[offEPInterval+i] = e.Interval[i]
		s[offEPInterface+i] = e.Interface[i]
		if n >= sizeofEPInfoPacketSize {
			le.PutUint16(s[offEPMaxPacketSize+2*i:], e.MaxPacketSize[i])
		}
		if n >= sizeofEPInfo {
			le.PutUint32(s[offEPMaxStreams+4*i:], e.MaxStreams[i])
		}
	}
	return b
}

// DecodeEPInfo decodes an ep_info body in layout l.
func DecodeEPInfo(p []byte, l Layout) (EPInfo, error) {
	n, err := checkBody(TypeEPInfo, len(p), l, 0)
	if err != nil {
		return EPInfo{}, err
	}
	var e EPInfo
	for i := range MaxEndpoints {
		e.EPType[i] = EndpointType(p[offEPType+i])
		e.Interval[i] = p[offEPInterval+i]
		e.Interface[i] = p[offEPInterface+i]
		if n >= sizeofEPInfoPacketSize {
			e.MaxPacketSize[i] = le.Uint16(p[offEPMaxPacketSize+2*i:])
		}
		if n >= sizeofEPInfo {
			e.MaxStreams[i] = le.Uint32(p[offEPMaxStreams+4*i:])
		}
	}
	return e, nil
}

// The one-to-three byte bodies.
const (
	sizeofSetConfiguration    = 1 // u8 configuration
	sizeofConfigurationStatus = 2 // u8 status, u8 configuration
	sizeofSetAltSetting       = 2 // u8 interface, u8 alt
	sizeofGetAltSetting       = 1 // u8 interface
	sizeofAltSettingStatus    = 3 // u8 status, u8 interface, u8 alt
	sizeofStartISOStream      = 3 // u8 endpoint, u8 pkts_per_urb, u8 no_urbs
	sizeofEndpointOnly        = 1 // u8 endpoint: stop_iso_stream, start/stop_interrupt_receiving
	sizeofEndpointStatus      = 2 // u8 status, u8 endpoint: iso_stream_status, interrupt_receiving_status
)

// SetConfiguration asks for a configuration (usb_redir_set_configuration,
// guest to host). The host answers ep_info, interface_info, then
// configuration_status.
type SetConfiguration struct{ Configuration uint8 }

func (SetConfiguration) Type() Type { return TypeSetConfiguration }
func (c SetConfiguration) Encode(b []byte, _ Layout) []byte {
	return append(b, c.Configuration)
}

// DecodeSetConfiguration decodes a set_configuration body.
func DecodeSetConfiguration(p []byte) (SetConfiguration, error) {
	if _, err := checkBody(TypeSetConfiguration, len(p), Layout{}, 0); err != nil {
		return SetConfiguration{}, err
	}
	return SetConfiguration{Configuration: p[0]}, nil
}

// ConfigurationStatus answers set_configuration and get_configuration
// (usb_redir_configuration_status, host to guest).
type ConfigurationStatus struct {
	Status        Status
	Configuration uint8
}

func (ConfigurationStatus) Type() Type { return TypeConfigurationStatus }
func (c ConfigurationStatus) Encode(b []byte, _ Layout) []byte {
	return append(b, uint8(c.Status), c.Configuration)
}

// DecodeConfigurationStatus decodes a configuration_status body.
func DecodeConfigurationStatus(p []byte) (ConfigurationStatus, error) {
	if _, err := checkBody(TypeConfigurationStatus, len(p), Layout{}, 0); err != nil {
		return ConfigurationStatus{}, err
	}
	return ConfigurationStatus{Status: Status(p[0]), Configuration: p[1]}, nil
}

// SetAltSetting selects an alternate setting (usb_redir_set_alt_setting,
// guest to host).
type SetAltSetting struct{ Interface, Alt uint8 }

func (SetAltSetting) Type() Type { return TypeSetAltSetting }
func (a SetAltSetting) Encode(b []byte, _ Layout) []byte {
	return append(b, a.Interface, a.Alt)
}

// DecodeSetAltSetting decodes a set_alt_setting body.
func DecodeSetAltSetting(p []byte) (SetAltSetting, error) {
	if _, err := checkBody(TypeSetAltSetting, len(p), Layout{}, 0); err != nil {
		return SetAltSetting{}, err
	}
	return SetAltSetting{Interface: p[0], Alt: p[1]}, nil
}

// GetAltSetting asks for an interface's alternate setting
// (usb_redir_get_alt_setting, guest to host).
type GetAltSetting struct{ Interface uint8 }

func (GetAltSetting) Type() Type { return TypeGetAltSetting }
func (a GetAltSetting) Encode(b []byte, _ Layout) []byte {
	return append(b, a.Interface)
}

// DecodeGetAltSetting decodes a get_alt_setting body.
func DecodeGetAltSetting(p []byte) (GetAltSetting, error) {
	if _, err := checkBody(TypeGetAltSetting, len(p), Layout{}, 0); err != nil {
		return GetAltSetting{}, err
	}
	return GetAltSetting{Interface: p[0]}, nil
}

// AltSettingStatus answers set_alt_setting and get_alt_setting
// (usb_redir_alt_setting_status, host to guest).
type AltSettingStatus struct {
	Status         Status
	Interface, Alt uint8
}

func (AltSettingStatus) Type() Type { return TypeAltSettingStatus }
func (a AltSettingStatus) Encode(b []byte, _ Layout) []byte {
	return append(b, uint8(a.Status), a.Interface, a.Alt)
}

// DecodeAltSettingStatus decodes an alt_setting_status body.
func DecodeAltSettingStatus(p []byte) (AltSettingStatus, error) {
	if _, err := checkBody(TypeAltSettingStatus, len(p), Layout{}, 0); err != nil {
		return AltSettingStatus{}, err
	}
	return AltSettingStatus{Status: Status(p[0]), Interface: p[1], Alt: p[2]}, nil
}

// StartISOStream starts an isochronous stream (usb_redir_start_iso_stream,
// guest to host).
type StartISOStream struct{ Endpoint, PktsPerURB, NoURBs uint8 }

func (StartISOStream) Type() Type { return TypeStartISOStream }
func (s StartISOStream) Encode(b []byte, _ Layout) []byte {
	return append(b, s.Endpoint, s.PktsPerURB, s.NoURBs)
}

// DecodeStartISOStream decodes a start_iso_stream body.
func DecodeStartISOStream(p []byte) (StartISOStream, error) {
	if _, err := checkBody(TypeStartISOStream, len(p), Layout{}, 0); err != nil {
		return StartISOStream{}, err
	}
	return StartISOStream{Endpoint: p[0], PktsPerURB: p[1], NoURBs: p[2]}, nil
}

// StopISOStream stops an isochronous stream (usb_redir_stop_iso_stream,
// guest to host).
type StopISOStream struct{ Endpoint uint8 }

func (StopISOStream) Type() Type { return TypeStopISOStream }
func (s StopISOStream) Encode(b []byte, _ Layout) []byte {
	return append(b, s.Endpoint)
}

// DecodeStopISOStream decodes a stop_iso_stream body.
func DecodeStopISOStream(p []byte) (StopISOStream, error) {
	if _, err := checkBody(TypeStopISOStream, len(p), Layout{}, 0); err != nil {
		return StopISOStream{}, err
	}
	return StopISOStream{Endpoint: p[0]}, nil
}

// ISOStreamStatus answers start/stop_iso_stream or reports a stream error
// (usb_redir_iso_stream_status, host to guest).
type ISOStreamStatus struct {
	Status   Status
	Endpoint uint8
}

func (ISOStreamStatus) Type() Type { return TypeISOStreamStatus }
func (s ISOStreamStatus) Encode(b []byte, _ Layout) []byte {
	return append(b, uint8(s.Status), s.Endpoint)
}

// DecodeISOStreamStatus decodes an iso_stream_status body.
func DecodeISOStreamStatus(p []byte) (ISOStreamStatus, error) {
	if _, err := checkBody(TypeISOStreamStatus, len(p), Layout{}, 0); err != nil {
		return ISOStreamStatus{}, err
	}
	return ISOStreamStatus{Status: Status(p[0]), Endpoint: p[1]}, nil
}

// needIn refuses an endpoint address without the IN bit, as usbredirparser
// does for the receiving packets (they exist for IN endpoints only).
func needIn(t Type, ep uint8) error {
	if ep&endpointIn == 0 {
		return malformed(t, "endpoint", "0x%02x is an OUT endpoint, want IN", ep)
	}
	return nil
}

// StartInterruptReceiving makes the host poll an interrupt IN endpoint
// and send each completion as an interrupt_packet
// (usb_redir_start_interrupt_receiving, guest to host).
type StartInterruptReceiving struct{ Endpoint uint8 }

func (StartInterruptReceiving) Type() Type { return TypeStartInterruptReceiving }
func (s StartInterruptReceiving) Encode(b []byte, _ Layout) []byte {
	return append(b, s.Endpoint)
}

// DecodeStartInterruptReceiving decodes a start_interrupt_receiving body;
// the endpoint must be IN.
func DecodeStartInterruptReceiving(p []byte) (StartInterruptReceiving, error) {
	if _, err := checkBody(TypeStartInterruptReceiving, len(p), Layout{}, 0); err != nil {
		return StartInterruptReceiving{}, err
	}
	if err := needIn(TypeStartInterruptReceiving, p[0]); err != nil {
		return StartInterruptReceiving{}, err
	}
	return StartInterruptReceiving{Endpoint: p[0]}, nil
}

// StopInterruptReceiving stops it (usb_redir_stop_interrupt_receiving,
// guest to host).
type StopInterruptReceiving struct{ Endpoint uint8 }

func (StopInterruptReceiving) Type() Type { return TypeStopInterruptReceiving }
func (s StopInterruptReceiving) Encode(b []byte, _ Layout) []byte {
	return append(b, s.Endpoint)
}

// DecodeStopInterruptReceiving decodes a stop_interrupt_receiving body;
// the endpoint must be IN.
func DecodeStopInterruptReceiving(p []byte) (StopInterruptReceiving, error) {
	if _, err := checkBody(TypeStopInterruptReceiving, len(p), Layout{}, 0); err != nil {
		return StopInterruptReceiving{}, err
	}
	if err := needIn(TypeStopInterruptReceiving, p[0]); err != nil {
		return StopInterruptReceiving{}, err
	}
	return StopInterruptReceiving{Endpoint: p[0]}, nil
}

// InterruptReceivingStatus answers start/stop_interrupt_receiving, or
// reports (with StatusStall) that receiving stopped on its own
// (usb_redir_interrupt_receiving_status, host to guest).
type InterruptReceivingStatus struct {
	Status   Status
	Endpoint uint8
}

func (InterruptReceivingStatus) Type() Type { return TypeInterruptReceivingStatus }
func (s InterruptReceivingStatus) Encode(b []byte, _ Layout) []byte {
	return append(b, uint8(s.Status), s.Endpoint)
}

// DecodeInterruptReceivingStatus decodes an interrupt_receiving_status
// body; the endpoint must be IN.
func DecodeInterruptReceivingStatus(p []byte) (InterruptReceivingStatus, error) {
	if _, err := checkBody(TypeInterruptReceivingStatus, len(p), Layout{}, 0); err != nil {
		return InterruptReceivingStatus{}, err
	}
	if err := needIn(TypeInterruptReceivingStatus, p[1]); err != nil {
		return InterruptReceivingStatus{}, err
	}
	return InterruptReceivingStatus{Status: Status(p[0]), Endpoint: p[1]}, nil
}

// Bulk streams (struct usb_redir_alloc_bulk_streams_header and friends).
const (
	offStreamsEndpoints     = 0 // u32 endpoints: bitmask of ep_info indexes
	offStreamsNoStreams     = 4 // u32 no_streams
	offStreamsStatus        = 8 // u8 status (bulk_streams_status)
	sizeofAllocBulkStreams  = 8
	sizeofFreeBulkStreams   = 4
	sizeofBulkStreamsStatus = 9
)

// AllocBulkStreams asks for NoStreams stream ids on each endpoint in the
// Endpoints bitmask (bit i is ep_info index i) (usb_redir_alloc_bulk_streams,
// guest to host).
type AllocBulkStreams struct{ Endpoints, NoStreams uint32 }

func (AllocBulkStreams) Type() Type { return TypeAllocBulkStreams }
func (a AllocBulkStreams) Encode(b []byte, _ Layout) []byte {
	b, s := wirebuf.Grow(b, sizeofAllocBulkStreams)
	le.PutUint32(s[offStreamsEndpoints:], a.Endpoints)
	le.PutUint32(s[offStreamsNoStreams:], a.NoStreams)
	return b
}

// DecodeAllocBulkStreams decodes an alloc_bulk_streams body.
func DecodeAllocBulkStreams(p []byte) (AllocBulkStreams, error) {
	if _, err := checkBody(TypeAllocBulkStreams, len(p), Layout{}, 0); err != nil {
		return AllocBulkStreams{}, err
	}
	return AllocBulkStreams{Endpoints: le.Uint32(p[offStreamsEndpoints:]), NoStreams: le.Uint32(p[offStreamsNoStreams:])}, nil
}

// FreeBulkStreams frees the streams of the endpoints in the bitmask
// (usb_redir_free_bulk_streams, guest to host).
type FreeBulkStreams struct{ Endpoints uint32 }

func (FreeBulkStreams) Type() Type { return TypeFreeBulkStreams }
func (f FreeBulkStreams) Encode(b []byte, _ Layout) []byte {
	return le.AppendUint32(b, f.Endpoints)
}

// DecodeFreeBulkStreams decodes a free_bulk_streams body.
func DecodeFreeBulkStreams(p []byte) (FreeBulkStreams, error) {
	if _, err := checkBody(TypeFreeBulkStreams, len(p), Layout{}, 0); err != nil {
		return FreeBulkStreams{}, err
	}
	return FreeBulkStreams{Endpoints: le.Uint32(p[offStreamsEndpoints:])}, nil
}

// BulkStreamsStatus answers alloc/free_bulk_streams
// (usb_redir_bulk_streams_status, host to guest).
type BulkStreamsStatus struct {
	Endpoints, NoStreams uint32
	Status               Status
}

func (BulkStreamsStatus) Type() Type { return TypeBulkStreamsStatus }
func (s BulkStreamsStatus) Encode(b []byte, _ Layout) []byte {
	b, d := wirebuf.Grow(b, sizeofBulkStreamsStatus)
	le.PutUint32(d[offStreamsEndpoints:], s.Endpoints)
	le.PutUint32(d[offStreamsNoStreams:], s.NoStreams)
	d[offStreamsStatus] = uint8(s.Status)
	return b
}

// DecodeBulkStreamsStatus decodes a bulk_streams_status body.
func DecodeBulkStreamsStatus(p []byte) (BulkStreamsStatus, error) {
	if _, err := checkBody(TypeBulkStreamsStatus, len(p), Layout{}, 0); err != nil {
		return BulkStreamsStatus{}, err
	}
	return BulkStreamsStatus{
		Endpoints: le.Uint32(p[offStreamsEndpoints:]),
		NoStreams: le.Uint32(p[offStreamsNoStreams:]),
		Status:    Status(p[offStreamsStatus]),
	}, nil
}

// FilterFilter carries a usbredirfilter rule string
// (usb_redir_filter_filter, either way, right after the hello; only to a
// peer with CapFilter). On the wire it is NUL-terminated.
type FilterFilter struct {
	// Rules is "<class>,<vendor>,<product>,<version>,<allow>|..." without
	// the NUL. This package does not parse it.
	Rules string
}

func (FilterFilter) Type() Type { return TypeFilterFilter }
func (f FilterFilter) Encode(b []byte, _ Layout) []byte {
	return append(append(b, f.Rules...), 0)
}

// DecodeFilterFilter decodes a filter_filter body: at least the NUL, which
// must be the last byte and the only NUL.
func DecodeFilterFilter(p []byte) (FilterFilter, error) {
	if len(p) == 0 {
		return FilterFilter{}, malformed(TypeFilterFilter, "length", "0 bytes, need the NUL-terminated filter string")
	}
	if p[len(p)-1] != 0 {
		return FilterFilter{}, malformed(TypeFilterFilter, "filter", "not NUL-terminated")
	}
	if i := bytes.IndexByte(p, 0); i != len(p)-1 {
		return FilterFilter{}, malformed(TypeFilterFilter, "filter", "NUL at byte %d of %d", i, len(p))
	}
	return FilterFilter{Rules: string(p[:len(p)-1])}, nil
}

// Buffered bulk receiving control (struct
// usb_redir_start_bulk_receiving_header and friends).
const (
	offStartBulkStreamID      = 0 // u32 stream_id
	offStartBulkBytes         = 4 // u32 bytes_per_transfer
	offStartBulkEndpoint      = 8 // u8 endpoint
	offStartBulkNoTransfers   = 9 // u8 no_transfers
	sizeofStartBulkReceiving  = 10
	offStopBulkStreamID       = 0 // u32 stream_id
	offStopBulkEndpoint       = 4 // u8 endpoint
	sizeofStopBulkReceiving   = 5
	offBulkRecvStatusStreamID = 0 // u32 stream_id
	offBulkRecvStatusEndpoint = 4 // u8 endpoint
	offBulkRecvStatusStatus   = 5 // u8 status
	sizeofBulkReceivingStatus = 6
)

// StartBulkReceiving makes the host keep NoTransfers bulk IN transfers of
// BytesPerTransfer each in flight and send each completion as a
// buffered_bulk_packet (usb_redir_start_bulk_receiving, guest to host,
// CapBulkReceiving).
type StartBulkReceiving struct {
	StreamID         uint32
	BytesPerTransfer uint32
	Endpoint         uint8
	NoTransfers      uint8
}

func (StartBulkReceiving) Type() Type { return TypeStartBulkReceiving }
func (s StartBulkReceiving) Encode(b []byte, _ Layout) []byte {
	b, d := wirebuf.Grow(b, sizeofStartBulkReceiving)
	le.PutUint32(d[offStartBulkStreamID:], s.StreamID)
	le.PutUint32(d[offStartBulkBytes:], s.BytesPerTransfer)
	d[offStartBulkEndpoint] = s.Endpoint
	d[offStartBulkNoTransfers] = s.NoTransfers
	return b
}

// DecodeStartBulkReceiving decodes a start_bulk_receiving body; the
// endpoint must be IN and bytes_per_transfer at most MaxBulkTransferSize.
func DecodeStartBulkReceiving(p []byte) (StartBulkReceiving, error) {
	if _, err := checkBody(TypeStartBulkReceiving, len(p), Layout{}, 0); err != nil {
		return StartBulkReceiving{}, err
	}
	s := StartBulkReceiving{
		StreamID:         le.Uint32(p[offStartBulkStreamID:]),
		BytesPerTransfer: le.Uint32(p[offStartBulkBytes:]),
		Endpoint:         p[offStartBulkEndpoint],
		NoTransfers:      p[offStartBulkNoTransfers],
	}
	if s.BytesPerTransfer > MaxBulkTransferSize {
		return StartBulkReceiving{}, malformed(TypeStartBulkReceiving, "bytes_per_transfer", "%d exceeds %d", s.BytesPerTransfer, MaxBulkTransferSize)
	}
	if err := needIn(TypeStartBulkReceiving, s.Endpoint); err != nil {
		return StartBulkReceiving{}, err
	}
	return s, nil
}

// StopBulkReceiving stops it (usb_redir_stop_bulk_receiving, guest to
// host).
type StopBulkReceiving struct {
	StreamID uint32
	Endpoint uint8
}

func (StopBulkReceiving) Type() Type { return TypeStopBulkReceiving }
func (s StopBulkReceiving) Encode(b []byte, _ Layout) []byte {
	b, d := wirebuf.Grow(b, sizeofStopBulkReceiving)
	le.PutUint32(d[offStopBulkStreamID:], s.StreamID)
	d[offStopBulkEndpoint] = s.Endpoint
	return b
}

// DecodeStopBulkReceiving decodes a stop_bulk_receiving body; the
// endpoint must be IN.
func DecodeStopBulkReceiving(p []byte) (StopBulkReceiving, error) {
	if _, err := checkBody(TypeStopBulkReceiving, len(p), Layout{}, 0); err != nil {
		return StopBulkReceiving{}, err
	}
	s := StopBulkReceiving{StreamID: le.Uint32(p[offStopBulkStreamID:]), Endpoint: p[offStopBulkEndpoint]}
	if err := needIn(TypeStopBulkReceiving, s.Endpoint); err != nil {
		return StopBulkReceiving{}, err
	}
	return s, nil
}

// BulkReceivingStatus answers start/stop_bulk_receiving, or reports (with
// StatusStall) that receiving stopped (usb_redir_bulk_receiving_status,
// host to guest).
type BulkReceivingStatus struct {
	StreamID uint32
	Endpoint uint8
	Status   Status
}

func (BulkReceivingStatus) Type() Type { return TypeBulkReceivingStatus }
func (s BulkReceivingStatus) Encode(b []byte, _ Layout) []byte {
	b, d := wirebuf.Grow(b, sizeofBulkReceivingStatus)
	le.PutUint32(d[offBulkRecvStatusStreamID:], s.StreamID)
	d[offBulkRecvStatusEndpoint] = s.Endpoint
	d[offBulkRecvStatusStatus] = uint8(s.Status)
	return b
}

// DecodeBulkReceivingStatus decodes a bulk_receiving_status body; the
// endpoint must be IN.
func DecodeBulkReceivingStatus(p []byte) (BulkReceivingStatus, error) {
	if _, err := checkBody(TypeBulkReceivingStatus, len(p), Layout{}, 0); err != nil {
		return BulkReceivingStatus{}, err
	}
	s := BulkReceivingStatus{
		StreamID: le.Uint32(p[offBulkRecvStatusStreamID:]),
		Endpoint: p[offBulkRecvStatusEndpoint],
		Status:   Status(p[offBulkRecvStatusStatus]),
	}
	if err := needIn(TypeBulkReceivingStatus, s.Endpoint); err != nil {
		return BulkReceivingStatus{}, err
	}
	return s, nil
}

// The packets without a body. Each decoder refuses any byte.

// DeviceDisconnect: the device went away (usb_redir_device_disconnect,
// host to guest, id 0).
type DeviceDisconnect struct{}

// Reset resets the device (usb_redir_reset, guest to host).
type Reset struct{}

// GetConfiguration asks for the active configuration
// (usb_redir_get_configuration, guest to host).
type GetConfiguration struct{}

// CancelDataPacket cancels the data packet whose id the header carries
// (usb_redir_cancel_data_packet, guest to host). The host still answers
// that packet, with StatusCancelled if it had not completed.
type CancelDataPacket struct{}

// FilterReject: the guest's filter refused the device
// (usb_redir_filter_reject, guest to host, CapFilter).
type FilterReject struct{}

// DeviceDisconnectAck: the guest has seen device_disconnect and sends
// nothing more for that device (usb_redir_device_disconnect_ack, guest to
// host, CapDeviceDisconnectAck).
type DeviceDisconnectAck struct{}

func (DeviceDisconnect) Type() Type    { return TypeDeviceDisconnect }
func (Reset) Type() Type               { return TypeReset }
func (GetConfiguration) Type() Type    { return TypeGetConfiguration }
func (CancelDataPacket) Type() Type    { return TypeCancelDataPacket }
func (FilterReject) Type() Type        { return TypeFilterReject }
func (DeviceDisconnectAck) Type() Type { return TypeDeviceDisconnectAck }

func (DeviceDisconnect) Encode(b []byte, _ Layout) []byte    { return b }
func (Reset) Encode(b []byte, _ Layout) []byte               { return b }
func (GetConfiguration) Encode(b []byte, _ Layout) []byte    { return b }
func (CancelDataPacket) Encode(b []byte, _ Layout) []byte    { return b }
func (FilterReject) Encode(b []byte, _ Layout) []byte        { return b }
func (DeviceDisconnectAck) Encode(b []byte, _ Layout) []byte { return b }

// decodeEmpty checks that a bodiless packet of type t has no bytes.
func decodeEmpty[B Body](t Type, p []byte) (B, error) {
	var zero B
	if _, err := checkBody(t, len(p), Layout{}, 0); err != nil {
		return zero, err
	}
	return zero, nil
}
