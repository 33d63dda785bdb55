package user

// This file owns the vfio-user binary layouts: the header, the command ids
// and every request and reply payload, each with named sizes and offsets.
// Nothing else in the package indexes message bytes with a bare number. The
// JSON text inside VERSION is modelled in capabilities.go.
//
// Sources: the protocol specification (QEMU docs/interop/vfio-user.rst) and
// the structures QEMU's client actually sends (hw/vfio-user/protocol.h),
// summarised in /work/shared/design/vfio-user.md section 1. Protocol names
// are kept in the comments; Go names are used in code.
//
// All integers are little-endian. The protocol says "host order"; this
// package supports the little-endian hosts (x86-64, arm64) QEMU runs on.

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"syscall"
)

var le = binary.LittleEndian

// ---------------------------------------------------------------------------
// Header

// Header layout (struct vfio_user_header).
const (
	sizeofHeader     = 16
	offHeaderMsgID   = 0  // u16 msg_id
	offHeaderCommand = 2  // u16 command
	offHeaderMsgSize = 4  // u32 msg_size, including the header
	offHeaderFlags   = 8  // u32 flags
	offHeaderError   = 12 // u32 error (errno in an error reply)
)

// HeaderSize is the size of the header that precedes every message.
const HeaderSize = sizeofHeader

// Limits and protocol defaults.
const (
	// DefaultMaxDataXferSize is max_data_xfer_size when a peer does not
	// state one: the largest count in REGION_READ/WRITE and DMA_READ/WRITE.
	DefaultMaxDataXferSize = 1 << 20
	// DefaultMaxMsgFDs is the spec's max_msg_fds default (QEMU assumes 8
	// when a server omits it, and offers 16 itself).
	DefaultMaxMsgFDs = 1
	// DefaultMaxDMAMaps is the max_dma_maps default.
	DefaultMaxDMAMaps = 65535
	// DefaultPgSizes is the pgsizes default: 4 KiB pages only.
	DefaultPgSizes = 4096
	// DefaultMaxMessageSize bounds a whole message (header included) when
	// the data transfer limit is DefaultMaxDataXferSize; see MaxMessageSize.
	DefaultMaxMessageSize = sizeofHeader + sizeofRegionAccess + DefaultMaxDataXferSize
)

// MaxMessageSize is the largest message, header included, that a receiver
// advertising maxDataXfer as max_data_xfer_size must accept: the data
// messages (REGION_WRITE, DMA_WRITE and the read replies) carry at most
// maxDataXfer bytes after a 16-byte fixed part, and every other message is
// far smaller. A receiver passes the result to Header.CheckSize.
func MaxMessageSize(maxDataXfer uint32) int {
	return sizeofHeader + sizeofRegionAccess + int(maxDataXfer)
}

// Command is the header's command field (enum vfio_user_command).
type Command uint16

const (
	CmdVersion              Command = 1  // VFIO_USER_VERSION
	CmdDMAMap               Command = 2  // VFIO_USER_DMA_MAP
	CmdDMAUnmap             Command = 3  // VFIO_USER_DMA_UNMAP
	CmdDeviceGetInfo        Command = 4  // VFIO_USER_DEVICE_GET_INFO
	CmdDeviceGetRegionInfo  Command = 5  // VFIO_USER_DEVICE_GET_REGION_INFO
	CmdDeviceGetRegionIOFDs Command = 6  // VFIO_USER_DEVICE_GET_REGION_IO_FDS (payload not modelled)
	CmdDeviceGetIRQInfo     Command = 7  // VFIO_USER_DEVICE_GET_IRQ_INFO
	CmdDeviceSetIRQs        Command = 8  // VFIO_USER_DEVICE_SET_IRQS
	CmdRegionRead           Command = 9  // VFIO_USER_REGION_READ
	CmdRegionWrite          Command = 10 // VFIO_USER_REGION_WRITE
	CmdDMARead              Command = 11 // VFIO_USER_DMA_READ (server to client)
	CmdDMAWrite             Command = 12 // VFIO_USER_DMA_WRITE (server to client)
	CmdDeviceReset          Command = 13 // VFIO_USER_DEVICE_RESET (no payload either way)
	CmdDirtyPages           Command = 14 // VFIO_USER_DIRTY_PAGES, retired; still in QEMU's enum
	CmdRegionWriteMulti     Command = 15 // VFIO_USER_REGION_WRITE_MULTI
	CmdDeviceFeature        Command = 16 // VFIO_USER_DEVICE_FEATURE
	CmdMigDataRead          Command = 17 // VFIO_USER_MIG_DATA_READ
	CmdMigDataWrite         Command = 18 // VFIO_USER_MIG_DATA_WRITE
)

