package ring_test

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

// TestCachedProducer: a CachedProducer hands out consecutive slots from
// one reserve of up to n; Flush gives back what it holds (the cursor moves
// back when nothing was reserved after it, else the slots become holes
// consumers pass over), and the queue goes on.
func TestCachedProducer(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 16, SlotSize: 16})
	_, err := q.CachedProducer(0)
	require.ErrorIs(t, err, ring.ErrInvalid)
	_, err = q.CachedProducer(17)
	require.ErrorIs(t, err, ring.ErrInvalid)
	cp, err := q.CachedProducer(4)
	require.NoError(t, err)
	for i := range 3 {
		w, err := cp.Reserve()
		require.NoError(t, err)
		require.Equal(t, 1, w.Len())
		require.Equal(t, uint64(i), w.Position(0))
		w.Slot(0)[0] = byte(10 + i)
		require.NoError(t, w.PublishAll(1))
	}
	require.Equal(t, uint64(4), q.Stats().ProducerCursor, "one reserve of 4")
	require.Equal(t, 1, cp.Held())
	require.NoError(t, cp.Flush())
	require.Zero(t, cp.Held())
	require.Equal(t, uint64(3), q.Stats().ProducerCursor, "the unused slot given back: the cursor moved back")

	// A slot held while another producer reserved after it becomes a hole.
	w, err := cp.Reserve() // position 3, holding 4 to 6
	require.NoError(t, err)
	require.NoError(t, w.PublishAll(1))
	other, err := q.Producer().Reserve(1) // position 7
	require.NoError(t, err)
	require.NoError(t, other.PublishAll(1))
	require.NoError(t, cp.Flush())
	r, err := q.Consumer().ReserveUpTo(16)
	require.NoError(t, err)
	require.Equal(t, 5, r.Len(), "records 0-3 and 7; 4-6 passed over")
	require.Equal(t, uint64(7), r.Position(4))
	require.NoError(t, r.ReleaseAll())
	require.NoError(t, q.Check())
	require.NoError(t, cp.Flush(), "nothing held: nothing to do")
}

// TestCachedConsumer: a CachedConsumer hands out records one at a time
// from one reserve, each with the holes that follow it, which go back with
// it; Flush gives back unread what it holds while no consumer reserved
// after it, and ErrNotLast (keeping them) once one did.
func TestCachedConsumer(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 16, SlotSize: 16})
	_, err := q.CachedConsumer(0)
	require.ErrorIs(t, err, ring.ErrInvalid)
	w, err := q.Producer().Reserve(6)
	require.NoError(t, err)
	require.NoError(t, w.Abort(1))
	require.NoError(t, w.Abort(2))
	require.NoError(t, w.PublishAll(1)) // records at 0, 3, 4, 5
	cc, err := q.CachedConsumer(8)
	require.NoError(t, err)
	var got []uint64
	for range 2 {
		r, err := cc.Reserve()
		require.NoError(t, err)
		require.Equal(t, 1, r.Len())
		got = append(got, r.Position(0))
		require.NoError(t, r.ReleaseAll())
	}
	require.Equal(t, []uint64{0, 3}, got)
	require.Equal(t, 2, cc.Held())
	require.NoError(t, cc.Flush(), "the last reserve: given back")
	require.Zero(t, cc.Held())
	// The holes went back with record 0: the producers can use every slot
	// up to the first record not yet released (4) a lap on.
	require.NoError(t, q.Check())
	r, err := q.Consumer().ReserveUpTo(8)
	require.NoError(t, err)
	require.Equal(t, []uint64{4, 5}, []uint64{r.Position(0), r.Position(1)}, "given back unread, delivered again")
	require.NoError(t, r.AbortAll())

	r1, err := cc.Reserve() // claims 4 and 5, hands out 4
	require.NoError(t, err)
	require.Equal(t, uint64(4), r1.Position(0))
	w, err = q.Producer().Reserve(1)
	require.NoError(t, err)
	require.NoError(t, w.PublishAll(1)) // position 6
	later, err := q.Consumer().Reserve(1)
	require.NoError(t, err)
	require.ErrorIs(t, cc.Flush(), ring.ErrNotLast)
	require.Equal(t, 1, cc.Held(), "kept")
	r2, err := cc.Reserve()
	require.NoError(t, err)
	require.Equal(t, uint64(5), r2.Position(0))
	for _, r := range []ring.ReadRun{r1, r2, later} {
		require.NoError(t, r.ReleaseAll())
	}
	require.NoError(t, q.Check())
	_, err = cc.Reserve()
	require.ErrorIs(t, err, ring.ErrEmpty)
}

// TestCachedStress: 4 cached producers, which flush at random, and 4
// consumers, half of them cached, share a queue with shared sides; every
// record carries (producer, sequence, checksum): nothing lost, nothing
// duplicated, each producer's in order.
func TestCachedStress(t *testing.T) {
	const producers, consumers = 4, 4
	per := uint64(50_000)
	if testing.Short() {
		per = 5_000
	}
	q, _, _ := newQueue(t, ring.Config{Slots: 64, SlotSize: 32})
	var wg sync.WaitGroup
	var done atomic.Int32
	errs := make(chan error, producers+consumers)
	for id := range producers {
		wg.Go(func() {
			defer done.Add(1)
			rng := rand.New(rand.NewPCG(uint64(id), 7))
			cp, err := q.CachedProducer(1 + rng.IntN(16))
			if err != nil {
				errs <- err
				return
			}
			for seq := uint64(0); seq < per; {
				w, err := cp.Reserve()
				if errors.Is(err, ring.ErrFull) {
					runtime.Gosched()
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				writeRecord(w.Slot(0), uint32(id), seq, 32)
				if err := w.PublishAll(32); err != nil {
					errs <- err
					return
				}
				seq++
				if rng.IntN(50) == 0 {
					if err := cp.Flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := cp.Flush(); err != nil {
				errs <- err
			}
		})
	}
	logs := make([][]seen, consumers)
	for c := range consumers {
		wg.Go(func() {
			var next func() (ring.ReadRun, error)
			if c%2 == 0 {
				cc, err := q.CachedConsumer(1 + c*3)
				if err != nil {
					errs <- err
					return
				}
				next = cc.Reserve
			} else {
				next = func() (ring.ReadRun, error) { return q.Consumer().ReserveUpTo(3) }
			}
			for {
				r, err := next()
				if errors.Is(err, ring.ErrEmpty) {
					if done.Load() == producers {
						if r, err = next(); errors.Is(err, ring.ErrEmpty) {
							return
						}
					} else {
						runtime.Gosched()
						continue
					}
				}
				if err != nil {
					errs <- err
					return
				}
				for i := range r.Len() {
					b, err := r.Slot(i)
					if err != nil {
						errs <- err
						return
					}
					p, s, err := checkRecord(b)
					if err != nil {
						errs <- err
						return
					}
					logs[c] = append(logs[c], seen{pos: r.Position(i), producer: p, seq: s})
				}
				if err := r.ReleaseAll(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var all []seen
	for _, l := range logs {
		all = append(all, l...)
	}
	verifySeen(t, all, producers, per)
	require.NoError(t, q.Check())
	st := q.Stats()
	require.Equal(t, uint64(producers)*per, st.Released)
}
