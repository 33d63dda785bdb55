package ipc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ring"
)

// TestStat: a stat request lists every queue of the session that runs,
// each with a descriptor that maps read-only and no other way, and
// answers while the session runs; nothing leaks.
func TestStat(t *testing.T) {
	shm := dma.Options{ShmDir: t.TempDir()}
	path := startServer(t, ServerOptions{Mode: Mode{Block: true}, ShmName: "ycq-stat", ShmOpt: shm})
	before := testenv.OpenFDs(t)

	qs, err := Stat(context.Background(), path)
	require.NoError(t, err)
	require.Empty(t, qs, "no session yet")

	// A consuming client that never consumes: the server fills the down
	// queue and waits, and the session stays up until the client closes.
	h := hello(RoleConsumer, 1<<30, 64)
	h.Geometry = Geometry{Slots: 64, SlotSize: 64}
	c, err := Dial(context.Background(), path, h, Mode{Block: true}, shm)
	require.NoError(t, err)
	down := c.Pair().Down
	testenv.WaitFor(t, "the down queue full", func() bool { return down.Len() == down.Cap() })

	qs, err = Stat(context.Background(), path)
	require.NoError(t, err)
	require.Len(t, qs, 2)
	for i, want := range []string{QueueUp, QueueDown} {
		q := qs[i]
		require.Equal(t, ServedQueue{Session: 1, Queue: want, Role: RoleConsumer, Geometry: h.Geometry,
			Name: "ycq-stat.1." + want + ".meta"}, q.ServedQueue)
		fd := int(q.Meta.Fd())
		size := ring.MetaSize(h.Geometry.Slots)
		_, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		require.ErrorIs(t, err, unix.EACCES, "the descriptor cannot be mapped for writing")
		_, err = unix.Write(fd, []byte{0})
		require.ErrorIs(t, err, unix.EBADF, "nor written")
		b, err := unix.Mmap(fd, 0, size, unix.PROT_READ, unix.MAP_SHARED)
		require.NoError(t, err)
		require.Equal(t, uint32(ring.Magic), binary.LittleEndian.Uint32(b[ring.OffMagic:]))
		if want == QueueDown {
			require.Equal(t, uint64(64), binary.LittleEndian.Uint64(b[ring.OffProdCursor:]), "the live queue's cursor")
			require.NotZero(t, binary.LittleEndian.Uint64(b[ring.OffProdFull:]), "the server waits on a full queue")
		}
		require.NoError(t, unix.Munmap(b))
	}
	require.NoError(t, CloseStat(qs))

	require.NoError(t, c.Close())
	testenv.WaitFor(t, "the session gone", func() bool {
		qs, err := Stat(context.Background(), path)
		require.NoError(t, err)
		return len(qs) == 0
	})
	// The server closes the session's descriptors just after it stops
	// listing it.
	testenv.WaitFor(t, "every descriptor closed", func() bool { return testenv.OpenFDs(t) == before })
}

// TestStatRefusals: a stat request the server will not answer, and
// answers a stat client will not take, give errors wrapping ErrProtocol.
func TestStatRefusals(t *testing.T) {
	path := startServer(t, ServerOptions{})
	before := testenv.OpenFDs(t)
	ask := func(v any) ([]byte, error) {
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, writeMsg(c.(*net.UnixConn), v))
		body, fds, err := readBody(c.(*net.UnixConn), MaxStatQueues)
		require.Empty(t, fds)
		return body, err
	}
	body, err := ask(StatRequest{Version: 7, Stat: true})
	require.NoError(t, err)
	var r StatReply
	require.NoError(t, decodeMsg(body, &r))
	require.Contains(t, r.Error, "version 7")
	// stat false is no stat request, and no Hello either (a Hello has no
	// field "stat"): the server hangs up.
	_, err = ask(StatRequest{Version: ProtocolVersion})
	require.ErrorIs(t, err, ErrPeerGone)

	// A server that hangs up, and one that answers nonsense.
	for name, answer := range map[string]func(*net.UnixConn){
		"hangs up": func(*net.UnixConn) {},
		"garbage":  func(c *net.UnixConn) { c.Write([]byte{3, 0, 0, 0, 'a', 'b', 'c'}) },
		"welcome":  func(c *net.UnixConn) { writeMsg(c, Welcome{Version: 1}) },
		"refusal":  func(c *net.UnixConn) { writeMsg(c, StatReply{Version: 1, Error: "no"}) },
		"no fds":   func(c *net.UnixConn) { writeMsg(c, StatReply{Version: 1, Queues: []ServedQueue{servedUp()}}) },
	} {
		sock := filepath.Join(t.TempDir(), "fake.sock")
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		require.NoError(t, err)
		go func() {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			readBody(c, 0)
			answer(c)
			c.Close()
		}()
		_, err = Stat(context.Background(), sock)
		require.ErrorIs(t, err, ErrProtocol, name)
		l.Close()
	}
	_, err = Stat(context.Background(), filepath.Join(t.TempDir(), "nobody.sock"))
	require.Error(t, err)
	// The fake servers close their side of the connections on their own time.
	testenv.WaitFor(t, "every descriptor closed", func() bool { return testenv.OpenFDs(t) == before })
}

