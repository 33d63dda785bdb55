package user

// DMA_READ (11) / DMA_WRITE (12), server to client, in two wire variants.

import (
	"math"

	"github.com/ycq-dev/ycq/internal/wirebuf"
)

// DMAWire selects the layout of DMA_READ and DMA_WRITE bodies, which the
// specification and QEMU disagree on. Pick it per connection: DMAWireQEMU
// when the client is QEMU (every released version), DMAWireSpec for
// libvfio-user, rust-vmm and this project's own client.
type DMAWire uint8

const (
	// DMAWireSpec is the specification's layout (libvfio-user's packed
	// struct vfio_user_dma_region_access): u64 address, u64 count, data
	// at payload offset 16. The DMA_WRITE reply echoes address and count
	// (the spec's table prints the reply count as 4 bytes; libvfio-user
	// sends and checks 8, and so does this package).
	DMAWireSpec DMAWire = iota
	// DMAWireQEMU is what QEMU's unpacked struct {hdr; u64 offset; u32
	// count; char data[];} puts on the wire: u64 address, u32 count, data
	// at payload offset 12, and the payload padded to at least 16 bytes
	// (the C struct's size): a request without data is 16 bytes (the last
	// 4 zero), a body with data is 16+count bytes with 4 bytes after the
	// data. QEMU refuses messages shorter than 32 bytes in all, reads
	// DMA_WRITE data from offset 12 and answers DMA_WRITE with a bare
	// header.
	DMAWireQEMU
)

// Layouts of the two variants.
const (
	sizeofDMASpec     = 16
	offDMASpecAddress = 0  // u64 address
	offDMASpecCount   = 8  // u64 count
	offDMASpecData    = 16 // data

	sizeofDMAQEMU     = 16 // sizeof(VFIOUserDMARW) - header: 8 + 4 + 4 bytes of tail padding
	offDMAQEMUAddress = 0  // u64 offset (an address)
	offDMAQEMUCount   = 8  // u32 count
	offDMAQEMUData    = 12 // data, overlapping the struct's tail padding
	dmaQEMUTail       = sizeofDMAQEMU - offDMAQEMUData
)

func (w DMAWire) String() string {
	switch w {
	case DMAWireSpec:
		return "spec"
	case DMAWireQEMU:
		return "qemu"
	}
	return "DMAWire(" + itoa(uint64(w)) + ")"
}

// DMAReadRequest is the DMA_READ request: read Count bytes at Address.
type DMAReadRequest struct {
	Address uint64
	Count   uint64 // at most max_data_xfer_size; at most 2^32-1 with DMAWireQEMU
}

// DMAReadReply is the DMA_READ reply: the data read; count = len(Data).
type DMAReadReply struct {
	Address uint64
	Data    []byte // aliases the payload when decoded
}

// DMAWriteRequest is the DMA_WRITE request: write Data at Address.
type DMAWriteRequest struct {
	Address uint64
	Data    []byte // aliases the payload when decoded
}

// DMAWriteReply is the DMA_WRITE reply. With DMAWireSpec it echoes address
// and count; with DMAWireQEMU it is empty and decodes as the zero value.
type DMAWriteReply struct {
	Address uint64
	Count   uint64
}

// Encode appends the DMA_READ request in wire layout w.
func (m DMAReadRequest) Encode(b []byte, w DMAWire) ([]byte, error) {
	return encodeDMA(b, w, m.Address, m.Count, nil, false)
}

// Encode appends the DMA_READ reply in wire layout w.
func (m DMAReadReply) Encode(b []byte, w DMAWire) ([]byte, error) {
	return encodeDMA(b, w, m.Address, uint64(len(m.Data)), m.Data, true)
}

// Encode appends the DMA_WRITE request in wire layout w.
func (m DMAWriteRequest) Encode(b []byte, w DMAWire) ([]byte, error) {
	return encodeDMA(b, w, m.Address, uint64(len(m.Data)), m.Data, true)
}

// Encode appends the DMA_WRITE reply in wire layout w: nothing for
// DMAWireQEMU.
func (m DMAWriteReply) Encode(b []byte, w DMAWire) ([]byte, error) {
	if w == DMAWireQEMU {
		return b, nil
	}
	return encodeDMA(b, w, m.Address, m.Count, nil, false)
}

