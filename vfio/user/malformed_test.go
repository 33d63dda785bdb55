package user_test

import (
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func zeros(n int) []byte   { return make([]byte, n) }

// capHdr is a region info capability header.
func capHdr(id, version uint16, next uint32) []byte {
	return cat(le16(id), le16(version), le32(next))
}

// regionInfo is a 32-byte region info struct with CAPS set.
func regionInfo(argsz, capOffset uint32) []byte {
	return cat(le32(argsz), le32(uint32(user.RegionFlagRead|user.RegionFlagCaps)), le32(0), le32(capOffset), le64(0x1000), le64(0))
}

func sparse(next, nr uint32, areas int) []byte {
	return cat(capHdr(user.CapSparseMmap, 1, next), le32(nr), le32(0), zeros(16*areas))
}

func version(json string) []byte { return cat(le16(0), le16(0), []byte(json)) }

type malformedCase struct {
	codec string // codec name; "Header" for DecodeHeader
	name  string
	in    []byte
	field string // ProtocolError.Field
	msg   string // substring of the error text
}

var malformedCases = []malformedCase{
	// Header.
	{"Header", "empty", nil, "header", "0 bytes, need 16"},
	{"Header", "15 bytes", zeros(15), "header", "15 bytes, need 16"},
	{"Header", "msg_size 0", cat(le16(1), le16(2), le32(0), le32(0), le32(0)), "msg_size", "0 is smaller than the 16-byte header"},
	{"Header", "msg_size 15", cat(le16(1), le16(2), le32(15), le32(0), le32(0)), "msg_size", "15 is smaller"},
	{"Header", "type 2", cat(le16(1), le16(2), le32(16), le32(2), le32(0)), "flags", "message type 2 is neither"},
	{"Header", "type 15 with error bit", cat(le16(1), le16(2), le32(16), le32(0x2f), le32(0)), "flags", "message type 15"},

	// VERSION.
	{"Version", "3 bytes", zeros(3), "version", "3 bytes, need 4"},
	{"Version", "JSON without NUL", version(`{"capabilities":{}}`), "version data", "not NUL-terminated"},
	{"Version", "NUL only", version("\x00"), "version data", "want a JSON object, got nothing"},
	{"Version", "array", version("[1]\x00"), "version data", "want a JSON object, got an array"},
	{"Version", "truncated JSON", version(`{"capabilities":{"max_msg_fds":1}` + "\x00"), "version data", "invalid JSON"},
	{"Version", "two objects", version(`{}{}` + "\x00"), "version data", "invalid JSON"},
	{"Version", "NUL inside", version("{}\x00{}\x00"), "version data", "invalid JSON"},
	{"Version", "capabilities is a string", version(`{"capabilities":"all"}` + "\x00"), "capabilities", "want a JSON object, got a string"},
	{"Version", "capabilities is null", version(`{"capabilities":null}` + "\x00"), "capabilities", "got null"},
	{"Version", "max_msg_fds as string", version(`{"capabilities":{"max_msg_fds":"16"}}` + "\x00"), "capabilities.max_msg_fds", "want a non-negative integer, got a string"},
	{"Version", "max_msg_fds negative", version(`{"capabilities":{"max_msg_fds":-1}}` + "\x00"), "capabilities.max_msg_fds", "fits 64 bits, got a number (\"-1\")"},
	{"Version", "max_data_xfer_size fraction", version(`{"capabilities":{"max_data_xfer_size":1.5}}` + "\x00"), "capabilities.max_data_xfer_size", "got a number"},
	{"Version", "pgsizes exponent", version(`{"capabilities":{"pgsizes":4e3}}` + "\x00"), "capabilities.pgsizes", "got a number"},
	{"Version", "max_dma_maps beyond 64 bits", version(`{"capabilities":{"max_dma_maps":18446744073709551616}}` + "\x00"), "capabilities.max_dma_maps", "fits 64 bits"},
	{"Version", "max_dma_maps null", version(`{"capabilities":{"max_dma_maps":null}}` + "\x00"), "capabilities.max_dma_maps", "got null"},
	{"Version", "migration is an array", version(`{"capabilities":{"migration":[4096]}}` + "\x00"), "capabilities.migration", "want a JSON object, got an array"},
	{"Version", "migration.pgsize bool", version(`{"capabilities":{"migration":{"pgsize":true}}}` + "\x00"), "capabilities.migration.pgsize", "got a boolean"},
	{"Version", "twin_socket.supported number", version(`{"capabilities":{"twin_socket":{"supported":1}}}` + "\x00"), "capabilities.twin_socket.supported", "want true or false, got a number"},
	{"Version", "twin_socket.fd_index string", version(`{"capabilities":{"twin_socket":{"supported":true,"fd_index":"0"}}}` + "\x00"), "capabilities.twin_socket.fd_index", "got a string"},
	{"Version", "write_multiple string", version(`{"capabilities":{"write_multiple":"yes"}}` + "\x00"), "capabilities.write_multiple", "want true or false, got a string"},

	// DMA_MAP, DMA_UNMAP.
	{"DMAMap", "31 bytes", cat(le32(32), zeros(27)), "payload", "31 bytes, need 32"},
	{"DMAMap", "argsz 16", cat(le32(16), zeros(28)), "argsz", "16 is smaller than the 32-byte fixed part"},
	{"DMAUnmap", "23 bytes", cat(le32(24), zeros(19)), "payload", "23 bytes, need 24"},
	{"DMAUnmap", "argsz 8", cat(le32(8), zeros(20)), "argsz", "8 is smaller than the 24-byte"},

	// DEVICE_GET_INFO, DEVICE_GET_IRQ_INFO.
	{"DeviceInfo", "empty", nil, "payload", "0 bytes, need 16"},
	{"DeviceInfo", "argsz 0", zeros(16), "argsz", "0 is smaller than the 16-byte"},
	{"IRQInfo", "15 bytes", cat(le32(16), zeros(11)), "payload", "15 bytes, need 16"},
	{"IRQInfo", "argsz 4", cat(le32(4), zeros(12)), "argsz", "4 is smaller"},

	// DEVICE_GET_REGION_INFO request.
	{"RegionInfoRequest", "31 bytes", cat(le32(32), zeros(27)), "payload", "31 bytes, need 32"},
	{"RegionInfoRequest", "argsz 16", cat(le32(16), zeros(28)), "argsz", "16 is smaller than the 32-byte"},

	// DEVICE_GET_REGION_INFO reply and its capability chain.
	{"RegionInfoReply", "argsz 31", cat(regionInfo(31, 0)), "argsz", "31 is smaller"},
	{"RegionInfoReply", "cap_offset inside the struct", cat(regionInfo(64, 16), sparse(0, 0, 0), zeros(16)), "cap_offset", "16 points inside the 32-byte struct"},
	{"RegionInfoReply", "cap_offset past the payload", cat(regionInfo(48, 100), sparse(0, 0, 0)), "cap_offset/next", "capability at 100 runs past the end of the chain (48 bytes)"},
	{"RegionInfoReply", "cap_offset past argsz", cat(regionInfo(48, 60), sparse(0, 0, 0), zeros(32)), "cap_offset/next", "capability at 60 runs past the end of the chain (48 bytes)"},
	{"RegionInfoReply", "cap header cut short", cat(regionInfo(40, 36), zeros(8)), "cap_offset/next", "capability at 36 runs past the end"},
	{"RegionInfoReply", "cap beyond argsz", cat(regionInfo(32, 32), sparse(0, 0, 0)), "cap_offset/next", "capability at 32 runs past the end of the chain (32 bytes)"},
	{"RegionInfoReply", "next loops to itself", cat(regionInfo(48, 32), sparse(32, 0, 0)), "next", "capability at 32 (ending at 48) points back to 32"},
	{"RegionInfoReply", "next loops to an earlier cap", cat(regionInfo(64, 32), capHdr(user.CapType, 1, 48), zeros(8), capHdr(7, 1, 32), zeros(8)), "next", "capability at 48 points back to 32"},
	{"RegionInfoReply", "next into the sparse areas", cat(regionInfo(96, 32), sparse(56, 2, 2), zeros(16)), "next", "capability at 32 (ending at 80) points back to 56"},
	{"RegionInfoReply", "next past the payload", cat(regionInfo(48, 32), capHdr(user.CapType, 1, 64), zeros(8)), "cap_offset/next", "capability at 64 runs past the end"},
	{"RegionInfoReply", "nr_areas 0xffffffff", cat(regionInfo(80, 32), sparse(0, 0xffffffff, 2)), "nr_areas", "4294967295 areas claimed, room for 2"},
	{"RegionInfoReply", "nr_areas 3, room for 2", cat(regionInfo(80, 32), sparse(0, 3, 2)), "nr_areas", "3 areas claimed, room for 2"},
	{"RegionInfoReply", "areas cut by argsz", cat(regionInfo(64, 32), sparse(0, 2, 2)), "nr_areas", "2 areas claimed, room for 1"},
	{"RegionInfoReply", "sparse cap cut short", cat(regionInfo(44, 32), capHdr(user.CapSparseMmap, 1, 0), le32(1)), "sparse mmap", "has 12 bytes, need 16"},
	{"RegionInfoReply", "type cap cut short", cat(regionInfo(44, 32), capHdr(user.CapType, 1, 0), le32(1)), "type", "has 12 bytes, need 16"},
	{"RegionInfoReply", "two sparse caps", cat(regionInfo(64, 32), sparse(48, 0, 0), sparse(0, 0, 0)), "id", "second sparse mmap capability at 48"},
	{"RegionInfoReply", "two type caps", cat(regionInfo(64, 32), capHdr(user.CapType, 1, 48), zeros(8), capHdr(user.CapType, 1, 0), zeros(8)), "id", "second region type capability at 48"},
	{"RegionInfoReply", "unknown cap pointing into its own header", cat(regionInfo(56, 32), capHdr(3, 1, 36), zeros(16)), "next", "capability at 32 points back to 36"},

	// DEVICE_SET_IRQS.
	{"IRQSet", "19 bytes", cat(le32(20), zeros(15)), "payload", "19 bytes, need 20"},
	{"IRQSet", "argsz 0", zeros(20), "argsz", "0 is smaller than the 20-byte"},
	{"IRQSet", "no data type", cat(le32(20), le32(uint32(user.IRQSetActionTrigger)), zeros(12)), "flags", "exactly one DATA_* bit"},
	{"IRQSet", "two data types", cat(le32(20), le32(uint32(user.IRQSetDataNone|user.IRQSetDataBool|user.IRQSetActionTrigger)), zeros(12)), "flags", "exactly one DATA_* bit"},
	{"IRQSet", "no action", cat(le32(20), le32(uint32(user.IRQSetDataNone)), zeros(12)), "flags", "exactly one ACTION_* bit"},
	{"IRQSet", "two actions", cat(le32(20), le32(uint32(user.IRQSetDataNone|user.IRQSetActionMask|user.IRQSetActionUnmask)), zeros(12)), "flags", "exactly one ACTION_* bit"},
	{"IRQSet", "unknown flag bit", cat(le32(20), le32(0x40|uint32(user.IRQSetDataNone|user.IRQSetActionTrigger)), zeros(12)), "flags", "unknown bits 0x40"},
	{"IRQSet", "bools missing", cat(le32(24), le32(uint32(user.IRQSetDataBool|user.IRQSetActionTrigger)), le32(0), le32(0), le32(4), []byte{1, 1}), "count", "4 bools claimed, 2 bytes present"},
	{"IRQSet", "bool count 0xffffffff", cat(le32(21), le32(uint32(user.IRQSetDataBool|user.IRQSetActionTrigger)), le32(0), le32(0), le32(0xffffffff), []byte{1}), "count", "4294967295 bools claimed, 1 bytes present"},

	// REGION_READ / REGION_WRITE.
	{"RegionReadRequest", "15 bytes", zeros(15), "payload", "15 bytes, need 16"},
	{"RegionWriteReply", "8 bytes", zeros(8), "payload", "8 bytes, need 16"},
	{"RegionReadReply", "count 8, 4 bytes present", cat(le64(0), le32(7), le32(8), zeros(4)), "count", "8 data bytes claimed, 4 present"},
	{"RegionReadReply", "count 4, 8 bytes present", cat(le64(0), le32(7), le32(4), zeros(8)), "count", "4 data bytes claimed, 8 present"},
	{"RegionWriteRequest", "count 0xffffffff", cat(le64(0), le32(0), le32(0xffffffff), zeros(2)), "count", "4294967295 data bytes claimed, 2 present"},
	{"RegionWriteRequest", "head cut short", zeros(12), "payload", "12 bytes, need 16"},

	// REGION_WRITE_MULTI.
	{"RegionWriteMulti", "7 bytes", zeros(7), "wr_cnt", "7 bytes, need 8"},
	{"RegionWriteMulti", "wr_cnt 2, one entry", cat(le64(2), zeros(24)), "wr_cnt", "2 entries claimed, 24 bytes of entries present"},
	{"RegionWriteMulti", "wr_cnt 1, partial entry", cat(le64(1), zeros(36)), "wr_cnt", "1 entries claimed, 36 bytes"},
	{"RegionWriteMulti", "wr_cnt wraps when multiplied", cat(le64(1<<62|1), zeros(24)), "wr_cnt", "4611686018427387905 entries claimed"},
	{"RegionWriteMulti", "entry count 9", cat(le64(1), le64(0), le32(0), le32(9), zeros(8)), "count", "entry 0 writes 9 bytes, at most 8"},
	{"RegionWriteMultiReply", "4 bytes", zeros(4), "wr_cnt", "4 bytes, need 8"},

	// DMA_READ / DMA_WRITE, spec layout.
	{"DMAReadRequest/spec", "12 bytes (QEMU's packed size)", zeros(12), "payload", "12 bytes, need 16 (spec layout)"},
	{"DMAReadReply/spec", "count 100, 8 bytes", cat(le64(0x1000), le64(100), zeros(8)), "count", "100 data bytes claimed, 8 present (spec layout)"},
	{"DMAReadReply/spec", "count 2^64-1", cat(le64(0x1000), le64(math.MaxUint64), zeros(8)), "count", "18446744073709551615 data bytes claimed"},
	{"DMAWriteRequest/spec", "QEMU-shaped message", cat(le64(0x2000), le32(4), []byte{1, 2, 3, 4}, zeros(4)), "count", "289077004400066564 data bytes claimed, 4 present (spec layout)"},
	{"DMAWriteReply/spec", "8 bytes", zeros(8), "payload", "8 bytes, need 16"},

	// DMA_READ / DMA_WRITE, QEMU layout.
	{"DMAReadRequest/qemu", "12 bytes, no tail padding", cat(le64(0x1000), le32(8)), "payload", "12 bytes, need 16 (QEMU layout)"},
	{"DMAReadReply/qemu", "data without the 4 tail bytes", cat(le64(0x1000), le32(8), zeros(8)), "count", "8 data bytes claimed, room for 4 (QEMU layout"},
	{"DMAReadReply/qemu", "count 0xffffffff", cat(le64(0x1000), le32(0xffffffff), zeros(12)), "count", "4294967295 data bytes claimed, room for 8"},
	{"DMAWriteRequest/qemu", "count 9, room for 8", cat(le64(0x2000), le32(9), zeros(12)), "count", "9 data bytes claimed, room for 8"},

	// DEVICE_FEATURE, MIG_DATA.
	{"DeviceFeature", "7 bytes", zeros(7), "payload", "7 bytes, need 8"},
	{"DeviceFeature", "argsz 4", cat(le32(4), le32(0)), "argsz", "4 is smaller than the 8-byte"},
	{"MigDataRead", "argsz 0", zeros(8), "argsz", "0 is smaller"},
	{"MigDataReadReply", "size 10, 2 bytes", cat(le32(18), le32(10), zeros(2)), "size", "10 data bytes claimed, 2 present"},
	{"MigDataWrite", "4 bytes", zeros(4), "payload", "4 bytes, need 8"},
}

func TestMalformed(t *testing.T) {
	for _, c := range malformedCases {
		t.Run(c.codec+"/"+c.name, func(t *testing.T) {
			var err error
			var cmd user.Command
			if c.codec == "Header" {
				_, err = user.DecodeHeader(c.in)
				if len(c.in) >= 4 {
					cmd = user.Command(binary.LittleEndian.Uint16(c.in[2:]))
				}
			} else {
				var v any
				cd := codecNamed(c.codec)
				cmd = cd.cmd
				v, err = cd.decode(c.in)
				require.Nil(t, v)
			}
			require.Error(t, err)
			require.ErrorIs(t, err, user.ErrMalformed)
			var pe *user.ProtocolError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, cmd, pe.Command)
			require.Equal(t, c.field, pe.Field)
			require.Contains(t, err.Error(), c.msg)
			require.True(t, strings.HasPrefix(err.Error(), "vfio-user: malformed message: "+cmd.String()+": "+c.field+": "), err.Error())
		})
	}
}

