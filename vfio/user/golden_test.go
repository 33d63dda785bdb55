package user_test

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// goldenCase is one whole message as it crosses the socket. Encoding value
// behind header must give wire exactly; decoding wire must give header and
// value back.
type goldenCase struct {
	name   string
	codec  string // payload codec (codecs_test.go); "" for a header-only message
	header user.Header
	value  any
	wire   []byte
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// QEMU's VERSION capabilities: the members caps_json in QEMU's
// hw/vfio-user/proxy.c puts in its QDict, in the order Capabilities encodes
// them (a QDict does not fix one; the decoder does not depend on it).
const qemuVersionJSON = `{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"migration":{"pgsize":4096,"max_bitmap_size":268435456},"write_multiple":true}}`

const serverVersionJSON = `{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576}}`

var goldens = []goldenCase{
	{
		name:   "VERSION request as QEMU sends it",
		codec:  "Version",
		header: user.Header{MsgID: 0, Command: user.CmdVersion, Size: 199},
		value: user.Version{Major: 0, Minor: 0, Caps: &user.Capabilities{
			MaxMsgFDs:       new(uint64(16)),
			MaxDataXferSize: new(uint64(1 << 20)),
			PgSizes:         new(uint64(4096)),
			MaxDMAMaps:      new(uint64(65535)),
			Migration:       &user.MigrationCaps{PgSize: 4096, MaxBitmapSize: 256 << 20},
			WriteMultiple:   true,
		}},
		wire: cat([]byte{
			0x00, 0x00, // msg_id 0
			0x01, 0x00, // command 1: VERSION
			0xc7, 0x00, 0x00, 0x00, // msg_size 199 = 16 + 4 + 178 bytes of JSON + NUL
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x00, // major 0
			0x00, 0x00, // minor 0
		},
			[]byte(qemuVersionJSON), // version data: the capabilities object
			[]byte{0x00},            // NUL terminating the JSON
		),
	},
	{
		name:   "VERSION reply, minimal server capabilities",
		codec:  "Version",
		header: user.Header{MsgID: 0, Command: user.CmdVersion, Size: 84, Flags: user.TypeReply},
		value: user.Version{Caps: &user.Capabilities{
			MaxMsgFDs:       new(uint64(8)),
			MaxDataXferSize: new(uint64(1 << 20)),
		}},
		wire: cat([]byte{
			0x00, 0x00, // msg_id 0, echoed
			0x01, 0x00, // command 1: VERSION
			0x54, 0x00, 0x00, 0x00, // msg_size 84 = 16 + 4 + 63 bytes of JSON + NUL
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x00, // major 0: same as the client's
			0x00, 0x00, // minor 0: not above the client's
		},
			[]byte(serverVersionJSON), // version data
			[]byte{0x00},              // NUL
		),
	},
	{
		name:   "VERSION without JSON",
		codec:  "Version",
		header: user.Header{MsgID: 9, Command: user.CmdVersion, Size: 20},
		value:  user.Version{Major: 0, Minor: 2},
		wire: []byte{
			0x09, 0x00, // msg_id 9
			0x01, 0x00, // command 1: VERSION
			0x14, 0x00, 0x00, 0x00, // msg_size 20 = 16 + 4: no version data
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x00, // major 0
			0x02, 0x00, // minor 2
		},
	},
	{
		name:   "DMA_MAP of [0, 0xc0000) read-write at fd offset 0",
		codec:  "DMAMap",
		header: user.Header{MsgID: 1, Command: user.CmdDMAMap, Size: 48},
		value:  user.DMAMap{ArgSz: 32, Flags: user.DMAMapRead | user.DMAMapWrite, Offset: 0, Address: 0, Size: 0xc0000},
		wire: []byte{
			0x01, 0x00, // msg_id 1
			0x02, 0x00, // command 2: DMA_MAP
			0x30, 0x00, 0x00, 0x00, // msg_size 48 = 16 + 32
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x20, 0x00, 0x00, 0x00, // argsz 32
			0x03, 0x00, 0x00, 0x00, // flags READ|WRITE
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset 0 in the passed fd
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // address (IOVA) 0
			0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, // size 0xc0000
		},
	},
	{
		name:   "DMA_MAP reply",
		header: user.Header{MsgID: 1, Command: user.CmdDMAMap, Size: 16, Flags: user.TypeReply},
		wire: []byte{
			0x01, 0x00, // msg_id 1, echoed
			0x02, 0x00, // command 2: DMA_MAP
			0x10, 0x00, 0x00, 0x00, // msg_size 16: no payload
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
		},
	},
	{
		name:   "error reply: DMA_MAP over an existing range",
		header: user.Header{MsgID: 1, Command: user.CmdDMAMap, Size: 16, Flags: user.TypeReply | user.FlagError, Error: uint32(syscall.EEXIST)},
		wire: []byte{
			0x01, 0x00, // msg_id 1, echoed
			0x02, 0x00, // command 2: DMA_MAP
			0x10, 0x00, 0x00, 0x00, // msg_size 16: an error reply is the header alone
			0x21, 0x00, 0x00, 0x00, // flags: reply|ERROR
			0x11, 0x00, 0x00, 0x00, // error 17: EEXIST
		},
	},
	{
		name:   "DMA_UNMAP request",
		codec:  "DMAUnmap",
		header: user.Header{MsgID: 11, Command: user.CmdDMAUnmap, Size: 40},
		value:  user.DMAUnmap{ArgSz: 24, Address: 0x100000, Size: 0x7ff00000},
		wire: []byte{
			0x0b, 0x00, // msg_id 11
			0x03, 0x00, // command 3: DMA_UNMAP
			0x28, 0x00, 0x00, 0x00, // msg_size 40 = 16 + 24
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x18, 0x00, 0x00, 0x00, // argsz 24
			0x00, 0x00, 0x00, 0x00, // flags 0
			0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, // address 0x100000
			0x00, 0x00, 0xf0, 0x7f, 0x00, 0x00, 0x00, 0x00, // size 0x7ff00000
		},
	},
	{
		name:   "DMA_UNMAP reply echoes the request",
		codec:  "DMAUnmap",
		header: user.Header{MsgID: 11, Command: user.CmdDMAUnmap, Size: 40, Flags: user.TypeReply},
		value:  user.DMAUnmap{ArgSz: 24, Address: 0x100000, Size: 0x7ff00000},
		wire: []byte{
			0x0b, 0x00, // msg_id 11, echoed
			0x03, 0x00, // command 3: DMA_UNMAP
			0x28, 0x00, 0x00, 0x00, // msg_size 40 = 16 + 24-byte echo
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x18, 0x00, 0x00, 0x00, // argsz 24
			0x00, 0x00, 0x00, 0x00, // flags 0
			0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, // address 0x100000
			0x00, 0x00, 0xf0, 0x7f, 0x00, 0x00, 0x00, 0x00, // size 0x7ff00000
		},
	},
	{
		name:   "DMA_UNMAP all",
		codec:  "DMAUnmap",
		header: user.Header{MsgID: 12, Command: user.CmdDMAUnmap, Size: 40},
		value:  user.DMAUnmap{ArgSz: 24, Flags: user.DMAUnmapAll},
		wire: []byte{
			0x0c, 0x00, // msg_id 12
			0x03, 0x00, // command 3: DMA_UNMAP
			0x28, 0x00, 0x00, 0x00, // msg_size 40
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x18, 0x00, 0x00, 0x00, // argsz 24
			0x02, 0x00, 0x00, 0x00, // flags UNMAP_ALL
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // address 0
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // size 0
		},
	},
	{
		name:   "DEVICE_GET_INFO request",
		codec:  "DeviceInfo",
		header: user.Header{MsgID: 2, Command: user.CmdDeviceGetInfo, Size: 32},
		value:  user.DeviceInfo{ArgSz: 16},
		wire: []byte{
			0x02, 0x00, // msg_id 2
			0x04, 0x00, // command 4: DEVICE_GET_INFO
			0x20, 0x00, 0x00, 0x00, // msg_size 32 = 16 + 16
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x10, 0x00, 0x00, 0x00, // argsz 16: room for the reply
			0x00, 0x00, 0x00, 0x00, // flags 0
			0x00, 0x00, 0x00, 0x00, // num_regions 0
			0x00, 0x00, 0x00, 0x00, // num_irqs 0
		},
	},
	{
		name:   "DEVICE_GET_INFO reply: PCI with reset, 9 regions, 5 irqs",
		codec:  "DeviceInfo",
		header: user.Header{MsgID: 2, Command: user.CmdDeviceGetInfo, Size: 32, Flags: user.TypeReply},
		value:  user.DeviceInfo{ArgSz: 16, Flags: user.DeviceFlagReset | user.DeviceFlagPCI, NumRegions: 9, NumIRQs: 5},
		wire: []byte{
			0x02, 0x00, // msg_id 2, echoed
			0x04, 0x00, // command 4: DEVICE_GET_INFO
			0x20, 0x00, 0x00, 0x00, // msg_size 32 = 16 + 16
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x10, 0x00, 0x00, 0x00, // argsz 16
			0x03, 0x00, 0x00, 0x00, // flags RESET|PCI
			0x09, 0x00, 0x00, 0x00, // num_regions 9
			0x05, 0x00, 0x00, 0x00, // num_irqs 5
		},
	},
	{
		name:   "DEVICE_GET_REGION_INFO request, first try with argsz 32",
		codec:  "RegionInfoRequest",
		header: user.Header{MsgID: 3, Command: user.CmdDeviceGetRegionInfo, Size: 48},
		value:  user.RegionInfo{ArgSz: 32, Index: vfio.BAR0},
		wire: []byte{
			0x03, 0x00, // msg_id 3
			0x05, 0x00, // command 5: DEVICE_GET_REGION_INFO
			0x30, 0x00, 0x00, 0x00, // msg_size 48 = 16 + 32
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x20, 0x00, 0x00, 0x00, // argsz 32: room for the struct only
			0x00, 0x00, 0x00, 0x00, // flags 0
			0x00, 0x00, 0x00, 0x00, // index 0: BAR0
			0x00, 0x00, 0x00, 0x00, // cap_offset 0
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // size 0
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset 0
		},
	},
	{
		name:   "DEVICE_GET_REGION_INFO reply when the chain does not fit",
		codec:  "RegionInfoReply",
		header: user.Header{MsgID: 3, Command: user.CmdDeviceGetRegionInfo, Size: 48, Flags: user.TypeReply},
		value:  user.RegionInfo{ArgSz: 80, Flags: user.RegionFlagRead | user.RegionFlagWrite | user.RegionFlagMmap, Index: vfio.BAR0, Size: 0x4000},
		wire: []byte{
			0x03, 0x00, // msg_id 3, echoed
			0x05, 0x00, // command 5: DEVICE_GET_REGION_INFO
			0x30, 0x00, 0x00, 0x00, // msg_size 48 = 16 + 32: the struct alone
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x50, 0x00, 0x00, 0x00, // argsz 80: what the full reply needs; the client retries
			0x07, 0x00, 0x00, 0x00, // flags READ|WRITE|MMAP, no CAPS
			0x00, 0x00, 0x00, 0x00, // index 0: BAR0
			0x00, 0x00, 0x00, 0x00, // cap_offset 0: no chain
			0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // size 0x4000
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset 0
		},
	},
	{
		name:   "DEVICE_GET_REGION_INFO reply with a 2-area sparse mmap capability",
		codec:  "RegionInfoReply",
		header: user.Header{MsgID: 4, Command: user.CmdDeviceGetRegionInfo, Size: 96, Flags: user.TypeReply},
		value: user.RegionInfo{
			ArgSz: 80, Flags: user.RegionFlagRead | user.RegionFlagWrite | user.RegionFlagMmap | user.RegionFlagCaps,
			Index: vfio.BAR0, CapOffset: 32, Size: 0x4000, Offset: 0,
			Caps: []user.RegionCap{user.SparseMmapCap{Areas: []user.SparseArea{{Offset: 0x1000, Size: 0x1000}, {Offset: 0x3000, Size: 0x1000}}}},
		},
		wire: []byte{
			0x04, 0x00, // msg_id 4
			0x05, 0x00, // command 5: DEVICE_GET_REGION_INFO
			0x60, 0x00, 0x00, 0x00, // msg_size 96 = 16 + 80
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x50, 0x00, 0x00, 0x00, // argsz 80 = 32 + 16 + 2*16
			0x0f, 0x00, 0x00, 0x00, // flags READ|WRITE|MMAP|CAPS
			0x00, 0x00, 0x00, 0x00, // index 0: BAR0
			0x20, 0x00, 0x00, 0x00, // cap_offset 32
			0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // size 0x4000
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset 0 in the region fd
			0x01, 0x00, // cap id 1: SPARSE_MMAP
			0x01, 0x00, // cap version 1
			0x00, 0x00, 0x00, 0x00, // next 0: end of chain
			0x02, 0x00, 0x00, 0x00, // nr_areas 2
			0x00, 0x00, 0x00, 0x00, // reserved
			0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // area 0 offset 0x1000
			0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // area 0 size 0x1000
			0x00, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // area 1 offset 0x3000
			0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // area 1 size 0x1000
		},
	},
	{
		name:   "DEVICE_GET_REGION_INFO reply for a device-specific region: type then sparse",
		codec:  "RegionInfoReply",
		header: user.Header{MsgID: 5, Command: user.CmdDeviceGetRegionInfo, Size: 96, Flags: user.TypeReply},
		value: user.RegionInfo{
			ArgSz: 80, Flags: user.RegionFlagRead | user.RegionFlagWrite | user.RegionFlagMmap | user.RegionFlagCaps,
			Index: 9, CapOffset: 32, Size: 0x1000, Offset: 1 << 40,
			Caps: []user.RegionCap{
				user.RegionTypeCap{Type: 0x80001b36, Subtype: 1},
				user.SparseMmapCap{Areas: []user.SparseArea{{Offset: 0, Size: 0x1000}}},
			},
		},
		wire: []byte{
			0x05, 0x00, // msg_id 5
			0x05, 0x00, // command 5: DEVICE_GET_REGION_INFO
			0x60, 0x00, 0x00, 0x00, // msg_size 96 = 16 + 80
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x50, 0x00, 0x00, 0x00, // argsz 80 = 32 + 16 + 16 + 16
			0x0f, 0x00, 0x00, 0x00, // flags READ|WRITE|MMAP|CAPS
			0x09, 0x00, 0x00, 0x00, // index 9: first device-specific region
			0x20, 0x00, 0x00, 0x00, // cap_offset 32
			0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // size 0x1000
			0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // offset 1<<40 in the region fd
			0x02, 0x00, // cap id 2: TYPE
			0x01, 0x00, // cap version 1
			0x30, 0x00, 0x00, 0x00, // next 48
			0x36, 0x1b, 0x00, 0x80, // type 0x80001b36: vendor-specific, vendor 0x1b36
			0x01, 0x00, 0x00, 0x00, // subtype 1
			0x01, 0x00, // cap id 1: SPARSE_MMAP
			0x01, 0x00, // cap version 1
			0x00, 0x00, 0x00, 0x00, // next 0: end of chain
			0x01, 0x00, 0x00, 0x00, // nr_areas 1
			0x00, 0x00, 0x00, 0x00, // reserved
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // area 0 offset 0
			0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // area 0 size 0x1000
		},
	},
	{
		name:   "DEVICE_GET_IRQ_INFO request for MSI-X",
		codec:  "IRQInfo",
		header: user.Header{MsgID: 6, Command: user.CmdDeviceGetIRQInfo, Size: 32},
		value:  user.IRQInfo{ArgSz: 16, Index: vfio.IRQMSIX},
		wire: []byte{
			0x06, 0x00, // msg_id 6
			0x07, 0x00, // command 7: DEVICE_GET_IRQ_INFO
			0x20, 0x00, 0x00, 0x00, // msg_size 32 = 16 + 16
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x10, 0x00, 0x00, 0x00, // argsz 16
			0x00, 0x00, 0x00, 0x00, // flags 0
			0x02, 0x00, 0x00, 0x00, // index 2: MSI-X
			0x00, 0x00, 0x00, 0x00, // count 0
		},
	},
	{
		name:   "DEVICE_GET_IRQ_INFO reply for MSI-X: 4 vectors",
		codec:  "IRQInfo",
		header: user.Header{MsgID: 6, Command: user.CmdDeviceGetIRQInfo, Size: 32, Flags: user.TypeReply},
		value:  user.IRQInfo{ArgSz: 16, Flags: user.IRQInfoEventFD | user.IRQInfoNoResize, Index: vfio.IRQMSIX, Count: 4},
		wire: []byte{
			0x06, 0x00, // msg_id 6, echoed
			0x07, 0x00, // command 7: DEVICE_GET_IRQ_INFO
			0x20, 0x00, 0x00, 0x00, // msg_size 32 = 16 + 16
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x10, 0x00, 0x00, 0x00, // argsz 16
			0x09, 0x00, 0x00, 0x00, // flags EVENTFD|NORESIZE
			0x02, 0x00, 0x00, 0x00, // index 2: MSI-X
			0x04, 0x00, 0x00, 0x00, // count 4
		},
	},
	{
		name:   "DEVICE_SET_IRQS: 4 MSI-X trigger eventfds",
		codec:  "IRQSet",
		header: user.Header{MsgID: 7, Command: user.CmdDeviceSetIRQs, Size: 36},
		value:  user.IRQSet{ArgSz: 20, Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: vfio.IRQMSIX, Start: 0, Count: 4},
		wire: []byte{
			0x07, 0x00, // msg_id 7
			0x08, 0x00, // command 8: DEVICE_SET_IRQS
			0x24, 0x00, 0x00, 0x00, // msg_size 36 = 16 + 20: the 4 eventfds ride in SCM_RIGHTS
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x14, 0x00, 0x00, 0x00, // argsz 20
			0x24, 0x00, 0x00, 0x00, // flags DATA_EVENTFD|ACTION_TRIGGER
			0x02, 0x00, 0x00, 0x00, // index 2: MSI-X
			0x00, 0x00, 0x00, 0x00, // start 0
			0x04, 0x00, 0x00, 0x00, // count 4
		},
	},
	{
		name:   "DEVICE_SET_IRQS reply",
		header: user.Header{MsgID: 7, Command: user.CmdDeviceSetIRQs, Size: 16, Flags: user.TypeReply},
		wire: []byte{
			0x07, 0x00, // msg_id 7, echoed
			0x08, 0x00, // command 8: DEVICE_SET_IRQS
			0x10, 0x00, 0x00, 0x00, // msg_size 16: no payload
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
		},
	},
	{
		name:   "DEVICE_SET_IRQS: mask INTx with a bool",
		codec:  "IRQSet",
		header: user.Header{MsgID: 8, Command: user.CmdDeviceSetIRQs, Size: 37},
		value:  user.IRQSet{ArgSz: 21, Flags: user.IRQSetDataBool | user.IRQSetActionMask, Index: vfio.IRQINTx, Count: 1, Data: []byte{1}},
		wire: []byte{
			0x08, 0x00, // msg_id 8
			0x08, 0x00, // command 8: DEVICE_SET_IRQS
			0x25, 0x00, 0x00, 0x00, // msg_size 37 = 16 + 20 + 1
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x15, 0x00, 0x00, 0x00, // argsz 21, data included
			0x0a, 0x00, 0x00, 0x00, // flags DATA_BOOL|ACTION_MASK
			0x00, 0x00, 0x00, 0x00, // index 0: INTx
			0x00, 0x00, 0x00, 0x00, // start 0
			0x01, 0x00, 0x00, 0x00, // count 1
			0x01, // data[0]: true
		},
	},
	{
		name:   "REGION_READ request: config space vendor and device id",
		codec:  "RegionReadRequest",
		header: user.Header{MsgID: 20, Command: user.CmdRegionRead, Size: 32},
		value:  user.RegionAccess{Offset: 0, Region: vfio.ConfigRegion, Count: 4},
		wire: []byte{
			0x14, 0x00, // msg_id 20
			0x09, 0x00, // command 9: REGION_READ
			0x20, 0x00, 0x00, 0x00, // msg_size 32 = 16 + 16
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset 0
			0x07, 0x00, 0x00, 0x00, // region 7: config space
			0x04, 0x00, 0x00, 0x00, // count 4
		},
	},
	{
		name:   "REGION_READ reply: config space vendor and device id",
		codec:  "RegionReadReply",
		header: user.Header{MsgID: 20, Command: user.CmdRegionRead, Size: 36, Flags: user.TypeReply},
		value:  user.RegionData{Offset: 0, Region: vfio.ConfigRegion, Data: []byte{0x36, 0x1b, 0x10, 0x00}},
		wire: []byte{
			0x14, 0x00, // msg_id 20, echoed
			0x09, 0x00, // command 9: REGION_READ
			0x24, 0x00, 0x00, 0x00, // msg_size 36 = 16 + 16 + 4
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset 0
			0x07, 0x00, 0x00, 0x00, // region 7: config space
			0x04, 0x00, 0x00, 0x00, // count 4
			0x36, 0x1b, 0x10, 0x00, // data: vendor 0x1b36, device 0x0010
		},
	},
	{
		name:   "REGION_WRITE request: config command register 0x103",
		codec:  "RegionWriteRequest",
		header: user.Header{MsgID: 21, Command: user.CmdRegionWrite, Size: 34},
		value:  user.RegionData{Offset: 4, Region: vfio.ConfigRegion, Data: []byte{0x03, 0x01}},
		wire: []byte{
			0x15, 0x00, // msg_id 21
			0x0a, 0x00, // command 10: REGION_WRITE
			0x22, 0x00, 0x00, 0x00, // msg_size 34 = 16 + 16 + 2
			0x00, 0x00, 0x00, 0x00, // flags: command (config writes are never posted)
			0x00, 0x00, 0x00, 0x00, // error 0
			0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset 4: command register
			0x07, 0x00, 0x00, 0x00, // region 7: config space
			0x02, 0x00, 0x00, 0x00, // count 2
			0x03, 0x01, // data 0x0103: IO|MEM|SERR enable
		},
	},
	{
		name:   "REGION_WRITE reply",
		codec:  "RegionWriteReply",
		header: user.Header{MsgID: 21, Command: user.CmdRegionWrite, Size: 32, Flags: user.TypeReply},
		value:  user.RegionAccess{Offset: 4, Region: vfio.ConfigRegion, Count: 2},
		wire: []byte{
			0x15, 0x00, // msg_id 21, echoed
			0x0a, 0x00, // command 10: REGION_WRITE
			0x20, 0x00, 0x00, 0x00, // msg_size 32 = 16 + 16: no data
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset 4
			0x07, 0x00, 0x00, 0x00, // region 7
			0x02, 0x00, 0x00, 0x00, // count 2
		},
	},
	{
		name:   "REGION_WRITE_MULTI with 2 posted writes",
		codec:  "RegionWriteMulti",
		header: user.Header{MsgID: 22, Command: user.CmdRegionWriteMulti, Size: 72, Flags: user.FlagNoReply},
		value: user.RegionWriteMulti{Writes: []user.WriteMultiEntry{
			{Offset: 0x10, Region: vfio.BAR0, Count: 4, Data: [8]byte{0x01}},
			{Offset: 0x1000, Region: vfio.BAR2, Count: 8, Data: [8]byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}},
		}},
		wire: []byte{
			0x16, 0x00, // msg_id 22
			0x0f, 0x00, // command 15: REGION_WRITE_MULTI
			0x48, 0x00, 0x00, 0x00, // msg_size 72 = 16 + 8 + 2*24
			0x10, 0x00, 0x00, 0x00, // flags: command|NO_REPLY
			0x00, 0x00, 0x00, 0x00, // error 0
			0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // wr_cnt 2
			0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // wrs[0].offset 0x10
			0x00, 0x00, 0x00, 0x00, // wrs[0].region 0: BAR0
			0x04, 0x00, 0x00, 0x00, // wrs[0].count 4
			0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // wrs[0].data: 4 bytes used, 4 unused
			0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // wrs[1].offset 0x1000
			0x02, 0x00, 0x00, 0x00, // wrs[1].region 2: BAR2
			0x08, 0x00, 0x00, 0x00, // wrs[1].count 8
			0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // wrs[1].data
		},
	},
	{
		name:   "REGION_WRITE_MULTI reply (to one sent without NO_REPLY)",
		codec:  "RegionWriteMultiReply",
		header: user.Header{MsgID: 23, Command: user.CmdRegionWriteMulti, Size: 24, Flags: user.TypeReply},
		value:  user.RegionWriteMultiReply{Count: 2},
		wire: []byte{
			0x17, 0x00, // msg_id 23, echoed
			0x0f, 0x00, // command 15: REGION_WRITE_MULTI
			0x18, 0x00, 0x00, 0x00, // msg_size 24 = 16 + 8
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // wr_cnt 2: writes done
		},
	},
	{
		name:   "DMA_READ request, spec layout",
		codec:  "DMAReadRequest/spec",
		header: user.Header{MsgID: 0x30, Command: user.CmdDMARead, Size: 32},
		value:  user.DMAReadRequest{Address: 0x1000, Count: 8},
		wire: []byte{
			0x30, 0x00, // msg_id 0x30 (the server's own id space)
			0x0b, 0x00, // command 11: DMA_READ
			0x20, 0x00, 0x00, 0x00, // msg_size 32 = 16 + 16
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // address 0x1000
			0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // count 8 (u64)
		},
	},
	{
		name:   "DMA_READ reply, spec layout",
		codec:  "DMAReadReply/spec",
		header: user.Header{MsgID: 0x30, Command: user.CmdDMARead, Size: 40, Flags: user.TypeReply},
		value:  user.DMAReadReply{Address: 0x1000, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		wire: []byte{
			0x30, 0x00, // msg_id 0x30, echoed
			0x0b, 0x00, // command 11: DMA_READ
			0x28, 0x00, 0x00, 0x00, // msg_size 40 = 16 + 16 + 8
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // address 0x1000
			0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // count 8 (u64)
			0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // data at payload offset 16
		},
	},
	{
		name:   "DMA_READ request, QEMU layout",
		codec:  "DMAReadRequest/qemu",
		header: user.Header{MsgID: 0x31, Command: user.CmdDMARead, Size: 32},
		value:  user.DMAReadRequest{Address: 0x1000, Count: 8},
		wire: []byte{
			0x31, 0x00, // msg_id 0x31
			0x0b, 0x00, // command 11: DMA_READ
			0x20, 0x00, 0x00, 0x00, // msg_size 32 = sizeof(VFIOUserDMARW), QEMU's minimum
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset (address) 0x1000
			0x08, 0x00, 0x00, 0x00, // count 8 (u32)
			0x00, 0x00, 0x00, 0x00, // tail padding of QEMU's struct
		},
	},
	{
		name:   "DMA_READ reply, QEMU layout",
		codec:  "DMAReadReply/qemu",
		header: user.Header{MsgID: 0x31, Command: user.CmdDMARead, Size: 40, Flags: user.TypeReply},
		value:  user.DMAReadReply{Address: 0x1000, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		wire: []byte{
			0x31, 0x00, // msg_id 0x31, echoed
			0x0b, 0x00, // command 11: DMA_READ
			0x28, 0x00, 0x00, 0x00, // msg_size 40 = 32 + count 8
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset (address) 0x1000
			0x08, 0x00, 0x00, 0x00, // count 8 (u32)
			0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // data at payload offset 12
			0x00, 0x00, 0x00, 0x00, // 4 tail bytes after the data
		},
	},
	{
		name:   "DMA_WRITE request, spec layout",
		codec:  "DMAWriteRequest/spec",
		header: user.Header{MsgID: 0x32, Command: user.CmdDMAWrite, Size: 36},
		value:  user.DMAWriteRequest{Address: 0x2000, Data: []byte{0xde, 0xad, 0xbe, 0xef}},
		wire: []byte{
			0x32, 0x00, // msg_id 0x32
			0x0c, 0x00, // command 12: DMA_WRITE
			0x24, 0x00, 0x00, 0x00, // msg_size 36 = 16 + 16 + 4
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // address 0x2000
			0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // count 4 (u64)
			0xde, 0xad, 0xbe, 0xef, // data at payload offset 16
		},
	},
	{
		name:   "DMA_WRITE reply, spec layout",
		codec:  "DMAWriteReply/spec",
		header: user.Header{MsgID: 0x32, Command: user.CmdDMAWrite, Size: 32, Flags: user.TypeReply},
		value:  user.DMAWriteReply{Address: 0x2000, Count: 4},
		wire: []byte{
			0x32, 0x00, // msg_id 0x32, echoed
			0x0c, 0x00, // command 12: DMA_WRITE
			0x20, 0x00, 0x00, 0x00, // msg_size 32 = 16 + 16
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // address 0x2000
			0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // count 4 (u64)
		},
	},
	{
		name:   "DMA_WRITE request, QEMU layout",
		codec:  "DMAWriteRequest/qemu",
		header: user.Header{MsgID: 0x33, Command: user.CmdDMAWrite, Size: 36},
		value:  user.DMAWriteRequest{Address: 0x2000, Data: []byte{0xde, 0xad, 0xbe, 0xef}},
		wire: []byte{
			0x33, 0x00, // msg_id 0x33
			0x0c, 0x00, // command 12: DMA_WRITE
			0x24, 0x00, 0x00, 0x00, // msg_size 36 = 32 + count 4
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // offset (address) 0x2000
			0x04, 0x00, 0x00, 0x00, // count 4 (u32)
			0xde, 0xad, 0xbe, 0xef, // data at payload offset 12, where QEMU reads it
			0x00, 0x00, 0x00, 0x00, // 4 tail bytes, so QEMU's count <= size - 32 holds
		},
	},
	{
		name:   "DMA_WRITE reply, QEMU layout: header only",
		codec:  "DMAWriteReply/qemu",
		header: user.Header{MsgID: 0x33, Command: user.CmdDMAWrite, Size: 16, Flags: user.TypeReply},
		value:  user.DMAWriteReply{},
		wire: []byte{
			0x33, 0x00, // msg_id 0x33, echoed
			0x0c, 0x00, // command 12: DMA_WRITE
			0x10, 0x00, 0x00, 0x00, // msg_size 16: QEMU echoes nothing
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
		},
	},
	{
		name:   "DEVICE_RESET request",
		header: user.Header{MsgID: 24, Command: user.CmdDeviceReset, Size: 16},
		wire: []byte{
			0x18, 0x00, // msg_id 24
			0x0d, 0x00, // command 13: DEVICE_RESET
			0x10, 0x00, 0x00, 0x00, // msg_size 16: no payload
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
		},
	},
	{
		name:   "DEVICE_RESET reply",
		header: user.Header{MsgID: 24, Command: user.CmdDeviceReset, Size: 16, Flags: user.TypeReply},
		wire: []byte{
			0x18, 0x00, // msg_id 24, echoed
			0x0d, 0x00, // command 13: DEVICE_RESET
			0x10, 0x00, 0x00, 0x00, // msg_size 16: no payload
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
		},
	},
	{
		name:   "DEVICE_FEATURE request: GET MIGRATION",
		codec:  "DeviceFeature",
		header: user.Header{MsgID: 25, Command: user.CmdDeviceFeature, Size: 24},
		value:  user.DeviceFeature{ArgSz: 16, Flags: user.FeatureGet | user.FeatureMigration},
		wire: []byte{
			0x19, 0x00, // msg_id 25
			0x10, 0x00, // command 16: DEVICE_FEATURE
			0x18, 0x00, 0x00, 0x00, // msg_size 24 = 16 + 8
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x10, 0x00, 0x00, 0x00, // argsz 16: room for 8 bytes of feature data
			0x01, 0x00, 0x01, 0x00, // flags GET | feature 1 (MIGRATION)
		},
	},
	{
		name:   "DEVICE_FEATURE reply: MIGRATION supports STOP_COPY",
		codec:  "DeviceFeature",
		header: user.Header{MsgID: 25, Command: user.CmdDeviceFeature, Size: 32, Flags: user.TypeReply},
		value:  user.DeviceFeature{ArgSz: 16, Flags: user.FeatureGet | user.FeatureMigration, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0}},
		wire: []byte{
			0x19, 0x00, // msg_id 25, echoed
			0x10, 0x00, // command 16: DEVICE_FEATURE
			0x20, 0x00, 0x00, 0x00, // msg_size 32 = 16 + 8 + 8
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x10, 0x00, 0x00, 0x00, // argsz 16
			0x01, 0x00, 0x01, 0x00, // flags GET | feature 1 (MIGRATION)
			0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // data: u64 migration flags STOP_COPY
		},
	},
	{
		name:   "MIG_DATA_READ request",
		codec:  "MigDataRead",
		header: user.Header{MsgID: 26, Command: user.CmdMigDataRead, Size: 24},
		value:  user.MigDataRead{ArgSz: 24, Size: 16},
		wire: []byte{
			0x1a, 0x00, // msg_id 26
			0x11, 0x00, // command 17: MIG_DATA_READ
			0x18, 0x00, 0x00, 0x00, // msg_size 24 = 16 + 8
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x18, 0x00, 0x00, 0x00, // argsz 24 = 8 + 16
			0x10, 0x00, 0x00, 0x00, // size 16
		},
	},
	{
		name:   "MIG_DATA_READ reply: a short read ends the stream",
		codec:  "MigDataReadReply",
		header: user.Header{MsgID: 26, Command: user.CmdMigDataRead, Size: 28, Flags: user.TypeReply},
		value:  user.MigData{ArgSz: 12, Data: []byte("abcd")},
		wire: []byte{
			0x1a, 0x00, // msg_id 26, echoed
			0x11, 0x00, // command 17: MIG_DATA_READ
			0x1c, 0x00, 0x00, 0x00, // msg_size 28 = 16 + 8 + 4
			0x01, 0x00, 0x00, 0x00, // flags: reply
			0x00, 0x00, 0x00, 0x00, // error 0
			0x0c, 0x00, 0x00, 0x00, // argsz 12
			0x04, 0x00, 0x00, 0x00, // size 4 (< 16 asked)
			'a', 'b', 'c', 'd', // data
		},
	},
	{
		name:   "MIG_DATA_WRITE request",
		codec:  "MigDataWrite",
		header: user.Header{MsgID: 27, Command: user.CmdMigDataWrite, Size: 28},
		value:  user.MigData{ArgSz: 12, Data: []byte("abcd")},
		wire: []byte{
			0x1b, 0x00, // msg_id 27
			0x12, 0x00, // command 18: MIG_DATA_WRITE
			0x1c, 0x00, 0x00, 0x00, // msg_size 28 = 16 + 8 + 4
			0x00, 0x00, 0x00, 0x00, // flags: command
			0x00, 0x00, 0x00, 0x00, // error 0
			0x0c, 0x00, 0x00, 0x00, // argsz 12
			0x04, 0x00, 0x00, 0x00, // size 4
			'a', 'b', 'c', 'd', // data
		},
	},
}

func TestGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			require.Equal(t, int(g.header.Size), len(g.wire), "header.Size in the table")

			// Encode: header with msg_size left to FinishMessage, then the payload.
			h := g.header
			h.Size = 0
			b, start := user.StartMessage(nil, h)
			if g.codec != "" {
				var err error
				b, err = codecNamed(g.codec).encode(b, g.value)
				require.NoError(t, err)
			}
			b, err := user.FinishMessage(b, start)
			require.NoError(t, err)
			require.Equal(t, g.wire, b, "encoded bytes")

			// The same through EncodeMessage.
			if g.codec != "" {
				payload, err := codecNamed(g.codec).encode(nil, g.value)
				require.NoError(t, err)
				b2, err := user.EncodeMessage([]byte{0xaa}, h, payload)
				require.NoError(t, err)
				require.Equal(t, append([]byte{0xaa}, g.wire...), b2, "EncodeMessage appends")
			}

			// Decode.
			got, err := user.DecodeHeader(g.wire)
			require.NoError(t, err)
			require.Equal(t, g.header, got, "decoded header")
			require.Equal(t, len(g.wire)-user.HeaderSize, got.PayloadLen())
			p := g.wire[user.HeaderSize:]
			if g.codec == "" {
				require.Empty(t, p)
				return
			}
			v, err := codecNamed(g.codec).decode(p)
			require.NoError(t, err)
			require.Equal(t, g.value, v, "decoded payload")
		})
	}
}

