package ring_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/ring"
)

// TestResizeUnderLoad: 4 producers and 4 consumers run while another
// goroutine grows and shrinks the queue at random 200 times. Records carry
// (producer, sequence, checksum); consumers log where each one was, by
// generation and position, and the log shows no loss, no duplicate and
// every producer's records in the order it reserved them. Producers mix
// batches, out-of-order publishing and aborts; consumers mix batches and
// release in any order.
func TestResizeUnderLoad(t *testing.T) {
	for _, c := range [][2]int{{4, 4}, {4, 1}, {1, 4}, {1, 1}} {
		t.Run(fmt.Sprintf("%dx%d", c[0], c[1]), func(t *testing.T) { resizeUnderLoad(t, c[0], c[1], false) })
	}
}

// TestResizeAcrossViews is TestResizeUnderLoad with the producers and the
// consumers each on a Resizable of their own over the same memory, as two
// processes have: the consumers' side resizes with ResizeTo into regions it
// formats, after the producers' side was given its own view of them (Add);
// everything they agree on goes through the metadata.
func TestResizeAcrossViews(t *testing.T) {
	for _, c := range [][2]int{{4, 4}, {1, 1}, {4, 1}} {
		t.Run(fmt.Sprintf("%dx%d", c[0], c[1]), func(t *testing.T) { resizeUnderLoad(t, c[0], c[1], true) })
	}
}

// twoViews formats a resizable queue in regions of its own and returns two
// Resizables over it, and a resize that the second (the owner) makes into
// fresh regions once the first has them.
func twoViews(t *testing.T, cfg ring.Config) (peer, owner *ring.Resizable, resize func(slots int) error) {
	cfg.Resizable = true
	views := func(cfg ring.Config) (mine, theirs *ring.Queue, err error) {
		meta, data := ring.AlignedBytes(cfg.MetaSize()), make([]byte, cfg.DataSize())
		if mine, err = ring.Format(meta, data, cfg); err != nil {
			return nil, nil, err
		}
		theirs, err = ring.Attach(meta, data)
		return mine, theirs, err
	}
	mine, theirs, err := views(cfg)
	require.NoError(t, err)
	owner, err = ring.NewResizableOn(mine)
	require.NoError(t, err)
	peer, err = ring.NewResizableOn(theirs)
	require.NoError(t, err)
	return peer, owner, func(slots int) error {
		if owner.ResizePending() {
			return ring.ErrResizing // before the peer is given anything
		}
		next := cfg
		next.Slots, next.Generation = slots, owner.NextGeneration()
		mine, theirs, err := views(next)
		if err != nil {
			return err
		}
		if err := peer.Add(theirs); err != nil {
			return err
		}
		return owner.ResizeTo(mine, 0, 0)
	}
}

