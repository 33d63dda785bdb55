// Package tests holds end-to-end tests across processes and the QEMU
// guest: the host driver inside a real Linux guest on kernel VFIO, against
// the Go device model attached with QEMU's vfio-user-pci.
package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/qemu"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
	"github.com/ycq-dev/ycq/ycqdev"
)

var sharedEnv testenv.QEMU[*qemu.Env]

// qemuEnv returns the provisioned QEMU environment, provisioning it when
// the cache is missing and this machine can. Without one the test fails
// with the reason, unless YCQ_SKIP_QEMU=1, which makes it skip instead.
func qemuEnv(t *testing.T) *qemu.Env {
	t.Helper()
	return sharedEnv.Get(t, qemu.Find)
}

// deviceModel serves a ycq device on a socket in this process for QEMU,
// and keeps the largest DMA table it saw while a guest was connected.
type deviceModel struct {
	dev    *devicemodel.YCQ
	srv    *devicemodel.Server
	socket string
	mu     sync.Mutex
	peak   devicemodel.DMAStats
}

func startDeviceModel(t *testing.T) *deviceModel {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	dev, err := devicemodel.NewYCQ(devicemodel.Options{Queues: 2, Log: log})
	require.NoError(t, err)
	dm := &deviceModel{dev: dev, socket: filepath.Join(t.TempDir(), "ycq.sock")}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: dm.socket, Net: "unix"})
	require.NoError(t, err)
	dm.srv = devicemodel.NewServer(dev, &devicemodel.ServerOptions{DMAWire: user.DMAWireQEMU, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- dm.srv.Serve(ctx, l) }()
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			st := dm.srv.DMAStats()
			dm.mu.Lock()
			if st.Entries > dm.peak.Entries {
				dm.peak = st
			}
			dm.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("device model: %v", err)
		}
		dev.Close()
	})
	return dm
}

func (dm *deviceModel) peakDMA() devicemodel.DMAStats {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	return dm.peak
}

// reg64 reads a register of the device model directly.
func (dm *deviceModel) reg64(t *testing.T, off uint64) uint64 {
	var b [8]byte
	require.NoError(t, dm.dev.ReadRegion(vfio.BAR0, off, b[:]))
	return binary.LittleEndian.Uint64(b[:])
}

// TestGuestDriver is the guest run CI relies on: the guest binds the ycq
// device with the project's binding code, opens it through kernel VFIO
// (group and container), streams at least 10,000 checked records through
// two queue pairs with MSI-X, resizes both queues of every pair while they
// stream (ycq.resize=1: the device follows, acknowledged through its
// registers), resets the device in the middle, unbinds and rebinds it, and
// prints one result line that is checked here.
func TestGuestDriver(t *testing.T) {
	env := qemuEnv(t)
	dm := startDeviceModel(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg := qemu.VMConfig{Socket: dm.socket, Mode: "test", Params: []string{"ycq.resize=1"}}
	if testing.Verbose() {
		cfg.Console = t.Output()
	}
	res, err := env.RunVM(ctx, cfg)
	if res != nil && err != nil {
		t.Logf("guest console:\n%s", res.Console)
	}
	require.NoError(t, err)
	l := res.Line
	require.Equal(t, "test", l["mode"])
	require.Equal(t, "container", l["backend"])
	require.Equal(t, float64(3), l["msix_vectors"], "two pairs and the error vector")
	require.Equal(t, true, l["dma_mapped"])
	require.GreaterOrEqual(t, l["records"], float64(10000))
	require.Equal(t, float64(0), l["errors"])
	require.Greater(t, l["interrupts"], float64(0), "MSI-X interrupts reached the guest")
	require.GreaterOrEqual(t, l["resets"], float64(1))
	require.Equal(t, float64(1), l["rebinds"])
	require.GreaterOrEqual(t, l["resizes"], float64(2), "every pair resized while streaming")
	require.Positive(t, l["resize_us_max"])
	t.Logf("guest: %v resizes, the longest %v µs", l["resizes"], l["resize_us_max"])

	// Behind the emulated IOMMU QEMU maps guest memory one page a message:
	// the table held thousands of entries, coalesced into few spans.
	peak := dm.peakDMA()
	t.Logf("guest ran %v; peak DMA table: %d entries in %d spans (%d merges, %d maps in all)",
		res.Duration.Round(time.Millisecond), peak.Entries, peak.Spans, peak.Merges, peak.Maps)
	require.GreaterOrEqual(t, peak.Entries, 1000, "page-sized DMA maps")
	require.Less(t, peak.Spans*10, peak.Entries, "neighbouring pages coalesced")
	require.NotZero(t, peak.Merges)
	require.Zero(t, peak.Faults)
}

// TestQEMUKilled: QEMU is killed while the guest streams; the device model
// notices the client is gone, resets the device, and serves the next QEMU.
func TestQEMUKilled(t *testing.T) {
	env := qemuEnv(t)
	dm := startDeviceModel(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := env.RunVM(ctx, qemu.VMConfig{Socket: dm.socket, Mode: "demo", Params: []string{"ycq.size=8589934592"}})
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Minute)
	for dm.reg64(t, ycqdev.RegRecordsIn) < 1000 {
		require.True(t, time.Now().Before(deadline), "the guest never got records through")
		time.Sleep(50 * time.Millisecond)
	}
	cancel() // kills QEMU's process group
	require.Error(t, <-done)
	for dm.srv.Stats().Connections > 0 && dm.reg64(t, ycqdev.RegRecordsIn) != 0 {
		require.True(t, time.Now().Before(deadline), "the device model never reset after QEMU died")
		time.Sleep(10 * time.Millisecond)
	}

	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel2()
	res, err := env.RunVM(ctx2, qemu.VMConfig{Socket: dm.socket, Mode: "probe"})
	if res != nil && err != nil {
		t.Logf("guest console:\n%s", res.Console)
	}
	require.NoError(t, err, "the next QEMU is served")
	require.Equal(t, true, res.Line["dma_mapped"])
	require.Equal(t, uint64(2), dm.srv.Stats().Connections)
}