// TestGoldenErrorReply builds the error reply golden from its request
// header and reads the errno back as an error value.
func TestGoldenErrorReply(t *testing.T) {
	req := user.Header{MsgID: 1, Command: user.CmdDMAMap, Size: 48}
	h := user.ErrorReplyTo(req, syscall.EEXIST)
	require.Equal(t, []byte{
		0x01, 0x00, // msg_id 1, echoed
		0x02, 0x00, // command 2: DMA_MAP
		0x10, 0x00, 0x00, 0x00, // msg_size 16
		0x21, 0x00, 0x00, 0x00, // flags: reply|ERROR
		0x11, 0x00, 0x00, 0x00, // error 17: EEXIST
	}, h.Encode(nil))
	require.True(t, h.IsReply())

	err := h.Err()
	require.ErrorIs(t, err, syscall.EEXIST)
	var re *user.RemoteError
	require.ErrorAs(t, err, &re)
	require.Equal(t, user.CmdDMAMap, re.Command)
	require.Equal(t, "vfio-user: DMA_MAP failed: file exists", err.Error())

	// ERROR with errno 0 is allowed and still an error.
	h.Error = 0
	require.Error(t, h.Err())
	require.NoError(t, user.ReplyTo(req).Err())
	require.Equal(t, user.Header{MsgID: 1, Command: user.CmdDMAMap, Size: 16, Flags: user.TypeReply}, user.ReplyTo(req))
}
