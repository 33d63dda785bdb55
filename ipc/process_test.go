package ipc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ring/wait"
)

// The tests in this file run parts of themselves as separate processes:
// the test binary re-executes itself with YCQ_IPC_HELPER naming the part,
// and inherited descriptors from 3 on.
var helpers = testenv.Helpers{Env: "YCQ_IPC_HELPER"}

func TestMain(m *testing.M) { helpers.Main(m, runHelper) }

func envInt(name string) int {
	v, err := strconv.Atoi(os.Getenv(name))
	if err != nil {
		panic(fmt.Sprintf("%s: %v", name, err))
	}
	return v
}

// helperQueue attaches to the queue whose metadata and data descriptors
// are 3 and 4.
func helperQueue() (*ring.Queue, error) {
	cfg := ring.Config{Slots: envInt("SLOTS"), SlotSize: envInt("SLOT_SIZE")}
	meta, err := dma.Map(3, cfg.MetaSize())
	if err != nil {
		return nil, err
	}
	data, err := dma.Map(4, cfg.DataSize())
	if err != nil {
		return nil, err
	}
	return ring.Attach(meta.Bytes(), data.Bytes())
}

func runHelper(mode string) error {
	switch mode {
	case "produce": // ID records 0..N-1 into the shared queue
		q, err := helperQueue()
		if err != nil {
			return err
		}
		j := &job{count: uint64(envInt("N")), payload: envInt("PAYLOAD"), batch: envInt("BATCH"),
			source: uint32(envInt("ID")), checksum: true, done: new(atomic.Uint64)}
		return j.produce(context.Background(), wait.New(q, &wait.Options{Spin: 16}).Producer())
	case "consume": // until stdin closes, then drain; log (position, source, seq)
		q, err := helperQueue()
		if err != nil {
			return err
		}
		return consumeLog(testenv.StdinClosed(), wait.New(q, &wait.Options{Spin: 16}), envInt("PAYLOAD"), os.Stdout)
	case "block-consume": // sleep on an empty queue; print the record that wakes it
		q, err := helperQueue()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(envInt("DEADLINE_MS"))*time.Millisecond)
		defer cancel()
		r, err := wait.New(q, &wait.Options{}).Consumer().Reserve(ctx, 1)
		if err != nil {
			fmt.Println("err", err)
			return nil
		}
		b, err := r.Slot(0)
		if err != nil {
			return err
		}
		fmt.Println("got", binary.LittleEndian.Uint64(b))
		return r.ReleaseAll()
	case "scribble": // write random words over the metadata until killed
		meta, err := dma.Map(3, envInt("META_SIZE"))
		if err != nil {
			return err
		}
		rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 0))
		b := meta.Bytes()
		fmt.Println("scribbling")
		for {
			i := rng.IntN(len(b) / 8)
			v := rng.Uint64()
			if rng.IntN(2) == 0 {
				v &= 0xff
			}
			binary.LittleEndian.PutUint64(b[8*i:], v)
		}
	case "client": // an ipc client with ROLE and COUNT (RESIZABLE=1: resizable queues); prints its result
		h := hello(os.Getenv("ROLE"), uint64(envInt("COUNT")), 64)
		h.Geometry.Resizable = os.Getenv("RESIZABLE") == "1"
		c, err := Dial(context.Background(), os.Getenv("SOCKET"), h, Mode{Block: true}, dma.Options{})
		if err != nil {
			return err
		}
		fmt.Println("joined")
		res, err := c.Run()
		fmt.Println("records", res.Records, "err", err, "added", res.Resizes.Added, "retired", res.Resizes.Retired)
		return err
	case "resize": // N resizes of session 1's queues on SOCKET, in turn, retrying while one is pending
		done := 0
		for k := 0; done < envInt("N"); k++ {
			queue, slots := []string{QueueUp, QueueDown}[k%2], []int{16, 256, 64}[(k/2)%3]
			_, err := Resize(context.Background(), os.Getenv("SOCKET"), 1, queue, slots)
			if errors.Is(err, ErrResizeRefused) && strings.Contains(err.Error(), ring.ErrResizing.Error()) {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				return err
			}
			done++
		}
		fmt.Println("resized", done)
		return nil
	case "resize-then-hang": // ask for a resize, say so, and wait to be killed
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: os.Getenv("SOCKET"), Net: "unix"})
		if err != nil {
			return err
		}
		if err := writeMsg(c, ResizeRequest{Version: ProtocolVersion, Resize: true, Session: 1, Queue: QueueUp, Slots: 128}); err != nil {
			return err
		}
		fmt.Println("asked")
		select {}
	case "rz-produce", "rz-hold", "rz-consume", "rz-resize": // parts of a resizable queue's tests (process_resize_test.go)
		return runResizeHelper(mode)
	case "server": // an ipc server on SOCKET
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: os.Getenv("SOCKET"), Net: "unix"})
		if err != nil {
			return err
		}
		fmt.Println("listening")
		return Serve(context.Background(), l, ServerOptions{Mode: Mode{Block: true}})
	}
	return fmt.Errorf("unknown helper %q", mode)
}

