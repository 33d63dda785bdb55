package user

// DEVICE_GET_REGION_INFO (5): struct vfio_region_info and its capability
// chain (sparse mmap areas, region type).

import (
	"math"

	"github.com/ycq-dev/ycq/internal/wirebuf"
	"github.com/ycq-dev/ycq/vfio"
)

const (
	sizeofRegionInfo       = 32
	offRegionInfoArgSz     = 0  // u32 argsz
	offRegionInfoFlags     = 4  // u32 flags
	offRegionInfoIndex     = 8  // u32 index
	offRegionInfoCapOffset = 12 // u32 cap_offset: first capability, from the start of the payload
	offRegionInfoSize      = 16 // u64 size
	offRegionInfoOffset    = 24 // u64 offset: mmap offset in the region's fd

	// Capability header (struct vfio_info_cap_header).
	sizeofCapHeader  = 8
	offCapID         = 0 // u16 id
	offCapVersion    = 2 // u16 version
	offCapNext       = 4 // u32 next: next capability from the start of the payload; 0 ends the chain
	capVersionLayout = 1 // the version whose layout this file knows, for both capabilities below

	// VFIO_REGION_INFO_CAP_SPARSE_MMAP body (struct vfio_region_info_cap_sparse_mmap).
	sizeofCapSparseMmap = 16 // header + nr_areas + reserved
	offSparseNrAreas    = 8  // u32 nr_areas
	offSparseReserved   = 12 // u32 reserved: never read, named so the layout test pins it
	offSparseAreas      = 16 // nr_areas x struct vfio_region_sparse_mmap_area
	sizeofSparseArea    = 16
	offAreaOffset       = 0 // u64 offset, relative to the region
	offAreaSize         = 8 // u64 size

	// VFIO_REGION_INFO_CAP_TYPE body (struct vfio_region_info_cap_type).
	sizeofCapType     = 16
	offCapTypeType    = 8  // u32 type
	offCapTypeSubtype = 12 // u32 subtype
)

// RegionFlags are the region info flags.
type RegionFlags uint32

const (
	RegionFlagRead  RegionFlags = 1 << 0 // VFIO_REGION_INFO_FLAG_READ
	RegionFlagWrite RegionFlags = 1 << 1 // VFIO_REGION_INFO_FLAG_WRITE
	RegionFlagMmap  RegionFlags = 1 << 2 // VFIO_REGION_INFO_FLAG_MMAP: the reply carries the region's fd
	RegionFlagCaps  RegionFlags = 1 << 3 // VFIO_REGION_INFO_FLAG_CAPS: cap_offset starts a chain
)

// Capability ids of the region info chain.
const (
	CapSparseMmap uint16 = 1 // VFIO_REGION_INFO_CAP_SPARSE_MMAP
	CapType       uint16 = 2 // VFIO_REGION_INFO_CAP_TYPE
)

// RegionInfo is the DEVICE_GET_REGION_INFO request and reply (struct
// vfio_region_info plus its capability chain). In the request only ArgSz
// (the largest reply payload the client takes; QEMU starts with 32) and
// Index matter. A reply whose ArgSz exceeds what the client offered carries
// only the 32-byte struct: the client retries with the larger ArgSz.
type RegionInfo struct {
	ArgSz     uint32 // argsz: request: reply buffer size; reply: size needed. 0 to encode means the encoded size
	Flags     RegionFlags
	Index     vfio.RegionIndex
	CapOffset uint32 // cap_offset: where the chain starts (normally 32), 0 for none
	Size      uint64 // size of the region; 0 = not implemented
	Offset    uint64 // offset to mmap the region's fd at
	// Caps is the capability chain, in chain order (replies only).
	Caps []RegionCap
}

// RegionCap is one capability of a region info chain: a SparseMmapCap, a
// RegionTypeCap or, for any other id or version, a RawRegionCap.
type RegionCap interface {
	// CapID returns the capability id.
	CapID() uint16
	regionCap()
}

