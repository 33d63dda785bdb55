package devicemodel_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/fdpass"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// Fuzz input for FuzzServer: a control byte, then the byte stream a
// client sends. Control bits attach descriptors to the stream's second
// message (the first being VERSION in a sane stream), as DMA_MAP and
// SET_IRQS carry them; the first message's length is taken from its
// msg_size.
const (
	fuzzMemfd   = 1 << 0
	fuzzEventfd = 1 << 1
)

func fuzzMsg(cmd user.Command, flags user.HeaderFlags, payload []byte) []byte {
	b, _ := user.EncodeMessage(nil, user.Header{MsgID: uint16(cmd), Command: cmd, Flags: flags}, payload)
	return b
}

// serverSeeds are client streams worth starting from: QEMU's start of a
// session, DMA maps, interrupts, the device's DMA engine, and garbage.
func serverSeeds() [][]byte {
	v := fuzzMsg(user.CmdVersion, 0, qemuVersion())
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	ri := func(idx vfio.RegionIndex, argsz uint32) []byte {
		b, _ := user.RegionInfo{ArgSz: argsz, Index: idx}.Encode(nil)
		return fuzzMsg(user.CmdDeviceGetRegionInfo, 0, b)
	}
	wr := func(flags user.HeaderFlags, idx vfio.RegionIndex, off uint64, data []byte) []byte {
		b, _ := user.RegionData{Offset: off, Region: idx, Data: data}.Encode(nil)
		return fuzzMsg(user.CmdRegionWrite, flags, b)
	}
	irq := func(q user.IRQSet) []byte {
		b, _ := q.Encode(nil)
		return fuzzMsg(user.CmdDeviceSetIRQs, 0, b)
	}
	ctl := make([]byte, 16)
	binary.LittleEndian.PutUint64(ctl, 0x200000)
	binary.LittleEndian.PutUint32(ctl[8:], 64)
	binary.LittleEndian.PutUint32(ctl[12:], dmaCmdFromHost)
	ctlMem := append([]byte(nil), ctl...)
	binary.LittleEndian.PutUint64(ctlMem, 0x100000)
	return [][]byte{
		append([]byte{0}, cat(v, fuzzMsg(user.CmdDeviceGetInfo, 0, user.DeviceInfo{}.Encode(nil)), ri(2, 32), ri(2, 80), ri(7, 32),
			fuzzMsg(user.CmdRegionRead, 0, user.RegionAccess{Region: vfio.ConfigRegion, Count: 256}.Encode(nil)),
			wr(user.FlagNoReply, vfio.BAR0, 0x40, []byte("posted")),
			fuzzMsg(user.CmdDeviceGetIRQInfo, 0, user.IRQInfo{Index: 2}.Encode(nil)),
			fuzzMsg(user.CmdDeviceReset, 0, nil))...),
		append([]byte{fuzzMemfd}, cat(v, fuzzMsg(user.CmdDMAMap, 0, user.DMAMap{Flags: 3, Address: 0x100000, Size: 4096}.Encode(nil)),
			fuzzMsg(user.CmdDMAMap, 0, user.DMAMap{Flags: 1, Address: 0x200000, Size: 4096}.Encode(nil)),
			wr(0, vfio.BAR0, regDMAAddr, ctl), wr(0, vfio.BAR0, regDMAAddr, ctlMem),
			fuzzMsg(user.CmdDMAUnmap, 0, user.DMAUnmap{Address: 0x200000, Size: 4096}.Encode(nil)),
			fuzzMsg(user.CmdDMAUnmap, 0, user.DMAUnmap{Flags: user.DMAUnmapAll}.Encode(nil)))...),
		append([]byte{fuzzEventfd}, cat(v, irq(user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: 2, Start: 1, Count: 1}),
			irq(user.IRQSet{Flags: user.IRQSetDataBool | user.IRQSetActionTrigger, Index: 2, Count: 4, Data: []byte{1, 0, 1, 1}}),
			irq(user.IRQSet{Flags: user.IRQSetDataNone | user.IRQSetActionMask, Index: 0, Count: 1}),
			wr(0, vfio.BAR0, regIRQ, []byte{0, 0, 0, 0}),
			irq(user.IRQSet{Flags: user.IRQSetDataNone | user.IRQSetActionTrigger, Index: 2}))...),
		append([]byte{fuzzMemfd | fuzzEventfd}, cat(v, fuzzMsg(99, 0, nil), fuzzMsg(user.CmdRegionRead, user.FlagNoReply, []byte{1}),
			user.Header{Command: user.CmdVersion, Size: 17}.Encode(nil))...),
	}
}

// FuzzServer feeds the server an arbitrary client byte stream over a
// socket, with the test device behind it. Invariants: no panic; the
// server ends the connection within bounded time once the stream ends
// (answering or dropping, never hanging, even with DMA messages the fuzz
// client never answers); every descriptor it received is closed and the
// device detached afterwards.
func FuzzServer(f *testing.F) {
	for _, s := range serverSeeds() {
		f.Add(s)
	}
	dev, err := newTestDevice()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { dev.Close() })
	srv := devicemodel.NewServer(dev, &devicemodel.ServerOptions{
		Logger:     slog.New(slog.DiscardHandler),
		DMATimeout: 5 * time.Millisecond,
		MaxMsgFDs:  2,
	})
	mem, err := dma.Memfd("fuzz-guest", 16*4096, dma.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { mem.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		ctl, stream := in[0], in[1:]
		var fds []int
		if ctl&fuzzMemfd != 0 {
			fds = append(fds, mem.FD())
		}
		if ctl&fuzzEventfd != 0 {
			efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(efd)
			fds = append(fds, efd)
		}
		before := openFDs(t)
		srvEnd, cliEnd := socketPair(t)
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(context.Background(), srvEnd) }()
		drained := make(chan struct{})
		go func() { io.Copy(io.Discard, cliEnd); close(drained) }() // replies, until the server closes
		first := len(stream)
		if len(stream) >= user.HeaderSize {
			first = int(min(max(binary.LittleEndian.Uint32(stream[4:]), user.HeaderSize), uint32(len(stream))))
		}
		// The server may have closed already; that is fine.
		if fdpass.Send(cliEnd, stream[:first]) == nil && first < len(stream) {
			fdpass.Send(cliEnd, stream[first:], fds...)
		}
		cliEnd.CloseWrite()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("the server did not end the connection after the stream ended")
		}
		<-drained
		cliEnd.Close()
		if a, d, _ := dev.counts(); a != d || dev.Host() != nil {
			t.Fatalf("attached %d times, detached %d", a, d)
		}
		if n := openFDs(t); n != before {
			t.Fatalf("%d descriptors open after the connection, %d before", n, before)
		}
	})
}