// consumeLog consumes records and writes a log entry (parseLog) for each
// to w, until ctx ends and nothing is left.
func consumeLog(ctx context.Context, q *wait.Queue, payload int, w io.Writer) error {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	c := q.Consumer()
	for {
		r, err := c.ReserveUpTo(ctx, 16)
		if err != nil && ctx.Err() != nil {
			if r, err = c.ReserveUpTo(stopped, 16); errors.Is(err, context.Canceled) {
				return nil
			}
		}
		if err != nil {
			return err
		}
		for i := range r.Len() {
			b, err := r.Slot(i)
			if err != nil {
				return err
			}
			rec, err := readRecord(b, payload, true)
			if err != nil {
				return err
			}
			var e [logEntry]byte
			binary.LittleEndian.PutUint64(e[0:], r.Position(i))
			binary.LittleEndian.PutUint32(e[8:], rec.Producer)
			binary.LittleEndian.PutUint64(e[12:], rec.Seq)
			bw.Write(e[:])
		}
		if err := r.ReleaseAll(); err != nil {
			return err
		}
	}
}

// logEntry is the size of an entry of a consumer's log: u64 queue
// position, u32 producer, u64 sequence number.
const logEntry = 20

// parseLog appends the whole entries of a consumer's log to l.
func parseLog(l []record.Seen, b []byte) []record.Seen {
	for ; len(b) >= logEntry; b = b[logEntry:] {
		l = append(l, record.Seen{Pos: binary.LittleEndian.Uint64(b), Producer: binary.LittleEndian.Uint32(b[8:]),
			Seq: binary.LittleEndian.Uint64(b[12:])})
	}
	return l
}

// sharedQueue formats a queue in two memfds and returns it with files for
// children.
func sharedQueue(t *testing.T, cfg ring.Config) (*ring.Queue, []*os.File, []string) {
	t.Helper()
	meta, err := dma.Memfd("meta", cfg.MetaSize(), dma.Options{})
	require.NoError(t, err)
	data, err := dma.Memfd("data", cfg.DataSize(), dma.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { meta.Close(); data.Close() })
	q, err := ring.Format(meta.Bytes(), data.Bytes(), cfg)
	require.NoError(t, err)
	files, err := dma.Files(meta, data)
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
	env := []string{fmt.Sprintf("SLOTS=%d", cfg.Slots), fmt.Sprintf("SLOT_SIZE=%d", cfg.SlotSize)}
	return q, files, env
}

// TestCrossProcessStress: two producer processes and two consumer processes
// share one queue in memfds. Every record is accounted for: no loss, no
// duplicate, each producer's records in order of queue position.
func TestCrossProcessStress(t *testing.T) {
	per := 200_000
	if testing.Short() {
		per = 20_000
	}
	const payload = 48
	q, files, env := sharedQueue(t, ring.Config{Slots: 64, SlotSize: payload})
	env = append(env, fmt.Sprintf("PAYLOAD=%d", payload), fmt.Sprintf("N=%d", per))
	var producers []*testenv.Child
	for id := range 2 {
		batch := []string{"BATCH=1", "BATCH=7"}[id]
		producers = append(producers, helpers.Start(t, "produce", append(env, fmt.Sprintf("ID=%d", id), batch), files...))
	}
	var consumers []*testenv.Child
	for range 2 {
		consumers = append(consumers, helpers.Start(t, "consume", env, files...))
	}
	for _, p := range producers {
		require.NoError(t, p.Wait())
	}
	testenv.WaitFor(t, "every record released", func() bool { return q.Stats().Released == uint64(2*per) })
	var all []record.Seen
	for _, c := range consumers {
		c.Stdin.Close()
		require.NoError(t, c.Wait())
		b := []byte(c.Out.String())
		require.Zero(t, len(b)%logEntry)
		all = parseLog(all, b)
		require.NotEmpty(t, b, "each consumer took some records")
	}
	require.NoError(t, record.VerifyLog(all, 2, uint64(per)))
	require.NoError(t, q.Check())
}