// SparseArea is one mmap-able area of a region (struct
// vfio_region_sparse_mmap_area); the client maps RegionInfo.Offset+Offset.
type SparseArea struct {
	Offset uint64
	Size   uint64
}

// SparseMmapCap is VFIO_REGION_INFO_CAP_SPARSE_MMAP, version 1: the parts
// of a region the client may mmap.
type SparseMmapCap struct {
	Areas []SparseArea
}

// RegionTypeCap is VFIO_REGION_INFO_CAP_TYPE, version 1: the type of a
// device-specific region (index >= 9).
type RegionTypeCap struct {
	Type    uint32
	Subtype uint32
}

// RawRegionCap is a capability whose id and version this package does not
// lay out. Data holds the bytes after its 8-byte header up to the next
// capability. The chain does not say how long the last capability is, so
// when a raw capability ends the chain its decoded Data is empty (Encode
// still writes whatever Data it is given).
type RawRegionCap struct {
	ID      uint16
	Version uint16
	Data    []byte
}

func (SparseMmapCap) CapID() uint16  { return CapSparseMmap }
func (RegionTypeCap) CapID() uint16  { return CapType }
func (c RawRegionCap) CapID() uint16 { return c.ID }
func (SparseMmapCap) regionCap()     {}
func (RegionTypeCap) regionCap()     {}
func (RawRegionCap) regionCap()      {}

// SparseMmap returns the sparse mmap capability, if the chain has one.
func (r RegionInfo) SparseMmap() (SparseMmapCap, bool) {
	for _, c := range r.Caps {
		if s, ok := c.(SparseMmapCap); ok {
			return s, true
		}
	}
	return SparseMmapCap{}, false
}

// Type returns the region type capability, if the chain has one. It is how
// a client finds what a device-specific region (index >=
// vfio.NumPCIRegions) is; this package's Client serves only the PCI
// regions and does not look.
func (r RegionInfo) Type() (RegionTypeCap, bool) {
	for _, c := range r.Caps {
		if t, ok := c.(RegionTypeCap); ok {
			return t, true
		}
	}
	return RegionTypeCap{}, false
}

