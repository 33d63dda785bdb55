package ring_test

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ring"
)

// abandonConsumers runs n goroutines that consume through r until stop is
// set and nothing is left, each logging what it took by generation and
// position; wait returns the logs once they stop, with the first error.
func abandonConsumers(r *ring.Resizable, n int, stop *atomic.Bool, took *atomic.Int64) (wait func() ([]record.Seen, error)) {
	var wg sync.WaitGroup
	logs := make([][]record.Seen, n)
	errs := make([]error, n)
	for c := range n {
		wg.Go(func() {
			cons := r.Consumer()
			for {
				run, err := cons.ReserveUpTo(1 + c)
				if errors.Is(err, ring.ErrEmpty) {
					if stop.Load() {
						if run, err = cons.ReserveUpTo(8); errors.Is(err, ring.ErrEmpty) {
							return
						}
					} else {
						runtime.Gosched()
						continue
					}
				}
				if err != nil {
					errs[c] = err
					return
				}
				for i := range run.Len() {
					b, err := run.Slot(i)
					if err != nil {
						errs[c] = err
						return
					}
					id, seq, err := checkRecord(b)
					if err != nil {
						errs[c] = err
						return
					}
					logs[c] = append(logs[c], record.Seen{Pos: run.Generation()<<40 | run.Position(i), Producer: id, Seq: seq})
				}
				took.Add(int64(run.Len()))
				if err := run.ReleaseAll(); err != nil {
					errs[c] = err
					return
				}
			}
		})
	}
	return func() ([]record.Seen, error) {
		wg.Wait()
		var all []record.Seen
		for _, l := range logs {
			all = append(all, l...)
		}
		return all, errors.Join(errs...)
	}
}

// TestSealAbandoned: the single producer's view is abandoned after a
// resize named the next generation and before the producer sealed the one
// it was in, holding two slots of a run whose other two it published. The
// consumers drain what it published up to the first slot it holds and no
// further, until the owner seals for it (SealAbandoned): then they take
// the record behind the holes, pass them, and follow; a new producer on
// the owner's view reserves in the new generation. Every record the dead
// producer published and every one the new producer publishes is consumed
// once, in order.
func TestSealAbandoned(t *testing.T) {
	const slotSize = 32
	cfg := ring.Config{Slots: 16, SlotSize: slotSize, SingleProducer: true}
	dead, owner, resize := twoViews(t, cfg)
	first := owner.ProducerQueue()
	put := func(w ring.WriteRun, i int, seq uint64) {
		t.Helper()
		writeRecord(w.Slot(i), 0, seq, slotSize)
		require.NoError(t, w.Publish(i, slotSize))
	}
	p := dead.Producer()
	w, err := p.Reserve(10)
	require.NoError(t, err)
	for i := range 10 {
		put(w, i, uint64(i))
	}
	held, err := p.Reserve(4) // positions 10 to 13
	require.NoError(t, err)
	put(held, 0, 10)
	put(held, 2, 11) // behind the slot held at position 11
	require.NoError(t, resize(32))
	require.True(t, owner.ResizePending(), "named, and the producer has not sealed")
	// The producer is gone from here on: dead and held are never used again.

	var stop atomic.Bool
	var took atomic.Int64
	wait := abandonConsumers(owner, 3, &stop, &took)
	testenv.WaitFor(t, "the records before the held slot", func() bool { return took.Load() == 11 })
	require.Same(t, first, owner.ConsumerQueue(), "stuck at the held slot: the generation is not sealed")
	require.Empty(t, owner.Retire())

	holes, err := owner.SealAbandoned()
	require.NoError(t, err)
	require.Equal(t, 2, holes, "the two slots the producer held")
	require.True(t, first.Sealed())
	require.False(t, owner.ResizePending())
	testenv.WaitFor(t, "the record behind the holes", func() bool { return took.Load() == 12 })

	// A new producer, on the owner's view, in the new generation.
	np := owner.Producer()
	for seq := uint64(12); seq < 200; {
		w, err := np.ReserveUpTo(8)
		if errors.Is(err, ring.ErrFull) {
			runtime.Gosched()
			continue
		}
		require.NoError(t, err)
		require.NotSame(t, first, w.Queue())
		require.Equal(t, uint32(2), w.Queue().Config().Generation)
		n := min(w.Len(), int(200-seq))
		for i := range n {
			put(w, i, seq+uint64(i))
		}
		require.NoError(t, w.AbortAll())
		seq += uint64(n)
	}
	testenv.WaitFor(t, "every record", func() bool { return took.Load() == 200 })
	stop.Store(true)
	log, err := wait()
	require.NoError(t, err)
	require.NoError(t, record.VerifyLog(log, 1, 200))

	st := first.Stats()
	require.Equal(t, uint64(2), st.Skipped, "the holes, passed by the consumers")
	require.Equal(t, uint64(12), st.Published)
	require.Equal(t, uint64(14), st.ConsumerCursor, "drained to the final position")
	require.NoError(t, first.Check())
	require.NoError(t, owner.ProducerQueue().Check())
	require.Equal(t, []*ring.Queue{first}, owner.Retire())
	require.Equal(t, uint64(1), owner.Stats().Generations)
	_, err = owner.SealAbandoned()
	require.ErrorIs(t, err, ring.ErrNotPending, "done already")
	require.NoError(t, resize(8), "the queue resizes again, and its new producer follows")
	w, err = np.Reserve(1)
	require.NoError(t, err)
	require.Equal(t, uint32(3), w.Queue().Config().Generation)
	require.NoError(t, w.AbortAll())
}

