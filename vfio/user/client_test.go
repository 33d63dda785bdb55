package user_test

import (
	"context"
	"encoding/binary"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// fakeServer is a scripted, possibly hostile, vfio-user server. respond
// answers a command: a payload and fds, an errno for an error reply, or
// handled=false for the default (a sane server with 9 regions, 5 irqs).
type fakeServer struct {
	conn    *user.Conn
	respond func(m *user.Message) (payload []byte, fds []int, errno syscall.Errno, handled bool)

	mu   sync.Mutex
	seen []seenMsg // commands received
}

type seenMsg struct {
	Header  user.Header
	Payload []byte
	NFDs    int
}

func u64(v uint64) *uint64 { return &v }

func goodVersion() []byte {
	return user.Version{Caps: &user.Capabilities{MaxMsgFDs: u64(8), MaxDataXferSize: u64(1 << 20), PgSizes: u64(4096)}}.Encode(nil)
}

func (f *fakeServer) serve(m *user.Message) {
	payload, fds, errno, ok := f.respond(m)
	f.mu.Lock()
	f.seen = append(f.seen, seenMsg{m.Header, m.Payload, len(m.FDs)})
	f.mu.Unlock()
	m.CloseFDs()
	if !ok {
		switch m.Header.Command {
		case user.CmdVersion:
			payload = goodVersion()
		case user.CmdDeviceGetInfo:
			payload = user.DeviceInfo{Flags: user.DeviceFlagPCI | user.DeviceFlagReset, NumRegions: 9, NumIRQs: 5}.Encode(nil)
		case user.CmdDeviceGetIRQInfo:
			q, _ := user.DecodeIRQInfo(m.Payload)
			payload = user.IRQInfo{Flags: user.IRQInfoEventFD, Index: q.Index, Count: 8}.Encode(nil)
		case user.CmdDeviceGetRegionInfo:
			q, _ := user.DecodeRegionInfoRequest(m.Payload)
			payload, _ = user.RegionInfo{Index: q.Index, Flags: user.RegionFlagRead | user.RegionFlagWrite, Size: 4096}.Encode(nil)
		default:
			errno = 0
		}
	}
	if m.Header.NoReply() {
		return
	}
	if errno != 0 {
		f.conn.ReplyError(m.Header, errno)
		return
	}
	f.conn.Reply(m.Header, payload, fds)
}

func (f *fakeServer) commands(cmd user.Command) []seenMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []seenMsg
	for _, m := range f.seen {
		if m.Header.Command == cmd {
			out = append(out, m)
		}
	}
	return out
}

func startFake(t *testing.T, opts *user.ClientOptions, respond func(m *user.Message) ([]byte, []int, syscall.Errno, bool)) (*user.Client, *fakeServer, error) {
	t.Helper()
	a, b := socketPair(t)
	f := &fakeServer{conn: user.NewConn(a), respond: respond}
	go f.conn.Run(f.serve)
	t.Cleanup(func() { f.conn.Close() })
	c, err := user.NewClient(b, opts)
	return c, f, err
}

// requireFDs waits (briefly: the fake server notices the client's close
// on its own goroutine) until this process has before descriptors open.
func requireFDs(t *testing.T, before int) {
	t.Helper()
	require.Eventually(t, func() bool { return openFDs(t) == before }, 2*time.Second, time.Millisecond, "descriptors leaked")
}

func none(*user.Message) ([]byte, []int, syscall.Errno, bool) { return nil, nil, 0, false }