// Encode appends the region info payload. With no Caps it is the 32-byte
// struct written as given (an ArgSz above 32 then tells the client to retry
// with a bigger buffer). With Caps, the chain is laid out contiguously from
// CapOffset (32 if 0), in order, each next pointing at the following
// capability; Flags gains RegionFlagCaps, ArgSz 0 becomes the encoded size,
// and a larger ArgSz pads the payload with zeros to ArgSz bytes. It
// fails if a capability cannot be placed: CapOffset inside the fixed part,
// two capabilities of a known type, a raw capability that would decode as a
// known one, or a payload beyond 4 GiB.
func (r RegionInfo) Encode(b []byte) ([]byte, error) {
	end := uint64(sizeofRegionInfo)
	first := uint64(r.CapOffset)
	if len(r.Caps) > 0 {
		if first == 0 {
			first = sizeofRegionInfo
		}
		if first < sizeofRegionInfo {
			return b, invalidf("region info cap_offset %d is inside the %d-byte struct", first, sizeofRegionInfo)
		}
		var seenSparse, seenType bool
		end = first
		for _, c := range r.Caps {
			switch c := c.(type) {
			case SparseMmapCap:
				if seenSparse {
					return b, invalidf("two sparse mmap capabilities")
				}
				seenSparse = true
				end += sizeofCapSparseMmap + uint64(len(c.Areas))*sizeofSparseArea
			case RegionTypeCap:
				if seenType {
					return b, invalidf("two region type capabilities")
				}
				seenType = true
				end += sizeofCapType
			case RawRegionCap:
				if (c.ID == CapSparseMmap || c.ID == CapType) && c.Version == capVersionLayout {
					return b, invalidf("raw capability with id %d version %d would decode as a known one", c.ID, c.Version)
				}
				end += sizeofCapHeader + uint64(len(c.Data))
			default:
				return b, invalidf("unknown region capability type %T", c)
			}
		}
	}
	if end > math.MaxUint32 {
		return b, invalidf("region info of %d bytes does not fit argsz", end)
	}
	flags, capOff, argsz := r.Flags, r.CapOffset, r.ArgSz
	if argsz == 0 {
		argsz = uint32(end)
	}
	size := end // bytes to append
	if len(r.Caps) > 0 {
		flags |= RegionFlagCaps
		capOff = uint32(first)
		// argsz is the reply's full size: a chain ends within it, and
		// a reply shorter than argsz reads as "retry with a bigger
		// buffer", so pad the payload out to argsz.
		size = max(end, uint64(argsz))
	}
	b, s := wirebuf.Grow(b, int(size))
	le.PutUint32(s[offRegionInfoArgSz:], argsz)
	le.PutUint32(s[offRegionInfoFlags:], uint32(flags))
	le.PutUint32(s[offRegionInfoIndex:], uint32(r.Index))
	le.PutUint32(s[offRegionInfoCapOffset:], capOff)
	le.PutUint64(s[offRegionInfoSize:], r.Size)
	le.PutUint64(s[offRegionInfoOffset:], r.Offset)
	off := int(first)
	for i, c := range r.Caps {
		capb := s[off:]
		var n int
		switch c := c.(type) {
		case SparseMmapCap:
			n = sizeofCapSparseMmap + len(c.Areas)*sizeofSparseArea
			le.PutUint16(capb[offCapVersion:], capVersionLayout)
			le.PutUint32(capb[offSparseNrAreas:], uint32(len(c.Areas)))
			for j, a := range c.Areas {
				ab := capb[offSparseAreas+j*sizeofSparseArea:]
				le.PutUint64(ab[offAreaOffset:], a.Offset)
				le.PutUint64(ab[offAreaSize:], a.Size)
			}
		case RegionTypeCap:
			n = sizeofCapType
			le.PutUint16(capb[offCapVersion:], capVersionLayout)
			le.PutUint32(capb[offCapTypeType:], c.Type)
			le.PutUint32(capb[offCapTypeSubtype:], c.Subtype)
		case RawRegionCap:
			n = sizeofCapHeader + len(c.Data)
			le.PutUint16(capb[offCapVersion:], c.Version)
			copy(capb[sizeofCapHeader:], c.Data)
		}
		le.PutUint16(capb[offCapID:], c.CapID())
		if i+1 < len(r.Caps) {
			le.PutUint32(capb[offCapNext:], uint32(off+n))
		}
		off += n
	}
	return b, nil
}

// DecodeRegionInfoRequest decodes a DEVICE_GET_REGION_INFO request: at least
// 32 bytes, argsz >= 32. Anything after the struct is ignored.
func DecodeRegionInfoRequest(p []byte) (RegionInfo, error) {
	if err := needArgSz(CmdDeviceGetRegionInfo, p, sizeofRegionInfo); err != nil {
		return RegionInfo{}, err
	}
	return decodeRegionInfoFixed(p), nil
}

