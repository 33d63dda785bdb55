package ipc

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/testenv"
)

// startServer serves on a fresh socket until the test ends.
func startServer(t *testing.T, opt ServerOptions) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ipc.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	go func() { done <- Serve(ctx, l, opt) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(2 * time.Minute):
			// A server that does not stop is a bug: show where it is.
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
			t.Fatal("Serve did not return within 2 minutes of its context ending")
		}
	})
	return path
}

func hello(role string, count uint64, payload int) Hello {
	return Hello{Role: role, Count: count, Payload: payload, Batch: 8,
		Geometry: Geometry{Slots: 64, SlotSize: 256}, Checksum: true}
}

func TestRoles(t *testing.T) {
	for _, mode := range []Mode{{}, {Block: true}, {Spin: true}} {
		for _, byName := range []bool{false, true} {
			shm := dma.Options{ShmDir: t.TempDir()}
			path := startServer(t, ServerOptions{Mode: mode, ShmName: "ycq-test", ShmOpt: shm})
			for _, role := range []string{RoleProducer, RoleConsumer, RoleBoth} {
				h := hello(role, 5000, 100)
				h.ByName = byName
				c, err := Dial(context.Background(), path, h, mode, shm)
				require.NoError(t, err, "%s mode=%v byName=%v", role, mode, byName)
				res, err := c.Run()
				require.NoError(t, err, "%s mode=%v byName=%v", role, mode, byName)
				require.Equal(t, uint64(5000), res.Records)
				require.Equal(t, role, res.Role)
				if role != RoleProducer {
					require.NotZero(t, res.P50)
					require.GreaterOrEqual(t, res.P99, res.P50)
				}
				require.NoError(t, c.Close())
			}
			ents, err := os.ReadDir(shm.ShmDir)
			require.NoError(t, err)
			require.Empty(t, ents, "the server removed every region name")
		}
	}
}

func TestServerRefusesBadHello(t *testing.T) {
	path := startServer(t, ServerOptions{})
	for _, h := range []Hello{
		{Role: "observer", Count: 1, Payload: 64, Batch: 1, Geometry: Geometry{Slots: 8, SlotSize: 64}},
		{Role: RoleProducer, Count: 0, Payload: 64, Batch: 1, Geometry: Geometry{Slots: 8, SlotSize: 64}},
		{Role: RoleProducer, Count: 1, Payload: 8, Batch: 1, Geometry: Geometry{Slots: 8, SlotSize: 64}},
		{Role: RoleProducer, Count: 1, Payload: 64, Batch: 9, Geometry: Geometry{Slots: 8, SlotSize: 64}},
		{Role: RoleProducer, Count: 1, Payload: 64, Batch: 1, Geometry: Geometry{Slots: 7, SlotSize: 64}},
		{Role: RoleProducer, Count: 1, Payload: 64, Batch: 1, Geometry: Geometry{Slots: 1 << 20, SlotSize: 1 << 20}},
	} {
		_, err := Dial(context.Background(), path, h, Mode{}, dma.Options{})
		require.ErrorIs(t, err, ErrProtocol, "%+v", h)
	}
	// The client checks too; a raw bad hello reaches the server, which
	// says why and serves the next client.
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	require.NoError(t, writeMsg(c.(*net.UnixConn), Hello{Version: 9}))
	var w Welcome
	_, err = readMsg(c.(*net.UnixConn), &w, 0)
	require.NoError(t, err)
	require.Contains(t, w.Error, "version 9")
	c.Close()
	// Asking for names from a server without a name is refused.
	h := hello(RoleProducer, 10, 64)
	h.ByName = true
	_, err = Dial(context.Background(), path, h, Mode{}, dma.Options{})
	require.ErrorContains(t, err, "without a name")

	cl, err := Dial(context.Background(), path, hello(RoleProducer, 10, 64), Mode{}, dma.Options{})
	require.NoError(t, err)
	_, err = cl.Run()
	require.NoError(t, err)
	require.NoError(t, cl.Close())
}

// TestServerSurvivesGarbage: bytes that are not a control message end that
// connection only.
func TestServerSurvivesGarbage(t *testing.T) {
	path := startServer(t, ServerOptions{})
	for _, junk := range [][]byte{
		{0xff, 0xff, 0xff, 0xff},              // length far too large
		{0, 0, 0, 0},                          // empty message
		{5, 0, 0, 0, '{', '"', 'x', '"', '}'}, // cut short
		append([]byte{11, 0, 0, 0}, []byte(`{"role":12}`)...),
	} {
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		_, err = c.Write(junk)
		require.NoError(t, err)
		c.(*net.UnixConn).CloseWrite()
		buf := make([]byte, 1024)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		c.Read(buf) // a refusal or EOF, either way it returns
		c.Close()
	}
	cl, err := Dial(context.Background(), path, hello(RoleConsumer, 100, 64), Mode{}, dma.Options{})
	require.NoError(t, err)
	res, err := cl.Run()
	require.NoError(t, err)
	require.Equal(t, uint64(100), res.Records)
	require.NoError(t, cl.Close())
}

// TestCloseDuringRun: closing a client while its Run is under way stops
// Run and only then unmaps the pair (it used to unmap under Run: SIGSEGV).
func TestCloseDuringRun(t *testing.T) {
	for _, mode := range []Mode{{}, {Block: true}, {Spin: true}} {
		path := startServer(t, ServerOptions{Mode: mode})
		c, err := Dial(context.Background(), path, hello(RoleBoth, 1<<40, 100), mode, dma.Options{})
		require.NoError(t, err)
		ran := make(chan error, 1)
		go func() {
			_, err := c.Run()
			ran <- err
		}()
		for c.Progress() == 0 {
			time.Sleep(time.Millisecond)
		}
		require.NoError(t, c.Close())
		require.Error(t, <-ran, "an interrupted run says so")
		_, err = c.Run()
		require.ErrorIs(t, err, net.ErrClosed)
		require.NoError(t, c.Close(), "a second Close does nothing")
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []Mode{{}, {Block: true}, {Spin: true}} {
		got, err := ParseMode(m.String())
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	got, err := ParseMode("")
	require.NoError(t, err)
	require.Equal(t, Mode{}, got, "the default spins, then sleeps")
	_, err = ParseMode("nap")
	require.Error(t, err)
}

// TestPeerStoppedDone: a client's Done that says it stopped (its Close
// can send one just before it hangs up) ends the server's waits for it at
// once, though the socket stays open: the server's echo, which waits for
// records the client will never send, ends its session.
func TestPeerStoppedDone(t *testing.T) {
	var logs testenv.Buffer
	path := startServer(t, ServerOptions{Log: slogTo(&logs)})
	c, err := Dial(context.Background(), path, hello(RoleBoth, 1<<40, 64), Mode{}, dma.Options{})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.s.send(Done{Records: 0, Error: "stopped"}))
	testenv.WaitFor(t, "the server's session to end", func() bool { return strings.Contains(logs.String(), "session ended") })
	require.Contains(t, logs.String(), "stopped after 0 records: stopped")
}