func TestClientRefusesBadNegotiation(t *testing.T) {
	version := func(v user.Version) func(*user.Message) ([]byte, []int, syscall.Errno, bool) {
		return func(m *user.Message) ([]byte, []int, syscall.Errno, bool) {
			if m.Header.Command == user.CmdVersion {
				return v.Encode(nil), nil, 0, true
			}
			return nil, nil, 0, false
		}
	}
	caps := func(c user.Capabilities) user.Version { return user.Version{Caps: &c} }
	for name, respond := range map[string]func(*user.Message) ([]byte, []int, syscall.Errno, bool){
		"major 1":                 version(user.Version{Major: 1}),
		"minor 1":                 version(user.Version{Minor: 1}),
		"max_msg_fds 0":           version(caps(user.Capabilities{MaxMsgFDs: u64(0)})),
		"max_msg_fds 1000":        version(caps(user.Capabilities{MaxMsgFDs: u64(1000)})),
		"max_data_xfer_size 0":    version(caps(user.Capabilities{MaxDataXferSize: u64(0)})),
		"max_data_xfer_size 2^40": version(caps(user.Capabilities{MaxDataXferSize: u64(1 << 40)})),
		"pgsizes 512":             version(caps(user.Capabilities{PgSizes: u64(512 | 4096)})),
		"error reply": func(m *user.Message) ([]byte, []int, syscall.Errno, bool) {
			return nil, nil, unix.ENOTSUP, m.Header.Command == user.CmdVersion
		},
		"no NUL": func(m *user.Message) ([]byte, []int, syscall.Errno, bool) {
			return []byte("\x00\x00\x00\x00{}"), nil, 0, m.Header.Command == user.CmdVersion
		},
		"an fd with VERSION": func(m *user.Message) ([]byte, []int, syscall.Errno, bool) {
			if m.Header.Command == user.CmdVersion {
				return goodVersion(), []int{0}, 0, true
			}
			return nil, nil, 0, false
		},
		"101 regions": func(m *user.Message) ([]byte, []int, syscall.Errno, bool) {
			if m.Header.Command == user.CmdDeviceGetInfo {
				return user.DeviceInfo{NumRegions: 101, NumIRQs: 5}.Encode(nil), nil, 0, true
			}
			return nil, nil, 0, false
		},
		"short device info": func(m *user.Message) ([]byte, []int, syscall.Errno, bool) {
			return []byte{16, 0, 0, 0}, nil, 0, m.Header.Command == user.CmdDeviceGetInfo
		},
	} {
		t.Run(name, func(t *testing.T) {
			before := openFDs(t)
			c, f, err := startFake(t, nil, respond)
			require.Error(t, err)
			require.Nil(t, c)
			f.conn.Close()
			requireFDs(t, before)
		})
	}
}

func regionReply(t testing.TB, ri user.RegionInfo) []byte {
	b, err := ri.Encode(nil)
	require.NoError(t, err)
	return b
}