var commandNames = [...]string{
	CmdVersion:              "VERSION",
	CmdDMAMap:               "DMA_MAP",
	CmdDMAUnmap:             "DMA_UNMAP",
	CmdDeviceGetInfo:        "DEVICE_GET_INFO",
	CmdDeviceGetRegionInfo:  "DEVICE_GET_REGION_INFO",
	CmdDeviceGetRegionIOFDs: "DEVICE_GET_REGION_IO_FDS",
	CmdDeviceGetIRQInfo:     "DEVICE_GET_IRQ_INFO",
	CmdDeviceSetIRQs:        "DEVICE_SET_IRQS",
	CmdRegionRead:           "REGION_READ",
	CmdRegionWrite:          "REGION_WRITE",
	CmdDMARead:              "DMA_READ",
	CmdDMAWrite:             "DMA_WRITE",
	CmdDeviceReset:          "DEVICE_RESET",
	CmdDirtyPages:           "DIRTY_PAGES",
	CmdRegionWriteMulti:     "REGION_WRITE_MULTI",
	CmdDeviceFeature:        "DEVICE_FEATURE",
	CmdMigDataRead:          "MIG_DATA_READ",
	CmdMigDataWrite:         "MIG_DATA_WRITE",
}

// String returns the protocol name without the VFIO_USER_ prefix.
func (c Command) String() string {
	if int(c) < len(commandNames) && commandNames[c] != "" {
		return commandNames[c]
	}
	return "command(" + itoa(uint64(c)) + ")"
}

// HeaderFlags is the header's flags word.
type HeaderFlags uint32

const (
	FlagTypeMask HeaderFlags = 0x0f // bits 0-3: message type
	TypeCommand  HeaderFlags = 0x00 // VFIO_USER_F_TYPE_COMMAND
	TypeReply    HeaderFlags = 0x01 // VFIO_USER_F_TYPE_REPLY
	FlagNoReply  HeaderFlags = 0x10 // VFIO_USER_NO_REPLY: the sender wants no reply, not even on error
	FlagError    HeaderFlags = 0x20 // VFIO_USER_ERROR: in a reply, the command failed; Error holds the errno
)

// Header precedes every message (struct vfio_user_header).
type Header struct {
	MsgID   uint16      // msg_id: chosen by the sender, echoed in the reply
	Command Command     // command: also set in the reply
	Size    uint32      // msg_size: the whole message, header included
	Flags   HeaderFlags // flags
	Error   uint32      // error: errno of a failed command; reserved (0) in commands
}

// IsReply reports whether the type nibble says reply.
func (h Header) IsReply() bool { return h.Flags&FlagTypeMask == TypeReply }

// NoReply reports whether a command asks for no reply.
func (h Header) NoReply() bool { return h.Flags&FlagNoReply != 0 }

// PayloadLen is the number of bytes after the header. It is only meaningful
// for a header DecodeHeader accepted (Size >= HeaderSize).
func (h Header) PayloadLen() int { return int(h.Size) - sizeofHeader }

// Err returns a *RemoteError when the ERROR flag is set, nil otherwise.
func (h Header) Err() error {
	if h.Flags&FlagError == 0 {
		return nil
	}
	return &RemoteError{Command: h.Command, Errno: syscall.Errno(h.Error)}
}

// Encode appends the 16 header bytes, writing every field as it is (Size
// too; EncodeMessage and FinishMessage fill it in).
func (h Header) Encode(b []byte) []byte {
	b, s := grow(b, sizeofHeader)
	le.PutUint16(s[offHeaderMsgID:], h.MsgID)
	le.PutUint16(s[offHeaderCommand:], uint16(h.Command))
	le.PutUint32(s[offHeaderMsgSize:], h.Size)
	le.PutUint32(s[offHeaderFlags:], uint32(h.Flags))
	le.PutUint32(s[offHeaderError:], h.Error)
	return b
}

// DecodeHeader decodes the first 16 bytes of b. It refuses fewer than 16
// bytes, msg_size < 16 and a type nibble other than command (0) or reply
// (1). Unknown commands and reserved flag bits are accepted, so a server can
// still answer them with an error reply; check the size against your limit
// with CheckSize before reading the payload.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < sizeofHeader {
		var cmd Command
		if len(b) >= offHeaderCommand+2 {
			cmd = Command(le.Uint16(b[offHeaderCommand:]))
		}
		return Header{}, malformed(cmd, "header", "%d bytes, need %d", len(b), sizeofHeader)
	}
	h := Header{
		MsgID:   le.Uint16(b[offHeaderMsgID:]),
		Command: Command(le.Uint16(b[offHeaderCommand:])),
		Size:    le.Uint32(b[offHeaderMsgSize:]),
		Flags:   HeaderFlags(le.Uint32(b[offHeaderFlags:])),
		Error:   le.Uint32(b[offHeaderError:]),
	}
	if h.Size < sizeofHeader {
		return Header{}, malformed(h.Command, "msg_size", "%d is smaller than the %d-byte header", h.Size, sizeofHeader)
	}
	if t := h.Flags & FlagTypeMask; t != TypeCommand && t != TypeReply {
		return Header{}, malformed(h.Command, "flags", "message type %d is neither command (0) nor reply (1)", t)
	}
	return h, nil
}