// Every codec must appear in the malformed table at least once.
func TestMalformedCoversEveryDecoder(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range malformedCases {
		seen[c.codec] = true
	}
	for _, c := range codecs {
		if c.name == "DMAWriteReply/qemu" {
			continue // nothing to refuse: QEMU's reply has no payload
		}
		require.True(t, seen[c.name], "no malformed case for %s", c.name)
	}
}

// Liberal where implementations differ: longer fixed payloads, unknown JSON
// members, unknown capabilities, reserved header bits.
func TestAccepted(t *testing.T) {
	t.Run("DEVICE_GET_INFO of 20 bytes (rust-vmm)", func(t *testing.T) {
		d, err := user.DecodeDeviceInfo(cat(le32(20), zeros(16)))
		require.NoError(t, err)
		require.Equal(t, user.DeviceInfo{ArgSz: 20}, d)
	})
	t.Run("unknown JSON members", func(t *testing.T) {
		v, err := user.DecodeVersion(version(`{"capabilities":{"max_msg_fds":4,"future":{"x":[1,2]},"MAX_MSG_FDS":"x"},"other":1}` + "\x00"))
		require.NoError(t, err)
		require.Equal(t, user.Version{Caps: &user.Capabilities{MaxMsgFDs: new(uint64(4))}}, v)
	})
	t.Run("JSON without capabilities", func(t *testing.T) {
		v, err := user.DecodeVersion(version(" { } \x00"))
		require.NoError(t, err)
		require.Equal(t, user.Version{}, v)
	})
	t.Run("twin socket reply", func(t *testing.T) {
		v, err := user.DecodeVersion(version(`{"capabilities":{"twin_socket":{"supported":true,"fd_index":0},"write_multiple":false}}` + "\x00"))
		require.NoError(t, err)
		want := user.Version{Caps: &user.Capabilities{TwinSocket: &user.TwinSocketCaps{Supported: true, FDIndex: new(uint64(0))}}}
		require.Equal(t, want, v)
		require.Equal(t, version(`{"capabilities":{"twin_socket":{"supported":true,"fd_index":0}}}`+"\x00"), want.Encode(nil))
	})
	t.Run("unknown capability kept raw", func(t *testing.T) {
		p := cat(regionInfo(72, 32), capHdr(3, 1, 40), sparse(0, 1, 1))
		r, err := user.DecodeRegionInfoReply(p)
		require.NoError(t, err)
		require.Equal(t, []user.RegionCap{
			user.RawRegionCap{ID: 3, Version: 1},
			user.SparseMmapCap{Areas: []user.SparseArea{{}}},
		}, r.Caps)
		s, ok := r.SparseMmap()
		require.True(t, ok)
		require.Len(t, s.Areas, 1)
		_, ok = r.Type()
		require.False(t, ok)
	})
	t.Run("sparse mmap version 2 kept raw", func(t *testing.T) {
		p := cat(regionInfo(64, 32), capHdr(user.CapSparseMmap, 2, 48), le32(9), le32(0), capHdr(user.CapType, 1, 0), le32(5), le32(6))
		r, err := user.DecodeRegionInfoReply(p)
		require.NoError(t, err)
		require.Equal(t, []user.RegionCap{
			user.RawRegionCap{ID: 1, Version: 2, Data: cat(le32(9), le32(0))},
			user.RegionTypeCap{Type: 5, Subtype: 6},
		}, r.Caps)
	})
	t.Run("last raw capability has no known length", func(t *testing.T) {
		p := cat(regionInfo(56, 32), capHdr(user.CapType, 1, 48), le32(5), le32(6), capHdr(9, 1, 0))
		r, err := user.DecodeRegionInfoReply(p)
		require.NoError(t, err)
		require.Equal(t, []user.RegionCap{user.RegionTypeCap{Type: 5, Subtype: 6}, user.RawRegionCap{ID: 9, Version: 1}}, r.Caps)
	})
	t.Run("chain not walked in a truncated reply", func(t *testing.T) {
		// argsz 80 > the 32 bytes sent: the client must retry; the
		// CAPS flag and cap_offset point at bytes that are not there.
		r, err := user.DecodeRegionInfoReply(regionInfo(80, 32))
		require.NoError(t, err)
		require.Nil(t, r.Caps)
		require.EqualValues(t, 80, r.ArgSz)
	})
	t.Run("caps ignored without the CAPS flag", func(t *testing.T) {
		p := cat(le32(48), le32(0), le32(0), le32(32), le64(0), le64(0), sparse(32, 0, 0))
		r, err := user.DecodeRegionInfoReply(p)
		require.NoError(t, err)
		require.Nil(t, r.Caps)
	})
	t.Run("reserved header bits and unknown command", func(t *testing.T) {
		h, err := user.DecodeHeader(cat(le16(1), le16(99), le32(16), le32(0xffffffd1), le32(0)))
		require.NoError(t, err)
		require.True(t, h.IsReply())
		require.True(t, h.NoReply())
		require.Equal(t, "command(99)", h.Command.String())
	})
}