func servedUp() ServedQueue {
	return ServedQueue{Session: 1, Queue: QueueUp, Role: RoleBoth, Geometry: Geometry{Slots: 16, SlotSize: 64}, Name: "x.1.up.meta"}
}

// FuzzRequest: the first message of a connection decodes as exactly one of
// a Hello and a stat request, or gives ErrProtocol.
func FuzzRequest(f *testing.F) {
	good, _ := json.Marshal(Hello{Version: 1, Role: RoleBoth, Count: 10, Payload: 64, Batch: 4,
		Geometry: Geometry{Slots: 16, SlotSize: 64}})
	f.Add(good)
	f.Add([]byte(`{"version":1,"stat":true}`))
	f.Add([]byte(`{"version":1,"stat":false}`))
	f.Add([]byte(`{"version":1,"stat":true,"role":"both"}`))
	f.Add([]byte(`{"stat":true} {}`))
	f.Add([]byte(`{"version":1,"resize":true,"session":1,"queue":"up","slots":64}`))
	f.Add([]byte(`{"version":1,"resize":false,"session":-1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeRequest(body)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if n := btoi(req.hello != nil) + btoi(req.stat != nil) + btoi(req.resize != nil); n != 1 {
			t.Fatalf("%q decoded as %+v", body, req)
		}
		if req.resize != nil && !req.resize.Resize {
			t.Fatalf("%q: a resize request without resize", body)
		}
		if req.stat != nil && !req.stat.Stat {
			t.Fatalf("%q: a stat request without stat", body)
		}
	})
}

// FuzzStatReply: a reply is refused with ErrProtocol, or every queue in
// it is one a server could serve, one for each descriptor.
func FuzzStatReply(f *testing.F) {
	good, _ := json.Marshal(StatReply{Version: 1, Queues: []ServedQueue{servedUp()}})
	f.Add(good, 1)
	f.Add([]byte(`{"version":1,"queues":[]}`), 0)
	f.Add([]byte(`{"version":1,"queues":null,"error":"no"}`), 0)
	f.Add([]byte(`{"version":1,"queues":[{"session":0,"queue":"up"}]}`), 1)
	f.Add([]byte(`{"version":1,"queues":[{"session":1,"queue":"up","role":"both","geometry":{"slots":16,"slot_size":64},"name":"../x"}]}`), 1)
	f.Fuzz(func(t *testing.T, body []byte, nfds int) {
		r, err := decodeStatReply(body, nfds)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if r.Error != "" {
			require.Empty(t, r.Queues)
			require.Zero(t, nfds)
			return
		}
		require.Len(t, r.Queues, nfds)
		require.LessOrEqual(t, nfds, MaxStatQueues)
		for _, q := range r.Queues {
			require.NoError(t, q.Geometry.Validate())
			require.GreaterOrEqual(t, q.Session, 1)
			require.Contains(t, []string{QueueUp, QueueDown}, q.Queue)
			if q.Name != "" {
				require.NoError(t, dma.CheckName(q.Name))
			}
		}
	})
}
