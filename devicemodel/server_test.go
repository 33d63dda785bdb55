package devicemodel_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
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

// socketPair returns the two ends of a connected UNIX stream socket.
func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	a, b, err := fdpass.Socketpair()
	require.NoError(t, err)
	return a, b
}

// testLogger logs through t, so a failing test shows the server's lines.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// served is a server running one connection on a socketpair.
type served struct {
	dev  *testDevice
	srv  *devicemodel.Server
	cli  *net.UnixConn // the client's end
	done chan error    // ServeConn's result
}

func serve(t testing.TB, dev *testDevice, opts *devicemodel.ServerOptions) *served {
	t.Helper()
	o := devicemodel.ServerOptions{Logger: testLogger(t)}
	if opts != nil {
		o = *opts
		if o.Logger == nil {
			o.Logger = testLogger(t)
		}
	}
	s := &served{dev: dev, srv: devicemodel.NewServer(dev, &o), done: make(chan error, 1)}
	srvEnd, cliEnd := socketPair(t)
	s.cli = cliEnd
	go func() { s.done <- s.srv.ServeConn(context.Background(), srvEnd) }()
	return s
}

// wait waits for ServeConn to return.
func (s *served) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not end the connection")
		return nil
	}
}

func newTestDev(t testing.TB) *testDevice {
	t.Helper()
	d, err := newTestDevice()
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func eventfd(t testing.TB) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	require.NoError(t, err)
	return fd
}

// waitEvent waits for an eventfd to become readable and returns its count.
func waitEvent(t testing.TB, fd int, timeout time.Duration) (uint64, bool) {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, int(timeout/time.Millisecond))
	if err != nil || n == 0 {
		return 0, false
	}
	var b [8]byte
	_, err = unix.Read(fd, b[:])
	require.NoError(t, err)
	return binary.LittleEndian.Uint64(b[:]), true
}

func reg32(t testing.TB, d vfio.Device, off uint64) uint32 {
	t.Helper()
	v, err := vfio.Read32(d, vfio.BAR0, off)
	require.NoError(t, err)
	return v
}

// deviceDMA makes the device run a DMA register command and returns the
// status register.
func deviceDMA(t testing.TB, d vfio.Device, cmd uint32, iova uint64, n uint32) uint32 {
	t.Helper()
	require.NoError(t, vfio.Write64(d, vfio.BAR0, regDMAAddr, iova))
	require.NoError(t, vfio.Write32(d, vfio.BAR0, regDMALen, n))
	require.NoError(t, vfio.Write32(d, vfio.BAR0, regDMACmd, cmd))
	return reg32(t, d, regStatus)
}

func TestEndToEnd(t *testing.T) {
	for _, wire := range []user.DMAWire{user.DMAWireSpec, user.DMAWireQEMU} {
		t.Run(wire.String(), func(t *testing.T) { testEndToEnd(t, wire) })
	}
}

