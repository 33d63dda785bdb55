package devicemodel_test

import (
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/fdpass"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// rawClient speaks vfio-user with the wire encoders alone, the way QEMU's
// vfio-user-pci does, so the server is tested against a client that is not
// the Go Client.
type rawClient struct {
	t          testing.TB
	c          *net.UnixConn
	id         uint16
	serverCmds []user.Header // DMA_READ/DMA_WRITE the server sent; refused with EFAULT
}

type rawReply struct {
	h   user.Header
	p   []byte
	fds []int
}

func (r *rawClient) send(cmd user.Command, flags user.HeaderFlags, payload []byte, fds ...int) uint16 {
	r.t.Helper()
	r.id++
	msg, err := user.EncodeMessage(nil, user.Header{MsgID: r.id, Command: cmd, Flags: flags}, payload)
	require.NoError(r.t, err)
	require.NoError(r.t, fdpass.Send(r.c, msg, fds...))
	return r.id
}

// recv returns the next reply; commands from the server on the way are
// refused with EFAULT, as a client does for memory it will not serve.
func (r *rawClient) recv() rawReply {
	r.t.Helper()
	for {
		m := r.recvAny()
		if m.h.IsReply() {
			return m
		}
		r.serverCmds = append(r.serverCmds, m.h)
		fdpass.CloseAll(m.fds)
		if !m.h.NoReply() {
			msg := user.ErrorReplyTo(m.h, unix.EFAULT).Encode(nil)
			require.NoError(r.t, fdpass.Send(r.c, msg))
		}
	}
}

func (r *rawClient) recvAny() rawReply {
	r.t.Helper()
	require.NoError(r.t, r.c.SetReadDeadline(time.Now().Add(10*time.Second)))
	var hdr [user.HeaderSize]byte
	n, fds, err := fdpass.Recv(r.c, hdr[:], 4)
	require.NoError(r.t, err)
	require.NotZero(r.t, n, "server closed the connection")
	_, err = io.ReadFull(r.c, hdr[n:])
	require.NoError(r.t, err)
	h, err := user.DecodeHeader(hdr[:])
	require.NoError(r.t, err)
	p := make([]byte, h.PayloadLen())
	_, err = io.ReadFull(r.c, p)
	require.NoError(r.t, err)
	return rawReply{h, p, fds}
}

// call sends a command and returns its reply, which must be the next
// message and name the same id and command.
func (r *rawClient) call(cmd user.Command, payload []byte, fds ...int) rawReply {
	r.t.Helper()
	id := r.send(cmd, user.TypeCommand, payload, fds...)
	rep := r.recv()
	require.Equal(r.t, id, rep.h.MsgID, "replies must come in order")
	require.Equal(r.t, cmd, rep.h.Command)
	return rep
}

func (r *rawClient) ok(cmd user.Command, payload []byte, fds ...int) rawReply {
	r.t.Helper()
	rep := r.call(cmd, payload, fds...)
	require.NoError(r.t, rep.h.Err(), "%s", cmd)
	return rep
}

func (r *rawClient) fails(errno syscall.Errno, cmd user.Command, payload []byte, fds ...int) {
	r.t.Helper()
	rep := r.call(cmd, payload, fds...)
	require.ErrorIs(r.t, rep.h.Err(), errno, "%s", cmd)
	require.Empty(r.t, rep.p, "an error reply is a bare header")
	require.Empty(r.t, rep.fds)
}

const qemuVersionJSON = `{"capabilities":{"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"migration":{"pgsize":4096,"max_bitmap_size":268435456},"write_multiple":true}}`

func qemuVersion() []byte {
	p := make([]byte, 4, 4+len(qemuVersionJSON)+1)
	return append(append(p, qemuVersionJSON...), 0) // major 0, minor 0
}

func regionInfoReq(t testing.TB, idx vfio.RegionIndex, argsz uint32) []byte {
	b, err := user.RegionInfo{ArgSz: argsz, Index: idx}.Encode(nil)
	require.NoError(t, err)
	return b
}

func regionWrite(t testing.TB, idx vfio.RegionIndex, off uint64, data []byte) []byte {
	b, err := user.RegionData{Offset: off, Region: idx, Data: data}.Encode(nil)
	require.NoError(t, err)
	return b
}

func irqSet(t testing.TB, q user.IRQSet) []byte {
	b, err := q.Encode(nil)
	require.NoError(t, err)
	return b
}

func TestQEMUShapedSequence(t *testing.T) {
	dev := newTestDev(t)
	s := serve(t, dev, &devicemodel.ServerOptions{MaxMsgFDs: 2, WriteMultiple: true, DMAWire: user.DMAWireQEMU})
	r := &rawClient{t: t, c: s.cli}

	// 1. VERSION with QEMU's JSON: major kept, minor 0, a subset of the
	// capabilities, JSON ending in NUL.
	rep := r.ok(user.CmdVersion, qemuVersion())
	require.Equal(t, byte(0), rep.p[len(rep.p)-1], "JSON must be NUL-terminated")
	v, err := user.DecodeVersion(rep.p)
	require.NoError(t, err)
	require.Equal(t, uint16(0), v.Major)
	require.Equal(t, uint16(0), v.Minor)
	require.Equal(t, uint64(2), *v.Caps.MaxMsgFDs)
	require.Equal(t, uint64(1<<20), *v.Caps.MaxDataXferSize)
	require.Equal(t, uint64(4096), *v.Caps.PgSizes)
	require.Equal(t, uint64(65535), *v.Caps.MaxDMAMaps)
	require.True(t, v.Caps.WriteMultiple)
	require.Nil(t, v.Caps.Migration, "the server does not offer migration")
	r.fails(unix.EINVAL, user.CmdVersion, qemuVersion()) // only once

	// 2. DMA_MAPs before DEVICE_GET_INFO: guest RAM split around a hole,
	// both from one memfd, and a read-only ROM range without an fd.
	ram, err := dma.Memfd("guest-ram", 2<<20, dma.Options{})
	require.NoError(t, err)
	defer ram.Close()
	rw := user.DMAMapRead | user.DMAMapWrite
	r.ok(user.CmdDMAMap, user.DMAMap{Flags: rw, Offset: 0, Address: 0, Size: 0xc0000}.Encode(nil), ram.FD())
	r.ok(user.CmdDMAMap, user.DMAMap{Flags: rw, Offset: 0x100000, Address: 0x100000, Size: 0x100000}.Encode(nil), ram.FD())
	r.ok(user.CmdDMAMap, user.DMAMap{Flags: user.DMAMapRead, Address: 0xfffc0000, Size: 0x40000}.Encode(nil))
	r.fails(unix.EEXIST, user.CmdDMAMap, user.DMAMap{Flags: rw, Address: 0x1000, Size: 0x1000}.Encode(nil))
	// QEMU unmaps ranges it never mapped when it attaches: an error
	// reply, and the connection carries on. An unmap that would cut a
	// mapping is refused too; one that takes whole mappings is not
	// (TestDMATableUnmapMany).
	r.fails(unix.ENOENT, user.CmdDMAUnmap, user.DMAUnmap{Address: 1 << 40, Size: 1 << 40}.Encode(nil))
	r.fails(unix.ENOENT, user.CmdDMAUnmap, user.DMAUnmap{Address: 0xc0000, Size: 0x40000}.Encode(nil))
	r.fails(unix.EINVAL, user.CmdDMAUnmap, user.DMAUnmap{Address: 0, Size: 0x1000}.Encode(nil))

	// 3. DEVICE_GET_INFO (argsz 16).
	rep = r.ok(user.CmdDeviceGetInfo, user.DeviceInfo{}.Encode(nil))
	di, err := user.DecodeDeviceInfo(rep.p)
	require.NoError(t, err)
	require.Equal(t, user.DeviceInfo{ArgSz: 16, Flags: user.DeviceFlagReset | user.DeviceFlagPCI, NumRegions: 9, NumIRQs: 5}, di)

	// 4. Region info, argsz 32 first, then again with room.
	for idx := range vfio.NumPCIRegions {
		rep = r.ok(user.CmdDeviceGetRegionInfo, regionInfoReq(t, idx, 32))
		ri, err := user.DecodeRegionInfoReply(rep.p)
		require.NoError(t, err)
		require.Equal(t, idx, ri.Index)
		require.Len(t, rep.p, 32, "argsz 32 gets the bare struct")
		require.Empty(t, rep.fds, "no fd without the capability")
		switch idx {
		case vfio.BAR2:
			require.Greater(t, ri.ArgSz, uint32(32), "BAR2 needs room for its sparse areas")
			require.Zero(t, ri.Flags&user.RegionFlagCaps)
			rep = r.ok(user.CmdDeviceGetRegionInfo, regionInfoReq(t, idx, ri.ArgSz))
			full, err := user.DecodeRegionInfoReply(rep.p)
			require.NoError(t, err)
			require.Equal(t, user.RegionFlagRead|user.RegionFlagWrite|user.RegionFlagMmap|user.RegionFlagCaps, full.Flags)
			require.Equal(t, uint64(bar2Size), full.Size)
			require.Equal(t, uint64(bar2FileOff), full.Offset)
			sp, ok := full.SparseMmap()
			require.True(t, ok)
			require.Equal(t, []user.SparseArea{{Offset: 0, Size: 16 << 10}, {Offset: 32 << 10, Size: 32 << 10}}, sp.Areas)
			require.Len(t, rep.fds, 1, "the full reply carries the region's fd")
			// The fd maps the device's memory at offset + area offset.
			mem, err := unix.Mmap(rep.fds[0], int64(full.Offset+sp.Areas[1].Offset), 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			require.NoError(t, err)
			copy(mem, "qemu mapped BAR2")
			require.Equal(t, "qemu mapped BAR2", string(dev.mem.Bytes()[bar2FileOff+32<<10:][:16]))
			require.NoError(t, unix.Munmap(mem))
			fdpass.CloseAll(rep.fds)
		case vfio.BAR0, vfio.ConfigRegion:
			require.Equal(t, uint32(32), ri.ArgSz)
			require.Equal(t, user.RegionFlagRead|user.RegionFlagWrite, ri.Flags)
		default:
			require.Equal(t, user.RegionInfo{ArgSz: 32, Index: idx}, ri, "size 0 = not implemented, flags 0")
		}
	}
	r.fails(unix.EINVAL, user.CmdDeviceGetRegionInfo, regionInfoReq(t, 9, 32))

	// 5. IRQ info.
	for idx, want := range []uint32{1, 0, 4, 1, 1} {
		rep = r.ok(user.CmdDeviceGetIRQInfo, user.IRQInfo{Index: vfio.IRQIndex(idx)}.Encode(nil))
		q, err := user.DecodeIRQInfo(rep.p)
		require.NoError(t, err)
		require.Equal(t, want, q.Count, "irq %d", idx)
	}

	// 6. The whole config space in one read, then smaller ones.
	rep = r.ok(user.CmdRegionRead, user.RegionAccess{Region: vfio.ConfigRegion, Count: 256}.Encode(nil))
	cfg, err := user.DecodeRegionReadReply(rep.p)
	require.NoError(t, err)
	require.Len(t, cfg.Data, 256)
	require.Equal(t, uint16(0x1234), binary.LittleEndian.Uint16(cfg.Data))
	r.ok(user.CmdRegionWrite, regionWrite(t, vfio.ConfigRegion, 4, []byte{0x03, 0x01}))
	r.fails(unix.EINVAL, user.CmdRegionRead, user.RegionAccess{Region: vfio.ConfigRegion, Offset: 250, Count: 8}.Encode(nil))
	r.fails(unix.EINVAL, user.CmdRegionRead, user.RegionAccess{Region: vfio.BAR1, Count: 4}.Encode(nil))
	r.fails(unix.EINVAL, user.CmdRegionRead, user.RegionAccess{Region: vfio.BAR0, Offset: ^uint64(0) - 1, Count: 4}.Encode(nil))

	// 7. Posted writes get no reply, not even on error: the next
	// message is the read's reply.
	r.send(user.CmdRegionWrite, user.FlagNoReply, regionWrite(t, vfio.BAR0, 0x40, []byte("posted!!")))
	r.send(user.CmdRegionWrite, user.FlagNoReply, regionWrite(t, vfio.BAR0, bar0Size-2, []byte("overflows")))
	r.send(user.CmdRegionWrite, user.FlagNoReply, []byte{1, 2, 3}) // malformed
	r.send(99, user.FlagNoReply, nil)                              // unknown
	rep = r.ok(user.CmdRegionRead, user.RegionAccess{Region: vfio.BAR0, Offset: 0x40, Count: 8}.Encode(nil))
	d, err := user.DecodeRegionReadReply(rep.p)
	require.NoError(t, err)
	require.Equal(t, "posted!!", string(d.Data))
	// REGION_WRITE_MULTI, as QEMU coalesces posted writes.
	wm := user.RegionWriteMulti{Writes: []user.WriteMultiEntry{
		{Offset: 0x80, Region: vfio.BAR0, Count: 4, Data: [8]byte{'a', 'b', 'c', 'd'}},
		{Offset: 0x84, Region: vfio.BAR0, Count: 8, Data: [8]byte{'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'}},
	}}
	r.send(user.CmdRegionWriteMulti, user.FlagNoReply, wm.Encode(nil))
	rep = r.ok(user.CmdRegionRead, user.RegionAccess{Region: vfio.BAR0, Offset: 0x80, Count: 12}.Encode(nil))
	d, err = user.DecodeRegionReadReply(rep.p)
	require.NoError(t, err)
	require.Equal(t, "abcdefghijkl", string(d.Data))

	// 8. SET_IRQS split into chunks of max_msg_fds (2), argsz 20, as
	// QEMU sends them; INTx with a trigger and an unmask (resample)
	// eventfd; ERR and REQ.
	efds := make([]int, 4)
	for i := range efds {
		efds[i] = eventfd(t)
		defer unix.Close(efds[i])
	}
	msix := vfio.IRQMSIX
	r.ok(user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{ArgSz: 20, Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: msix, Start: 0, Count: 2}), efds[0], efds[1])
	r.ok(user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{ArgSz: 20, Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: msix, Start: 2, Count: 2}), efds[2], efds[3])
	r.fails(unix.EINVAL, user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: msix, Start: 0, Count: 3}), efds[0], efds[1], efds[2])
	r.fails(unix.EINVAL, user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: msix, Start: 3, Count: 2}), efds[0], efds[1])
	r.fails(unix.EINVAL, user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: msix, Start: 0, Count: 2}), efds[0])
	r.fails(unix.EINVAL, user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataNone | user.IRQSetActionTrigger, Index: msix, Start: 0, Count: 1}), efds[0])
	r.fails(unix.EINVAL, user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: vfio.IRQMSI, Count: 1}), efds[0])
	r.fails(unix.EINVAL, user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataNone | user.IRQSetActionMask, Index: vfio.IRQErr, Count: 1}))
	r.fails(unix.EINVAL, user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: msix, Count: 1}), int(ram.FD()))
	intx, resample := eventfd(t), eventfd(t)
	defer unix.Close(intx)
	defer unix.Close(resample)
	r.ok(user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: 0, Count: 1}), intx)
	r.ok(user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionUnmask, Index: 0, Count: 1}), resample)
	r.ok(user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: vfio.IRQErr, Count: 1}), eventfd(t))
	r.ok(user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: vfio.IRQReq, Count: 1}), eventfd(t))
	host := dev.Host()
	for v := range 4 {
		require.NoError(t, host.Interrupt(vfio.IRQMSIX, uint32(v)))
		_, ok := waitEvent(t, efds[v], 5*time.Second)
		require.True(t, ok, "MSI-X vector %d", v)
	}
	// INTx: masked with DATA_NONE|MASK, the interrupt is held, and the
	// resample eventfd unmasks it, which fires it.
	r.ok(user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataNone | user.IRQSetActionMask, Index: 0, Count: 1}))
	require.NoError(t, host.Interrupt(vfio.IRQINTx, 0))
	_, ok := waitEvent(t, intx, 50*time.Millisecond)
	require.False(t, ok, "masked INTx fired")
	one := [8]byte{1}
	_, err = unix.Write(resample, one[:])
	require.NoError(t, err)
	_, ok = waitEvent(t, intx, 5*time.Second)
	require.True(t, ok, "unmask through the resample eventfd fires the pending INTx")
	// DATA_BOOL trigger (loopback) and de-assigning with no fds.
	r.ok(user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataBool | user.IRQSetActionTrigger, Index: msix, Start: 1, Count: 2, Data: []byte{0, 1}}))
	_, ok = waitEvent(t, efds[2], 5*time.Second)
	require.True(t, ok, "DATA_BOOL trigger")
	r.ok(user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataEventFD | user.IRQSetActionTrigger, Index: msix, Start: 0, Count: 2}))
	dropped := s.srv.Stats().InterruptsDropped
	require.NoError(t, host.Interrupt(vfio.IRQMSIX, 0))
	require.Equal(t, dropped+1, s.srv.Stats().InterruptsDropped)
	// count 0 + DATA_NONE|TRIGGER disables the whole index.
	r.ok(user.CmdDeviceSetIRQs, irqSet(t, user.IRQSet{Flags: user.IRQSetDataNone | user.IRQSetActionTrigger, Index: msix}))
	require.NoError(t, host.Interrupt(vfio.IRQMSIX, 3))
	_, ok = waitEvent(t, efds[3], 20*time.Millisecond)
	require.False(t, ok)

	// 9. 4096 single-page DMA_MAPs of consecutive pages of one memfd, each
	// its own message with the fd, pipelined as QEMU does behind an
	// emulated IOMMU: they must coalesce into one span.
	const pages = 4096
	buf, err := dma.Memfd("guest-buffer", pages*page, dma.Options{})
	require.NoError(t, err)
	defer buf.Close()
	for i := range buf.Bytes() {
		buf.Bytes()[i] = byte(i / page)
	}
	const iova = 0x1_0000_0000
	before := s.srv.DMAStats()
	start := time.Now()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range pages {
			m := user.DMAMap{Flags: rw, Offset: uint64(i) * page, Address: iova + uint64(i)*page, Size: page}
			msg, err := user.EncodeMessage(nil, user.Header{MsgID: uint16(1000 + i), Command: user.CmdDMAMap}, m.Encode(nil))
			if err != nil {
				panic(err)
			}
			if err := fdpass.Send(r.c, msg, buf.FD()); err != nil {
				panic(err)
			}
		}
	}()
	for i := range pages {
		rep := r.recv()
		require.Equal(t, uint16(1000+i), rep.h.MsgID)
		require.NoError(t, rep.h.Err())
	}
	<-sent
	elapsed := time.Since(start)
	after := s.srv.DMAStats()
	t.Logf("4096 single-page DMA_MAP messages over the socket: %v (%.1f µs each)", elapsed, float64(elapsed.Microseconds())/pages)
	require.Equal(t, before.Entries+pages, after.Entries)
	require.Equal(t, before.Spans+1, after.Spans, "4096 contiguous pages must end as one span")
	require.Equal(t, before.Merges+pages-1, after.Merges)
	// Device accesses across former page boundaries.
	got := make([]byte, 3*page)
	require.NoError(t, host.Read(iova+page-10, got))
	require.Equal(t, buf.Bytes()[page-10:4*page-10], got)
	require.NoError(t, host.Write(iova+100*page-4, []byte("straddles")))
	require.Equal(t, "straddles", string(buf.Bytes()[100*page-4:][:9]))
	require.NoError(t, host.Store64(iova+(pages-1)*page+4088, 0xfeedface))
	require.Equal(t, uint64(0xfeedface), binary.LittleEndian.Uint64(buf.Bytes()[pages*page-8:]))
	// The same from the device's DMA engine, driven by posted writes.
	r.send(user.CmdRegionWrite, user.FlagNoReply, regionWrite(t, vfio.BAR0, 0, []byte("engine")))
	postedDMA := func(cmd uint32, addr uint64, n uint32) uint32 {
		ctl := make([]byte, 16)
		binary.LittleEndian.PutUint64(ctl[0:], addr)
		binary.LittleEndian.PutUint32(ctl[8:], n)
		binary.LittleEndian.PutUint32(ctl[12:], cmd)
		r.send(user.CmdRegionWrite, user.FlagNoReply, regionWrite(t, vfio.BAR0, regDMAAddr, ctl))
		rep := r.ok(user.CmdRegionRead, user.RegionAccess{Region: vfio.BAR0, Offset: regStatus, Count: 4}.Encode(nil))
		d, err := user.DecodeRegionReadReply(rep.p)
		require.NoError(t, err)
		return binary.LittleEndian.Uint32(d.Data)
	}
	require.Equal(t, uint32(statusOK), postedDMA(dmaCmdToHost, iova+7*page-3, 6))
	require.Equal(t, "engine", string(buf.Bytes()[7*page-3:][:6]))

	// 10. DMA to an unmapped IOVA is a fault, never a crash.
	require.Equal(t, uint32(statusFault), postedDMA(dmaCmdToHost, 0xc0000, 6))           // the PCI hole
	require.Equal(t, uint32(statusFault), postedDMA(dmaCmdToHost, iova+pages*page-2, 6)) // runs off the end
	require.Equal(t, uint32(statusFault), postedDMA(dmaCmdToHost, 0xfffc0000, 6))        // read-only ROM
	require.Equal(t, uint32(statusFault), postedDMA(dmaCmdLoad64, ^uint64(0)-3, 8))      // misaligned, at the top
	require.Equal(t, uint32(statusFault), postedDMA(dmaCmdFromHost, 0xfffc0000, 6))      // message DMA the client refuses
	require.Len(t, r.serverCmds, 1)
	require.Equal(t, user.CmdDMARead, r.serverCmds[0].Command)
	require.GreaterOrEqual(t, s.srv.DMAStats().Faults, uint64(5))

	// 11. Unknown and malformed commands: error replies, and on it goes.
	r.fails(unix.ENOSYS, 99, nil)
	r.fails(unix.ENOSYS, user.CmdDirtyPages, nil)
	r.fails(unix.ENOSYS, user.CmdDeviceGetRegionIOFDs, make([]byte, 16))
	r.fails(unix.EINVAL, user.CmdDeviceGetInfo, []byte{16, 0, 0, 0})
	r.fails(unix.EINVAL, user.CmdRegionRead, user.RegionAccess{Region: vfio.BAR0, Count: 4}.Encode(nil), intx) // an fd it does not take
	r.fails(unix.EINVAL, user.CmdDMAUnmap, user.DMAUnmap{Flags: user.DMAUnmapAll, Address: 1}.Encode(nil))

	// 12. Reset, UNMAP_ALL (echoed), and the connection ends cleanly.
	r.ok(user.CmdDeviceReset, nil)
	rep = r.ok(user.CmdDMAUnmap, user.DMAUnmap{Flags: user.DMAUnmapAll}.Encode(nil))
	u, err := user.DecodeDMAUnmap(rep.p)
	require.NoError(t, err)
	require.Equal(t, user.DMAUnmapAll, u.Flags)
	require.Zero(t, s.srv.DMAStats().Entries)
	r.c.Close()
	require.NoError(t, s.wait(t))
}
