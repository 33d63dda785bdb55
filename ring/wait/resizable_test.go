package wait_test

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ring/wait"
)

func newResizable(t *testing.T, slots int) *wait.Resizable {
	t.Helper()
	return newResizableOf(t, ring.Config{Slots: slots, SlotSize: 16})
}

func newResizableOf(t *testing.T, cfg ring.Config) *wait.Resizable {
	t.Helper()
	r, err := ring.NewResizable(cfg)
	require.NoError(t, err)
	return wait.NewResizable(r, &wait.Options{Spin: 2})
}

// sleepForRoomThenResize has a producer reserve n slots of the full queue w,
// waits until it sleeps for room, resizes w to slots, and requires the
// producer to get its slots and publish them.
func sleepForRoomThenResize(ctx context.Context, t *testing.T, w *wait.Resizable, n, slots int) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		run, err := w.Producer().Reserve(ctx, n)
		if err == nil {
			err = run.PublishAll(0)
		}
		done <- err
	}()
	asleep(t, w.Resizable().ProducerQueue().SpaceWake(), 1)
	require.NoError(t, w.Resize(slots))
	require.NoError(t, <-done)
}

// asleep waits until n sides sleep on line.
func asleep(t *testing.T, line ring.WakeLine, n uint32) {
	t.Helper()
	for line.Waiters().Load() != n {
		runtime.Gosched()
	}
}

// TestResizableWakesConsumerAcrossResize: a consumer asleep on an empty
// generation is woken by the resize that seals it, moves to the next one,
// sleeps there, and gets the record published into it.
func TestResizableWakesConsumerAcrossResize(t *testing.T) {
	w := newResizable(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	got := make(chan uint64, 1)
	errs := make(chan error, 1)
	go func() {
		run, err := w.Consumer().ReserveUpTo(ctx, 4)
		if err != nil {
			errs <- err
			return
		}
		b, err := run.Slot(0)
		if err == nil {
			got <- binary.LittleEndian.Uint64(b)
			err = run.ReleaseAll()
		}
		if err != nil {
			errs <- err
		}
	}()
	first := w.Resizable().ConsumerQueue()
	asleep(t, first.ItemsWake(), 1)
	require.NoError(t, w.Resize(32))
	// It leaves the sealed generation's line and sleeps on the new one's.
	asleep(t, w.Resizable().ProducerQueue().ItemsWake(), 1)
	require.Zero(t, first.ItemsWake().Waiters().Load())
	run, err := w.Producer().Reserve(ctx, 1)
	require.NoError(t, err)
	binary.LittleEndian.PutUint64(run.Slot(0), 42)
	require.NoError(t, run.PublishAll(8))
	select {
	case v := <-got:
		require.Equal(t, uint64(42), v)
	case err := <-errs:
		t.Fatal(err)
	}
}

// TestResizableWakesProducerAcrossResize: a producer asleep on a full
// generation is woken by the resize and reserves in the new one, with no
// consumer doing anything.
func TestResizableWakesProducerAcrossResize(t *testing.T) {
	w := newResizable(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run, err := w.Producer().Reserve(ctx, 4)
	require.NoError(t, err)
	require.NoError(t, run.PublishAll(0))
	sleepForRoomThenResize(ctx, t, w, 2, 8)
	n := 0
	for {
		r, err := w.Consumer().ReserveUpTo(ctx, 8)
		require.NoError(t, err)
		n += r.Len()
		require.NoError(t, r.ReleaseAll())
		if n == 6 {
			break
		}
	}
}

// TestResizableBlockingUnderLoad: two producers and two consumers that
// wait (spin briefly, then sleep) on a small queue, while it is resized 100
// times between 2 and 64 slots: every record arrives once, each producer's
// in order.
func TestResizableBlockingUnderLoad(t *testing.T) {
	const producers, perProducer, resizes = 2, 20000, 100
	w := newResizable(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var taken atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for id := range producers {
		wg.Go(func() {
			p := w.Producer()
			for seq := uint64(0); seq < perProducer; {
				run, err := p.ReserveUpTo(ctx, int(min(3, perProducer-seq)))
				if err != nil {
					errs <- err
					return
				}
				for i := range run.Len() {
					binary.LittleEndian.PutUint64(run.Slot(i), uint64(id)<<32|(seq+uint64(i)))
				}
				if err := run.PublishAll(8); err != nil {
					errs <- err
					return
				}
				seq += uint64(run.Len())
			}
		})
	}
	logs := make([][]record.Seen, 2)
	var consumers sync.WaitGroup
	for k := range 2 {
		consumers.Go(func() {
			c := w.Consumer()
			for taken.Load() < producers*perProducer {
				run, err := c.ReserveUpTo(ctx, 3)
				if errors.Is(err, context.Canceled) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				for i := range run.Len() {
					b, err := run.Slot(i)
					if err != nil {
						errs <- err
						return
					}
					v := binary.LittleEndian.Uint64(b)
					logs[k] = append(logs[k], record.Seen{Pos: run.Generation()<<40 | run.Position(i), Producer: uint32(v >> 32), Seq: v & (1<<32 - 1)})
				}
				taken.Add(int64(run.Len()))
				if err := run.ReleaseAll(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range resizes {
		for taken.Load() < int64(i*producers*perProducer/(resizes+1)) {
			runtime.Gosched()
		}
		require.NoError(t, w.Resize(2<<(i%6)))
	}
	wg.Wait()
	for taken.Load() < producers*perProducer {
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
			runtime.Gosched()
		}
	}
	cancel() // a consumer still waiting for a record that will not come
	consumers.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, record.VerifyLog(append(logs[0], logs[1]...), producers, perProducer))
}

// TestResizableSingleProducer: with a single producer, which seals the
// generation it leaves on its next reserve, a consumer asleep on the old
// generation across the resize still gets the record published into the
// new one, and a producer asleep for room is woken by the resize.
func TestResizableSingleProducer(t *testing.T) {
	w := newResizableOf(t, ring.Config{Slots: 4, SlotSize: 16, SingleProducer: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	got := make(chan error, 1)
	go func() {
		run, err := w.Consumer().ReserveUpTo(ctx, 4)
		if err == nil {
			var b []byte
			if b, err = run.Slot(0); err == nil && binary.LittleEndian.Uint64(b) != 7 {
				err = errors.New("wrong record")
			}
			err = errors.Join(err, run.ReleaseAll())
		}
		got <- err
	}()
	asleep(t, w.Resizable().ConsumerQueue().ItemsWake(), 1)
	require.NoError(t, w.Resize(16))
	run, err := w.Producer().Reserve(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, 16, run.Queue().Cap(), "the producer moved to the new generation")
	binary.LittleEndian.PutUint64(run.Slot(0), 7)
	require.NoError(t, run.PublishAll(8))
	require.NoError(t, <-got)

	// Fill the new generation, sleep for room, and be woken by a resize.
	full, err := w.Producer().Reserve(ctx, 16)
	require.NoError(t, err)
	require.NoError(t, full.PublishAll(0))
	sleepForRoomThenResize(ctx, t, w, 1, 8)
}
