package usbredirpeer_test

import (
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