func TestCheckSize(t *testing.T) {
	h := user.Header{Command: user.CmdRegionWrite, Size: user.DefaultMaxMessageSize}
	require.NoError(t, h.CheckSize(user.DefaultMaxMessageSize))
	require.Equal(t, user.DefaultMaxMessageSize, user.MaxMessageSize(user.DefaultMaxDataXferSize))
	require.Equal(t, 1<<20+32, user.DefaultMaxMessageSize)
	h.Size++
	err := h.CheckSize(user.DefaultMaxMessageSize)
	require.ErrorIs(t, err, user.ErrTooLarge)
	require.NotErrorIs(t, err, user.ErrMalformed)
	require.EqualError(t, err, "vfio-user: message too large: REGION_WRITE: msg_size: 1048609 exceeds the limit of 1048608")
}

func TestEncodeInvalid(t *testing.T) {
	_, err := user.DMAReadRequest{Count: 1 << 32}.Encode(nil, user.DMAWireQEMU)
	require.ErrorIs(t, err, vfio.ErrInvalid)
	b, err := user.DMAReadRequest{Count: 1 << 32}.Encode(nil, user.DMAWireSpec)
	require.NoError(t, err)
	require.Len(t, b, 16)
	_, err = user.DMAWriteRequest{}.Encode(nil, user.DMAWire(7))
	require.ErrorIs(t, err, vfio.ErrInvalid)
	_, err = user.DecodeDMAReadRequest(zeros(16), user.DMAWire(7))
	require.ErrorIs(t, err, vfio.ErrInvalid)
	require.Equal(t, "DMAWire(7)", user.DMAWire(7).String())

	_, err = user.RegionInfo{CapOffset: 8, Caps: []user.RegionCap{user.RegionTypeCap{}}}.Encode(nil)
	require.ErrorIs(t, err, vfio.ErrInvalid)
	_, err = user.RegionInfo{Caps: []user.RegionCap{user.SparseMmapCap{}, user.SparseMmapCap{}}}.Encode(nil)
	require.ErrorIs(t, err, vfio.ErrInvalid)
	_, err = user.RegionInfo{Caps: []user.RegionCap{user.RegionTypeCap{}, user.RegionTypeCap{}}}.Encode(nil)
	require.ErrorIs(t, err, vfio.ErrInvalid)
	_, err = user.RegionInfo{Caps: []user.RegionCap{user.RawRegionCap{ID: user.CapType, Version: 1}}}.Encode(nil)
	require.ErrorIs(t, err, vfio.ErrInvalid)
	_, err = user.RegionInfo{Caps: []user.RegionCap{nil}}.Encode(nil)
	require.ErrorIs(t, err, vfio.ErrInvalid)

	_, err = user.FinishMessage(zeros(10), 0)
	require.ErrorIs(t, err, vfio.ErrInvalid)
	_, err = user.FinishMessage(zeros(20), -1)
	require.ErrorIs(t, err, vfio.ErrInvalid)
}