func testEndToEnd(t *testing.T, wire user.DMAWire) {
	before := openFDs(t)
	dev := newTestDev(t)
	s := serve(t, dev, &devicemodel.ServerOptions{MaxMsgFDs: 2, DMAWire: wire})
	c, err := user.NewClient(s.cli, &user.ClientOptions{MaxDataXferSize: 1024, DMAWire: wire})
	require.NoError(t, err)

	require.Equal(t, vfio.DeviceInfo{Reset: true, PCI: true, NumRegions: 9, NumIRQs: 5}, c.Info())

	// Region info.
	cfg, err := c.RegionInfo(vfio.ConfigRegion)
	require.NoError(t, err)
	require.Equal(t, uint64(256), cfg.Size)
	bar2, err := c.RegionInfo(vfio.BAR2)
	require.NoError(t, err)
	require.Equal(t, vfio.RegionRead|vfio.RegionWrite|vfio.RegionMmap, bar2.Flags)
	require.Equal(t, bar2Areas, bar2.Areas)
	bar1, err := c.RegionInfo(vfio.BAR1)
	require.NoError(t, err)
	require.Zero(t, bar1.Size)
	_, err = c.RegionInfo(9)
	require.ErrorIs(t, err, vfio.ErrNoRegion)

	// Registers.
	require.NoError(t, vfio.Write32(c, vfio.BAR0, 0x10, 0xdeadbeef))
	require.Equal(t, uint32(0xdeadbeef), reg32(t, c, 0x10))
	id, err := vfio.ReadConfig32(c, 0)
	require.NoError(t, err)
	require.Equal(t, uint32(0xabcd1234), id)
	// 2 KiB in 1 KiB pieces (the client's max_data_xfer_size).
	pattern := bytes.Repeat([]byte("0123456789abcdef"), 128)
	require.NoError(t, c.WriteRegion(vfio.BAR0, 0, pattern))
	got := make([]byte, len(pattern))
	require.NoError(t, c.ReadRegion(vfio.BAR0, 0, got))
	require.Equal(t, pattern, got)
	require.ErrorIs(t, c.ReadRegion(vfio.BAR0, bar0Size-2, got[:4]), vfio.ErrInvalid)
	require.ErrorIs(t, c.ReadRegion(vfio.BAR1, 0, got[:4]), vfio.ErrNoRegion)

	// The sparse area shares memory with the device.
	m, err := c.MapRegion(vfio.BAR2, 32<<10, 8<<10)
	require.NoError(t, err)
	copy(m.Bytes()[100:], "through the mapping")
	require.Equal(t, "through the mapping", string(dev.mem.Bytes()[bar2FileOff+32<<10+100:][:19]))
	require.NoError(t, c.WriteRegion(vfio.BAR2, 32<<10+200, []byte("through the socket")))
	require.Equal(t, "through the socket", string(m.Bytes()[200:218]))
	_, err = c.MapRegion(vfio.BAR2, 8<<10, 16<<10) // runs into the hole
	require.ErrorIs(t, err, vfio.ErrInvalid)
	_, err = c.MapRegion(vfio.BAR0, 0, 4096)
	require.ErrorIs(t, err, vfio.ErrNoRegion)

	// Interrupts: four MSI-X eventfds in two messages (max_msg_fds 2).
	efds := []int{eventfd(t), eventfd(t), eventfd(t), eventfd(t)}
	defer func() {
		for _, fd := range efds {
			unix.Close(fd)
		}
	}()
	require.NoError(t, c.SetIRQs(vfio.IRQMSIX, 0, efds))
	require.Equal(t, uint64(2), s.srv.Stats().Messages[user.CmdDeviceSetIRQs])
	host := dev.Host()
	require.NoError(t, host.Interrupt(vfio.IRQMSIX, 3))
	n, ok := waitEvent(t, efds[3], 5*time.Second)
	require.True(t, ok, "vector 3's eventfd did not fire")
	require.Equal(t, uint64(1), n)
	_, ok = waitEvent(t, efds[0], 0)
	require.False(t, ok, "vector 0 fired")
	require.NoError(t, vfio.Write32(c, vfio.BAR0, regIRQ, uint32(vfio.IRQMSIX)<<16|1)) // from the device's register
	_, ok = waitEvent(t, efds[1], 5*time.Second)
	require.True(t, ok)
	require.ErrorIs(t, host.Interrupt(vfio.IRQMSIX, 4), vfio.ErrNoIRQ)
	require.ErrorIs(t, c.SetIRQs(vfio.IRQMSIX, 3, efds[:2]), vfio.ErrNoIRQ)
	require.NoError(t, c.SetIRQs(vfio.IRQMSIX, 0, nil)) // all off
	dropped := s.srv.Stats().InterruptsDropped
	require.NoError(t, host.Interrupt(vfio.IRQMSIX, 3))
	require.Equal(t, dropped+1, s.srv.Stats().InterruptsDropped)
	_, ok = waitEvent(t, efds[3], 0)
	require.False(t, ok)

	// DMA through shared memory.
	shared, err := dma.Memfd("e2e-dma", 64<<10, dma.Options{})
	require.NoError(t, err)
	defer shared.Close()
	require.NoError(t, c.MapDMA(0x100000, shared, 4096, 32<<10, vfio.DMARead|vfio.DMAWrite))
	require.NoError(t, host.Write(0x100000+10, []byte("device wrote")))
	require.Equal(t, "device wrote", string(shared.Bytes()[4096+10:][:12]))
	copy(shared.Bytes()[4096+500:], "host wrote")
	b := make([]byte, 10)
	require.NoError(t, host.Read(0x100000+500, b))
	require.Equal(t, "host wrote", string(b))
	require.NoError(t, host.Store64(0x100000+64, 0x0102030405060708))
	require.Equal(t, uint64(0x0102030405060708), binary.LittleEndian.Uint64(shared.Bytes()[4096+64:]))
	require.Equal(t, uint32(statusOK), deviceDMA(t, c, dmaCmdFromHost, 0x100000+4096, 64))
	got = make([]byte, 64)
	require.NoError(t, c.ReadRegion(vfio.BAR0, 0, got))
	require.Equal(t, shared.Bytes()[2*4096:][:64], got)

	// DMA through messages: an anonymous region has no fd to pass.
	anon, err := dma.Anonymous(64<<10, dma.Options{})
	require.NoError(t, err)
	defer anon.Close()
	require.NoError(t, c.MapDMA(0x200000, anon, 0, 64<<10, vfio.DMARead|vfio.DMAWrite))
	msgs := s.srv.Stats().DMAMessages
	big := bytes.Repeat([]byte{0x5a}, 3000) // three messages of 1 KiB (the client's limit)
	require.NoError(t, host.Write(0x200000+100, big))
	require.Equal(t, big, anon.Bytes()[100:3100])
	copy(anon.Bytes()[8000:], "anonymous host memory")
	b = make([]byte, 21)
	require.NoError(t, host.Read(0x200000+8000, b))
	require.Equal(t, "anonymous host memory", string(b))
	require.Equal(t, msgs+4, s.srv.Stats().DMAMessages)
	require.NoError(t, host.Store32(0x200000+16, 0xcafef00d))
	v, err := host.Load32(0x200000 + 16)
	require.NoError(t, err)
	require.Equal(t, uint32(0xcafef00d), v)
	// From inside a register write: the dispatcher waits for the DMA
	// reply while the reader keeps going.
	require.NoError(t, c.WriteRegion(vfio.BAR0, 0, []byte("scratch to anonymous")))
	require.Equal(t, uint32(statusOK), deviceDMA(t, c, dmaCmdToHost, 0x200000+20000, 20))
	require.Equal(t, "scratch to anonymous", string(anon.Bytes()[20000:20020]))

	// Unmapped: faults.
	require.NoError(t, c.UnmapDMA(0x100000, 32<<10))
	require.ErrorIs(t, host.Read(0x100000, b), devicemodel.ErrDMAFault)
	require.Equal(t, uint32(statusFault), deviceDMA(t, c, dmaCmdFromHost, 0x100000, 8))
	require.NoError(t, c.UnmapDMA(0x200000, 64<<10))
	require.ErrorIs(t, host.Write(0x200000, b), devicemodel.ErrDMAFault)
	require.ErrorIs(t, c.UnmapDMA(0x200000, 64<<10), vfio.ErrInvalid)
	require.Zero(t, s.srv.DMAStats().Entries)

	// Reset.
	require.NoError(t, c.Reset())
	_, _, resets := dev.counts()
	require.Equal(t, 1, resets)
	require.Equal(t, uint32(1), reg32(t, c, regResets))
	require.Zero(t, reg32(t, c, 0x10), "reset clears the scratch")

	require.NoError(t, m.Close())
	require.NoError(t, c.Close())
	require.NoError(t, s.wait(t))
	att, det, _ := dev.counts()
	require.Equal(t, 1, att)
	require.Equal(t, 1, det)
	require.Nil(t, dev.Host())
	require.ErrorIs(t, c.Reset(), vfio.ErrClosed)
	require.NoError(t, c.Close())

	for _, fd := range efds {
		unix.Close(fd)
	}
	efds = nil
	shared.Close()
	anon.Close()
	dev.Close()
	require.Equal(t, before, openFDs(t), "descriptors leaked")
}

