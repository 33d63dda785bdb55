package user

// REGION_READ (9), REGION_WRITE (10) and REGION_WRITE_MULTI (15): the
// client's accesses to device regions.
//
// REGION_READ (9) / REGION_WRITE (10)

import (
	"math"

	"github.com/ycq-dev/ycq/internal/wirebuf"
	"github.com/ycq-dev/ycq/vfio"
)

const (
	sizeofRegionAccess    = 16
	offRegionAccessOffset = 0  // u64 offset into the region
	offRegionAccessRegion = 8  // u32 region index
	offRegionAccessCount  = 12 // u32 count
	offRegionAccessData   = 16 // count data bytes (read reply, write request)
)

// RegionAccess is the REGION_READ request and the REGION_WRITE reply
// (struct vfio_user_region_access without data).
type RegionAccess struct {
	Offset uint64
	Region vfio.RegionIndex
	Count  uint32
}

// RegionData is the REGION_READ reply and the REGION_WRITE request: the
// same head with count = len(Data), then the data. A decoded Data aliases
// the payload.
type RegionData struct {
	Offset uint64
	Region vfio.RegionIndex
	Data   []byte
}

// Encode appends the 16-byte head.
func (a RegionAccess) Encode(b []byte) []byte {
	b, s := wirebuf.Grow(b, sizeofRegionAccess)
	le.PutUint64(s[offRegionAccessOffset:], a.Offset)
	le.PutUint32(s[offRegionAccessRegion:], uint32(a.Region))
	le.PutUint32(s[offRegionAccessCount:], a.Count)
	return b
}

// Encode appends the head with count = len(Data), then Data. It fails if
// Data is longer than a u32 count can say.
func (d RegionData) Encode(b []byte) ([]byte, error) {
	if uint64(len(d.Data)) > math.MaxUint32 {
		return b, invalidf("region data of %d bytes does not fit count", len(d.Data))
	}
	b = RegionAccess{Offset: d.Offset, Region: d.Region, Count: uint32(len(d.Data))}.Encode(b)
	return append(b, d.Data...), nil
}

// DecodeRegionReadRequest decodes a REGION_READ request (16 bytes; more
// are ignored).
func DecodeRegionReadRequest(p []byte) (RegionAccess, error) {
	return decodeRegionAccess(CmdRegionRead, p)
}

// DecodeRegionWriteReply decodes a REGION_WRITE reply (16 bytes; more are
// ignored).
func DecodeRegionWriteReply(p []byte) (RegionAccess, error) {
	return decodeRegionAccess(CmdRegionWrite, p)
}

// DecodeRegionReadReply decodes a REGION_READ reply: the head and exactly
// count data bytes.
func DecodeRegionReadReply(p []byte) (RegionData, error) {
	return decodeRegionData(CmdRegionRead, p)
}

// DecodeRegionWriteRequest decodes a REGION_WRITE request: the head and
// exactly count data bytes.
func DecodeRegionWriteRequest(p []byte) (RegionData, error) {
	return decodeRegionData(CmdRegionWrite, p)
}

func decodeRegionAccess(cmd Command, p []byte) (RegionAccess, error) {
	if len(p) < sizeofRegionAccess {
		return RegionAccess{}, malformed(cmd, "payload", "%d bytes, need %d", len(p), sizeofRegionAccess)
	}
	return RegionAccess{
		Offset: le.Uint64(p[offRegionAccessOffset:]),
		Region: vfio.RegionIndex(le.Uint32(p[offRegionAccessRegion:])),
		Count:  le.Uint32(p[offRegionAccessCount:]),
	}, nil
}

func decodeRegionData(cmd Command, p []byte) (RegionData, error) {
	a, err := decodeRegionAccess(cmd, p)
	if err != nil {
		return RegionData{}, err
	}
	if have := uint64(len(p) - sizeofRegionAccess); uint64(a.Count) != have {
		return RegionData{}, malformed(cmd, "count", "%d data bytes claimed, %d present", a.Count, have)
	}
	return RegionData{Offset: a.Offset, Region: a.Region, Data: wirebuf.NilIfEmpty(p[offRegionAccessData:])}, nil
}

// ---------------------------------------------------------------------------
// REGION_WRITE_MULTI (15)

const (
	sizeofWriteMulti     = 8 // u64 wr_cnt
	offWriteMultiCount   = 0
	offWriteMultiEntries = 8 // wr_cnt entries

	sizeofWriteMultiEntry   = 24
	offWriteMultiEntOffset  = 0  // u64 offset
	offWriteMultiEntRegion  = 8  // u32 region
	offWriteMultiEntCount   = 12 // u32 count, <= 8
	offWriteMultiEntData    = 16 // u8 data[8]
	WriteMultiMaxData       = 8  // the most one entry can write (VFIO_USER_MULTI_DATA)
	sizeofWriteMultiReply   = 8  // u64 wr_cnt: writes completed
	offWriteMultiReplyCount = 0
)