// DecodeRegionInfoReply decodes a DEVICE_GET_REGION_INFO reply and, when
// RegionFlagCaps is set, cap_offset is not 0 and the whole reply is present
// (argsz <= the payload length), walks its capability chain within the
// first argsz bytes. A reply whose argsz exceeds the payload is the "buffer
// too small, retry" answer: its chain is not there and is not walked, as
// QEMU does. Every capability must start at or after byte 32, lie wholly
// inside argsz, and point strictly forward past its own body, so the walk
// ends; an area count must fit the bytes present. A sparse mmap or type
// capability may appear once. Other ids (or versions other than 1) are
// kept as RawRegionCap.
func DecodeRegionInfoReply(p []byte) (RegionInfo, error) {
	const cmd = CmdDeviceGetRegionInfo
	if err := needArgSz(cmd, p, sizeofRegionInfo); err != nil {
		return RegionInfo{}, err
	}
	r := decodeRegionInfoFixed(p)
	if r.Flags&RegionFlagCaps == 0 || r.CapOffset == 0 || uint64(r.ArgSz) > uint64(len(p)) {
		return r, nil
	}
	bound := uint64(r.ArgSz) // the chain ends where argsz says the reply does
	off := uint64(r.CapOffset)
	if off < sizeofRegionInfo {
		return RegionInfo{}, malformed(cmd, "cap_offset", "%d points inside the %d-byte struct", off, sizeofRegionInfo)
	}
	var seenSparse, seenType bool
	for off != 0 {
		if off > bound || bound-off < sizeofCapHeader {
			return RegionInfo{}, malformed(cmd, "cap_offset/next", "capability at %d runs past the end of the chain (%d bytes)", off, bound)
		}
		c := p[off:bound]
		id, ver := le.Uint16(c[offCapID:]), le.Uint16(c[offCapVersion:])
		next := uint64(le.Uint32(c[offCapNext:]))
		var end uint64 // first byte after this capability
		switch {
		case id == CapSparseMmap && ver == capVersionLayout:
			if seenSparse {
				return RegionInfo{}, malformed(cmd, "id", "second sparse mmap capability at %d", off)
			}
			seenSparse = true
			if len(c) < sizeofCapSparseMmap {
				return RegionInfo{}, malformed(cmd, "sparse mmap", "capability at %d has %d bytes, need %d", off, len(c), sizeofCapSparseMmap)
			}
			n := uint64(le.Uint32(c[offSparseNrAreas:]))
			if avail := uint64(len(c)-sizeofCapSparseMmap) / sizeofSparseArea; n > avail {
				return RegionInfo{}, malformed(cmd, "nr_areas", "%d areas claimed, room for %d", n, avail)
			}
			var areas []SparseArea
			if n > 0 {
				areas = make([]SparseArea, n) // n is bounded by the bytes present
			}
			for i := range areas {
				ab := c[offSparseAreas+i*sizeofSparseArea:]
				areas[i] = SparseArea{Offset: le.Uint64(ab[offAreaOffset:]), Size: le.Uint64(ab[offAreaSize:])}
			}
			r.Caps = append(r.Caps, SparseMmapCap{Areas: areas})
			end = off + sizeofCapSparseMmap + n*sizeofSparseArea
		case id == CapType && ver == capVersionLayout:
			if seenType {
				return RegionInfo{}, malformed(cmd, "id", "second region type capability at %d", off)
			}
			seenType = true
			if len(c) < sizeofCapType {
				return RegionInfo{}, malformed(cmd, "type", "capability at %d has %d bytes, need %d", off, len(c), sizeofCapType)
			}
			r.Caps = append(r.Caps, RegionTypeCap{Type: le.Uint32(c[offCapTypeType:]), Subtype: le.Uint32(c[offCapTypeSubtype:])})
			end = off + sizeofCapType
		default:
			// An unknown capability's length is only known from the
			// next pointer; the last one's body is not recovered.
			end = off + sizeofCapHeader
			if next != 0 {
				if next < end {
					return RegionInfo{}, malformed(cmd, "next", "capability at %d points back to %d", off, next)
				}
				end = min(next, bound)
			}
			r.Caps = append(r.Caps, RawRegionCap{ID: id, Version: ver, Data: wirebuf.NilIfEmpty(p[off+sizeofCapHeader : end])})
		}
		if next != 0 && next < end {
			return RegionInfo{}, malformed(cmd, "next", "capability at %d (ending at %d) points back to %d", off, end, next)
		}
		off = next
	}
	return r, nil
}

func decodeRegionInfoFixed(p []byte) RegionInfo {
	return RegionInfo{
		ArgSz:     le.Uint32(p[offRegionInfoArgSz:]),
		Flags:     RegionFlags(le.Uint32(p[offRegionInfoFlags:])),
		Index:     vfio.RegionIndex(le.Uint32(p[offRegionInfoIndex:])),
		CapOffset: le.Uint32(p[offRegionInfoCapOffset:]),
		Size:      le.Uint64(p[offRegionInfoSize:]),
		Offset:    le.Uint64(p[offRegionInfoOffset:]),
	}
}