// A server that goes away makes every later call fail promptly with
// vfio.ErrClosed; a mapping made before stays usable until Close.
func TestClientServerGone(t *testing.T) {
	before := openFDs(t)
	dev := newTestDev(t)
	s := serveCancelable(t, dev)
	c, err := user.NewClient(s.cli, &user.ClientOptions{Timeout: time.Minute})
	require.NoError(t, err)
	m, err := c.MapRegion(vfio.BAR2, 0, 4096)
	require.NoError(t, err)
	anon, err := dma.Anonymous(4096, dma.Options{})
	require.NoError(t, err)
	defer anon.Close()
	require.NoError(t, c.MapDMA(0, anon, 0, 4096, vfio.DMARead))
	require.NoError(t, dev.Host().Read(0, make([]byte, 8)))

	s.cancel() // the server drops the connection
	require.ErrorIs(t, s.wait(t), context.Canceled)
	start := time.Now()
	for i, call := range []func() error{
		func() error { return c.Reset() },
		func() error { _, err := c.RegionInfo(vfio.BAR0); return err },
		func() error { _, err := c.RegionInfo(vfio.BAR2); return err }, // cached, still refused
		func() error { return c.WriteRegion(vfio.BAR0, 0, []byte{1}) },
		func() error { return c.SetIRQs(vfio.IRQMSIX, 0, nil) },
		func() error { _, err := c.IRQInfo(vfio.IRQMSIX); return err },
		func() error { return c.MapDMA(0x1000, anon, 0, 4096, vfio.DMARead) },
		func() error { return c.UnmapDMA(0, 4096) },
		func() error { _, err := c.MapRegion(vfio.BAR2, 0, 4096); return err },
	} {
		require.ErrorIs(t, call(), vfio.ErrClosed, "call %d", i)
	}
	require.Less(t, time.Since(start), 5*time.Second, "calls after the server went must not wait for the timeout")

	copy(m.Bytes(), "still mapped")
	require.NoError(t, m.Close())
	require.NoError(t, c.Close())
	anon.Close()
	dev.Close()
	require.Equal(t, before, openFDs(t))
}

