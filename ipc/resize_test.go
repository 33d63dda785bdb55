package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ring"
)

func resizableHello(role string, count uint64) Hello {
	h := hello(role, count, 64)
	h.Geometry.Resizable = true
	return h
}

// TestResizeEvery: the server resizes both queues of every session every
// millisecond while the client plays each role; every record arrives, in
// order and checked (the roles check that), and the client took and gave
// back the generations.
func TestResizeEvery(t *testing.T) {
	var added uint64
	for _, mode := range []Mode{{}, {Block: true}} {
		path := startServer(t, ServerOptions{Mode: mode, ResizeEvery: time.Millisecond})
		for _, role := range []string{RoleProducer, RoleConsumer, RoleBoth} {
			const count = 300_000
			c, err := Dial(context.Background(), path, resizableHello(role, count), mode, dma.Options{})
			require.NoError(t, err)
			res, err := c.Run()
			require.NoError(t, err, "%s %v", role, mode)
			require.Equal(t, uint64(count), res.Records)
			require.NoError(t, c.Close())
			t.Logf("%s %v: %d records, %d generations taken, %d given back, in %v", role, mode, res.Records,
				res.Resizes.Added, res.Resizes.Retired, res.Elapsed.Round(time.Millisecond))
			require.LessOrEqual(t, res.Resizes.Retired, res.Resizes.Added)
			added += res.Resizes.Added
		}
	}
	require.NotZero(t, added, "resizes happened while the sessions ran")
}

