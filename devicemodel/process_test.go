package devicemodel_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// The tests in this file run one side as a separate process: the test
// binary re-executes itself with only TestHelperProcess selected and
// YCQ_DEVICEMODEL_HELPER naming the side (no TestMain, so the package's
// other test files stay free to have one).
var helpers = testenv.Helpers{Env: "YCQ_DEVICEMODEL_HELPER", Test: "TestHelperProcess"}

func TestHelperProcess(t *testing.T) {
	helpers.Run(t, func(mode string) error { return runHelper(mode, os.Getenv("SOCK")) })
}

func runHelper(mode, sock string) error {
	switch mode {
	case "server": // serve the test device at SOCK until stdin closes
		dev, err := newTestDevice()
		if err != nil {
			return err
		}
		defer dev.Close()
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			return err
		}
		defer l.Close()
		ctx := testenv.StdinClosed()
		fmt.Println("ready")
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		err = devicemodel.Serve(ctx, l, dev, &devicemodel.ServerOptions{Logger: log})
		if ctx.Err() != nil {
			return nil
		}
		return err
	case "client": // connect, map and wire things, then wait to be killed
		c, err := user.Dial(sock, nil)
		if err != nil {
			return err
		}
		shared, err := dma.Memfd("killed-client", 1<<20, dma.Options{})
		if err != nil {
			return err
		}
		anon, err := dma.Anonymous(1<<16, dma.Options{})
		if err != nil {
			return err
		}
		if err := c.MapDMA(0x100000, shared, 0, 1<<20, vfio.DMARead|vfio.DMAWrite); err != nil {
			return err
		}
		if err := c.MapDMA(0x300000, anon, 0, 1<<16, vfio.DMARead|vfio.DMAWrite); err != nil {
			return err
		}
		var efds []int
		for range 4 {
			fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
			if err != nil {
				return err
			}
			efds = append(efds, fd)
		}
		if err := c.SetIRQs(vfio.IRQMSIX, 0, efds); err != nil {
			return err
		}
		if _, err := c.MapRegion(vfio.BAR2, 0, 4096); err != nil {
			return err
		}
		fmt.Println("ready")
		select {}
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// startHelper starts the test binary as mode with SOCK=sock and waits for
// its "ready" line. Closing stdin (Stop) or killing it ends it.
func startHelper(t *testing.T, mode, sock string) *testenv.Child {
	t.Helper()
	c := helpers.Start(t, mode, []string{"SOCK=" + sock})
	c.WaitOutput(t, "ready\n")
	return c
}

// The server in another process, the client here: everything crosses a
// real process boundary (descriptors, shared memory, eventfds).
func TestCrossProcess(t *testing.T) {
	before := testenv.OpenFDs(t)
	sock := t.TempDir() + "/dev.sock"
	srv := startHelper(t, "server", sock)
	defer func() {
		if srv != nil {
			srv.Stop(t)
		}
	}()

	serverFDs := func(c vfio.Device) uint32 { return reg32(t, c, regFDs) }
	var firstFDs uint32
	for round := range 2 {
		c, err := user.Dial(sock, &user.ClientOptions{DMAWire: user.DMAWireSpec})
		require.NoError(t, err)
		fds := serverFDs(c)
		if round == 0 {
			t.Logf("server process holds %d descriptors with one client connected", fds)
		}

		require.NoError(t, vfio.Write64(c, vfio.BAR0, 0x100, 0x0123456789abcdef))
		v, err := vfio.Read64(c, vfio.BAR0, 0x100)
		require.NoError(t, err)
		require.Equal(t, uint64(0x0123456789abcdef), v)

		// BAR2 mapped here is the device's memory there.
		m, err := c.MapRegion(vfio.BAR2, 0, 16<<10)
		require.NoError(t, err)
		copy(m.Bytes()[4000:], "written here, read there")
		got := make([]byte, 24)
		require.NoError(t, c.ReadRegion(vfio.BAR2, 4000, got))
		require.Equal(t, "written here, read there", string(got))
		require.NoError(t, c.WriteRegion(vfio.BAR2, 8000, []byte("written there")))
		require.Equal(t, "written there", string(m.Bytes()[8000:8013]))

		// Interrupts raised by the device process arrive here.
		efds := []int{eventfd(t), eventfd(t), eventfd(t), eventfd(t)}
		require.NoError(t, c.SetIRQs(vfio.IRQMSIX, 0, efds))
		require.NoError(t, vfio.Write32(c, vfio.BAR0, regIRQ, uint32(vfio.IRQMSIX)<<16|2))
		_, ok := waitEvent(t, efds[2], 5*time.Second)
		require.True(t, ok, "interrupt from the device process")

		// DMA into shared memory and, by messages, into anonymous memory.
		shared, err := dma.Memfd("xproc", 64<<10, dma.Options{})
		require.NoError(t, err)
		anon, err := dma.Anonymous(64<<10, dma.Options{})
		require.NoError(t, err)
		require.NoError(t, c.MapDMA(0x10000000, shared, 0, 64<<10, vfio.DMARead|vfio.DMAWrite))
		require.NoError(t, c.MapDMA(0x20000000, anon, 0, 64<<10, vfio.DMARead|vfio.DMAWrite))
		require.NoError(t, c.WriteRegion(vfio.BAR0, 0, []byte("from the device's scratch")))
		require.Equal(t, uint32(statusOK), deviceDMA(t, c, dmaCmdToHost, 0x10000000+5000, 25))
		require.Equal(t, "from the device's scratch", string(shared.Bytes()[5000:5025]))
		require.Equal(t, uint32(statusOK), deviceDMA(t, c, dmaCmdToHost, 0x20000000+6000, 25))
		require.Equal(t, "from the device's scratch", string(anon.Bytes()[6000:6025]))
		binary.LittleEndian.PutUint64(anon.Bytes()[64:], 0x55aa55aa)
		require.Equal(t, uint32(statusOK), deviceDMA(t, c, dmaCmdLoad64, 0x20000000+64, 8))
		require.Equal(t, uint32(0x55aa55aa), reg32(t, c, 0))
		require.NoError(t, c.UnmapDMA(0x10000000, 64<<10))
		require.Equal(t, uint32(statusFault), deviceDMA(t, c, dmaCmdToHost, 0x10000000, 8))

		require.NoError(t, c.Reset())
		require.Equal(t, uint32(round+1), reg32(t, c, regResets))

		require.NoError(t, m.Close())
		require.NoError(t, c.Close())
		for _, fd := range efds {
			unix.Close(fd)
		}
		shared.Close()
		anon.Close()
		if round == 0 {
			firstFDs = fds
		} else {
			require.Equal(t, firstFDs, fds, "the server process leaked descriptors across connections")
		}
	}
	srv.Stop(t)
	srv = nil
	require.Equal(t, before, testenv.OpenFDs(t), "descriptors leaked in the client process")
}

// A client process killed while it holds DMA mappings, eventfds and a
// region mapping: the server cleans up and serves the next client.
func TestKilledClientProcess(t *testing.T) {
	dev := newTestDev(t)
	sock := t.TempDir() + "/dev.sock"
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	require.NoError(t, err)
	defer l.Close()
	srv := devicemodel.NewServer(dev, &devicemodel.ServerOptions{Logger: testLogger(t)})
	before := testenv.OpenFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()

	h := startHelper(t, "client", sock)
	require.Eventually(t, func() bool { return srv.DMAStats().Entries == 2 }, 5*time.Second, 5*time.Millisecond)
	inUse := testenv.OpenFDs(t)
	require.Greater(t, inUse, before, "the server holds the client's eventfds")
	require.NoError(t, h.Cmd.Process.Signal(syscall.SIGKILL))
	require.Error(t, h.Wait())
	h.Stdin.Close()
	require.Eventually(t, func() bool { _, d, _ := dev.counts(); return d == 1 }, 5*time.Second, 5*time.Millisecond)

	c, err := user.Dial(sock, nil)
	require.NoError(t, err)
	require.NoError(t, vfio.Write32(c, vfio.BAR0, 0x40, 99))
	require.Equal(t, uint32(99), reg32(t, c, 0x40))
	require.Zero(t, srv.DMAStats().Entries, "a new client starts with no DMA mappings")
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { _, d, _ := dev.counts(); return d == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, uint64(2), srv.Stats().Connections)
	require.Equal(t, before, testenv.OpenFDs(t), "descriptors of the killed client leaked")
	cancel()
	<-served
}
