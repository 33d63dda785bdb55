// Package redir is the USB Network Redirection protocol (usbredir), the
// wire format QEMU's usb-redir device speaks over a chardev socket, for a
// usb-host side: a device model that serves QEMU (the usb-guest) a USB
// device it does not physically have.
//
// # Version and capabilities
//
// Protocol version 0.7 (usbredir's docs/usb-redirection-protocol.md and
// usbredirproto.h). Every packet type of 0.7 is modelled: hello,
// device_connect and device_disconnect, reset, interface_info, ep_info,
// the configuration and alternate setting requests and status replies,
// the iso stream, interrupt receiving, bulk streams and bulk receiving
// control packets, cancel_data_packet, filter_reject, filter_filter,
// device_disconnect_ack, and the data packets control_packet,
// bulk_packet, iso_packet, interrupt_packet and buffered_bulk_packet.
//
// The capabilities that change the wire format are all supported, through
// Layout, which Negotiate derives from the two hellos:
// usb_redir_cap_64bits_ids (the header's id is 64 bits, so the header is
// 16 bytes instead of 12), usb_redir_cap_connect_device_version
// (device_connect gains device_version_bcd), usb_redir_cap_ep_info_max_packet_size
// and usb_redir_cap_bulk_streams (ep_info gains max_packet_size, then
// max_streams) and usb_redir_cap_32bits_bulk_length (bulk_packet gains
// length_high). The hellos themselves are always sent in the zero Layout.
// The other capabilities (filter, device_disconnect_ack, bulk_receiving)
// only say which packets a peer may be sent; whether to send them is the
// device model's choice, so this package names them and leaves it there.
//
// # What is here
//
// The wire_*.go files own the binary layouts with named sizes and
// offsets: the header (wire_header.go), the control packets
// (wire_control.go), the data packets (wire_data.go), and what they share
// (wire.go: types, codes, capabilities, Layout, the size of each type's
// body). Each packet type is a struct with Encode, which appends to a
// caller's slice, and a DecodeX function; Decode dispatches on the type.
// conn.go frames packets on a byte stream: Reader reads one at a time
// into a reused buffer, Writer writes one with a single write (headers
// and data apart, with writev on a net.Conn).
//
// # Decoding rules
//
// Input is hostile. Decoders check every length against the type and
// Layout before reading a field, never panic, and refuse bad input with a
// *ProtocolError naming the type and field, which unwraps to
// ErrMalformed. They apply the checks usbredirparser applies: a fixed
// body has exactly its size; interface_count is at most 32; the
// receiving packets name IN endpoints; bulk lengths and
// bytes_per_transfer are at most MaxBulkTransferSize; filter_filter is
// NUL-terminated; a data packet carries data only the endpoint's way (the
// guest's to an OUT endpoint, the host's from an IN one) and then exactly
// length bytes of it; and a type may come only from the role that sends
// it (Type.SentBy). Stricter than usbredirparser: a hello's version must
// be NUL-terminated and its capability array whole words (at most 64),
// and filter_filter may hold only the one NUL, so that every accepted
// body re-encodes to the same bytes (a hello up to bytes after its NUL).
//
// What the wire cannot tell is left to the device model: whether a
// packet was announced by the capabilities, whether an endpoint exists,
// whether an id is in flight.
//
// # Memory and concurrency
//
// Decoded data packets carry their data as a slice of the decoder's
// input, never a copy; the Reader's Packet.Body, and so that data, is
// valid until the next Reader.Next. The Writer writes a data packet's
// data straight from the caller's slice. A Reader grows its buffer no
// further than 64 KiB ahead of the bytes that arrived, so a length that
// lies costs only what was sent. Reader and Writer are each for one
// goroutine at a time; reading and writing the same connection from two
// goroutines is fine.
//
// # Left out
//
// Byte streams only: usbredir passes no file descriptors. The usbredirfilter
// rule language inside filter_filter is carried as a string, not parsed
// (QEMU sends one only if given a filter property). Migration of
// usbredirparser state (QEMU's fl_no_hello path) is not a wire format.
// Nothing here keeps connection state: which hello has been seen, the
// ids in flight, the device's endpoints belong to the device model.
package redir
