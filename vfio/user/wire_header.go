package user

// The header that precedes every message (struct vfio_user_header), the
// command ids and header flags, the message size limits, and the functions
// that frame a payload into a message (msg_size).

import (
	"math"
	"strconv"
	"syscall"

	"github.com/ycq-dev/ycq/internal/wirebuf"
)

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
	b, s := wirebuf.Grow(b, sizeofHeader)
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
// in by FinishMessage. Conn encodes with EncodeMessage; these two are for a
// caller that builds whole messages for Conn.Send without the copy:
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