// TestZeroArgSzMeansNaturalSize checks the encoders' one convenience.
func TestZeroArgSzMeansNaturalSize(t *testing.T) {
	argsz := func(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
	require.EqualValues(t, 32, argsz(user.DMAMap{}.Encode(nil)))
	require.EqualValues(t, 24, argsz(user.DMAUnmap{}.Encode(nil)))
	require.EqualValues(t, 16, argsz(user.DeviceInfo{}.Encode(nil)))
	require.EqualValues(t, 16, argsz(user.IRQInfo{}.Encode(nil)))
	b, err := user.IRQSet{Data: []byte{1, 0, 1}}.Encode(nil)
	require.NoError(t, err)
	require.EqualValues(t, 23, argsz(b))
	b, err = user.RegionInfo{Caps: []user.RegionCap{user.RegionTypeCap{}}}.Encode(nil)
	require.NoError(t, err)
	require.EqualValues(t, 48, argsz(b))
	b, err = user.DeviceFeature{Data: zeros(8)}.Encode(nil)
	require.NoError(t, err)
	require.EqualValues(t, 16, argsz(b))
	require.EqualValues(t, 8+64, argsz(user.MigDataRead{Size: 64}.Encode(nil)))
	require.EqualValues(t, uint32(math.MaxUint32), argsz(user.MigDataRead{Size: math.MaxUint32}.Encode(nil)))
}

// TestHugeCountsDoNotAllocate: a count that claims more entries than the
// bytes present is refused before anything is sized by it.
func TestHugeCountsDoNotAllocate(t *testing.T) {
	hostile := []struct {
		codec string
		in    []byte
	}{
		{"RegionWriteMulti", cat(le64(1<<40), zeros(48))},
		{"RegionInfoReply", cat(regionInfo(64, 32), sparse(0, 0x0fffffff, 1))},
		{"IRQSet", cat(le32(20), le32(uint32(user.IRQSetDataBool|user.IRQSetActionTrigger)), le32(0), le32(0), le32(0xffffffff))},
		{"RegionReadReply", cat(le64(0), le32(0), le32(0xffffffff))},
		{"DMAReadReply/spec", cat(le64(0), le64(math.MaxUint64))},
		{"MigDataWrite", cat(le32(8), le32(0xffffffff))},
	}
	for _, h := range hostile {
		dec := codecNamed(h.codec).decode
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := dec(h.in)
		runtime.ReadMemStats(&after)
		require.ErrorIs(t, err, user.ErrMalformed, h.codec)
		require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10), "%s allocated for a count it did not check", h.codec)
	}
}