// CheckSize refuses a header whose msg_size exceeds limit bytes, with a
// *ProtocolError that unwraps to ErrTooLarge. Call it before allocating or
// reading the payload.
func (h Header) CheckSize(limit int) error {
	if limit < 0 || uint64(h.Size) > uint64(limit) {
		return &ProtocolError{Command: h.Command, Field: "msg_size",
			Reason: itoa(uint64(h.Size)) + " exceeds the limit of " + strconv.Itoa(limit), Err: ErrTooLarge}
	}
	return nil
}

// ReplyTo returns the header of a successful reply to req: same msg_id and
// command, type reply, msg_size 16 (EncodeMessage or FinishMessage set the
// real size).
func ReplyTo(req Header) Header {
	return Header{MsgID: req.MsgID, Command: req.Command, Size: sizeofHeader, Flags: TypeReply}
}

// ErrorReplyTo returns the complete header-only error reply to req: flags
// reply|ERROR (0x21), error = errno, msg_size 16.
func ErrorReplyTo(req Header, errno syscall.Errno) Header {
	return Header{MsgID: req.MsgID, Command: req.Command, Size: sizeofHeader,
		Flags: TypeReply | FlagError, Error: uint32(errno)}
}

// EncodeMessage appends h with msg_size set to 16+len(payload), then the
// payload. It fails only if the message would not fit a u32 msg_size.
func EncodeMessage(b []byte, h Header, payload []byte) ([]byte, error) {
	if uint64(len(payload)) > math.MaxUint32-sizeofHeader {
		return b, invalidf("%s payload of %d bytes does not fit msg_size", h.Command, len(payload))
	}
	h.Size = uint32(sizeofHeader + len(payload))
	return append(h.Encode(b), payload...), nil
}

// StartMessage appends h and returns the offset of its first byte in b, so
// a payload can be encoded straight after it (no copy) and the size filled
// in by FinishMessage:
//
//	b, start := user.StartMessage(b, h)
//	b = user.DMAMap{...}.Encode(b)
//	b, err := user.FinishMessage(b, start)
func StartMessage(b []byte, h Header) ([]byte, int) {
	return h.Encode(b), len(b)
}

// FinishMessage writes msg_size of the message that starts at b[start:]
// (from StartMessage) and runs to the end of b.
func FinishMessage(b []byte, start int) ([]byte, error) {
	if start < 0 || len(b)-start < sizeofHeader {
		return b, invalidf("no header at offset %d of %d bytes", start, len(b))
	}
	n := len(b) - start
	if uint64(n) > math.MaxUint32 {
		return b, invalidf("message of %d bytes does not fit msg_size", n)
	}
	le.PutUint32(b[start+offHeaderMsgSize:], uint32(n))
	return b, nil
}

// ---------------------------------------------------------------------------
// VERSION (1): request and reply have the same layout.

const (
	sizeofVersion   = 4 // fixed part
	offVersionMajor = 0 // u16 major
	offVersionMinor = 2 // u16 minor
	offVersionData  = 4 // optional UTF-8 JSON, terminated by a NUL
)

// Version is the VERSION request and reply (struct vfio_user_version).
// QEMU sends major 0, minor 0. A reply keeps the major and a minor no larger
// than the client's.
type Version struct {
	Major uint16
	Minor uint16
	// Caps is the "capabilities" object of the JSON data. nil means the
	// message has no JSON or the JSON has no "capabilities" member; Encode
	// then sends no JSON at all.
	Caps *Capabilities
}

// Encode appends the VERSION payload: major, minor and, if Caps is set,
// {"capabilities":{...}} followed by a NUL.
func (v Version) Encode(b []byte) []byte {
	b, s := grow(b, sizeofVersion)
	le.PutUint16(s[offVersionMajor:], v.Major)
	le.PutUint16(s[offVersionMinor:], v.Minor)
	if v.Caps != nil {
		b = v.Caps.appendJSON(b)
		b = append(b, 0)
	}
	return b
}

