package hostdriver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/vfio/user"
	"github.com/ycq-dev/ycq/ycqdev"
)

// TestMain lets the test binary be the device model process of
// TestTwoProcesses.
func TestMain(m *testing.M) {
	if sock := os.Getenv("YCQ_HOSTDRIVER_DEVICE"); sock != "" {
		os.Exit(serveDevice(sock))
	}
	os.Exit(m.Run())
}

func serveDevice(sock string) int {
	dev, err := devicemodel.NewYCQ(devicemodel.Options{Queues: 2})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer dev.Close()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	devicemodel.Serve(context.Background(), l, dev, &devicemodel.ServerOptions{Logger: log})
	return 0
}

// TestTwoProcesses: the device model is another process, reached over a
// UNIX socket; two drivers in a row (the second after the first closed)
// stream through it and check every record.
func TestTwoProcesses(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "device.sock")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "YCQ_HOSTDRIVER_DEVICE="+sock)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, func() bool { _, err := os.Stat(sock); return err == nil })

	for round := range 2 {
		c, err := user.Dial(sock, nil)
		require.NoError(t, err, "round %d", round)
		d, err := Open(c, Config{Engine: ycqdev.EngineCRC32C, Slots: 128})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var wg sync.WaitGroup
		for _, p := range d.Pairs() {
			wg.Go(func() {
				got, err := stream(ctx, p, 20000, 200+p.Index(), ycqdev.EngineCRC32C)
				if err != nil || got != 20000 {
					t.Errorf("round %d pair %d: %d records: %v", round, p.Index(), got, err)
				}
			})
		}
		wg.Wait()
		cancel()
		require.NoError(t, d.Close())
		require.NoError(t, c.Close())
	}
}
