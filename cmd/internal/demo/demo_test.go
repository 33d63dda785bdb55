package demo

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/internal/fdpass"
	"github.com/ycq-dev/ycq/vfio/user"
	"github.com/ycq-dev/ycq/ycqdev"
)

// TestRun streams through an in-process device model over a vfio-user
// socketpair with each engine, as `ycq run` does, and checks that every
// record came back checked.
func TestRun(t *testing.T) {
	for _, c := range []struct {
		engine  uint32
		queues  int
		payload int
	}{{ycqdev.EngineCRC32C, 2, 4096}, {ycqdev.EngineEcho, 3, 64}, {ycqdev.EngineEcho, 1, 1000}} {
		dev, err := devicemodel.NewYCQ(devicemodel.Options{Queues: c.queues})
		require.NoError(t, err)
		s, cl, err := fdpass.Socketpair()
		require.NoError(t, err)
		srv := devicemodel.NewServer(dev, nil)
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(context.Background(), s) }()
		client, err := user.NewClient(cl, nil)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		const size = 4 << 20
		var progress int64
		res, err := Run(ctx, client, Options{Size: size, Queues: c.queues, Engine: c.engine, Payload: c.payload,
			Progress: func(done, total int64) { progress = done }})
		cancel()
		require.NoError(t, err, "engine %d, %d pairs, %d bytes", c.engine, c.queues, c.payload)
		want := int64(size / c.payload)
		require.Equal(t, want, res.Records)
		require.Equal(t, want*int64(c.payload), res.Bytes)
		require.Equal(t, res.Bytes, progress, "the last progress report is the whole run")
		require.Positive(t, res.P99)
		require.NoError(t, client.Close())
		<-done
		require.NoError(t, dev.Close())
	}
}

// TestRunResizing streams with resizable queues that are resized every
// millisecond, as `ycq run -resize-every 1ms` does: every record comes back
// checked, and the result counts the resizes done and how long they took.
func TestRunResizing(t *testing.T) {
	dev, err := devicemodel.NewYCQ(devicemodel.Options{Queues: 2})
	require.NoError(t, err)
	defer dev.Close()
	s, cl, err := fdpass.Socketpair()
	require.NoError(t, err)
	srv := devicemodel.NewServer(dev, nil)
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(context.Background(), s) }()
	client, err := user.NewClient(cl, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const payload = 256
	// A stream ends when its bytes are through, however fast that is: a
	// longer one each time until one saw a resize complete.
	var res Result
	for size := int64(32 << 20); res.Resizes == 0; size *= 4 {
		require.LessOrEqual(t, size, int64(8<<30), "no resize completed in streams of up to 8 GiB")
		res, err = Run(ctx, client, Options{Size: size, Queues: 2, Engine: ycqdev.EngineCRC32C, Payload: payload, Slots: 64, ResizeEvery: time.Millisecond})
		require.NoError(t, err)
		require.Equal(t, size/payload, res.Records)
	}
	require.LessOrEqual(t, res.ResizeP50, res.ResizeMax)
	// A resize the device did not acknowledge within the deadline (a slow
	// -race run) is rolled back: started counts both.
	require.GreaterOrEqual(t, res.ResizesStarted, uint64(res.Resizes)+res.ResizesRolledBack)
	require.Positive(t, res.ResizeDraining)
	var out strings.Builder
	res.Table(&out)
	require.Contains(t, out.String(), fmt.Sprintf("%d completed of %d started, %d rolled back", res.Resizes, res.ResizesStarted, res.ResizesRolledBack))
	require.Contains(t, out.String(), "draining")
	t.Log("\n" + out.String())
	require.NoError(t, client.Close())
	<-done
}