func TestClientRegionInfo(t *testing.T) {
	memfd, err := dma.Memfd("client-test", 3*4096, dma.Options{})
	require.NoError(t, err)
	defer memfd.Close()
	full := user.RegionInfo{Index: 2, Flags: user.RegionFlagRead | user.RegionFlagWrite | user.RegionFlagMmap, Size: 8192, Offset: 4096,
		Caps: []user.RegionCap{user.SparseMmapCap{Areas: []user.SparseArea{{Offset: 4096, Size: 4096}}}}}
	fullLen := uint32(len(regionReply(t, full)))

	// Good: the short reply (even with a stray fd) then the full one.
	before := openFDs(t)
	c, f, err := startFake(t, nil, func(m *user.Message) ([]byte, []int, syscall.Errno, bool) {
		if m.Header.Command != user.CmdDeviceGetRegionInfo {
			return nil, nil, 0, false
		}
		q, _ := user.DecodeRegionInfoRequest(m.Payload)
		if q.ArgSz < fullLen {
			short := full
			short.Caps, short.ArgSz = nil, fullLen
			return regionReply(t, short), []int{memfd.FD()}, 0, true
		}
		return regionReply(t, full), []int{memfd.FD()}, 0, true
	})
	require.NoError(t, err)
	info, err := c.RegionInfo(2)
	require.NoError(t, err)
	require.Equal(t, vfio.RegionInfo{Index: 2, Flags: vfio.RegionRead | vfio.RegionWrite | vfio.RegionMmap, Size: 8192,
		Areas: []vfio.Area{{Offset: 4096, Size: 4096}}}, info)
	reqs := f.commands(user.CmdDeviceGetRegionInfo)
	require.Len(t, reqs, 2)
	q0, _ := user.DecodeRegionInfoRequest(reqs[0].Payload)
	q1, _ := user.DecodeRegionInfoRequest(reqs[1].Payload)
	require.Equal(t, uint32(32), q0.ArgSz, "QEMU's order: 32 first")
	require.Equal(t, fullLen, q1.ArgSz)
	// Cached: no third request. MapRegion maps fd at offset + area offset.
	m, err := c.MapRegion(2, 4096, 4096)
	require.NoError(t, err)
	copy(m.Bytes(), "region mapping")
	require.Equal(t, "region mapping", string(memfd.Bytes()[8192:8206]))
	require.Len(t, f.commands(user.CmdDeviceGetRegionInfo), 2)
	_, err = c.MapRegion(2, 0, 4096)
	require.ErrorIs(t, err, vfio.ErrInvalid, "outside the sparse area")
	require.NoError(t, c.Close())
	require.NoError(t, m.Close(), "closing a mapping after the client is a no-op")
	requireFDs(t, before)

	// Hostile replies.
	bad := func(ri user.RegionInfo) []byte { return regionReply(t, ri) }
	for name, tc := range map[string]struct {
		reply func(argsz uint32) []byte
		fds   int
	}{
		"area past the region": {func(uint32) []byte {
			r := full
			r.Caps = []user.RegionCap{user.SparseMmapCap{Areas: []user.SparseArea{{Offset: 4096, Size: 8192}}}}
			return bad(r)
		}, 1},
		"area wraps": {func(uint32) []byte {
			r := full
			r.Caps = []user.RegionCap{user.SparseMmapCap{Areas: []user.SparseArea{{Offset: 4096, Size: ^uint64(0)}}}}
			return bad(r)
		}, 1},
		"two fds":     {func(uint32) []byte { return bad(full) }, 2},
		"wrong index": {func(uint32) []byte { r := full; r.Index = 3; return bad(r) }, 1},
		"offset wraps": {func(uint32) []byte {
			r := full
			r.Offset = ^uint64(0) - 100
			return bad(r)
		}, 1},
		"argsz keeps growing": {func(argsz uint32) []byte {
			return bad(user.RegionInfo{ArgSz: argsz + 8, Index: 2, Size: 4096})
		}, 1},
		"argsz absurd": {func(uint32) []byte {
			return bad(user.RegionInfo{ArgSz: 1 << 30, Index: 2, Size: 4096})
		}, 0},
		"chain outside argsz": {func(uint32) []byte {
			b := bad(full)
			binary.LittleEndian.PutUint32(b[12:], 1000) // cap_offset
			return b
		}, 1},
		"truncated": {func(uint32) []byte { return bad(full)[:20] }, 1},
	} {
		t.Run(name, func(t *testing.T) {
			before := openFDs(t)
			c, _, err := startFake(t, nil, func(m *user.Message) ([]byte, []int, syscall.Errno, bool) {
				if m.Header.Command != user.CmdDeviceGetRegionInfo {
					return nil, nil, 0, false
				}
				q, _ := user.DecodeRegionInfoRequest(m.Payload)
				fds := []int{memfd.FD(), memfd.FD()}[:tc.fds]
				return tc.reply(q.ArgSz), fds, 0, true
			})
			require.NoError(t, err)
			_, err = c.RegionInfo(2)
			require.ErrorIs(t, err, user.ErrMalformed)
			_, err = c.MapRegion(2, 4096, 4096)
			require.Error(t, err)
			require.NoError(t, c.Close())
			requireFDs(t, before)
		})
	}
}