type cancelable struct {
	*served
	cancel context.CancelFunc
}

func serveCancelable(t testing.TB, dev *testDevice) *cancelable {
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{dev: dev, srv: devicemodel.NewServer(dev, &devicemodel.ServerOptions{Logger: testLogger(t)}), done: make(chan error, 1)}
	srvEnd, cliEnd := socketPair(t)
	s.cli = cliEnd
	go func() { s.done <- s.srv.ServeConn(ctx, srvEnd) }()
	return &cancelable{s, cancel}
}

// Clients one after another on a listener: one that vanishes in the
// middle of a message, one that breaks the framing, then a good one.
func TestSequentialClients(t *testing.T) {
	dev := newTestDev(t)
	dir := t.TempDir()
	path := dir + "/dev.sock"
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	defer l.Close()
	srv := devicemodel.NewServer(dev, &devicemodel.ServerOptions{Logger: testLogger(t)})
	before := openFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()

	// 1: a real client that maps things and then drops its socket.
	c, err := user.Dial(path, nil)
	require.NoError(t, err)
	shared, err := dma.Memfd("seq", 8192, dma.Options{})
	require.NoError(t, err)
	require.NoError(t, c.MapDMA(0, shared, 0, 8192, vfio.DMARead|vfio.DMAWrite))
	efd := eventfd(t)
	require.NoError(t, c.SetIRQs(vfio.IRQMSIX, 0, []int{efd}))
	_, err = c.MapRegion(vfio.BAR2, 0, 4096)
	require.NoError(t, err)
	require.NoError(t, c.Close())

	// 2: half a message, then gone.
	raw, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	msg, err := user.EncodeMessage(nil, user.Header{MsgID: 1, Command: user.CmdVersion}, user.Version{}.Encode(nil))
	require.NoError(t, err)
	_, err = raw.Write(msg[:10])
	require.NoError(t, err)
	raw.Close()

	// 3: a header the server cannot frame (msg_size 4): dropped.
	raw, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	bad := user.Header{MsgID: 1, Command: user.CmdVersion, Size: 4}.Encode(nil)
	_, err = raw.Write(bad)
	require.NoError(t, err)
	_, err = io.ReadAll(raw) // the server closes it
	require.NoError(t, err)
	raw.Close()

	// 4: a good client is served.
	c, err = user.Dial(path, nil)
	require.NoError(t, err)
	require.NoError(t, vfio.Write32(c, vfio.BAR0, 0x20, 7))
	require.Equal(t, uint32(7), reg32(t, c, 0x20))
	require.NoError(t, c.Close())

	require.Eventually(t, func() bool { a, d, _ := dev.counts(); return a == 4 && d == 4 }, 5*time.Second, 10*time.Millisecond)
	st := srv.Stats()
	require.Equal(t, uint64(4), st.Connections)
	require.Equal(t, uint64(1), st.Dropped)
	cancel()
	require.ErrorIs(t, <-served, context.Canceled)
	unix.Close(efd)
	shared.Close()
	require.Equal(t, before, openFDs(t), "descriptors leaked across connections")
}