func TestCommandNames(t *testing.T) {
	require.Equal(t, "VERSION", user.CmdVersion.String())
	require.Equal(t, "REGION_WRITE_MULTI", user.CmdRegionWriteMulti.String())
	require.Equal(t, "MIG_DATA_WRITE", user.CmdMigDataWrite.String())
	require.Equal(t, "command(0)", user.Command(0).String())
	require.Equal(t, "command(19)", user.Command(19).String())
	require.Equal(t, "qemu", user.DMAWireQEMU.String())
	require.Equal(t, "spec", user.DMAWireSpec.String())
}

func TestWriteMultiBytes(t *testing.T) {
	e := user.WriteMultiEntry{Count: 3, Data: [8]byte{1, 2, 3, 4}}
	require.Equal(t, []byte{1, 2, 3}, e.Bytes())
	e.Count = 100
	require.Len(t, e.Bytes(), 8)
}

func TestDecodedDataAliasesPayload(t *testing.T) {
	p := cat(le64(0), le32(7), le32(2), []byte{0xaa, 0xbb})
	d, err := user.DecodeRegionWriteRequest(p)
	require.NoError(t, err)
	p[16] = 0xcc
	require.Equal(t, byte(0xcc), d.Data[0], "Data aliases the payload, as documented")
	require.True(t, errors.Is(user.ErrorReplyTo(user.Header{}, syscall.EIO).Err(), syscall.EIO))
}