// TestResizeRequests: a third party resizes a running session's queues
// with Resize; bad requests are refused and change nothing.
func TestResizeRequests(t *testing.T) {
	path := startServer(t, ServerOptions{})
	c, err := Dial(context.Background(), path, resizableHello(RoleBoth, 50_000_000), Mode{}, dma.Options{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := c.Run()
		done <- err
	}()
	ctx := context.Background()
	testenv.WaitFor(t, "records to flow", func() bool { return c.Progress() > 0 })
	last := map[string]uint32{QueueUp: 1, QueueDown: 1}
	for k := range 20 {
		queue, slots := []string{QueueUp, QueueDown}[k%2], []int{256, 16}[(k/2)%2]
		t0 := time.Now()
		gen, err := Resize(ctx, path, 1, queue, slots)
		tries := 0
		for errors.Is(err, ErrResizeRefused) && strings.Contains(err.Error(), ring.ErrResizing.Error()) {
			time.Sleep(time.Millisecond) // the producer has not followed the last one yet
			gen, err = Resize(ctx, path, 1, queue, slots)
			tries++
		}
		require.NoError(t, err)
		t.Logf("resize %d took %v, %d tries, progress %d", k, time.Since(t0), tries, c.Progress())
		require.Equal(t, last[queue]+1, gen, "%s queue", queue)
		last[queue] = gen
	}
	for _, bad := range []struct {
		session int
		queue   string
		slots   int
	}{{2, QueueUp, 64}, {1, "sideways", 64}, {1, QueueUp, 7}, {1, QueueDown, 1 << 20}} {
		_, err := Resize(ctx, path, bad.session, bad.queue, bad.slots)
		require.ErrorIs(t, err, ErrResizeRefused, "%+v", bad)
	}
	testenv.WaitFor(t, "records to flow", func() bool { return c.Progress() > 10_000 })
	require.NoError(t, c.Close())
	<-done
	// A session that is not resizable refuses.
	plain, err := Dial(ctx, path, hello(RoleBoth, 50_000_000, 64), Mode{}, dma.Options{})
	require.NoError(t, err)
	go plain.Run()
	testenv.WaitFor(t, "records to flow", func() bool { return plain.Progress() > 0 })
	_, err = Resize(ctx, path, 2, QueueUp, 64)
	require.ErrorIs(t, err, ErrResizeRefused)
	require.Contains(t, err.Error(), "not resizable")
	require.NoError(t, plain.Close())
}

// TestResizeAcrossProcesses: the client runs in a process of its own, the
// server here, and a third process resizes the session's queues 40 times
// while records flow; a fourth asks for a resize and is killed with
// SIGKILL before it reads the answer. The client receives every one of its
// records back, in order and checked, and ends without error.
func TestResizeAcrossProcesses(t *testing.T) {
	var logs testenv.Buffer
	path := startServer(t, ServerOptions{Log: slogTo(&logs)})
	const count = 2_000_000
	client := helpers.Start(t, "client", []string{"SOCKET=" + path, "ROLE=" + RoleBoth, fmt.Sprintf("COUNT=%d", count), "RESIZABLE=1"})
	client.WaitOutput(t, "joined")
	resizer := helpers.Start(t, "resize", []string{"SOCKET=" + path, "N=40"})
	require.NoError(t, resizer.Wait(), "%s", resizer.Out.String())
	require.Contains(t, resizer.Out.String(), "resized 40")
	hang := helpers.Start(t, "resize-then-hang", []string{"SOCKET=" + path})
	hang.WaitOutput(t, "asked")
	require.NoError(t, hang.Cmd.Process.Signal(syscall.SIGKILL))
	hang.Wait()
	require.NoError(t, client.Wait(), "%s", client.Out.String())
	out := client.Out.String()
	require.Contains(t, out, fmt.Sprintf("records %d err <nil>", count))
	t.Logf("client: %s", strings.TrimSpace(out))
	testenv.WaitFor(t, "the session to end", func() bool { return strings.Contains(logs.String(), "session done") })
}

// TestResizeStat: a stat request on a resizable session describes each
// queue's newest generation, whose metadata its descriptor maps, and the
// session's resize counts; no descriptor leaks across the resizes.
func TestResizeStat(t *testing.T) {
	path := startServer(t, ServerOptions{})
	before := testenv.OpenFDs(t)
	c, err := Dial(context.Background(), path, resizableHello(RoleBoth, 1<<40), Mode{}, dma.Options{})
	require.NoError(t, err)
	go c.Run()
	testenv.WaitFor(t, "records to flow", func() bool { return c.Progress() > 0 })
	for k := range 6 {
		queue := []string{QueueUp, QueueDown}[k%2]
		for {
			_, err := Resize(context.Background(), path, 1, queue, 32<<(k%3))
			if err == nil {
				break
			}
			require.ErrorIs(t, err, ErrResizeRefused)
			require.Contains(t, err.Error(), ring.ErrResizing.Error())
			time.Sleep(time.Millisecond)
		}
	}
	qs, err := Stat(context.Background(), path)
	require.NoError(t, err)
	require.Len(t, qs, 2)
	for _, q := range qs {
		require.Equal(t, uint32(4), q.Generation, "%s: the first, then three resizes", q.Queue)
		require.NotNil(t, q.Resizes)
		require.Equal(t, uint64(6), q.Resizes.Completed)
		b, err := unix.Mmap(int(q.Meta.Fd()), 0, ring.MetaSize(16), unix.PROT_READ, unix.MAP_SHARED)
		require.NoError(t, err)
		require.Equal(t, uint32(4), binary.LittleEndian.Uint32(b[ring.OffGeneration:]), "the descriptor is the newest generation's")
		require.NoError(t, unix.Munmap(b))
	}
	require.NoError(t, CloseStat(qs))
	require.NoError(t, c.Close())
	testenv.WaitFor(t, "the server to let go", func() bool { return testenv.OpenFDs(t) <= before })
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzSessionMsg: a running session's messages decode to one kind, or are
// refused with ErrProtocol.
func FuzzSessionMsg(f *testing.F) {
	f.Add([]byte(`{"records":5}`))
	f.Add([]byte(`{"records":0,"generation":{"queue":"up","number":2,"slots":64,"offer":3}}`))
	f.Add([]byte(`{"records":0,"added":{"queue":"down","number":3,"offer":3,"error":"no"}}`))
	f.Add([]byte(`{"generation":{"queue":"up"},"added":{"queue":"up"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeSessionMsg(body)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if m.Generation != nil && m.Added != nil {
			t.Fatalf("%q: both an offer and an answer", body)
		}
	})
}

// FuzzTakeGeneration: a client offered a generation by a hostile server
// (any message, regions of any size holding anything) takes it or refuses
// with a typed error, never crashes, and keeps no descriptor it refused.
func FuzzTakeGeneration(f *testing.F) {
	good := ring.Config{Slots: 16, SlotSize: 64, SingleProducer: true, SingleConsumer: true, Resizable: true, Generation: 2}
	meta := make([]byte, good.MetaSize())
	_, err := ring.Format(ring.AlignedBytes(good.MetaSize()), make([]byte, good.DataSize()), good)
	require.NoError(f, err)
	f.Add(uint32(2), 16, uint16(good.MetaSize()), uint16(good.DataSize()), meta[:0], true)
	f.Add(uint32(2), 16, uint16(good.MetaSize()), uint16(good.DataSize()), meta[:0], false)
	f.Add(uint32(9), 7, uint16(100), uint16(3), []byte{0x59, 0x43, 0x51, 0x31, 1, 0, 0, 0, 7}, false)
	f.Fuzz(func(t *testing.T, number uint32, slots int, metaSize, dataSize uint16, poke []byte, format bool) {
		p, err := CreatePair(Geometry{Slots: 16, SlotSize: 64, Resizable: true}, "", dma.Options{})
		require.NoError(t, err)
		defer p.Close()
		st, err := newResizeState(p, Mode{})
		require.NoError(t, err)
		defer st.close()
		mk := func(size int) *dma.Region {
			r, err := dma.Memfd("fuzz", max(size, 1), dma.Options{})
			require.NoError(t, err)
			return r
		}
		m, d := mk(int(metaSize)), mk(int(dataSize))
		defer m.Close()
		defer d.Close()
		if format && int(metaSize) >= good.MetaSize() && int(dataSize) >= good.DataSize() {
			_, err := ring.Format(m.Bytes(), d.Bytes(), good)
			require.NoError(t, err)
		}
		copy(m.Bytes(), poke)
		dup := func(fd int) int {
			nfd, err := unix.Dup(fd)
			require.NoError(t, err)
			return nfd
		}
		err = st.take(&Generation{Queue: QueueUp, Number: number, Slots: slots}, []int{dup(m.FD()), dup(d.FD())}, 64)
		if err != nil {
			for _, e := range []error{ErrProtocol, ring.ErrInvalid, ring.ErrCorrupt, ring.ErrIncompatible, ErrResizeRefused, dma.ErrInvalid} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("untyped error %T: %v", err, err)
		}
	})
}

// TestResizeRacesClose: resizes keep coming, from the server's own ticker
// and from a third party, while clients come and go mid-run; nothing
// crashes, every session ends, and no descriptor is left open.
func TestResizeRacesClose(t *testing.T) {
	path := startServer(t, ServerOptions{ResizeEvery: 100 * time.Microsecond, ResizeDeadline: 50 * time.Millisecond})
	before := testenv.OpenFDs(t)
	stop := make(chan struct{})
	asked := make(chan int, 1)
	var stopOnce sync.Once
	t.Cleanup(func() { stopOnce.Do(func() { close(stop) }) })
	go func() {
		n := 0
		defer func() { asked <- n }()
		for session := 1; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := Resize(ctx, path, session, []string{QueueUp, QueueDown}[n%2], 16<<(n%3))
			late := ctx.Err() != nil
			cancel()
			if late {
				t.Errorf("resize request %d: no answer within 30 s: %v", n, err)
				return
			}
			if err != nil && strings.Contains(err.Error(), "no running session") {
				session++ // that one is over; the next may be starting
				if session > 8 {
					session = 1
				}
			}
		}
	}()
	for i := range 8 {
		c, err := Dial(context.Background(), path, resizableHello(RoleBoth, 1<<40), Mode{}, dma.Options{})
		require.NoError(t, err)
		go c.Run()
		testenv.WaitFor(t, "records to flow", func() bool { return c.Progress() > uint64(1000*(i+1)) })
		require.NoError(t, c.Close(), "close %d", i)
	}
	stopOnce.Do(func() { close(stop) })
	t.Logf("%d resize requests asked while clients came and went", <-asked)
	testenv.WaitFor(t, "the server to let go", func() bool { return testenv.OpenFDs(t) <= before })
}

// TestTakeReoffer: a generation offered again under the same number (the
// server rolled the first offer back, our answer having come too late)
// replaces the first: the client takes it, and gives the first one's
// regions back.
func TestTakeReoffer(t *testing.T) {
	p, err := CreatePair(Geometry{Slots: 16, SlotSize: 64, Resizable: true}, "", dma.Options{})
	require.NoError(t, err)
	defer p.Close()
	st, err := newResizeState(p, Mode{})
	require.NoError(t, err)
	before := testenv.OpenFDs(t)
	offer := func() {
		g := Geometry{Slots: 32, SlotSize: 64, Resizable: true}
		_, regs, err := generationRegions(QueueUp, g, 2)
		require.NoError(t, err)
		fds := make([]int, 2)
		for i, r := range regs {
			fds[i], err = unix.Dup(r.FD())
			require.NoError(t, err)
			require.NoError(t, r.Close())
		}
		require.NoError(t, st.take(&Generation{Queue: QueueUp, Number: 2, Slots: 32}, fds, 64))
	}
	offer()
	offer()
	require.Len(t, st.regions[0], 1, "the second offer replaced the first")
	require.Equal(t, before+2, testenv.OpenFDs(t), "only the second offer's two regions are held")
	require.NoError(t, st.close())
	require.Equal(t, before, testenv.OpenFDs(t))
}

// TestResizeRolledBack: a client that cannot answer an offer (its process
// is stopped) has the resize rolled back at the server's deadline: the
// request is refused, the counts say so, and nothing changed: once the
// client runs again (and answers late), the next resize completes and
// every record arrives, checked.
func TestResizeRolledBack(t *testing.T) {
	path := startServer(t, ServerOptions{ResizeDeadline: 50 * time.Millisecond})
	const count = 1_000_000
	client := helpers.Start(t, "client", []string{"SOCKET=" + path, "ROLE=" + RoleBoth, fmt.Sprintf("COUNT=%d", count), "RESIZABLE=1"})
	client.WaitOutput(t, "joined")
	pid := client.Cmd.Process.Pid
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	stopped := func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		require.NoError(t, err)
		// pid (comm) state ...: the state follows the last ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		return len(f) > 0 && f[0] == "T"
	}
	testenv.WaitFor(t, "the client to stop", stopped)
	ctx := context.Background()
	_, err := Resize(ctx, path, 1, QueueUp, 256)
	require.ErrorIs(t, err, ErrResizeRefused)
	require.Contains(t, err.Error(), "did not take generation 2")
	qs, err := Stat(ctx, path)
	require.NoError(t, err)
	for _, q := range qs {
		require.Equal(t, uint32(1), q.Generation, "%s: nothing was named", q.Queue)
		require.NotNil(t, q.Resizes)
		if q.Queue == QueueUp {
			require.Equal(t, uint64(1), q.Resizes.Started)
			require.Equal(t, uint64(1), q.Resizes.RolledBack)
			require.Zero(t, q.Resizes.Completed)
		}
	}
	require.NoError(t, CloseStat(qs))
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	var gen uint32
	for {
		gen, err = Resize(ctx, path, 1, QueueUp, 256)
		if !errors.Is(err, ErrResizeRefused) || !strings.Contains(err.Error(), ring.ErrResizing.Error()) {
			break
		}
		time.Sleep(time.Millisecond) // the client has not followed yet
	}
	require.NoError(t, err, "a resize after the rolled-back one")
	require.Equal(t, uint32(2), gen, "the rolled-back generation's number is used again")
	require.NoError(t, client.Wait(), "%s", client.Out.String())
	require.Contains(t, client.Out.String(), fmt.Sprintf("records %d err <nil>", count))
}
