package tests

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/qemu"
)

// usbEnv is qemuEnv for the USB tier, which also needs libusb's headers to
// build the cgo guest /init: without them the test skips with the fix
// (fails when YCQ_REQUIRE names "usb").
func usbEnv(t *testing.T) *qemu.Env {
	t.Helper()
	env := qemuEnv(t)
	if err := exec.Command("pkg-config", "--exists", "libusb-1.0").Run(); err != nil {
		testenv.Missing(t, "usb", "no libusb-1.0 for cgo (pkg-config --exists libusb-1.0: "+err.Error()+"); `make tools` installs libusb-1.0-0-dev")
	}
	return env
}

// silentPeer listens where QEMU's usb-redir chardev connects and holds
// each connection without a word: QEMU then has no device to attach, and
// the guest sees only the xHCI root hubs.
func silentPeer(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "usbredir.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return sock
}

// TestUSBGuestProbe is the plumbing of the USB tier: the guest loads the
// xHCI driver (usbcore, with usbfs), mounts devtmpfs, runs a cgo /init
// with the machine's libusb, libudev, libc and loader copied in, and
// libusb enumerates the controller's root hubs through usbfs and sysfs
// without udevd.
func TestUSBGuestProbe(t *testing.T) {
	env := usbEnv(t)
	sock := silentPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := qemu.USBVMConfig{Socket: sock, Mode: "probe"}
	if testing.Verbose() {
		cfg.Console = t.Output()
	}
	res, err := env.RunUSBVM(ctx, cfg)
	if res != nil && err != nil {
		t.Logf("guest console:\n%s\nQEMU stderr:\n%s", res.Console, res.Stderr)
	}
	require.NoError(t, err)
	require.Equal(t, "probe", res.Line["mode"])
	require.Equal(t, float64(4), res.Line["modules"], "usb-common, usbcore, xhci-hcd, xhci-pci")
	devs, _ := res.Line["devices"].([]any)
	require.Contains(t, devs, "1d6b:0002", "the USB 2 root hub")
	require.Contains(t, devs, "1d6b:0003", "the USB 3 root hub")
	t.Logf("guest ran %v; libusb saw %v", res.Duration.Round(time.Millisecond), devs)
}