// WriteMultiEntry is one coalesced write of REGION_WRITE_MULTI. Only the
// first Count bytes of Data are written; the rest travel as they are.
type WriteMultiEntry struct {
	Offset uint64
	Region vfio.RegionIndex
	Count  uint32 // <= WriteMultiMaxData
	Data   [WriteMultiMaxData]byte
}

// Bytes returns the bytes the entry writes (Data[:Count], clamped to 8).
func (e *WriteMultiEntry) Bytes() []byte { return e.Data[:min(e.Count, WriteMultiMaxData)] }

// RegionWriteMulti is the REGION_WRITE_MULTI request. QEMU sends it only to
// a server that offered write_multiple, with NO_REPLY, and up to 200
// entries. devicemodel's server decodes it; this package's Client does not
// send it (it writes registers one REGION_WRITE at a time), so Encode and
// DecodeRegionWriteMultiReply are the client half for another Go client, and
// for tests that play QEMU.
type RegionWriteMulti struct {
	Writes []WriteMultiEntry
}

// Encode appends wr_cnt and the entries as given (a Count over 8 is written
// as is; DecodeRegionWriteMulti refuses it).
func (m RegionWriteMulti) Encode(b []byte) []byte {
	b, s := wirebuf.Grow(b, sizeofWriteMulti+len(m.Writes)*sizeofWriteMultiEntry)
	le.PutUint64(s[offWriteMultiCount:], uint64(len(m.Writes)))
	for i := range m.Writes {
		w := &m.Writes[i]
		e := s[offWriteMultiEntries+i*sizeofWriteMultiEntry:]
		le.PutUint64(e[offWriteMultiEntOffset:], w.Offset)
		le.PutUint32(e[offWriteMultiEntRegion:], uint32(w.Region))
		le.PutUint32(e[offWriteMultiEntCount:], w.Count)
		copy(e[offWriteMultiEntData:offWriteMultiEntData+WriteMultiMaxData], w.Data[:])
	}
	return b
}

// DecodeRegionWriteMulti decodes a REGION_WRITE_MULTI request: wr_cnt, then
// exactly wr_cnt 24-byte entries, each with count <= 8.
func DecodeRegionWriteMulti(p []byte) (RegionWriteMulti, error) {
	const cmd = CmdRegionWriteMulti
	if len(p) < sizeofWriteMulti {
		return RegionWriteMulti{}, malformed(cmd, "wr_cnt", "%d bytes, need %d", len(p), sizeofWriteMulti)
	}
	n := le.Uint64(p[offWriteMultiCount:])
	rest := uint64(len(p) - sizeofWriteMulti)
	if n > rest/sizeofWriteMultiEntry || n*sizeofWriteMultiEntry != rest {
		return RegionWriteMulti{}, malformed(cmd, "wr_cnt", "%d entries claimed, %d bytes of entries present", n, rest)
	}
	var m RegionWriteMulti
	if n > 0 {
		m.Writes = make([]WriteMultiEntry, n) // n is bounded by the bytes present
	}
	for i := range m.Writes {
		e := p[offWriteMultiEntries+i*sizeofWriteMultiEntry:]
		w := &m.Writes[i]
		w.Offset = le.Uint64(e[offWriteMultiEntOffset:])
		w.Region = vfio.RegionIndex(le.Uint32(e[offWriteMultiEntRegion:]))
		w.Count = le.Uint32(e[offWriteMultiEntCount:])
		if w.Count > WriteMultiMaxData {
			return RegionWriteMulti{}, malformed(cmd, "count", "entry %d writes %d bytes, at most %d fit", i, w.Count, WriteMultiMaxData)
		}
		copy(w.Data[:], e[offWriteMultiEntData:offWriteMultiEntData+WriteMultiMaxData])
	}
	return m, nil
}

// RegionWriteMultiReply is the REGION_WRITE_MULTI reply: writes completed.
type RegionWriteMultiReply struct {
	Count uint64 // wr_cnt
}

// Encode appends the 8-byte reply.
func (r RegionWriteMultiReply) Encode(b []byte) []byte {
	b, s := wirebuf.Grow(b, sizeofWriteMultiReply)
	le.PutUint64(s[offWriteMultiReplyCount:], r.Count)
	return b
}

// DecodeRegionWriteMultiReply decodes the 8-byte reply (more are ignored).
func DecodeRegionWriteMultiReply(p []byte) (RegionWriteMultiReply, error) {
	if len(p) < sizeofWriteMultiReply {
		return RegionWriteMultiReply{}, malformed(CmdRegionWriteMulti, "wr_cnt", "%d bytes, need %d", len(p), sizeofWriteMultiReply)
	}
	return RegionWriteMultiReply{Count: le.Uint64(p[offWriteMultiReplyCount:])}, nil
}