// TestSealAbandonedLateCursor: an agent producer (AttachProducer) stores
// its cursor after it publishes, and dies with records published past the
// cursor it stored. SealAbandoned takes the generation's final position
// past them, whether consumers took them before the seal (the consumer
// cursor is then past the producer's) or after it; the consumers drain
// them and follow, and Check finds the generation consistent.
func TestSealAbandonedLateCursor(t *testing.T) {
	const slotSize = 32
	for _, before := range []int{3, 8} {
		t.Run(map[int]string{3: "taken after", 8: "taken before"}[before], func(t *testing.T) {
			sp := newArenas(2, 16, slotSize)
			cfg := ring.Config{Slots: 16, SlotSize: slotSize, SingleProducer: true, Resizable: true, Generation: 1}
			q0, off0 := sp.take(t, cfg)
			owner, err := ring.NewResizableOn(q0)
			require.NoError(t, err)
			agent, err := ring.AttachProducer(sp.memory(), sp.metaAddr(off0), ring.Config{Slots: 16, SlotSize: slotSize, Resizable: true})
			require.NoError(t, err)
			for seq := range uint64(8) {
				ok, err := agent.Free()
				require.NoError(t, err)
				require.True(t, ok)
				writeRecord(sp.at(sp.dataAddr(off0)+agent.SlotOffset(), slotSize), 0, seq, slotSize)
				require.NoError(t, agent.Publish(slotSize))
				if seq == 4 {
					require.NoError(t, agent.Sync()) // the cursor it stored: 5
				}
			}
			require.NoError(t, agent.PublishDeferred(slotSize)) // never stored: not published
			// The agent dies here, with 8 records published and 5 stored.
			cfg.Generation = 2
			q1, off1 := sp.take(t, cfg)
			require.NoError(t, owner.ResizeTo(q1, sp.metaAddr(off1), sp.dataAddr(off1)))

			c := owner.Consumer()
			next := uint64(0)
			take := func(n int) {
				t.Helper()
				for range n {
					run, err := c.Reserve(1)
					require.NoError(t, err)
					b, err := run.Slot(0)
					require.NoError(t, err)
					_, seq, err := checkRecord(b)
					require.NoError(t, err)
					require.Equal(t, next, seq)
					next++
					require.NoError(t, run.ReleaseAll())
				}
			}
			take(before)
			holes, err := owner.SealAbandoned()
			require.NoError(t, err)
			require.Zero(t, holes)
			require.Equal(t, uint64(8), q0.Stats().ProducerCursor, "final: past the last record published")
			take(8 - before)
			_, err = c.ReserveUpTo(1)
			require.ErrorIs(t, err, ring.ErrEmpty)
			require.Same(t, q1, owner.ConsumerQueue(), "drained, and followed")
			require.NoError(t, q0.Check())
			w, err := owner.Producer().Reserve(1)
			require.NoError(t, err)
			require.Same(t, q1, w.Queue())
			writeRecord(w.Slot(0), 0, 8, slotSize)
			require.NoError(t, w.PublishAll(slotSize))
			take(1)
			require.Equal(t, []*ring.Queue{q0}, owner.Retire())
		})
	}
}

// TestSealAbandonedRefuses: SealAbandoned is refused, changing nothing, on
// shared producers, with no resize named, and once the producer sealed
// the generation itself.
func TestSealAbandonedRefuses(t *testing.T) {
	shared, err := ring.NewResizable(ring.Config{Slots: 8, SlotSize: 8})
	require.NoError(t, err)
	require.NoError(t, shared.Resize(16))
	_, err = shared.SealAbandoned()
	require.ErrorIs(t, err, ring.ErrInvalid, "a resize seals shared producers itself")

	r, err := ring.NewResizable(ring.Config{Slots: 8, SlotSize: 8, SingleProducer: true})
	require.NoError(t, err)
	_, err = r.SealAbandoned()
	require.ErrorIs(t, err, ring.ErrNotPending, "nothing named")
	w, err := r.Producer().Reserve(3)
	require.NoError(t, err)
	require.NoError(t, w.Publish(0, 8))
	_, err = r.SealAbandoned()
	require.ErrorIs(t, err, ring.ErrNotPending)
	require.Equal(t, uint64(3), r.ProducerQueue().Stats().ProducerCursor, "nothing changed")

	first := r.ProducerQueue()
	require.NoError(t, r.Resize(16))
	require.NoError(t, w.Abort(1), "holes, in the generation being left")
	require.NoError(t, w.Abort(2))
	w, err = r.Producer().Reserve(1) // the producer follows: it seals
	require.NoError(t, err)
	require.NoError(t, w.PublishAll(8))
	require.True(t, first.Sealed())
	_, err = r.SealAbandoned()
	require.ErrorIs(t, err, ring.ErrNotPending, "the producer sealed it")
	st := first.Stats()
	require.Equal(t, uint64(3), st.ProducerCursor)
	require.Equal(t, uint64(2), st.Aborted, "only the producer's own aborts")
}
