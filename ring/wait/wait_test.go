package wait_test

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ring/wait"
)

func newWaitQueue(t *testing.T, cfg ring.Config, opt *wait.Options) *wait.Queue {
	t.Helper()
	q, err := ring.New(cfg)
	require.NoError(t, err)
	return wait.New(q, opt)
}

// untilSleeping waits until n agents are registered on line.
func untilSleeping(t *testing.T, line ring.WakeLine, n uint32) {
	t.Helper()
	for line.Waiters().Load() != n {
		time.Sleep(time.Millisecond)
	}
}

func TestConsumerWokenByPublish(t *testing.T) {
	w := newWaitQueue(t, ring.Config{Slots: 4, SlotSize: 8}, &wait.Options{})
	got := make(chan uint64, 1)
	go func() {
		r, err := w.Consumer().ReserveUpTo(context.Background(), 4)
		if err != nil {
			got <- 0
			return
		}
		b, _ := r.Slot(0)
		got <- binary.LittleEndian.Uint64(b)
		r.ReleaseAll()
	}()
	untilSleeping(t, w.Queue().ItemsWake(), 1)
	wr, err := w.Producer().Reserve(context.Background(), 1)
	require.NoError(t, err)
	binary.LittleEndian.PutUint64(wr.Slot(0), 77)
	require.NoError(t, wr.Publish(0, 8))
	require.Equal(t, uint64(77), <-got)
	st := w.Queue().Stats()
	require.Equal(t, uint64(1), st.ProducerWakeSent)
	require.Zero(t, st.ProducerWakeSuppressed)
}

func TestProducerWokenByRelease(t *testing.T) {
	w := newWaitQueue(t, ring.Config{Slots: 2, SlotSize: 8}, &wait.Options{})
	ctx := context.Background()
	wr, err := w.Producer().Reserve(ctx, 2)
	require.NoError(t, err)
	require.NoError(t, wr.PublishAll(8))
	done := make(chan error, 1)
	go func() {
		wr, err := w.Producer().Reserve(ctx, 1)
		if err == nil {
			err = wr.PublishAll(8)
		}
		done <- err
	}()
	untilSleeping(t, w.Queue().SpaceWake(), 1)
	r, err := w.Consumer().Reserve(ctx, 1)
	require.NoError(t, err)
	require.NoError(t, r.ReleaseAll())
	require.NoError(t, <-done)
	require.Equal(t, uint64(1), w.Queue().Stats().ConsumerWakeSent)
}

func TestNoSleeperNoWakeup(t *testing.T) {
	w := newWaitQueue(t, ring.Config{Slots: 8, SlotSize: 8}, nil)
	ctx := context.Background()
	for range 20 {
		wr, err := w.Producer().ReserveUpTo(ctx, 4)
		require.NoError(t, err)
		require.NoError(t, wr.PublishAll(8))
		r, err := w.Consumer().ReserveUpTo(ctx, 4)
		require.NoError(t, err)
		require.NoError(t, r.ReleaseAll())
	}
	st := w.Queue().Stats()
	require.Zero(t, st.ProducerWakeSent+st.ConsumerWakeSent, "nobody slept, so no wakeup was sent")
	require.Equal(t, uint64(20), st.ProducerWakeSuppressed)
	require.Equal(t, uint64(20), st.ConsumerWakeSuppressed)
}

