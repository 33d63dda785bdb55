package redir_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/usb/redir"
)

type malformedCase struct {
	name   string
	typ    redir.Type
	layout redir.Layout
	from   redir.Role
	in     []byte
	field  string // ProtocolError.Field
	msg    string // substring of the error text
}

var malformedCases = []malformedCase{
	// Unknown types and the wrong sender.
	{"unknown type 28", 28, layout0, redir.RoleGuest, nil, "type", "unknown packet type 28"},
	{"unknown type 99", 99, layout0, redir.RoleHost, nil, "type", "unknown packet type 99"},
	{"device_connect from the guest", redir.TypeDeviceConnect, layout0, redir.RoleGuest, zeros(8), "type", "usb-guest may not send device_connect"},
	{"reset from the host", redir.TypeReset, layout0, redir.RoleHost, nil, "type", "usb-host may not send reset"},
	{"buffered bulk from the guest", redir.TypeBufferedBulkPacket, layout0, redir.RoleGuest, zeros(10), "type", "usb-guest may not send"},

	// Short and long fixed bodies.
	{"hello short", redir.TypeHello, layout0, redir.RoleGuest, zeros(63), "length", "63 bytes, need 64"},
	{"hello without NUL", redir.TypeHello, layout0, redir.RoleGuest, rep(64, []byte{'a'}), "version", "no NUL"},
	{"hello caps not whole words", redir.TypeHello, layout0, redir.RoleGuest, zeros(66), "capabilities", "2 bytes is not a whole number"},
	{"hello 65 cap words", redir.TypeHello, layout0, redir.RoleGuest, zeros(64 + 4*65), "capabilities", "65 words, at most 64"},
	{"device_connect 9 bytes with version", redir.TypeDeviceConnect, layoutQEMU, redir.RoleHost, zeros(9), "length", "9 bytes, need 10"},
	{"device_connect 10 bytes without version", redir.TypeDeviceConnect, layout0, redir.RoleHost, zeros(10), "length", "10 bytes, want exactly 8"},
	{"device_disconnect with a byte", redir.TypeDeviceDisconnect, layout0, redir.RoleHost, zeros(1), "length", "1 bytes, want exactly 0"},
	{"interface_info short", redir.TypeInterfaceInfo, layout0, redir.RoleHost, zeros(131), "length", "131 bytes, need 132"},
	{"interface_info count 33", redir.TypeInterfaceInfo, layout0, redir.RoleHost, cat(le32(33), zeros(128)), "interface_count", "33, at most 32"},
	{"ep_info 96 in a max_packet_size layout", redir.TypeEPInfo, layoutQEMU, redir.RoleHost, zeros(96), "length", "96 bytes, need 160"},
	{"ep_info 160 in the base layout", redir.TypeEPInfo, layout0, redir.RoleHost, zeros(160), "length", "160 bytes, want exactly 96"},
	{"ep_info 160 in a max_streams layout", redir.TypeEPInfo, layoutAll, redir.RoleHost, zeros(160), "length", "160 bytes, need 288"},
	{"set_configuration empty", redir.TypeSetConfiguration, layout0, redir.RoleGuest, nil, "length", "0 bytes, need 1"},
	{"configuration_status long", redir.TypeConfigurationStatus, layout0, redir.RoleHost, zeros(3), "length", "3 bytes, want exactly 2"},
	{"alt_setting_status short", redir.TypeAltSettingStatus, layout0, redir.RoleHost, zeros(2), "length", "2 bytes, need 3"},
	{"start_interrupt_receiving on OUT", redir.TypeStartInterruptReceiving, layout0, redir.RoleGuest, []byte{0x02}, "endpoint", "0x02 is an OUT endpoint"},
	{"stop_interrupt_receiving on OUT", redir.TypeStopInterruptReceiving, layout0, redir.RoleGuest, []byte{0x01}, "endpoint", "OUT endpoint"},
	{"interrupt_receiving_status on OUT", redir.TypeInterruptReceivingStatus, layout0, redir.RoleHost, []byte{0, 0x01}, "endpoint", "OUT endpoint"},
	{"bulk_streams_status short", redir.TypeBulkStreamsStatus, layout0, redir.RoleHost, zeros(8), "length", "8 bytes, need 9"},
	{"cancel_data_packet with data", redir.TypeCancelDataPacket, layout0, redir.RoleGuest, zeros(4), "length", "want exactly 0"},
	{"filter_filter empty", redir.TypeFilterFilter, layout0, redir.RoleGuest, nil, "length", "0 bytes"},
	{"filter_filter without NUL", redir.TypeFilterFilter, layout0, redir.RoleGuest, []byte("-1"), "filter", "not NUL-terminated"},
	{"filter_filter inner NUL", redir.TypeFilterFilter, layout0, redir.RoleGuest, []byte("a\x00b\x00"), "filter", "NUL at byte 1 of 4"},
	{"start_bulk_receiving too big", redir.TypeStartBulkReceiving, layout0, redir.RoleGuest, cat(le32(0), le32(128<<20+1), []byte{0x81, 1}), "bytes_per_transfer", "exceeds"},
	{"start_bulk_receiving on OUT", redir.TypeStartBulkReceiving, layout0, redir.RoleGuest, cat(le32(0), le32(512), []byte{0x01, 1}), "endpoint", "OUT endpoint"},
	{"stop_bulk_receiving on OUT", redir.TypeStopBulkReceiving, layout0, redir.RoleGuest, cat(le32(0), []byte{0x01}), "endpoint", "OUT endpoint"},
	{"bulk_receiving_status on OUT", redir.TypeBulkReceivingStatus, layout0, redir.RoleHost, cat(le32(0), []byte{0x01, 0}), "endpoint", "OUT endpoint"},

	// Data packets: the data must match length, and go the endpoint's way.
	{"control_packet short", redir.TypeControlPacket, layout0, redir.RoleGuest, zeros(9), "length", "9 bytes, need 10"},
	{"control OUT data shorter than length", redir.TypeControlPacket, layout0, redir.RoleGuest,
		cat([]byte{0x00, 1, 0x40, 0}, le16(0), le16(0), le16(4), []byte{1, 2}), "length", "4, but 2 bytes of data follow"},
	{"control IN request with data", redir.TypeControlPacket, layout0, redir.RoleGuest,
		cat([]byte{0x80, 6, 0x80, 0}, le16(0x100), le16(0), le16(18), []byte{1}), "data", "1 bytes where none may be"},
	{"control IN answer longer than length", redir.TypeControlPacket, layout0, redir.RoleHost,
		cat([]byte{0x80, 6, 0x80, 0}, le16(0x100), le16(0), le16(1), []byte{1, 2}), "length", "1, but 2 bytes"},
	{"bulk_packet 8 bytes in a 32-bit-length layout", redir.TypeBulkPacket, layoutQEMU, redir.RoleGuest, zeros(8), "length", "8 bytes, need 10"},
	{"bulk_packet length above 128 MiB", redir.TypeBulkPacket, layoutQEMU, redir.RoleGuest,
		cat([]byte{0x81, 0}, le16(1), le32(0), le16(0x0800)), "length_high", "exceeds"},
	{"bulk OUT answer with data", redir.TypeBulkPacket, layoutQEMU, redir.RoleHost,
		cat([]byte{0x01, 0}, le16(1), le32(0), le16(0), []byte{9}), "data", "where none may be"},
	{"iso_packet the wrong way", redir.TypeISOPacket, layout0, redir.RoleGuest, cat([]byte{0x83, 0}, le16(0)), "endpoint", "wrong direction"},
	{"interrupt_packet IN from the guest", redir.TypeInterruptPacket, layout0, redir.RoleGuest, cat([]byte{0x82, 0}, le16(8)), "endpoint", "use start_interrupt_receiving"},
	{"interrupt_packet length mismatch", redir.TypeInterruptPacket, layout0, redir.RoleHost, cat([]byte{0x82, 0}, le16(8), []byte{1}), "length", "8, but 1 bytes"},
	{"buffered_bulk_packet for OUT", redir.TypeBufferedBulkPacket, layout0, redir.RoleHost, cat(le32(0), le32(0), []byte{0x01, 0}), "endpoint", "OUT endpoint 0x01"},
	{"buffered_bulk_packet length above 128 MiB", redir.TypeBufferedBulkPacket, layout0, redir.RoleHost, cat(le32(0), le32(128<<20+1), []byte{0x81, 0}), "length", "exceeds"},
	{"buffered_bulk_packet short data", redir.TypeBufferedBulkPacket, layout0, redir.RoleHost, cat(le32(0), le32(5), []byte{0x81, 0}, []byte{1}), "length", "5, but 1 bytes"},
}