// DecodeVersion decodes a VERSION request or reply. JSON data, when present,
// must end in a NUL and be a JSON object; unknown keys are ignored, known
// keys with the wrong JSON type are refused (see Capabilities).
func DecodeVersion(p []byte) (Version, error) {
	if len(p) < sizeofVersion {
		return Version{}, malformed(CmdVersion, "version", "%d bytes, need %d for major and minor", len(p), sizeofVersion)
	}
	v := Version{Major: le.Uint16(p[offVersionMajor:]), Minor: le.Uint16(p[offVersionMinor:])}
	data := p[offVersionData:]
	if len(data) == 0 {
		return v, nil
	}
	if data[len(data)-1] != 0 {
		return Version{}, malformed(CmdVersion, "version data", "JSON is not NUL-terminated")
	}
	caps, err := decodeVersionJSON(data[:len(data)-1])
	if err != nil {
		return Version{}, err
	}
	v.Caps = caps
	return v, nil
}

// ---------------------------------------------------------------------------
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
	b, s := grow(b, sizeofDMAMap)
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
	b, s := grow(b, sizeofDMAUnmap)
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

// ---------------------------------------------------------------------------
// DEVICE_GET_INFO (4): request and reply have the same layout.

const (
	sizeofDeviceInfo        = 16
	offDeviceInfoArgSz      = 0  // u32 argsz
	offDeviceInfoFlags      = 4  // u32 flags
	offDeviceInfoNumRegions = 8  // u32 num_regions
	offDeviceInfoNumIRQs    = 12 // u32 num_irqs
)

// DeviceFlags are the DEVICE_GET_INFO flags.
type DeviceFlags uint32

const (
	DeviceFlagReset DeviceFlags = 1 << 0 // VFIO_DEVICE_FLAGS_RESET: DEVICE_RESET is supported
	DeviceFlagPCI   DeviceFlags = 1 << 1 // VFIO_DEVICE_FLAGS_PCI
)

// DeviceInfo is the DEVICE_GET_INFO request and reply (struct
// vfio_user_device_info). In the request only ArgSz matters (QEMU sends 16).
type DeviceInfo struct {
	ArgSz      uint32 // argsz; 0 to encode means 16
	Flags      DeviceFlags
	NumRegions uint32 // num_regions: >= 9 for PCI
	NumIRQs    uint32 // num_irqs: 5 for PCI
}

// Encode appends the 16-byte DEVICE_GET_INFO payload.
func (d DeviceInfo) Encode(b []byte) []byte {
	b, s := grow(b, sizeofDeviceInfo)
	le.PutUint32(s[offDeviceInfoArgSz:], orSize(d.ArgSz, sizeofDeviceInfo))
	le.PutUint32(s[offDeviceInfoFlags:], uint32(d.Flags))
	le.PutUint32(s[offDeviceInfoNumRegions:], d.NumRegions)
	le.PutUint32(s[offDeviceInfoNumIRQs:], d.NumIRQs)
	return b
}

// DecodeDeviceInfo decodes a DEVICE_GET_INFO request or reply: at least 16
// bytes (a longer request, as rust-vmm's 20 bytes, is accepted), argsz >= 16.
func DecodeDeviceInfo(p []byte) (DeviceInfo, error) {
	if err := needArgSz(CmdDeviceGetInfo, p, sizeofDeviceInfo); err != nil {
		return DeviceInfo{}, err
	}
	return DeviceInfo{
		ArgSz:      le.Uint32(p[offDeviceInfoArgSz:]),
		Flags:      DeviceFlags(le.Uint32(p[offDeviceInfoFlags:])),
		NumRegions: le.Uint32(p[offDeviceInfoNumRegions:]),
		NumIRQs:    le.Uint32(p[offDeviceInfoNumIRQs:]),
	}, nil
}

// ---------------------------------------------------------------------------
// PCI region and IRQ indices (same as kernel vfio-pci).

// RegionIndex names a device region.
type RegionIndex uint32

const (
	RegionBAR0   RegionIndex = 0 // VFIO_PCI_BAR0_REGION_INDEX ... BAR5 = 5
	RegionBAR1   RegionIndex = 1
	RegionBAR2   RegionIndex = 2
	RegionBAR3   RegionIndex = 3
	RegionBAR4   RegionIndex = 4
	RegionBAR5   RegionIndex = 5
	RegionROM    RegionIndex = 6 // VFIO_PCI_ROM_REGION_INDEX
	RegionConfig RegionIndex = 7 // VFIO_PCI_CONFIG_REGION_INDEX
	RegionVGA    RegionIndex = 8 // VFIO_PCI_VGA_REGION_INDEX
	// NumPCIRegions is VFIO_PCI_NUM_REGIONS; indexes from here on are
	// device-specific and carry a RegionTypeCap.
	NumPCIRegions = 9
)

// IRQIndex names an interrupt type.
type IRQIndex uint32

