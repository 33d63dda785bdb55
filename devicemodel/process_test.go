package devicemodel_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// The tests in this file run one side as a separate process: the test
// binary re-executes itself with only TestHelperProcess selected and
// YCQ_DEVICEMODEL_HELPER naming the side (no TestMain, so the package's
// other test files stay free to have one).
const helperEnv = "YCQ_DEVICEMODEL_HELPER"

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("a helper process for the cross-process tests, not a test")
	}
	if err := runHelper(mode, os.Getenv("SOCK")); err != nil {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", mode, err)
		os.Exit(1)
	}
	os.Exit(0)
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
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
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

// helper starts the test binary as mode with SOCK=sock and waits for its
// "ready" line. Closing stdin (or killing it) ends it.
type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func startHelper(t *testing.T, mode, sock string) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "SOCK="+sock)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "helper %s did not start", mode)
	require.Equal(t, "ready", strings.TrimSpace(line))
	return &helperProc{cmd: cmd, stdin: stdin}
}

func (h *helperProc) stop(t *testing.T) {
	t.Helper()
	h.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		h.cmd.Process.Kill()
		<-done
		t.Fatal("helper did not stop")
	}
}

// The server in another process, the client here: everything crosses a
// real process boundary (descriptors, shared memory, eventfds).
func TestCrossProcess(t *testing.T) {
	before := openFDs(t)
	sock := t.TempDir() + "/dev.sock"
	srv := startHelper(t, "server", sock)
	defer func() {
		if srv != nil {
			srv.stop(t)
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
	srv.stop(t)
	srv = nil
	require.Equal(t, before, openFDs(t), "descriptors leaked in the client process")
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
	before := openFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, l) }()

	h := startHelper(t, "client", sock)
	require.Eventually(t, func() bool { return srv.DMAStats().Entries == 2 }, 5*time.Second, 5*time.Millisecond)
	inUse := openFDs(t)
	require.Greater(t, inUse, before, "the server holds the client's eventfds")
	require.NoError(t, h.cmd.Process.Signal(syscall.SIGKILL))
	require.Error(t, h.cmd.Wait())
	h.stdin.Close()
	require.Eventually(t, func() bool { _, d, _ := dev.counts(); return d == 1 }, 5*time.Second, 5*time.Millisecond)

	c, err := user.Dial(sock, nil)
	require.NoError(t, err)
	require.NoError(t, vfio.Write32(c, vfio.BAR0, 0x40, 99))
	require.Equal(t, uint32(99), reg32(t, c, 0x40))
	require.Zero(t, srv.DMAStats().Entries, "a new client starts with no DMA mappings")
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { _, d, _ := dev.counts(); return d == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, uint64(2), srv.Stats().Connections)
	require.Equal(t, before, openFDs(t), "descriptors of the killed client leaked")
	cancel()
	<-served
}
