package hostdriver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/vfio/user"
	"github.com/ycq-dev/ycq/ycqdev"
)

// The device model of TestTwoProcesses is the test binary again, with
// YCQ_HOSTDRIVER_HELPER=device.
var helpers = testenv.Helpers{Env: "YCQ_HOSTDRIVER_HELPER"}

func TestMain(m *testing.M) { helpers.Main(m, runHelper) }

func runHelper(part string) error {
	if part != "device" {
		return fmt.Errorf("unknown helper %q", part)
	}
	return serveDevice(os.Getenv("SOCK"))
}

// serveDevice serves a ycq device model at sock, saying "ready" once it
// listens, until the parent closes stdin.
func serveDevice(sock string) error {
	dev, err := devicemodel.NewYCQ(devicemodel.Options{Queues: 2})
	if err != nil {
		return err
	}
	defer dev.Close()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	devicemodel.Serve(testenv.StdinClosed(), l, dev, &devicemodel.ServerOptions{Logger: log})
	return nil
}

// TestTwoProcesses: the device model is another process, reached over a
// UNIX socket; two drivers in a row (the second after the first closed)
// stream through it and check every record.
func TestTwoProcesses(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "device.sock")
	helpers.Start(t, "device", []string{"SOCK=" + sock}).WaitOutput(t, "ready\n")

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
