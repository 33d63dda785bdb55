package user

// The wire_*.go files own the vfio-user binary layouts, one message family
// each: the header and command ids (wire_header.go), VERSION, DMA_MAP and
// DMA_UNMAP, the device info and feature payloads, region info with its
// capability chain, the interrupt messages, region access, DMA_READ and
// DMA_WRITE, and migration data. Every request and reply payload is
// defined once there, with named sizes and offsets. Nothing else in the
// package indexes message bytes with a bare number. The JSON text inside
// VERSION is modelled in capabilities.go. This file holds what they share.
//
// Sources: the protocol specification (QEMU docs/interop/vfio-user.rst),
// the structures QEMU's client actually sends (QEMU hw/vfio-user/protocol.h)
// and, for the structs vfio-user borrows from the kernel (vfio_region_info
// and its capabilities, vfio_irq_info, vfio_irq_set), linux/vfio.h.
// Protocol names are kept in the comments; Go names are used in code.
//
// All integers are little-endian. The protocol says "host order"; this
// package supports the little-endian hosts (x86-64, arm64) QEMU runs on.

import (
	"encoding/binary"
	"strconv"
)

var le = binary.LittleEndian

// orSize returns argsz, or def when argsz is 0.
func orSize(argsz, def uint32) uint32 {
	if argsz == 0 {
		return def
	}
	return argsz
}

// offArgSz is where every payload that has an argsz keeps it.
const offArgSz = 0

// needArgSz checks that p holds a fixed part of size bytes that starts with
// a u32 argsz no smaller than that fixed part.
func needArgSz(cmd Command, p []byte, size int) error {
	if len(p) < size {
		return malformed(cmd, "payload", "%d bytes, need %d", len(p), size)
	}
	if argsz := le.Uint32(p[offArgSz:]); argsz < uint32(size) {
		return malformed(cmd, "argsz", "%d is smaller than the %d-byte fixed part", argsz, size)
	}
	return nil
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
