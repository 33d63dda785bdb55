package usbredirpeer_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/devicemodel/usbdev"
	"github.com/ycq-dev/ycq/internal/usbredirpeer"
	"github.com/ycq-dev/ycq/usb/redir"
)

// limit bounds each wait so a broken peer fails the test instead of
// hanging it; nothing here measures time.
const limit = 30 * time.Second

func socketpair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		require.NoError(t, err)
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// TestGuestAgainstDeviceModel runs the interop tool against ycq's own
// usb-host, the device model, on a socketpair: the tool itself must get
// the hello exchange, the device announcement and control transfers right
// before it is trusted against a third-party peer (tests/usbredir_interop_test.go).
func TestGuestAgainstDeviceModel(t *testing.T) {
	a, b := socketpair(t)
	dev, err := usbdev.New(a, usbdev.Options{Pairs: 1})
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- dev.Serve() }()

	g, err := usbredirpeer.New(b)
	require.NoError(t, err)
	require.Equal(t, usbdev.Version, g.Peer().Version)
	require.Equal(t, redir.Layout{IDs64: true, DeviceVersion: true, EPMaxPacketSize: true, BulkLength32: true}, g.Layout())

	_, d, err := g.WaitDevice(0, limit)
	require.NoError(t, err)
	require.Equal(t, uint16(usbdev.VendorID), d.Connect.VendorID)
	require.Equal(t, uint16(usbdev.ProductID), d.Connect.ProductID)
	require.NotZero(t, d.Interfaces.Count)

	dd, err := g.GetDescriptor(0x01, 0, 0, 18, limit)
	require.NoError(t, err)
	require.Len(t, dd, 18)
	require.Equal(t, byte(0x01), dd[1])
	sd, err := g.GetDescriptor(0x03, dd[15], 0x0409, 255, limit)
	require.NoError(t, err)
	s, err := usbredirpeer.StringDescriptor(sd)
	require.NoError(t, err)
	require.Equal(t, usbdev.Product, s)

	require.NoError(t, g.Close())
	dev.Close()
	if err := <-served; err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		t.Logf("serve: %v", err)
	}
}

func TestStringDescriptor(t *testing.T) {
	s, err := usbredirpeer.StringDescriptor([]byte{8, 3, 'y', 0, 'c', 0, 'q', 0})
	require.NoError(t, err)
	require.Equal(t, "ycq", s)
	for _, bad := range [][]byte{nil, {2}, {4, 2, 0, 0}, {9, 3, 'a', 0}, {1, 3}} {
		_, err := usbredirpeer.StringDescriptor(bad)
		require.Error(t, err, "% x", bad)
	}
}

// hostStream is what a usb-host sends after its hello, in the layout the
// Guest negotiates with caps: packets written by the codec.
func hostStream(t testing.TB, caps redir.Caps, bodies map[uint64]redir.Body, order []uint64) []byte {
	var buf bytes.Buffer
	w := redir.NewWriter(&buf)
	w.SetLayout(redir.Negotiate(usbredirpeer.OurCaps, caps))
	for _, id := range order {
		require.NoError(t, w.Send(id, bodies[id]))
	}
	return buf.Bytes()
}

// FuzzGuest: a hostile usb-host (a hello with any of the capabilities
// that change the wire format, then any bytes) never crashes the Guest:
// its reader stops at the end of the stream or at the first packet it
// cannot take, with io.EOF or a typed usbredir error, and a data packet
// still waiting for its reply then has its channel closed, not left to
// hang.
func FuzzGuest(f *testing.F) {
	all := redir.Caps{}.With(redir.Cap64BitIDs, redir.CapConnectDeviceVersion, redir.CapEPInfoMaxPacketSize, redir.Cap32BitBulkLength)
	var info redir.InterfaceInfo
	info.Count, info.Class[0] = 1, 0xff
	var ep redir.EPInfo
	ep.EPType[1], ep.EPType[17] = redir.EPBulk, redir.EPBulk
	good := hostStream(f, all, map[uint64]redir.Body{
		0:                            info,
		1:                            ep,
		2:                            redir.DeviceConnect{Speed: redir.SpeedHigh, VendorID: usbdev.VendorID, ProductID: usbdev.ProductID},
		usbredirpeer.FirstID:         redir.BulkPacket{Endpoint: 0x81, Status: redir.StatusSuccess, Length: 4, Data: []byte("echo")},
		usbredirpeer.FirstID + 1<<33: redir.BulkPacket{Endpoint: 0x81, Status: redir.StatusStall},
	}, []uint64{0, 1, 2, usbredirpeer.FirstID, usbredirpeer.FirstID + 1<<33})
	f.Add(byte(0xff), good)
	f.Add(byte(0), good)
	f.Add(byte(0xff), good[:len(good)-3])
	f.Add(byte(0xff), []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x10, 1, 2, 3})
	f.Fuzz(func(t *testing.T, capBits byte, in []byte) {
		caps := redir.Caps{}
		for i, c := range []redir.Cap{redir.Cap64BitIDs, redir.CapConnectDeviceVersion, redir.CapEPInfoMaxPacketSize, redir.Cap32BitBulkLength} {
			if capBits&(1<<i) != 0 {
				caps = caps.With(c)
			}
		}
		a, b := socketpair(t)
		defer b.Close()
		go io.Copy(io.Discard, b) // what the Guest sends
		go func() {
			hello := redir.Hello{Version: "hostile", Caps: caps}.Encode(nil, redir.Layout{})
			b.Write(append(redir.Header{Type: redir.TypeHello, Length: uint32(len(hello))}.Encode(nil, redir.Layout{}), hello...))
			b.Write(in)
			b.(*net.UnixConn).CloseWrite()
		}()
		g, err := usbredirpeer.New(a)
		if err != nil {
			a.Close()
			t.Fatalf("the hello was good: %v", err)
		}
		defer g.Close()
		_, ch, err := g.Submit(redir.BulkPacket{Endpoint: 0x81, Length: 4})
		if err != nil {
			require.ErrorIs(t, err, usbredirpeer.ErrClosed, "a Guest whose reader stopped refuses with ErrClosed")
		} else if _, err := usbredirpeer.Await(ch, limit); err != nil {
			require.ErrorIs(t, err, usbredirpeer.ErrClosed, "the reply channel is closed when the reader stops")
		}
		_, _, err = g.WaitEvent(len(g.Events()), limit, func(redir.Body) bool { return false })
		require.ErrorIs(t, err, usbredirpeer.ErrClosed, "the stream ends, and the reader with it")
		rerr := g.Err()
		require.Error(t, rerr)
		var pe *redir.ProtocolError
		typed := errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) || errors.As(rerr, &pe) ||
			errors.Is(rerr, redir.ErrMalformed) || errors.Is(rerr, redir.ErrTooLarge)
		require.True(t, typed, "untyped reader error %T: %v", rerr, rerr)
	})
}