const (
	IRQINTx IRQIndex = 0 // VFIO_PCI_INTX_IRQ_INDEX
	IRQMSI  IRQIndex = 1 // VFIO_PCI_MSI_IRQ_INDEX
	IRQMSIX IRQIndex = 2 // VFIO_PCI_MSIX_IRQ_INDEX
	IRQErr  IRQIndex = 3 // VFIO_PCI_ERR_IRQ_INDEX
	IRQReq  IRQIndex = 4 // VFIO_PCI_REQ_IRQ_INDEX
	// NumPCIIRQs is VFIO_PCI_NUM_IRQS.
	NumPCIIRQs = 5
)

// ---------------------------------------------------------------------------
// DEVICE_GET_REGION_INFO (5)

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
	offSparseReserved   = 12 // u32 reserved
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
	Index     RegionIndex
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

// Type returns the region type capability, if the chain has one.
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
	b, s := grow(b, int(size))
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
			r.Caps = append(r.Caps, RawRegionCap{ID: id, Version: ver, Data: nilIfEmpty(p[off+sizeofCapHeader : end])})
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
		Index:     RegionIndex(le.Uint32(p[offRegionInfoIndex:])),
		CapOffset: le.Uint32(p[offRegionInfoCapOffset:]),
		Size:      le.Uint64(p[offRegionInfoSize:]),
		Offset:    le.Uint64(p[offRegionInfoOffset:]),
	}
}

// ---------------------------------------------------------------------------
// DEVICE_GET_IRQ_INFO (7): request and reply have the same layout.

const (
	sizeofIRQInfo   = 16
	offIRQInfoArgSz = 0  // u32 argsz
	offIRQInfoFlags = 4  // u32 flags
	offIRQInfoIndex = 8  // u32 index
	offIRQInfoCount = 12 // u32 count
)

// IRQInfoFlags are the IRQ info flags.
type IRQInfoFlags uint32

const (
	IRQInfoEventFD    IRQInfoFlags = 1 << 0 // VFIO_IRQ_INFO_EVENTFD
	IRQInfoMaskable   IRQInfoFlags = 1 << 1 // VFIO_IRQ_INFO_MASKABLE
	IRQInfoAutomasked IRQInfoFlags = 1 << 2 // VFIO_IRQ_INFO_AUTOMASKED
	IRQInfoNoResize   IRQInfoFlags = 1 << 3 // VFIO_IRQ_INFO_NORESIZE
)

// IRQInfo is the DEVICE_GET_IRQ_INFO request and reply (struct
// vfio_irq_info). In the request only ArgSz and Index matter.
type IRQInfo struct {
	ArgSz uint32 // argsz; 0 to encode means 16
	Flags IRQInfoFlags
	Index IRQIndex
	Count uint32 // count: interrupts of this type; 0 = not implemented
}

// Encode appends the 16-byte IRQ info payload.
func (q IRQInfo) Encode(b []byte) []byte {
	b, s := grow(b, sizeofIRQInfo)
	le.PutUint32(s[offIRQInfoArgSz:], orSize(q.ArgSz, sizeofIRQInfo))
	le.PutUint32(s[offIRQInfoFlags:], uint32(q.Flags))
	le.PutUint32(s[offIRQInfoIndex:], uint32(q.Index))
	le.PutUint32(s[offIRQInfoCount:], q.Count)
	return b
}

// DecodeIRQInfo decodes a DEVICE_GET_IRQ_INFO request or reply: at least 16
// bytes, argsz >= 16.
func DecodeIRQInfo(p []byte) (IRQInfo, error) {
	if err := needArgSz(CmdDeviceGetIRQInfo, p, sizeofIRQInfo); err != nil {
		return IRQInfo{}, err
	}
	return IRQInfo{
		ArgSz: le.Uint32(p[offIRQInfoArgSz:]),
		Flags: IRQInfoFlags(le.Uint32(p[offIRQInfoFlags:])),
		Index: IRQIndex(le.Uint32(p[offIRQInfoIndex:])),
		Count: le.Uint32(p[offIRQInfoCount:]),
	}, nil
}

// ---------------------------------------------------------------------------
// DEVICE_SET_IRQS (8): request only; the reply has no payload.

const (
	sizeofIRQSet   = 20
	offIRQSetArgSz = 0  // u32 argsz
	offIRQSetFlags = 4  // u32 flags
	offIRQSetIndex = 8  // u32 index
	offIRQSetStart = 12 // u32 start
	offIRQSetCount = 16 // u32 count
	offIRQSetData  = 20 // count bool bytes with DATA_BOOL; nothing otherwise
)

// IRQSetFlags are the SET_IRQS flags: exactly one DATA_* and one ACTION_*.
type IRQSetFlags uint32