// resizeUnderLoad is TestResizeUnderLoad with that many producers and
// consumers; a side of one is formatted single (SingleProducer,
// SingleConsumer), so a single producer seals the generations it leaves.
// With views, the sides are on two Resizables (twoViews).
func resizeUnderLoad(t *testing.T, producers, consumers int, views bool) {
	const (
		perProducer = 20000
		resizes     = 200
		slotSize    = 64
	)
	cfg := ring.Config{Slots: 64, SlotSize: slotSize, SingleProducer: producers == 1, SingleConsumer: consumers == 1}
	r, err := ring.NewResizable(cfg)
	require.NoError(t, err)
	pr, cr, resize := r, r, r.Resize
	if views {
		pr, cr, resize = twoViews(t, cfg)
	}
	var produced atomic.Int32
	var consumed atomic.Int64
	var consumersDone atomic.Int32
	var made atomic.Int32 // resizes made
	var resizing atomic.Bool
	var failed atomic.Bool
	errs := make(chan error, producers+consumers+1)
	fail := func(err error) {
		if failed.CompareAndSwap(false, true) {
			errs <- err
		}
	}
	var wg sync.WaitGroup
	for id := range producers {
		wg.Go(func() {
			defer produced.Add(1)
			rng := rand.New(rand.NewPCG(uint64(id), 7))
			p := pr.Producer()
			for seq := uint64(0); seq < perProducer && !failed.Load(); {
				w, err := p.ReserveUpTo(1 + rng.IntN(8))
				if errors.Is(err, ring.ErrFull) {
					runtime.Gosched()
					continue
				}
				if err != nil {
					fail(err)
					return
				}
				n := 0
				for i := range w.Len() {
					if seq+uint64(n) == perProducer || rng.IntN(16) == 0 {
						break // the rest of the run is aborted below
					}
					writeRecord(w.Slot(i), uint32(id), seq+uint64(n), slotSize)
					n++
				}
				// Publish the records in a random order, then give the
				// rest up: a rollback when nobody reserved after us, holes
				// otherwise.
				for _, i := range rng.Perm(n) {
					if err := w.Publish(i, slotSize); err != nil {
						fail(err)
						return
					}
				}
				if err := w.AbortAll(); err != nil {
					fail(err)
					return
				}
				seq += uint64(n)
			}
			// Done, but alive while resizes go on: a single producer
			// follows them when it reserves.
			for resizing.Load() && !failed.Load() {
				if w, err := p.ReserveUpTo(1); err == nil {
					if err := w.AbortAll(); err != nil {
						fail(err)
						return
					}
				}
				runtime.Gosched()
			}
		})
	}
	logs := make([][]record.Seen, consumers)
	for c := range consumers {
		wg.Go(func() {
			defer consumersDone.Add(1)
			rng := rand.New(rand.NewPCG(uint64(c), 11))
			cons := cr.Consumer()
			for !failed.Load() {
				run, err := cons.ReserveUpTo(1 + rng.IntN(8))
				if errors.Is(err, ring.ErrEmpty) {
					if produced.Load() == int32(producers) {
						// Producers are done; one more look decides.
						if run, err = cons.ReserveUpTo(8); errors.Is(err, ring.ErrEmpty) {
							return
						}
					} else {
						runtime.Gosched()
						continue
					}
				}
				if err != nil {
					fail(err)
					return
				}
				gen := run.Generation()
				for i := range run.Len() {
					b, err := run.Slot(i)
					if err != nil {
						fail(err)
						return
					}
					id, seq, err := checkRecord(b)
					if err != nil {
						fail(err)
						return
					}
					logs[c] = append(logs[c], record.Seen{Pos: gen<<40 | run.Position(i), Producer: id, Seq: seq})
				}
				consumed.Add(int64(run.Len()))
				for _, i := range rng.Perm(run.Len()) {
					if err := run.Release(i); err != nil {
						fail(err)
						return
					}
				}
			}
		})
	}
	resizing.Store(true)
	wg.Go(func() {
		defer resizing.Store(false)
		// Resize i waits until consumers have taken i/(resizes+1) of all
		// the records, so the resizes spread over the whole run.
		rng := rand.New(rand.NewPCG(3, 5))
		total := producers * perProducer
		for i := range resizes {
			for consumed.Load() < int64(i*total/(resizes+1)) {
				if failed.Load() || consumersDone.Load() == int32(consumers) {
					return // the log below says what went wrong
				}
				runtime.Gosched()
			}
			slots := 1 << (1 + rng.IntN(10))
			err := resize(slots)
			for errors.Is(err, ring.ErrResizing) && produced.Load() != int32(producers) {
				// A single producer has not followed the last one yet.
				runtime.Gosched()
				err = resize(slots)
			}
			if errors.Is(err, ring.ErrResizing) {
				return // the producer is done: it will not follow again
			}
			if err != nil {
				fail(err)
				return
			}
			made.Add(1)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var all []record.Seen
	for _, l := range logs {
		all = append(all, l...)
	}
	require.NoError(t, record.VerifyLog(all, producers, perProducer))
	// Resizes after the last record leave empty generations: a single
	// producer seals them when it next reserves (it takes a slot and
	// gives it back here), and one look of a consumer passes them all.
	if producers == 1 {
		w, err := pr.Producer().ReserveUpTo(1)
		require.NoError(t, err)
		require.NoError(t, w.AbortAll())
	}
	_, err = cr.Consumer().ReserveUpTo(1)
	require.ErrorIs(t, err, ring.ErrEmpty)
	st := cr.Stats()
	require.Equal(t, uint64(made.Load()), st.Resizes)
	require.Equal(t, uint64(resizes), st.Resizes)
	require.Len(t, cr.Retire(), resizes, "every generation but the last comes back")
	if views {
		require.Len(t, pr.Retire(), resizes, "on the other side too")
	}
	require.Equal(t, uint64(1), st.Generations, "every sealed generation drained and left")
	t.Logf("%d records through %d resizes; sealed generations took %v to drain in all", len(all), st.Resizes, st.Draining)
}

var le = binary.LittleEndian

// TestResizeKeepsHeldRuns: runs reserved before a resize, on both sides,
// finish in their generation after it; records published before a shrink
// below them are all consumed, in order, before the new generation's.
func TestResizeKeepsHeldRuns(t *testing.T) {
	r, err := ring.NewResizable(ring.Config{Slots: 16, SlotSize: 8})
	require.NoError(t, err)
	p, c := r.Producer(), r.Consumer()
	put := func(v uint64) {
		t.Helper()
		w, err := p.Reserve(1)
		require.NoError(t, err)
		le.PutUint64(w.Slot(0), v)
		require.NoError(t, w.PublishAll(8))
	}
	for v := range uint64(10) {
		put(v)
	}
	held, err := c.Reserve(2) // records 0 and 1, held across the resize
	require.NoError(t, err)
	pending, err := p.Reserve(3) // three slots reserved, not yet written
	require.NoError(t, err)
	require.NoError(t, r.Resize(4), "a shrink below the 11 records in flight")
	require.Equal(t, 4, r.Cap())
	put(100) // into the new generation
	_, err = p.Reserve(8)
	require.ErrorIs(t, err, ring.ErrInvalid, "the new size holds 4")
	for i := range 3 {
		le.PutUint64(pending.Slot(i), uint64(10+i))
	}
	require.NoError(t, pending.PublishAll(8), "published into the old generation after the resize")
	require.NoError(t, held.ReleaseAll())
	var got []uint64
	for {
		run, err := c.ReserveUpTo(16)
		if errors.Is(err, ring.ErrEmpty) {
			break
		}
		require.NoError(t, err)
		for i := range run.Len() {
			b, err := run.Slot(i)
			require.NoError(t, err)
			got = append(got, le.Uint64(b))
		}
		require.NoError(t, run.ReleaseAll())
	}
	require.Equal(t, []uint64{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 100}, got)
	require.Equal(t, uint64(1), r.Stats().Generations)
}

// TestResizeEdges: an empty queue and a full one resize; a bad size is
// refused and changes nothing.
func TestResizeEdges(t *testing.T) {
	r, err := ring.NewResizable(ring.Config{Slots: 8, SlotSize: 8})
	require.NoError(t, err)
	require.NoError(t, r.Resize(32), "empty")
	require.ErrorIs(t, r.Resize(12), ring.ErrInvalid)
	require.ErrorIs(t, r.Resize(0), ring.ErrInvalid)
	require.Equal(t, 32, r.Cap(), "a refused resize changes nothing")
	require.Equal(t, uint64(1), r.Stats().Resizes)
	w, err := r.Producer().Reserve(32)
	require.NoError(t, err)
	require.NoError(t, w.PublishAll(0))
	_, err = r.Producer().Reserve(1)
	require.ErrorIs(t, err, ring.ErrFull)
	require.NoError(t, r.Resize(2), "full")
	w, err = r.Producer().Reserve(2)
	require.NoError(t, err, "the new generation has room at once")
	require.NoError(t, w.PublishAll(0))
	n := 0
	for {
		run, err := r.Consumer().ReserveUpTo(64)
		if errors.Is(err, ring.ErrEmpty) {
			break
		}
		require.NoError(t, err)
		n += run.Len()
		require.NoError(t, run.ReleaseAll())
	}
	require.Equal(t, 34, n)
}

// TestSealedBitMeansNothingElsewhere: only a Resizable's generations read
// the sealed bit; in an ordinary queue a peer that sets it has moved the
// cursor by a whole multiple of 2^32 positions, which the per-slot checks
// cannot see and Check reports (TestCheckFindsWholeLapJumps), and the
// producers never see a seal.
func TestSealedBitMeansNothingElsewhere(t *testing.T) {
	q, meta, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 8})
	produce(t, q, 1)
	le.PutUint64(meta[ring.OffProdCursor:], 1<<63|1)
	w, err := q.Producer().Reserve(1)
	require.NoError(t, err, "not sealed: an ordinary queue has no generations")
	require.Equal(t, uint64(1<<63|1), w.Position(0))
	require.NoError(t, w.PublishAll(8))
	err = q.Check()
	require.ErrorIs(t, err, ring.ErrCorrupt)
	require.Contains(t, err.Error(), "within one lap")
}

// TestReserveOnASealedGeneration: a producer that reserves on a generation
// directly, after a resize sealed it, gets ErrSealed and no slots.
func TestReserveOnASealedGeneration(t *testing.T) {
	r, err := ring.NewResizable(ring.Config{Slots: 8, SlotSize: 8})
	require.NoError(t, err)
	old := r.ProducerQueue()
	require.NoError(t, r.Resize(16))
	_, err = old.Producer().Reserve(1)
	require.ErrorIs(t, err, ring.ErrSealed)
	w, err := r.Producer().Reserve(1)
	require.NoError(t, err, "through the Resizable it reserves in the new generation")
	require.NotSame(t, old, w.Queue())
	require.Same(t, r.ProducerQueue(), w.Queue())
	require.NoError(t, w.PublishAll(0))
}

// TestResizeHostileLink: a peer that writes garbage into the link line or
// the generation words gets typed errors from every side, never a crash,
// and the queue it did not touch is unharmed.
func TestResizeHostileLink(t *testing.T) {
	cfg := ring.Config{Slots: 8, SlotSize: 8, Resizable: true}
	setup := func(t *testing.T) (*ring.Resizable, []byte) {
		meta, data := ring.AlignedBytes(cfg.MetaSize()), make([]byte, cfg.DataSize())
		q, err := ring.Format(meta, data, cfg)
		require.NoError(t, err)
		r, err := ring.NewResizableOn(q)
		require.NoError(t, err)
		w, err := r.Producer().Reserve(2)
		require.NoError(t, err)
		require.NoError(t, w.PublishAll(8))
		return r, meta
	}
	drain := func(r *ring.Resizable) error {
		for {
			run, err := r.Consumer().ReserveUpTo(8)
			if err != nil {
				return err
			}
			if err := run.ReleaseAll(); err != nil {
				return err
			}
		}
	}
	t.Run("names the wrong generation", func(t *testing.T) {
		r, meta := setup(t)
		word32(meta, ring.OffLinkNext).Store(7)
		word64(meta, ring.OffProdCursor).Store(2 | ring.Sealed)
		require.ErrorIs(t, drain(r), ring.ErrCorrupt, "links to 7 from 1")
		_, err := r.Producer().Reserve(1)
		require.ErrorIs(t, err, ring.ErrCorrupt)
	})
	t.Run("names a size other than the one given", func(t *testing.T) {
		r, meta := setup(t)
		next := cfg
		next.Slots, next.Generation = 16, 2
		q, err := ring.New(next)
		require.NoError(t, err)
		require.NoError(t, r.Add(q))
		word32(meta, ring.OffLinkSlots).Store(4)
		word32(meta, ring.OffLinkNext).Store(2)
		word64(meta, ring.OffProdCursor).Store(2 | ring.Sealed)
		require.ErrorIs(t, drain(r), ring.ErrCorrupt)
	})
	t.Run("seals without naming", func(t *testing.T) {
		r, meta := setup(t)
		word64(meta, ring.OffProdCursor).Store(2 | ring.Sealed)
		_, err := r.Producer().Reserve(1)
		require.ErrorIs(t, err, ring.ErrFull, "nowhere to go: full, until a next generation comes")
		require.ErrorIs(t, drain(r), ring.ErrEmpty, "the two records, then nothing")
	})
	t.Run("names before the agent that resizes", func(t *testing.T) {
		r, meta := setup(t)
		word32(meta, ring.OffLinkNext).Store(2)
		next := cfg
		next.Generation = 2
		q, err := ring.New(next)
		require.NoError(t, err)
		require.ErrorIs(t, r.ResizeTo(q, 0, 0), ring.ErrCorrupt, "someone else resized it")
		require.Equal(t, 8, r.Cap(), "a refused resize changes nothing")
	})
	t.Run("generation word", func(t *testing.T) {
		_, meta := setup(t)
		word32(meta, ring.OffGeneration).Store(0)
		_, err := ring.Attach(meta, make([]byte, cfg.DataSize()))
		var he *ring.HeaderError
		require.ErrorAs(t, err, &he)
		require.Equal(t, "generation", he.Field)
		require.ErrorIs(t, err, ring.ErrCorrupt)
	})
	t.Run("refused gifts", func(t *testing.T) {
		r, _ := setup(t)
		plain, err := ring.New(ring.Config{Slots: 8, SlotSize: 8})
		require.NoError(t, err)
		require.ErrorIs(t, r.Add(plain), ring.ErrInvalid, "not resizable")
		other, err := ring.New(ring.Config{Slots: 8, SlotSize: 16, Resizable: true, Generation: 2})
		require.NoError(t, err)
		require.ErrorIs(t, r.Add(other), ring.ErrInvalid, "another slot size")
		_, err = ring.NewResizableOn(plain)
		require.ErrorIs(t, err, ring.ErrInvalid)
		require.ErrorIs(t, r.ResizeTo(other, 0, 0), ring.ErrInvalid)
	})
}

// TestResizeRetire: generations come back to their owner only once every
// record in them is released and both sides have moved on.
func TestResizeRetire(t *testing.T) {
	r, err := ring.NewResizable(ring.Config{Slots: 8, SlotSize: 8})
	require.NoError(t, err)
	first := r.ProducerQueue()
	w, err := r.Producer().Reserve(2)
	require.NoError(t, err)
	require.NoError(t, w.PublishAll(8))
	require.NoError(t, r.Resize(16))
	require.Empty(t, r.Retire(), "records still in it")
	held, err := r.Consumer().Reserve(2)
	require.NoError(t, err)
	_, err = r.Consumer().Reserve(1)
	require.ErrorIs(t, err, ring.ErrEmpty, "and the consumers move on")
	require.Equal(t, r.ConsumerQueue(), r.ProducerQueue())
	require.Empty(t, r.Retire(), "a run still held there")
	require.NoError(t, held.ReleaseAll())
	require.Equal(t, []*ring.Queue{first}, r.Retire())
	require.Empty(t, r.Retire())
	require.Equal(t, uint64(1), r.Stats().Generations)
}

// TestResizeWithdraw: a generation given but not yet named can be taken
// back, and its number given again.
func TestResizeWithdraw(t *testing.T) {
	cfg := ring.Config{Slots: 8, SlotSize: 8, Resizable: true}
	q, err := ring.New(cfg)
	require.NoError(t, err)
	r, err := ring.NewResizableOn(q)
	require.NoError(t, err)
	next := cfg
	next.Generation = 2
	g2, err := ring.New(next)
	require.NoError(t, err)
	require.NoError(t, r.Add(g2))
	require.ErrorIs(t, r.Add(g2), ring.ErrInvalid, "given twice")
	got, ok := r.Withdraw(2)
	require.True(t, ok)
	require.Same(t, g2, got)
	_, ok = r.Withdraw(2)
	require.False(t, ok, "withdrawn already")
	again, err := ring.New(next)
	require.NoError(t, err)
	require.NoError(t, r.Add(again), "the number may be given again")
}