// Device goroutines hammer the host (DMA both ways, word accesses,
// interrupts) while the client maps and unmaps under them and finally
// disconnects: no crash, no race, faults only where nothing is mapped.
func TestServerStress(t *testing.T) {
	before := openFDs(t)
	dev := newTestDev(t)
	s := serve(t, dev, &devicemodel.ServerOptions{Logger: slog.New(slog.DiscardHandler), DMATimeout: time.Second})
	c, err := user.NewClient(s.cli, nil)
	require.NoError(t, err)
	shared, err := dma.Memfd("stress", 1<<20, dma.Options{})
	require.NoError(t, err)
	anon, err := dma.Anonymous(1<<16, dma.Options{})
	require.NoError(t, err)
	efd := eventfd(t)
	require.NoError(t, c.SetIRQs(vfio.IRQMSIX, 0, []int{efd, efd, efd, efd}))
	const base, anonBase = 0x4000_0000, 0x8000_0000
	require.NoError(t, c.MapDMA(base, shared, 0, 1<<20, vfio.DMARead|vfio.DMAWrite))
	require.NoError(t, c.MapDMA(anonBase, anon, 0, 1<<16, vfio.DMARead|vfio.DMAWrite))
	host := dev.Host()

	stop := make(chan struct{})
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			buf := make([]byte, 3000)
			for i := 0; ; i++ {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				var err error
				switch (i + g) % 5 {
				case 0:
					err = host.Write(vfio.IOVA(base+uint64(i%200)*4096), buf)
				case 1:
					err = host.Read(vfio.IOVA(base+uint64(i%250)*4096+100), buf)
				case 2:
					_, err = host.Load64(vfio.IOVA(base + uint64(i%256)*4096))
				case 3:
					err = host.Interrupt(vfio.IRQMSIX, uint32(i%4))
				case 4:
					err = host.Write(anonBase+vfio.IOVA(i%16)*100, buf[:64])
				}
				if err != nil && !errors.Is(err, devicemodel.ErrDMAFault) {
					errs <- err
					return
				}
			}
		})
	}
	// Remap the second half of the shared region page by page under them.
	for round := range 3 {
		require.NoError(t, c.UnmapDMA(base, 1<<20))
		for p := range 256 {
			require.NoError(t, c.MapDMA(vfio.IOVA(base+p*4096), shared, uint64(p)*4096, 4096, vfio.DMARead|vfio.DMAWrite), "round %d page %d", round, p)
		}
		require.Equal(t, 1+1, s.srv.DMAStats().Spans, "the pages coalesce again")
		for p := range 256 {
			require.NoError(t, c.UnmapDMA(vfio.IOVA(base+p*4096), 4096))
		}
		require.NoError(t, c.MapDMA(base, shared, 0, 1<<20, vfio.DMARead|vfio.DMAWrite))
	}
	// Disconnect while they run.
	require.NoError(t, c.Close())
	require.NoError(t, s.wait(t))
	close(stop)
	wg.Wait()
	for range 3 {
		require.NoError(t, <-errs)
	}
	t.Logf("server stats: %+v", s.srv.Stats())
	unix.Close(efd)
	shared.Close()
	anon.Close()
	dev.Close()
	require.Equal(t, before, openFDs(t))
}