// TestBlockingAcrossProcesses: a consumer asleep on a futex in another
// process is woken by a publish in this one; and its deadline ends a sleep
// that nothing wakes.
func TestBlockingAcrossProcesses(t *testing.T) {
	q, files, env := sharedQueue(t, ring.Config{Slots: 4, SlotSize: 8})
	c := helpers.Start(t, "block-consume", append(env, "DEADLINE_MS=60000"), files...)
	testenv.WaitFor(t, "the child to sleep", func() bool { return q.ItemsWake().Waiters().Load() == 1 })
	wq := wait.New(q, nil)
	w, err := wq.Producer().Reserve(context.Background(), 1)
	require.NoError(t, err)
	binary.LittleEndian.PutUint64(w.Slot(0), 4242)
	require.NoError(t, w.PublishAll(8))
	require.NoError(t, c.Wait())
	require.Equal(t, "got 4242\n", c.Out.String())
	require.Equal(t, uint64(1), q.Stats().ProducerWakeSent)

	c = helpers.Start(t, "block-consume", append(env, "DEADLINE_MS=100"), files...)
	require.NoError(t, c.Wait())
	require.Equal(t, "err context deadline exceeded\n", c.Out.String())
	require.Zero(t, q.ItemsWake().Waiters().Load(), "the child unregistered before it left")
}

// TestKilledClient: a client killed with SIGKILL in the middle of a run, as
// it holds reserved slots, ends only its own session; the server says what
// happened and serves the next client.
func TestKilledClient(t *testing.T) {
	var logs testenv.Buffer
	path := startServer(t, ServerOptions{Mode: Mode{Block: true}, Log: slogTo(&logs)})
	for _, role := range []string{RoleProducer, RoleConsumer, RoleBoth} {
		child := helpers.Start(t, "client", []string{"SOCKET=" + path, "ROLE=" + role, "COUNT=100000000"})
		child.WaitOutput(t, "joined")
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, child.Cmd.Process.Signal(syscall.SIGKILL))
		child.Wait()
		testenv.WaitFor(t, "the server to notice", func() bool { return strings.Count(logs.String(), "session ended") > 0 })
		require.Contains(t, logs.String(), "peer gone")
		logs.Reset()
		// The next client is served.
		c, err := Dial(context.Background(), path, hello(role, 1000, 64), Mode{Block: true}, dma.Options{})
		require.NoError(t, err)
		res, err := c.Run()
		require.NoError(t, err)
		require.Equal(t, uint64(1000), res.Records)
		require.NoError(t, c.Close())
		testenv.WaitFor(t, "the session to end", func() bool { return strings.Contains(logs.String(), "session done") })
		logs.Reset()
	}
}

// TestKilledServer: the server is killed while this client consumes; the
// client does not hang, keeps every record it accepted (each was checked),
// and says the peer is gone.
func TestKilledServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	for _, role := range []string{RoleConsumer, RoleProducer, RoleBoth} {
		child := helpers.Start(t, "server", []string{"SOCKET=" + path})
		child.WaitOutput(t, "listening")
		c, err := Dial(context.Background(), path, hello(role, 100_000_000, 64), Mode{Block: true}, dma.Options{})
		require.NoError(t, err)
		go func() {
			testenv.WaitFor(t, "records to flow", func() bool { return c.Progress() > 1000 })
			child.Cmd.Process.Signal(syscall.SIGKILL)
		}()
		res, err := c.Run()
		require.ErrorIs(t, err, ErrPeerGone, role)
		require.Greater(t, res.Records, uint64(1000), role)
		require.NotErrorIs(t, err, ErrRecord, "every record accepted was intact")
		require.NoError(t, c.Close())
		child.Wait()
		os.Remove(path)
	}
}

