package user_test

import (
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// Fuzz input for FuzzClient: a list of chunks, each a message the fake
// server sends. Chunk encoding: u16 length, u8 flags, then the bytes.
const (
	chunkFD          = 1 << 0 // attach a memfd (as a region reply would)
	chunkKeepID      = 1 << 1 // send the msg_id as fuzzed instead of the request's
	chunkUnsolicited = 1 << 2 // send at once instead of in answer to a request
)

type chunk struct {
	flags byte
	b     []byte
}

func parseChunks(in []byte) []chunk {
	var out []chunk
	for len(in) >= 3 {
		n := int(binary.LittleEndian.Uint16(in))
		flags := in[2]
		in = in[3:]
		n = min(n, len(in))
		out = append(out, chunk{flags, in[:n]})
		in = in[n:]
	}
	return out
}

func appendChunk(b []byte, flags byte, msg []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, flags)
	return append(b, msg...)
}

func reply(cmd user.Command, payload []byte) []byte {
	b, _ := user.EncodeMessage(nil, user.Header{Command: cmd, Flags: user.TypeReply}, payload)
	return b
}

// clientSeed answers the calls runFuzzClient makes, in order, as a good
// server would.
func clientSeed() []byte {
	var s []byte
	add := func(flags byte, cmd user.Command, payload []byte) { s = appendChunk(s, flags, reply(cmd, payload)) }
	add(0, user.CmdVersion, goodVersion())
	add(0, user.CmdDeviceGetInfo, user.DeviceInfo{Flags: user.DeviceFlagPCI, NumRegions: 9, NumIRQs: 5}.Encode(nil))
	r0, _ := user.RegionInfo{Index: 0, Flags: user.RegionFlagRead | user.RegionFlagWrite, Size: 4096}.Encode(nil)
	add(0, user.CmdDeviceGetRegionInfo, r0)
	full := user.RegionInfo{Index: 2, Flags: user.RegionFlagRead | user.RegionFlagWrite | user.RegionFlagMmap, Size: 8192,
		Caps: []user.RegionCap{user.SparseMmapCap{Areas: []user.SparseArea{{Offset: 0, Size: 4096}}}}}
	fb, _ := full.Encode(nil)
	short, _ := user.RegionInfo{ArgSz: uint32(len(fb)), Index: 2, Flags: full.Flags, Size: 8192}.Encode(nil)
	add(0, user.CmdDeviceGetRegionInfo, short)
	add(chunkFD, user.CmdDeviceGetRegionInfo, fb)
	rd, _ := user.RegionData{Data: make([]byte, 8)}.Encode(nil)
	add(0, user.CmdRegionRead, rd)
	add(0, user.CmdRegionWrite, user.RegionAccess{Count: 8}.Encode(nil))
	add(0, user.CmdDeviceGetIRQInfo, user.IRQInfo{Index: 2, Flags: user.IRQInfoEventFD, Count: 4}.Encode(nil))
	add(0, user.CmdDeviceSetIRQs, nil)
	add(0, user.CmdDMAMap, nil)
	// The server reads the anonymous mapping while the client waits.
	dr, _ := user.DMAReadRequest{Address: 0x10000, Count: 16}.Encode(nil, user.DMAWireSpec)
	drm, _ := user.EncodeMessage(nil, user.Header{MsgID: 77, Command: user.CmdDMARead}, dr)
	s = appendChunk(s, chunkUnsolicited|chunkKeepID, drm)
	add(0, user.CmdDMAMap, nil)
	add(0, user.CmdDMAUnmap, user.DMAUnmap{Address: 0x10000, Size: 4096}.Encode(nil))
	add(0, user.CmdDeviceReset, nil)
	return s
}