func TestClientRegionAccess(t *testing.T) {
	var mu sync.Mutex
	mode := ""
	c, f, err := startFake(t, &user.ClientOptions{MaxDataXferSize: 100, Timeout: 100 * time.Millisecond},
		func(m *user.Message) ([]byte, []int, syscall.Errno, bool) {
			mu.Lock()
			defer mu.Unlock()
			switch m.Header.Command {
			case user.CmdRegionRead:
				a, _ := user.DecodeRegionReadRequest(m.Payload)
				data := make([]byte, a.Count)
				for i := range data {
					data[i] = byte(a.Offset + uint64(i))
				}
				d := user.RegionData{Offset: a.Offset, Region: a.Region, Data: data}
				switch mode {
				case "short":
					d.Data = d.Data[1:]
				case "offset":
					d.Offset++
				case "error":
					return nil, nil, unix.EIO, true
				}
				b, _ := d.Encode(nil)
				return b, nil, 0, true
			case user.CmdRegionWrite:
				d, _ := user.DecodeRegionWriteRequest(m.Payload)
				a := user.RegionAccess{Offset: d.Offset, Region: d.Region, Count: uint32(len(d.Data))}
				if mode == "count" {
					a.Count--
				}
				return a.Encode(nil), nil, 0, true
			}
			return nil, nil, 0, false
		})
	require.NoError(t, err)
	defer c.Close()
	// 300 bytes in pieces of 100 (the client's max_data_xfer_size).
	b := make([]byte, 300)
	require.NoError(t, c.ReadRegion(0, 1000, b))
	for i := range b {
		require.Equal(t, byte(1000+i), b[i])
	}
	require.Len(t, f.commands(user.CmdRegionRead), 3)
	require.NoError(t, c.WriteRegion(0, 0, make([]byte, 250)))
	require.Len(t, f.commands(user.CmdRegionWrite), 3)
	require.ErrorIs(t, c.ReadRegion(0, 4000, b), vfio.ErrInvalid, "past the region's 4096 bytes")
	require.ErrorIs(t, c.ReadRegion(9, 0, b[:4]), vfio.ErrNoRegion)

	set := func(m string) { mu.Lock(); mode = m; mu.Unlock() }
	set("short")
	require.ErrorIs(t, c.ReadRegion(0, 0, b[:8]), user.ErrMalformed)
	set("offset")
	require.ErrorIs(t, c.ReadRegion(0, 0, b[:8]), user.ErrMalformed)
	set("count")
	require.ErrorIs(t, c.WriteRegion(0, 0, b[:8]), user.ErrMalformed)
	set("error")
	err = c.ReadRegion(0, 0, b[:8])
	var re *user.RemoteError
	require.ErrorAs(t, err, &re)
	require.ErrorIs(t, err, unix.EIO)
	set("")
	require.NoError(t, c.ReadRegion(0, 0, b[:8]), "the connection survives all of it")
}