// TestKilledWhileHolding: a producer process killed while it holds reserved
// slots. The consumer gets every record published before the kill, intact
// and in order, and the slots held by the dead process are left exactly as
// reserved, never shown as records.
func TestKilledWhileHolding(t *testing.T) {
	const payload = 48
	for attempt := 0; ; attempt++ {
		require.Less(t, attempt, 20, "never caught the producer holding slots")
		q, files, env := sharedQueue(t, ring.Config{Slots: 256, SlotSize: payload})
		env = append(env, fmt.Sprintf("PAYLOAD=%d", payload), "N=100000000", "ID=0", "BATCH=32")
		child := helpers.Start(t, "produce", env, files...)
		var got []record.Seen
		var consumed sync.WaitGroup
		ctx, cancel := context.WithCancel(context.Background())
		consumed.Go(func() {
			var buf bytes.Buffer
			if err := consumeLog(ctx, wait.New(q, nil), payload, &buf); err != nil {
				t.Error(err)
			}
			got = parseLog(got, buf.Bytes())
		})
		// Kill the moment the producer is seen holding slots.
		testenv.WaitFor(t, "records to flow", func() bool {
			st := q.Stats()
			return st.Released > 5000 && st.Reserved > st.Published+st.Aborted
		})
		require.NoError(t, child.Cmd.Process.Signal(syscall.SIGKILL))
		child.Wait()
		cancel() // the parent knows its child died; a session would learn it from the socket
		consumed.Wait()
		st := q.Stats()
		held := st.Reserved - st.Published - st.Aborted
		require.NoError(t, record.VerifyLog(got, 1, st.Released))
		// A run is published last slot first, so a producer killed in
		// the middle of one leaves records published behind a slot it
		// still holds, which no consumer can pass: at most a batch less
		// one. Every other published record was taken.
		require.LessOrEqual(t, st.Published-st.Released, uint64(31), "published records not taken")
		if held == 0 {
			continue // killed between runs; try again
		}
		t.Logf("attempt %d: killed holding %d slots after %d records", attempt, held, st.Published)
		// The held slots still read as reserved, and nothing else is wrong.
		_, err := q.Consumer().ReserveUpTo(1)
		require.ErrorIs(t, err, ring.ErrEmpty)
		require.NoError(t, q.Check())
		return
	}
}

// TestScribbler: another process writes random bytes over the metadata
// while this one produces and consumes. This side reports ErrCorrupt; it
// does not crash or hang.
func TestScribbler(t *testing.T) {
	cfg := ring.Config{Slots: 64, SlotSize: 64}
	q, files, env := sharedQueue(t, cfg)
	scribbler := helpers.Start(t, "scribble", append(env, fmt.Sprintf("META_SIZE=%d", cfg.MetaSize())), files[0])
	scribbler.WaitOutput(t, "scribbling")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wq := wait.New(q, &wait.Options{Spin: 8, MaxSleep: time.Millisecond})
	var corrupt, other int
	for ctx.Err() == nil && corrupt < 20 {
		var err error
		if rand.IntN(2) == 0 {
			var w wait.WriteRun
			if w, err = wq.Producer().ReserveUpTo(ctx, 8); err == nil {
				err = w.PublishAll(16)
			}
		} else {
			var r wait.ReadRun
			if r, err = wq.Consumer().ReserveUpTo(ctx, 8); err == nil {
				for i := range r.Len() {
					if _, e := r.Slot(i); e != nil {
						err = e
					}
				}
				err = errors.Join(err, r.ReleaseAll())
			}
		}
		switch {
		case errors.Is(err, ring.ErrCorrupt):
			corrupt++
		case err == nil, errors.Is(err, ring.ErrNotHeld), errors.Is(err, context.DeadlineExceeded):
		default:
			other++
			t.Logf("other error: %v", err)
		}
	}
	require.GreaterOrEqual(t, corrupt, 20, "the scribbles were reported as corruption")
	st := q.Stats()
	t.Logf("corruption reports: %d here; counters (scribbled too): producer %d, consumer %d", corrupt, st.ProducerCorrupt, st.ConsumerCorrupt)
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
