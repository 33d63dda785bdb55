package user

import "github.com/ycq-dev/ycq/internal/wirebuf"

// DMA_MAP (2) and DMA_UNMAP (3): the client's DMA mappings.
//
// DMA_MAP (2): request only; the reply has no payload.

const (
	sizeofDMAMap     = 32
	offDMAMapArgSz   = 0  // u32 argsz
	offDMAMapFlags   = 4  // u32 flags
	offDMAMapOffset  = 8  // u64 offset: file offset in the passed fd
	offDMAMapAddress = 16 // u64 address: IOVA
	offDMAMapSize    = 24 // u64 size
)

// DMAMapFlags are the DMA_MAP flags.
type DMAMapFlags uint32

const (
	DMAMapRead  DMAMapFlags = 1 << 0 // VFIO_USER_F_DMA_REGION_READ
	DMAMapWrite DMAMapFlags = 1 << 1 // VFIO_USER_F_DMA_REGION_WRITE
)

// DMAMap is the DMA_MAP request (struct vfio_user_dma_map). The fd, if any,
// travels out of band (SCM_RIGHTS). Overlap, wrap-around and alignment are
// the DMA layer's checks, not the wire's.
type DMAMap struct {
	ArgSz   uint32 // argsz: 32; 0 in a value to encode means 32
	Flags   DMAMapFlags
	Offset  uint64 // offset: where the range starts in the fd (0 without an fd)
	Address uint64 // address: IOVA (guest-physical without a vIOMMU)
	Size    uint64
}

// Encode appends the 32-byte DMA_MAP payload.
func (m DMAMap) Encode(b []byte) []byte {
	b, s := wirebuf.Grow(b, sizeofDMAMap)
	le.PutUint32(s[offDMAMapArgSz:], orSize(m.ArgSz, sizeofDMAMap))
	le.PutUint32(s[offDMAMapFlags:], uint32(m.Flags))
	le.PutUint64(s[offDMAMapOffset:], m.Offset)
	le.PutUint64(s[offDMAMapAddress:], m.Address)
	le.PutUint64(s[offDMAMapSize:], m.Size)
	return b
}

// DecodeDMAMap decodes a DMA_MAP request: at least 32 bytes, argsz >= 32.
func DecodeDMAMap(p []byte) (DMAMap, error) {
	if err := needArgSz(CmdDMAMap, p, sizeofDMAMap); err != nil {
		return DMAMap{}, err
	}
	return DMAMap{
		ArgSz:   le.Uint32(p[offDMAMapArgSz:]),
		Flags:   DMAMapFlags(le.Uint32(p[offDMAMapFlags:])),
		Offset:  le.Uint64(p[offDMAMapOffset:]),
		Address: le.Uint64(p[offDMAMapAddress:]),
		Size:    le.Uint64(p[offDMAMapSize:]),
	}, nil
}

// ---------------------------------------------------------------------------
// DMA_UNMAP (3): the reply echoes the request payload.

const (
	sizeofDMAUnmap     = 24
	offDMAUnmapArgSz   = 0  // u32 argsz
	offDMAUnmapFlags   = 4  // u32 flags
	offDMAUnmapAddress = 8  // u64 address
	offDMAUnmapSize    = 16 // u64 size
)

// DMAUnmapFlags are the DMA_UNMAP flags.
type DMAUnmapFlags uint32

const (
	DMAUnmapGetDirtyBitmap DMAUnmapFlags = 1 << 0 // VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP (legacy migration; unused)
	DMAUnmapAll            DMAUnmapFlags = 1 << 1 // VFIO_DMA_UNMAP_FLAG_ALL: address and size are 0
)

// DMAUnmap is the DMA_UNMAP request and its echo reply (struct
// vfio_user_dma_unmap). Send the echo: QEMU accepts a bare header too, but
// other clients read 24 bytes.
type DMAUnmap struct {
	ArgSz   uint32 // argsz: largest reply payload wanted; 0 to encode means 24
	Flags   DMAUnmapFlags
	Address uint64
	Size    uint64
}

// Encode appends the 24-byte DMA_UNMAP payload.
func (m DMAUnmap) Encode(b []byte) []byte {
	b, s := wirebuf.Grow(b, sizeofDMAUnmap)
	le.PutUint32(s[offDMAUnmapArgSz:], orSize(m.ArgSz, sizeofDMAUnmap))
	le.PutUint32(s[offDMAUnmapFlags:], uint32(m.Flags))
	le.PutUint64(s[offDMAUnmapAddress:], m.Address)
	le.PutUint64(s[offDMAUnmapSize:], m.Size)
	return b
}

// DecodeDMAUnmap decodes a DMA_UNMAP request or echo reply: at least 24
// bytes, argsz >= 24. Bytes after the 24 (a legacy dirty bitmap) are
// ignored.
func DecodeDMAUnmap(p []byte) (DMAUnmap, error) {
	if err := needArgSz(CmdDMAUnmap, p, sizeofDMAUnmap); err != nil {
		return DMAUnmap{}, err
	}
	return DMAUnmap{
		ArgSz:   le.Uint32(p[offDMAUnmapArgSz:]),
		Flags:   DMAUnmapFlags(le.Uint32(p[offDMAUnmapFlags:])),
		Address: le.Uint64(p[offDMAUnmapAddress:]),
		Size:    le.Uint64(p[offDMAUnmapSize:]),
	}, nil
}