// The two DMA layouts have the same length for the same count (16+count),
// so a wrong DMAWire is not detectable from the size: a spec-layout
// DMA_WRITE read as QEMU's takes the upper half of the u64 count as data.
// This is why DMAWire is an explicit per-connection setting.
func TestDMAWireMismatchIsSilent(t *testing.T) {
	spec, err := user.DMAWriteRequest{Address: 0x2000, Data: []byte{1, 2, 3, 4}}.Encode(nil, user.DMAWireSpec)
	require.NoError(t, err)
	qemu, err := user.DMAWriteRequest{Address: 0x2000, Data: []byte{1, 2, 3, 4}}.Encode(nil, user.DMAWireQEMU)
	require.NoError(t, err)
	require.Equal(t, len(spec), len(qemu))
	got, err := user.DecodeDMAWriteRequest(spec, user.DMAWireQEMU)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0, 0, 0}, got.Data, "the wrong layout yields the wrong bytes")
	_, err = user.DecodeDMAWriteRequest(qemu, user.DMAWireSpec)
	require.ErrorIs(t, err, user.ErrMalformed, "the other way round the count is absurd")
}

// With a chain, an ArgSz above the encoded size pads the payload to ArgSz,
// so the reply does not read as truncated.
func TestRegionInfoPadsToArgSz(t *testing.T) {
	r := user.RegionInfo{ArgSz: 64, Caps: []user.RegionCap{user.RegionTypeCap{Type: 1, Subtype: 2}}}
	b, err := r.Encode(nil)
	require.NoError(t, err)
	require.Len(t, b, 64)
	got, err := user.DecodeRegionInfoReply(b)
	require.NoError(t, err)
	r.Flags, r.CapOffset = user.RegionFlagCaps, 32
	require.Equal(t, r, got)
}