const (
	IRQSetDataNone      IRQSetFlags = 1 << 0 // VFIO_IRQ_SET_DATA_NONE
	IRQSetDataBool      IRQSetFlags = 1 << 1 // VFIO_IRQ_SET_DATA_BOOL: count bool bytes follow
	IRQSetDataEventFD   IRQSetFlags = 1 << 2 // VFIO_IRQ_SET_DATA_EVENTFD: fds in SCM_RIGHTS; none = de-assign
	IRQSetActionMask    IRQSetFlags = 1 << 3 // VFIO_IRQ_SET_ACTION_MASK
	IRQSetActionUnmask  IRQSetFlags = 1 << 4 // VFIO_IRQ_SET_ACTION_UNMASK
	IRQSetActionTrigger IRQSetFlags = 1 << 5 // VFIO_IRQ_SET_ACTION_TRIGGER

	irqSetDataMask   = IRQSetDataNone | IRQSetDataBool | IRQSetDataEventFD
	irqSetActionMask = IRQSetActionMask | IRQSetActionUnmask | IRQSetActionTrigger
)

// IRQSet is the DEVICE_SET_IRQS request (struct vfio_irq_set). Eventfds
// travel in SCM_RIGHTS, never in the body; QEMU splits large sets into
// messages of at most max_msg_fds fds, each with argsz 20.
type IRQSet struct {
	ArgSz uint32 // argsz; 0 to encode means 20+len(Data)
	Flags IRQSetFlags
	Index IRQIndex
	Start uint32
	Count uint32
	// Data holds Count bool bytes with IRQSetDataBool, nothing otherwise.
	// A decoded Data aliases the payload.
	Data []byte
}

// Encode appends the SET_IRQS payload: the 20-byte struct and Data as given.
func (q IRQSet) Encode(b []byte) ([]byte, error) {
	if uint64(len(q.Data)) > math.MaxUint32-sizeofIRQSet {
		return b, invalidf("SET_IRQS data of %d bytes does not fit argsz", len(q.Data))
	}
	b, s := grow(b, sizeofIRQSet)
	le.PutUint32(s[offIRQSetArgSz:], orSize(q.ArgSz, uint32(sizeofIRQSet+len(q.Data))))
	le.PutUint32(s[offIRQSetFlags:], uint32(q.Flags))
	le.PutUint32(s[offIRQSetIndex:], uint32(q.Index))
	le.PutUint32(s[offIRQSetStart:], q.Start)
	le.PutUint32(s[offIRQSetCount:], q.Count)
	return append(b, q.Data...), nil
}

// DecodeIRQSet decodes a DEVICE_SET_IRQS request: at least 20 bytes, argsz
// >= 20, flags with exactly one DATA_* bit, exactly one ACTION_* bit and
// nothing else; with DATA_BOOL the count bool bytes must be present. argsz
// is not compared with the payload: QEMU rewrites it to 20 for eventfd sets
// while the kernel's habit is 20 + 4*count. Trailing bytes are ignored.
func DecodeIRQSet(p []byte) (IRQSet, error) {
	const cmd = CmdDeviceSetIRQs
	if err := needArgSz(cmd, p, sizeofIRQSet); err != nil {
		return IRQSet{}, err
	}
	q := IRQSet{
		ArgSz: le.Uint32(p[offIRQSetArgSz:]),
		Flags: IRQSetFlags(le.Uint32(p[offIRQSetFlags:])),
		Index: IRQIndex(le.Uint32(p[offIRQSetIndex:])),
		Start: le.Uint32(p[offIRQSetStart:]),
		Count: le.Uint32(p[offIRQSetCount:]),
	}
	if extra := q.Flags &^ (irqSetDataMask | irqSetActionMask); extra != 0 {
		return IRQSet{}, malformed(cmd, "flags", "unknown bits %#x", uint32(extra))
	}
	if d := q.Flags & irqSetDataMask; d == 0 || d&(d-1) != 0 {
		return IRQSet{}, malformed(cmd, "flags", "%#x must have exactly one DATA_* bit", uint32(q.Flags))
	}
	if a := q.Flags & irqSetActionMask; a == 0 || a&(a-1) != 0 {
		return IRQSet{}, malformed(cmd, "flags", "%#x must have exactly one ACTION_* bit", uint32(q.Flags))
	}
	if q.Flags&IRQSetDataBool != 0 {
		if avail := uint64(len(p) - sizeofIRQSet); uint64(q.Count) > avail {
			return IRQSet{}, malformed(cmd, "count", "%d bools claimed, %d bytes present", q.Count, avail)
		}
		q.Data = nilIfEmpty(p[offIRQSetData : offIRQSetData+int(q.Count)])
	}
	return q, nil
}

// ---------------------------------------------------------------------------
// REGION_READ (9) / REGION_WRITE (10)

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
	Region RegionIndex
	Count  uint32
}

