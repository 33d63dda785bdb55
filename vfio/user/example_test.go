package user_test

import (
	"fmt"

	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// A server answers DEVICE_GET_INFO: decode the header, check its size,
// decode the payload, then encode the reply in place after its header.
func Example() {
	// The request as QEMU sends it (header and 16-byte payload).
	req, _ := user.EncodeMessage(nil, user.Header{MsgID: 2, Command: user.CmdDeviceGetInfo}, user.DeviceInfo{ArgSz: 16}.Encode(nil))

	h, err := user.DecodeHeader(req)
	if err != nil {
		panic(err)
	}
	if err := h.CheckSize(user.DefaultMaxMessageSize); err != nil {
		panic(err)
	}
	info, err := user.DecodeDeviceInfo(req[user.HeaderSize:h.Size])
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s request, msg_id %d, argsz %d\n", h.Command, h.MsgID, info.ArgSz)

	b, start := user.StartMessage(nil, user.ReplyTo(h))
	b = user.DeviceInfo{
		Flags:      user.DeviceFlagReset | user.DeviceFlagPCI,
		NumRegions: uint32(vfio.NumPCIRegions),
		NumIRQs:    uint32(vfio.NumPCIIRQs),
	}.Encode(b)
	b, err = user.FinishMessage(b, start)
	if err != nil {
		panic(err)
	}
	fmt.Printf("reply % x\n", b)
	// Output:
	// DEVICE_GET_INFO request, msg_id 2, argsz 16
	// reply 02 00 04 00 20 00 00 00 01 00 00 00 00 00 00 00 10 00 00 00 03 00 00 00 09 00 00 00 05 00 00 00
}

// A client reads the mmap-able areas of a BAR from its region info reply.
func ExampleDecodeRegionInfoReply() {
	payload, _ := user.RegionInfo{
		Flags: user.RegionFlagRead | user.RegionFlagWrite | user.RegionFlagMmap,
		Index: vfio.BAR0,
		Size:  0x4000,
		Caps:  []user.RegionCap{user.SparseMmapCap{Areas: []user.SparseArea{{Offset: 0x1000, Size: 0x1000}, {Offset: 0x3000, Size: 0x1000}}}},
	}.Encode(nil)

	r, err := user.DecodeRegionInfoReply(payload)
	if err != nil {
		panic(err)
	}
	fmt.Printf("argsz %d, cap_offset %d, flags %#x\n", r.ArgSz, r.CapOffset, r.Flags)
	if s, ok := r.SparseMmap(); ok {
		for _, a := range s.Areas {
			fmt.Printf("mmap [%#x, %#x)\n", a.Offset, a.Offset+a.Size)
		}
	}
	// Output:
	// argsz 80, cap_offset 32, flags 0xf
	// mmap [0x1000, 0x2000)
	// mmap [0x3000, 0x4000)
}