func TestMalformed(t *testing.T) {
	for _, m := range malformedCases {
		t.Run(m.name, func(t *testing.T) {
			v, err := redir.Decode(m.typ, m.in, m.layout, m.from)
			require.Nil(t, v)
			require.ErrorIs(t, err, redir.ErrMalformed)
			var pe *redir.ProtocolError
			require.True(t, errors.As(err, &pe), "%T", err)
			require.Equal(t, m.typ, pe.Type)
			require.Equal(t, m.field, pe.Field, "%v", err)
			require.Contains(t, err.Error(), m.msg)
		})
	}
}

func TestDecodeHeaderShort(t *testing.T) {
	_, err := redir.DecodeHeader(cat(le32(1), le32(8), le32(0)), layoutQEMU)
	var pe *redir.ProtocolError
	require.ErrorAs(t, err, &pe)
	require.ErrorIs(t, err, redir.ErrMalformed)
	require.Equal(t, "header", pe.Field)
	require.Equal(t, redir.TypeDeviceConnect, pe.Type)
	require.Contains(t, err.Error(), "12 bytes, need 16")
}

func TestDecodeBadRole(t *testing.T) {
	_, err := redir.Decode(redir.TypeReset, nil, layout0, 0)
	require.ErrorIs(t, err, redir.ErrInvalid)
	_, err = redir.DecodeBulkPacket(zeros(8), layout0, 3)
	require.ErrorIs(t, err, redir.ErrInvalid)
}

func TestNegotiate(t *testing.T) {
	require.Equal(t, layoutQEMU, redir.Negotiate(ourCaps, qemuCaps))
	require.Equal(t, layoutQEMU, redir.Negotiate(qemuCaps, ourCaps))
	require.Equal(t, layoutAll, redir.Negotiate(qemuCaps, qemuCaps))
	require.Equal(t, layout0, redir.Negotiate(nil, qemuCaps))
	// bulk_streams without ep_info_max_packet_size does not count.
	streamsOnly := redir.Caps{}.With(redir.CapBulkStreams)
	require.False(t, redir.Negotiate(streamsOnly, qemuCaps).EPMaxStreams)
	require.True(t, redir.Caps{}.With(40).Has(40))
	require.False(t, qemuCaps.Has(40))
}