// FuzzClient feeds the client arbitrary server messages: a fake server
// answers each request with the next chunk (msg_id patched to match, so
// the fuzzer need not guess it). Invariants: no panic, no hang (every call
// ends by its timeout or the connection's end), and after Close no
// descriptor is left open.
func FuzzClient(f *testing.F) {
	f.Add(clientSeed())
	seed := clientSeed()
	f.Add(seed[:len(seed)/2])
	f.Add(appendChunk(nil, 0, reply(user.CmdVersion, []byte{1, 0, 0, 0})))
	f.Add(appendChunk(nil, chunkFD|chunkKeepID, user.Header{Command: user.CmdVersion, Size: 1 << 30, Flags: user.TypeReply}.Encode(nil)))
	memfd, err := dma.Memfd("fuzz-client", 3*4096, dma.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { memfd.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		before := openFDs(t)
		runFuzzClient(t, parseChunks(in), memfd)
		if n := openFDs(t); n != before {
			t.Fatalf("%d descriptors open after the client closed, %d before", n, before)
		}
	})
}

func runFuzzClient(t *testing.T, chunks []chunk, memfd *dma.Region) {
	a, b := socketPair(t)
	srv := user.NewConn(a)
	srv.SetRecvLimits(user.DefaultMaxMessageSize, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer srv.Close()
		for _, c := range chunks {
			if c.flags&chunkUnsolicited == 0 {
				var req *user.Message
				for req == nil {
					m, err := srv.Recv()
					if err != nil {
						return
					}
					m.CloseFDs()
					if !m.Header.IsReply() {
						req = m
					}
				}
				if c.flags&chunkKeepID == 0 && len(c.b) >= 2 {
					c.b = append([]byte(nil), c.b...)
					binary.LittleEndian.PutUint16(c.b, req.Header.MsgID)
				}
			}
			var fds []int
			if c.flags&chunkFD != 0 {
				fds = []int{memfd.FD()}
			}
			if len(c.b) == 0 {
				continue
			}
			if err := srv.Send(paddedForSend(c.b), fds); err != nil {
				return
			}
		}
	}()

	c, err := user.NewClient(b, &user.ClientOptions{Timeout: 10 * time.Millisecond, MaxDataXferSize: 4096})
	if err == nil {
		exerciseClient(c)
		if err := c.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	srv.Close()
	<-done
}

// paddedForSend makes any chunk sendable by Conn.Send, which wants at
// least a header's worth of bytes: short chunks go out zero-padded, which
// the client sees as a (garbage) header.
func paddedForSend(b []byte) []byte {
	if len(b) >= user.HeaderSize {
		return b
	}
	return append(append([]byte(nil), b...), make([]byte, user.HeaderSize-len(b))...)
}

// exerciseClient makes every kind of call; errors are expected and
// ignored, only crashes, hangs and leaks count.
func exerciseClient(c *user.Client) {
	_ = c.Info()
	c.RegionInfo(0)
	if info, err := c.RegionInfo(2); err == nil && len(info.Mappable()) > 0 {
		a := info.Mappable()[0]
		if m, err := c.MapRegion(2, a.Offset, min(a.Size, 4096)); err == nil {
			if len(m.Bytes()) > 0 {
				_ = m.Bytes()[0] // the file's size was checked: no SIGBUS
			}
			m.Close()
		}
	}
	buf := make([]byte, 8)
	c.ReadRegion(0, 0, buf)
	c.WriteRegion(0, 0, buf)
	c.IRQInfo(vfio.IRQMSIX)
	if efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC); err == nil {
		c.SetIRQs(vfio.IRQMSIX, 0, []int{efd})
		unix.Close(efd)
	}
	if anon, err := dma.Anonymous(4096, dma.Options{}); err == nil {
		c.MapDMA(0x10000, anon, 0, 4096, vfio.DMARead|vfio.DMAWrite)
		if mf, err := dma.Memfd("fuzz-dma", 4096, dma.Options{}); err == nil {
			c.MapDMA(0x20000, mf, 0, 4096, vfio.DMARead)
			c.UnmapDMA(0x10000, 4096)
			c.Reset()
			c.Close() // before the regions: the server may still DMA
			mf.Close()
		}
		anon.Close()
	}
}