// DecodeDMAReadRequest decodes a DMA_READ request in wire layout w (16
// bytes either way; more are ignored).
func DecodeDMAReadRequest(p []byte, w DMAWire) (DMAReadRequest, error) {
	addr, count, _, err := decodeDMA(CmdDMARead, p, w, false)
	return DMAReadRequest{Address: addr, Count: count}, err
}

// DecodeDMAReadReply decodes a DMA_READ reply in wire layout w: exactly
// count data bytes (plus QEMU's 4 tail bytes).
func DecodeDMAReadReply(p []byte, w DMAWire) (DMAReadReply, error) {
	addr, _, data, err := decodeDMA(CmdDMARead, p, w, true)
	if err != nil {
		return DMAReadReply{}, err
	}
	return DMAReadReply{Address: addr, Data: data}, nil
}

// DecodeDMAWriteRequest decodes a DMA_WRITE request in wire layout w:
// exactly count data bytes (plus QEMU's 4 tail bytes).
func DecodeDMAWriteRequest(p []byte, w DMAWire) (DMAWriteRequest, error) {
	addr, _, data, err := decodeDMA(CmdDMAWrite, p, w, true)
	if err != nil {
		return DMAWriteRequest{}, err
	}
	return DMAWriteRequest{Address: addr, Data: data}, nil
}

// DecodeDMAWriteReply decodes a DMA_WRITE reply in wire layout w. QEMU's
// reply has no payload, so with DMAWireQEMU there is nothing to check and
// the result is the zero value.
func DecodeDMAWriteReply(p []byte, w DMAWire) (DMAWriteReply, error) {
	if w == DMAWireQEMU {
		return DMAWriteReply{}, nil
	}
	addr, count, _, err := decodeDMA(CmdDMAWrite, p, w, false)
	return DMAWriteReply{Address: addr, Count: count}, err
}

func encodeDMA(b []byte, w DMAWire, addr, count uint64, data []byte, withData bool) ([]byte, error) {
	switch w {
	case DMAWireSpec:
		b, s := wirebuf.Grow(b, sizeofDMASpec)
		le.PutUint64(s[offDMASpecAddress:], addr)
		le.PutUint64(s[offDMASpecCount:], count)
		return append(b, data...), nil
	case DMAWireQEMU:
		if count > math.MaxUint32 {
			return b, invalidf("DMA count %d does not fit QEMU's u32 count", count)
		}
		n := sizeofDMAQEMU
		if withData {
			n = offDMAQEMUData + len(data) + dmaQEMUTail
		}
		b, s := wirebuf.Grow(b, n)
		le.PutUint64(s[offDMAQEMUAddress:], addr)
		le.PutUint32(s[offDMAQEMUCount:], uint32(count))
		copy(s[offDMAQEMUData:], data)
		return b, nil
	}
	return b, invalidf("unknown DMA wire layout %d", w)
}

func decodeDMA(cmd Command, p []byte, w DMAWire, withData bool) (addr, count uint64, data []byte, err error) {
	switch w {
	case DMAWireSpec:
		if len(p) < sizeofDMASpec {
			return 0, 0, nil, malformed(cmd, "payload", "%d bytes, need %d (spec layout)", len(p), sizeofDMASpec)
		}
		addr, count = le.Uint64(p[offDMASpecAddress:]), le.Uint64(p[offDMASpecCount:])
		if withData {
			if have := uint64(len(p) - sizeofDMASpec); count != have {
				return 0, 0, nil, malformed(cmd, "count", "%d data bytes claimed, %d present (spec layout)", count, have)
			}
			data = wirebuf.NilIfEmpty(p[offDMASpecData:])
		}
		return addr, count, data, nil
	case DMAWireQEMU:
		if len(p) < sizeofDMAQEMU {
			return 0, 0, nil, malformed(cmd, "payload", "%d bytes, need %d (QEMU layout)", len(p), sizeofDMAQEMU)
		}
		addr, count = le.Uint64(p[offDMAQEMUAddress:]), uint64(le.Uint32(p[offDMAQEMUCount:]))
		if withData {
			if have := uint64(len(p) - sizeofDMAQEMU); count != have {
				return 0, 0, nil, malformed(cmd, "count", "%d data bytes claimed, room for %d (QEMU layout: data at 12, 4 tail bytes)", count, have)
			}
			data = wirebuf.NilIfEmpty(p[offDMAQEMUData : offDMAQEMUData+int(count)])
		}
		return addr, count, data, nil
	}
	return 0, 0, nil, invalidf("unknown DMA wire layout %d", w)
}