func TestClientTimeout(t *testing.T) {
	a, b := socketPair(t)
	srv := user.NewConn(a)
	defer srv.Close()
	go srv.Run(func(m *user.Message) {
		switch m.Header.Command {
		case user.CmdVersion:
			srv.Reply(m.Header, goodVersion(), nil)
		case user.CmdDeviceGetInfo:
			srv.Reply(m.Header, user.DeviceInfo{NumRegions: 9, NumIRQs: 5}.Encode(nil), nil)
		} // nothing else is ever answered
	})
	c, err := user.NewClient(b, &user.ClientOptions{Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	err = c.Reset()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 2*time.Second)
}

// The client answers the server's DMA_READ and DMA_WRITE from the mapped
// regions' bytes, in either wire layout, and refuses what is not mapped.
func TestClientServesDMA(t *testing.T) {
	for _, wire := range []user.DMAWire{user.DMAWireSpec, user.DMAWireQEMU} {
		t.Run(wire.String(), func(t *testing.T) {
			c, f, err := startFake(t, &user.ClientOptions{MaxDataXferSize: 8192, DMAWire: wire}, none)
			require.NoError(t, err)
			defer c.Close()
			r1, err := dma.Anonymous(8192, dma.Options{})
			require.NoError(t, err)
			defer r1.Close()
			r2, err := dma.Memfd("dma", 8192, dma.Options{})
			require.NoError(t, err)
			defer r2.Close()
			require.NoError(t, c.MapDMA(0x10000, r1, 4096, 4096, vfio.DMARead|vfio.DMAWrite))
			require.NoError(t, c.MapDMA(0x11000, r2, 0, 8192, vfio.DMARead)) // adjacent, read-only
			require.ErrorIs(t, c.MapDMA(0x12000, r1, 0, 4096, vfio.DMARead), vfio.ErrInvalid)
			require.ErrorIs(t, c.MapDMA(0x20000, r1, 4096, 8192, vfio.DMARead), vfio.ErrInvalid)
			maps := f.commands(user.CmdDMAMap)
			require.Len(t, maps, 2)

			ctx := context.Background()
			write := func(addr uint64, data []byte) error {
				p, err := user.DMAWriteRequest{Address: addr, Data: data}.Encode(nil, wire)
				require.NoError(t, err)
				m, err := f.conn.Call(ctx, user.CmdDMAWrite, p, nil)
				if err == nil {
					_, err = user.DecodeDMAWriteReply(m.Payload, wire)
				}
				return err
			}
			read := func(addr, n uint64) ([]byte, error) {
				p, err := user.DMAReadRequest{Address: addr, Count: n}.Encode(nil, wire)
				require.NoError(t, err)
				m, err := f.conn.Call(ctx, user.CmdDMARead, p, nil)
				if err != nil {
					return nil, err
				}
				r, err := user.DecodeDMAReadReply(m.Payload, wire)
				return r.Data, err
			}
			require.NoError(t, write(0x10010, []byte("anonymous")))
			require.Equal(t, "anonymous", string(r1.Bytes()[4096+16:][:9]))
			copy(r2.Bytes()[0:], "memfd")
			got, err := read(0x10ffb, 10) // across the two mappings
			require.NoError(t, err)
			require.Equal(t, append(append([]byte{}, r1.Bytes()[8187:8192]...), "memfd"...), got)
			require.ErrorIs(t, write(0x11000, []byte{1}), unix.EFAULT, "read-only")
			require.ErrorIs(t, write(0x0fff0, []byte{1}), unix.EFAULT, "not mapped")
			_, err = read(0x13000-4, 8)
			require.ErrorIs(t, err, unix.EFAULT, "runs past the end")
			_, err = read(0x10000, 8193)
			require.ErrorIs(t, err, unix.E2BIG, "beyond max_data_xfer_size")

			require.NoError(t, c.UnmapDMA(0x10000, 4096))
			require.ErrorIs(t, write(0x10010, []byte{1}), unix.EFAULT, "unmapped")
			require.ErrorIs(t, c.UnmapDMA(0x11000, 4096), vfio.ErrInvalid, "not an exact match")
		})
	}
}

func TestClientSetIRQsSplits(t *testing.T) {
	before := openFDs(t)
	c, f, err := startFake(t, nil, func(m *user.Message) ([]byte, []int, syscall.Errno, bool) {
		if m.Header.Command == user.CmdVersion {
			return user.Version{Caps: &user.Capabilities{MaxMsgFDs: u64(3)}}.Encode(nil), nil, 0, true
		}
		if m.Header.Command == user.CmdDeviceSetIRQs && len(m.FDs) > 3 {
			return nil, nil, unix.EINVAL, true
		}
		return nil, nil, 0, false
	})
	require.NoError(t, err)
	e := []int{eventfd(t), eventfd(t), eventfd(t), eventfd(t), eventfd(t)}
	require.NoError(t, c.SetIRQs(vfio.IRQMSIX, 1, []int{e[0], e[1], e[2], e[3], -1, -1, e[4]}))
	require.ErrorIs(t, c.SetIRQs(vfio.IRQMSIX, 2, make([]int, 7)), vfio.ErrNoIRQ, "8 vectors")
	require.NoError(t, c.SetIRQs(vfio.IRQMSIX, 0, nil))
	type got struct {
		flags              user.IRQSetFlags
		start, count, nfds uint32
	}
	var msgs []got
	for _, m := range f.commands(user.CmdDeviceSetIRQs) {
		q, err := user.DecodeIRQSet(m.Payload)
		require.NoError(t, err)
		require.Equal(t, uint32(20), q.ArgSz)
		msgs = append(msgs, got{q.Flags, q.Start, q.Count, uint32(m.NFDs)})
	}
	ev := user.IRQSetDataEventFD | user.IRQSetActionTrigger
	require.Equal(t, []got{
		{ev, 1, 3, 3}, {ev, 4, 1, 1}, {ev, 5, 2, 0}, {ev, 7, 1, 1},
		{user.IRQSetDataNone | user.IRQSetActionTrigger, 0, 0, 0},
	}, msgs)
	require.NoError(t, c.Close())
	for _, fd := range e {
		unix.Close(fd)
	}
	requireFDs(t, before)
}