func TestCancelAndDeadline(t *testing.T) {
	w := newWaitQueue(t, ring.Config{Slots: 2, SlotSize: 8}, &wait.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := w.Consumer().Reserve(ctx, 1)
		done <- err
	}()
	untilSleeping(t, w.Queue().ItemsWake(), 1)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Zero(t, w.Queue().ItemsWake().Waiters().Load(), "the waiter unregistered")

	dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer dcancel()
	_, err := w.Consumer().ReserveUpTo(dctx, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// An already cancelled context returns at once, but a ready record is
	// still taken first.
	wr, err := w.Producer().Reserve(context.Background(), 1)
	require.NoError(t, err)
	require.NoError(t, wr.PublishAll(8))
	r, err := w.Consumer().Reserve(ctx, 1)
	require.NoError(t, err)
	require.NoError(t, r.ReleaseAll())
	_, err = w.Consumer().Reserve(ctx, 1)
	require.ErrorIs(t, err, context.Canceled)

	// Errors other than empty or full come straight back.
	_, err = w.Consumer().Reserve(context.Background(), 3)
	require.ErrorIs(t, err, ring.ErrInvalid)
}

// TestAbortWakes: holes alone must wake consumers, or a queue full of holes
// would leave producers waiting for space and consumers waiting for records.
func TestAbortWakes(t *testing.T) {
	w := newWaitQueue(t, ring.Config{Slots: 2, SlotSize: 8}, &wait.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 1000 {
			wr, err := w.Producer().Reserve(ctx, 2)
			if err != nil {
				t.Error(err)
				return
			}
			binary.LittleEndian.PutUint64(wr.Slot(1), uint64(i))
			if err := wr.Abort(0); err != nil {
				t.Error(err)
				return
			}
			if err := wr.Publish(1, 8); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for want := range uint64(1000) {
		r, err := w.Consumer().Reserve(ctx, 1)
		require.NoError(t, err)
		b, _ := r.Slot(0)
		require.Equal(t, want, binary.LittleEndian.Uint64(b))
		require.NoError(t, r.ReleaseAll())
	}
	wg.Wait()
}

// TestLostWakeupStress hammers the window between "nothing to do" and
// "asleep": a two-slot queue, no spinning, no sleep cap, every operation
// waits. A lost wakeup leaves both sides asleep; the minute-long context
// turns that into a failure instead of a hang.
func TestLostWakeupStress(t *testing.T) {
	records := 100_000
	if testing.Short() {
		records = 10_000
	}
	for _, shape := range []struct{ producers, consumers int }{{1, 1}, {2, 2}} {
		cfg := ring.Config{Slots: 2, SlotSize: 8, SingleProducer: shape.producers == 1, SingleConsumer: shape.consumers == 1}
		w := newWaitQueue(t, cfg, &wait.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var wg sync.WaitGroup
		per := records / shape.producers
		var mu sync.Mutex
		seen := 0
		var failed error
		fail := func(err error) {
			mu.Lock()
			if failed == nil {
				failed = err
			}
			mu.Unlock()
			cancel()
		}
		for range shape.producers {
			wg.Go(func() {
				for range per {
					wr, err := w.Producer().ReserveUpTo(ctx, 1)
					if err == nil {
						err = wr.PublishAll(8)
					}
					if err != nil {
						fail(err)
						return
					}
				}
			})
		}
		for range shape.consumers {
			wg.Go(func() {
				for {
					mu.Lock()
					if seen >= per*shape.producers || failed != nil {
						mu.Unlock()
						cancel() // wakes the other consumers
						return
					}
					mu.Unlock()
					r, err := w.Consumer().ReserveUpTo(ctx, 1)
					if errors.Is(err, context.Canceled) {
						return
					}
					if err != nil {
						fail(err)
						return
					}
					if err := r.ReleaseAll(); err != nil {
						fail(err)
						return
					}
					mu.Lock()
					seen += r.Len()
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		cancel()
		if errors.Is(failed, context.DeadlineExceeded) {
			t.Fatalf("%dx%d: lost wakeup: both sides asleep after %d of %d records", shape.producers, shape.consumers, seen, records)
		}
		require.NoError(t, failed)
		require.Equal(t, per*shape.producers, seen)
		st := w.Queue().Stats()
		t.Logf("%dx%d: %d records, wakeups sent %d+%d, suppressed %d+%d", shape.producers, shape.consumers, seen,
			st.ProducerWakeSent, st.ConsumerWakeSent, st.ProducerWakeSuppressed, st.ConsumerWakeSuppressed)
		require.NotZero(t, st.ProducerWakeSent, "the stress never made a consumer sleep")
	}
}

// TestProducerWokenByPassedHoles: a consumer that only passes holes frees
// their slots, and wakes a producer asleep for space (issue 12, bug 2: the
// producer used to sleep on to its deadline).
func TestProducerWokenByPassedHoles(t *testing.T) {
	w := newWaitQueue(t, ring.Config{Slots: 2, SlotSize: 8, SingleProducer: true}, &wait.Options{})
	wr, err := w.Queue().Producer().Reserve(2)
	require.NoError(t, err)
	require.NoError(t, wr.Abort(0))
	require.NoError(t, wr.Abort(1)) // two holes: the queue is full of nothing
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		wr, err := w.Producer().Reserve(ctx, 2)
		if err == nil {
			err = wr.PublishAll(8)
		}
		done <- err
	}()
	untilSleeping(t, w.Queue().SpaceWake(), 1)
	// The consumer passes both holes, finds no record and sleeps itself.
	cctx, ccancel := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() {
		r, err := w.Consumer().ReserveUpTo(cctx, 2)
		if err == nil {
			err = r.ReleaseAll()
		}
		consumed <- err
	}()
	require.NoError(t, <-done, "the producer was woken for the room the holes left")
	require.NoError(t, <-consumed, "and the consumer for its records")
	ccancel()
	st := w.Queue().Stats()
	require.Equal(t, uint64(2), st.Skipped)
	require.NotZero(t, st.ConsumerWakeSent, "counted by the consumer, in its own line")
}

// TestWakeCountsOnTheWakersLine: every wakeup is counted in the line of the
// side that sent it, and a give-back that fails counts nothing (issue 12,
// bug 3: a consumer's AbortFrom counted in the producer line, racing a
// single producer's plain updates).
func TestWakeCountsOnTheWakersLine(t *testing.T) {
	w := newWaitQueue(t, ring.Config{Slots: 8, SlotSize: 8, SingleProducer: true}, &wait.Options{})
	ctx := context.Background()
	q := w.Queue()
	wr, err := w.Producer().Reserve(ctx, 4)
	require.NoError(t, err)
	require.NoError(t, wr.PublishAll(8))
	before := q.Stats()
	r1, err := w.Consumer().Reserve(ctx, 2)
	require.NoError(t, err)
	r2, err := w.Consumer().Reserve(ctx, 2)
	require.NoError(t, err)
	require.ErrorIs(t, r1.AbortAll(), ring.ErrNotLast)
	st := q.Stats()
	require.Equal(t, before.ConsumerWakeSent+before.ConsumerWakeSuppressed, st.ConsumerWakeSent+st.ConsumerWakeSuppressed,
		"a failed give-back wakes nobody and counts nothing")
	require.NoError(t, r2.AbortAll())
	st = q.Stats()
	require.Equal(t, before.ProducerWakeSent, st.ProducerWakeSent, "the consumer never writes the producer line")
	require.Equal(t, before.ProducerWakeSuppressed, st.ProducerWakeSuppressed)
	require.Equal(t, before.ConsumerWakeSuppressed+1, st.ConsumerWakeSuppressed, "the give-back, counted once, by the consumer")
	require.NoError(t, r1.ReleaseAll())
	wa, err := w.Producer().Reserve(ctx, 2)
	require.NoError(t, err)
	mid := q.Stats()
	require.NoError(t, wa.AbortAll()) // rolled back: wakes consumers and producers, counted by the producer
	st = q.Stats()
	require.Equal(t, mid.ConsumerWakeSent+mid.ConsumerWakeSuppressed, st.ConsumerWakeSent+st.ConsumerWakeSuppressed,
		"the producer never writes the consumer line")
	require.Equal(t, mid.ProducerWakeSuppressed+2, st.ProducerWakeSuppressed)
}

// TestWaitingHotPathDoesNotAllocate: reserving, publishing, reserving and
// releasing through the waiting wrapper, wakes included, allocate nothing.
func TestWaitingHotPathDoesNotAllocate(t *testing.T) {
	q, err := ring.New(ring.Config{Slots: 64, SlotSize: 64})
	require.NoError(t, err)
	w := wait.New(q, nil)
	p, c := w.Producer(), w.Consumer()
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		run, _ := p.ReserveUpTo(ctx, 8)
		_ = run.PublishAll(64)
		r, _ := c.ReserveUpTo(ctx, 8)
		_ = r.ReleaseAll()
	})
	require.Zero(t, allocs)
}

// TestCancelledSleepLeavesTheWordAlone: the wake a cancelled context sends
// (bumping the futex word) has finished when the reserve returns, so the
// caller may unmap the queue's memory at once, as a session does when its
// peer goes. The fault this guards against (the bump landing after the
// unmap, when another wake ended the sleep first) showed up once in the ipc
// process tests under -race; this runs the cancel-then-unmap sequence many
// times but cannot force that interleaving.
func TestCancelledSleepLeavesTheWordAlone(t *testing.T) {
	cfg := ring.Config{Slots: 8, SlotSize: 8}
	for range 300 {
		mem, err := unix.Mmap(-1, 0, cfg.MetaSize()+cfg.DataSize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		require.NoError(t, err)
		q, err := ring.Format(mem[:cfg.MetaSize()], mem[cfg.MetaSize():], cfg)
		require.NoError(t, err)
		w := wait.New(q, &wait.Options{Spin: 0})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := w.Consumer().ReserveUpTo(ctx, 1)
			done <- err
		}()
		for q.ItemsWake().Waiters().Load() == 0 {
			runtime.Gosched()
		}
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		require.NoError(t, unix.Munmap(mem)) // a late wake would fault here
	}
}
