package redir_test

import (
	"encoding/binary"

	"github.com/ycq-dev/ycq/usb/redir"
)

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func zeros(n int) []byte   { return make([]byte, n) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// str64 is a version field: s, then NULs to 64 bytes.
func str64(s string) []byte { return append([]byte(s), zeros(64-len(s))...) }

// rep is n copies of the bytes of v.
func rep(n int, v []byte) []byte {
	var b []byte
	for range n {
		b = append(b, v...)
	}
	return b
}

// The layouts the tests use.
var (
	// layout0 is the one before the hellos: 32-bit ids, no optional fields.
	layout0 = redir.Layout{}
	// layoutQEMU is what QEMU and a device model with the caps of
	// ourCaps settle on.
	layoutQEMU = redir.Layout{IDs64: true, DeviceVersion: true, EPMaxPacketSize: true, BulkLength32: true}
	// layoutAll has every optional field.
	layoutAll = redir.Layout{IDs64: true, DeviceVersion: true, EPMaxPacketSize: true, EPMaxStreams: true, BulkLength32: true}
)

// layoutFromBits turns the low 5 bits of b into a Layout, for fuzzing.
func layoutFromBits(b byte) redir.Layout {
	l := redir.Layout{
		IDs64:           b&1 != 0,
		DeviceVersion:   b&2 != 0,
		EPMaxPacketSize: b&4 != 0,
		BulkLength32:    b&16 != 0,
	}
	l.EPMaxStreams = l.EPMaxPacketSize && b&8 != 0
	return l
}

func layoutBits(l redir.Layout) byte {
	var b byte
	for i, on := range []bool{l.IDs64, l.DeviceVersion, l.EPMaxPacketSize, l.EPMaxStreams, l.BulkLength32} {
		if on {
			b |= 1 << i
		}
	}
	return b
}