// BenchmarkRegionRead is the REGION_READ round trip of a 4-byte register
// between the Go client and the server over a socketpair.
func BenchmarkRegionRead(b *testing.B) {
	dev := newTestDev(b)
	s := serve(b, dev, &devicemodel.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	c, err := user.NewClient(s.cli, nil)
	require.NoError(b, err)
	defer c.Close()
	var buf [4]byte
	b.SetBytes(4)
	for b.Loop() {
		if err := c.ReadRegion(vfio.BAR0, 0x10, buf[:]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}

// BenchmarkDMAMapMessages sends 4096 single-page DMA_MAP messages, each
// with the memfd, pipelined, and waits for the replies; then UNMAP_ALL.
func BenchmarkDMAMapMessages(b *testing.B) {
	dev := newTestDev(b)
	s := serve(b, dev, &devicemodel.ServerOptions{Logger: slog.New(slog.DiscardHandler)})
	r := &rawClient{t: b, c: s.cli}
	r.ok(user.CmdVersion, qemuVersion())
	const pages = 4096
	buf, err := dma.Memfd("bench-maps", pages*page, dma.Options{})
	require.NoError(b, err)
	defer buf.Close()
	b.SetBytes(pages * page)
	for b.Loop() {
		go func() {
			for i := range pages {
				m := user.DMAMap{Flags: 3, Offset: uint64(i) * page, Address: uint64(i) * page, Size: page}
				msg, _ := user.EncodeMessage(nil, user.Header{MsgID: uint16(i), Command: user.CmdDMAMap}, m.Encode(nil))
				fdpass.Send(r.c, msg, buf.FD())
			}
		}()
		for range pages {
			if rep := r.recv(); rep.h.Err() != nil {
				b.Fatal(rep.h.Err())
			}
		}
		if st := s.srv.DMAStats(); st.Spans != 1 || st.Entries != pages {
			b.Fatalf("%+v", st)
		}
		b.StopTimer()
		r.ok(user.CmdDMAUnmap, user.DMAUnmap{Flags: user.DMAUnmapAll}.Encode(nil))
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*pages)/b.Elapsed().Seconds(), "maps/s")
}

func TestServeConnBusy(t *testing.T) {
	dev := newTestDev(t)
	s := serve(t, dev, nil)
	c, err := user.NewClient(s.cli, nil)
	require.NoError(t, err)
	srvEnd, cliEnd := socketPair(t)
	defer cliEnd.Close()
	require.ErrorIs(t, s.srv.ServeConn(context.Background(), srvEnd), devicemodel.ErrServerBusy)
	_, err = io.ReadAll(cliEnd) // closed at once
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, s.wait(t))
}