// RegionData is the REGION_READ reply and the REGION_WRITE request: the
// same head with count = len(Data), then the data. A decoded Data aliases
// the payload.
type RegionData struct {
	Offset uint64
	Region RegionIndex
	Data   []byte
}

// Encode appends the 16-byte head.
func (a RegionAccess) Encode(b []byte) []byte {
	b, s := grow(b, sizeofRegionAccess)
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
		Region: RegionIndex(le.Uint32(p[offRegionAccessRegion:])),
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
	return RegionData{Offset: a.Offset, Region: a.Region, Data: nilIfEmpty(p[offRegionAccessData:])}, nil
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
	Region RegionIndex
	Count  uint32 // <= WriteMultiMaxData
	Data   [WriteMultiMaxData]byte
}

// Bytes returns the bytes the entry writes (Data[:Count], clamped to 8).
func (e *WriteMultiEntry) Bytes() []byte { return e.Data[:min(e.Count, WriteMultiMaxData)] }

// RegionWriteMulti is the REGION_WRITE_MULTI request. QEMU sends it only to
// a server that offered write_multiple, with NO_REPLY, and up to 200
// entries.
type RegionWriteMulti struct {
	Writes []WriteMultiEntry
}

// Encode appends wr_cnt and the entries as given (a Count over 8 is written
// as is; DecodeRegionWriteMulti refuses it).
func (m RegionWriteMulti) Encode(b []byte) []byte {
	b, s := grow(b, sizeofWriteMulti+len(m.Writes)*sizeofWriteMultiEntry)
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
		w.Region = RegionIndex(le.Uint32(e[offWriteMultiEntRegion:]))
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
	b, s := grow(b, sizeofWriteMultiReply)
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

// ---------------------------------------------------------------------------
// DMA_READ (11) / DMA_WRITE (12), server to client, in two wire variants.

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
		b, s := grow(b, sizeofDMASpec)
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
		b, s := grow(b, n)
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
			data = nilIfEmpty(p[offDMASpecData:])
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
			data = nilIfEmpty(p[offDMAQEMUData : offDMAQEMUData+int(count)])
		}
		return addr, count, data, nil
	}
	return 0, 0, nil, invalidf("unknown DMA wire layout %d", w)
}

// ---------------------------------------------------------------------------
// DEVICE_FEATURE (16): request and reply have the same layout.

const (
	sizeofDeviceFeature   = 8
	offDeviceFeatureArgSz = 0 // u32 argsz
	offDeviceFeatureFlags = 4 // u32 flags: feature index and GET/SET/PROBE
	offDeviceFeatureData  = 8 // feature data, to the end of the payload
)

// FeatureFlags is the DEVICE_FEATURE flags word.
type FeatureFlags uint32

const (
	FeatureIndexMask FeatureFlags = 0xffff  // VFIO_DEVICE_FEATURE_MASK
	FeatureGet       FeatureFlags = 1 << 16 // VFIO_DEVICE_FEATURE_GET
	FeatureSet       FeatureFlags = 1 << 17 // VFIO_DEVICE_FEATURE_SET
	FeatureProbe     FeatureFlags = 1 << 18 // VFIO_DEVICE_FEATURE_PROBE
)

// Feature indexes vfio-user defines (all for migration).
const (
	FeatureMigration        = 1 // VFIO_DEVICE_FEATURE_MIGRATION
	FeatureMigDeviceState   = 2 // VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE
	FeatureDMALoggingStart  = 6 // VFIO_DEVICE_FEATURE_DMA_LOGGING_START
	FeatureDMALoggingStop   = 7 // VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP
	FeatureDMALoggingReport = 8 // VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT
)

// DeviceFeature is the DEVICE_FEATURE request and reply. The feature data
// is not interpreted here. QEMU 10.1 does not send this command.
type DeviceFeature struct {
	ArgSz uint32 // argsz; 0 to encode means 8+len(Data)
	Flags FeatureFlags
	Data  []byte // aliases the payload when decoded
}

// Feature returns the feature index from Flags.
func (f DeviceFeature) Feature() uint16 { return uint16(f.Flags & FeatureIndexMask) }

// Encode appends the DEVICE_FEATURE payload.
func (f DeviceFeature) Encode(b []byte) ([]byte, error) {
	if uint64(len(f.Data)) > math.MaxUint32-sizeofDeviceFeature {
		return b, invalidf("feature data of %d bytes does not fit argsz", len(f.Data))
	}
	b, s := grow(b, sizeofDeviceFeature)
	le.PutUint32(s[offDeviceFeatureArgSz:], orSize(f.ArgSz, uint32(sizeofDeviceFeature+len(f.Data))))
	le.PutUint32(s[offDeviceFeatureFlags:], uint32(f.Flags))
	return append(b, f.Data...), nil
}

