package user

// MIG_DATA_READ (17) / MIG_DATA_WRITE (18): the migration data stream.
// Neither Client nor devicemodel's server migrates (the server answers
// ENOSYS); like DEVICE_FEATURE, the codecs are here because this package is
// the whole wire format, for a peer that does.

import (
	"math"

	"github.com/ycq-dev/ycq/internal/wirebuf"
)

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
	b, s := wirebuf.Grow(b, sizeofMigData)
	le.PutUint32(s[offMigDataArgSz:], orSize(m.ArgSz, uint32(min(uint64(sizeofMigData)+uint64(m.Size), math.MaxUint32))))
	le.PutUint32(s[offMigDataSize:], m.Size)
	return b
}

// Encode appends argsz, size = len(Data) and Data.
func (m MigData) Encode(b []byte) ([]byte, error) {
	if uint64(len(m.Data)) > math.MaxUint32-sizeofMigData {
		return b, invalidf("migration data of %d bytes does not fit size", len(m.Data))
	}
	b, s := wirebuf.Grow(b, sizeofMigData)
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