// DecodeDeviceFeature decodes a DEVICE_FEATURE request or reply: at least 8
// bytes, argsz >= 8; the data is the rest of the payload.
func DecodeDeviceFeature(p []byte) (DeviceFeature, error) {
	if err := needArgSz(CmdDeviceFeature, p, sizeofDeviceFeature); err != nil {
		return DeviceFeature{}, err
	}
	f := DeviceFeature{
		ArgSz: le.Uint32(p[offDeviceFeatureArgSz:]),
		Flags: FeatureFlags(le.Uint32(p[offDeviceFeatureFlags:])),
	}
	if len(p) > offDeviceFeatureData {
		f.Data = p[offDeviceFeatureData:]
	}
	return f, nil
}

// ---------------------------------------------------------------------------
// MIG_DATA_READ (17) / MIG_DATA_WRITE (18)

const (
	sizeofMigData   = 8
	offMigDataArgSz = 0 // u32 argsz
	offMigDataSize  = 4 // u32 size
	offMigDataData  = 8 // size bytes (read reply, write request)
)

// MigDataRead is the MIG_DATA_READ request: read up to Size bytes.
type MigDataRead struct {
	ArgSz uint32 // argsz: largest reply payload; 0 to encode means 8+Size
	Size  uint32
}

// MigData is the MIG_DATA_READ reply and the MIG_DATA_WRITE request:
// size = len(Data). A short read reply means the stream has ended.
type MigData struct {
	ArgSz uint32 // argsz; 0 to encode means 8+len(Data)
	Data  []byte // aliases the payload when decoded
}

// Encode appends the 8-byte MIG_DATA_READ request.
func (m MigDataRead) Encode(b []byte) []byte {
	b, s := grow(b, sizeofMigData)
	le.PutUint32(s[offMigDataArgSz:], orSize(m.ArgSz, uint32(min(uint64(sizeofMigData)+uint64(m.Size), math.MaxUint32))))
	le.PutUint32(s[offMigDataSize:], m.Size)
	return b
}

// Encode appends argsz, size = len(Data) and Data.
func (m MigData) Encode(b []byte) ([]byte, error) {
	if uint64(len(m.Data)) > math.MaxUint32-sizeofMigData {
		return b, invalidf("migration data of %d bytes does not fit size", len(m.Data))
	}
	b, s := grow(b, sizeofMigData)
	le.PutUint32(s[offMigDataArgSz:], orSize(m.ArgSz, uint32(sizeofMigData+len(m.Data))))
	le.PutUint32(s[offMigDataSize:], uint32(len(m.Data)))
	return append(b, m.Data...), nil
}

// DecodeMigDataRead decodes a MIG_DATA_READ request: 8 bytes (more are
// ignored), argsz >= 8.
func DecodeMigDataRead(p []byte) (MigDataRead, error) {
	if err := needArgSz(CmdMigDataRead, p, sizeofMigData); err != nil {
		return MigDataRead{}, err
	}
	return MigDataRead{ArgSz: le.Uint32(p[offMigDataArgSz:]), Size: le.Uint32(p[offMigDataSize:])}, nil
}

// DecodeMigDataReadReply decodes a MIG_DATA_READ reply: argsz >= 8 and
// exactly size data bytes.
func DecodeMigDataReadReply(p []byte) (MigData, error) { return decodeMigData(CmdMigDataRead, p) }

// DecodeMigDataWrite decodes a MIG_DATA_WRITE request: argsz >= 8 and
// exactly size data bytes.
func DecodeMigDataWrite(p []byte) (MigData, error) { return decodeMigData(CmdMigDataWrite, p) }

func decodeMigData(cmd Command, p []byte) (MigData, error) {
	if err := needArgSz(cmd, p, sizeofMigData); err != nil {
		return MigData{}, err
	}
	m := MigData{ArgSz: le.Uint32(p[offMigDataArgSz:])}
	size := uint64(le.Uint32(p[offMigDataSize:]))
	if have := uint64(len(p) - sizeofMigData); size != have {
		return MigData{}, malformed(cmd, "size", "%d data bytes claimed, %d present", size, have)
	}
	if size > 0 {
		m.Data = p[offMigDataData:]
	}
	return m, nil
}

// ---------------------------------------------------------------------------
// helpers

// grow extends b by n zero bytes and returns it with the new bytes.
func grow(b []byte, n int) ([]byte, []byte) {
	b = slices.Grow(b, n)
	l := len(b)
	b = b[:l+n]
	clear(b[l:])
	return b, b[l:]
}

// nilIfEmpty returns nil for an empty slice, so decoded values compare
// equal to literals that leave Data unset.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

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
