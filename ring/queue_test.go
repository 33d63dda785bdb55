package ring_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

// newQueue formats a queue on the heap and returns it with its regions.
func newQueue(t *testing.T, cfg ring.Config) (*ring.Queue, []byte, []byte) {
	t.Helper()
	meta := ring.AlignedBytes(cfg.MetaSize())
	data := make([]byte, cfg.DataSize())
	q, err := ring.Format(meta, data, cfg)
	require.NoError(t, err)
	return q, meta, data
}

// produce publishes one record per value, each 8 bytes.
func produce(t *testing.T, q *ring.Queue, vals ...uint64) {
	t.Helper()
	w, err := q.Producer().Reserve(len(vals))
	require.NoError(t, err)
	for i, v := range vals {
		binary.LittleEndian.PutUint64(w.Slot(i), v)
		require.NoError(t, w.Publish(i, 8))
	}
}

// consume reserves up to n records, returns their values and releases them.
func consume(t *testing.T, q *ring.Queue, n int) []uint64 {
	t.Helper()
	r, err := q.Consumer().ReserveUpTo(n)
	if errors.Is(err, ring.ErrEmpty) {
		return nil
	}
	require.NoError(t, err)
	var out []uint64
	for i := range r.Len() {
		b, err := r.Slot(i)
		require.NoError(t, err)
		require.Len(t, b, 8)
		out = append(out, binary.LittleEndian.Uint64(b))
	}
	require.NoError(t, r.ReleaseAll())
	return out
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []ring.Config{
		{Slots: 0, SlotSize: 8}, {Slots: 1, SlotSize: 8}, {Slots: 3, SlotSize: 8},
		{Slots: ring.MaxSlots * 2, SlotSize: 8}, {Slots: 4, SlotSize: 0}, {Slots: 4, SlotSize: 12},
		{Slots: 4, SlotSize: ring.MaxSlotSize + 8}, {Slots: -4, SlotSize: 8},
	} {
		err := c.Validate()
		assert.ErrorIs(t, err, ring.ErrInvalid, "%+v", c)
		_, err = ring.New(c)
		assert.ErrorIs(t, err, ring.ErrInvalid, "%+v", c)
	}
	require.NoError(t, ring.Config{Slots: 2, SlotSize: 8}.Validate())
}

func TestFormatRegions(t *testing.T) {
	cfg := ring.Config{Slots: 8, SlotSize: 16}
	meta := ring.AlignedBytes(cfg.MetaSize() + 8)
	data := make([]byte, cfg.DataSize())
	_, err := ring.Format(meta[:cfg.MetaSize()-1], data, cfg)
	require.ErrorIs(t, err, ring.ErrInvalid)
	_, err = ring.Format(meta, data[:cfg.DataSize()-1], cfg)
	require.ErrorIs(t, err, ring.ErrInvalid)
	_, err = ring.Format(meta[4:], data, cfg)
	require.ErrorIs(t, err, ring.ErrInvalid, "misaligned metadata")
	// Larger regions are fine; the rest is left alone.
	meta[cfg.MetaSize()] = 0xAA
	q, err := ring.Format(meta, append(data, 1, 2, 3), cfg)
	require.NoError(t, err)
	require.Equal(t, cfg, q.Config())
	require.Equal(t, byte(0xAA), meta[cfg.MetaSize()])
}

func TestAttachSharesState(t *testing.T) {
	cfg := ring.Config{Slots: 8, SlotSize: 16, SingleConsumer: true}
	q, meta, data := newQueue(t, cfg)
	other, err := ring.Attach(meta, data)
	require.NoError(t, err)
	require.Equal(t, cfg, other.Config())
	produce(t, q, 1, 2, 3)
	require.Equal(t, []uint64{1, 2, 3}, consume(t, other, 8))
	require.Equal(t, uint64(3), q.Stats().Released)
}

func TestAttachRejectsBadHeaders(t *testing.T) {
	cfg := ring.Config{Slots: 8, SlotSize: 16}
	put32 := func(off int, v uint32) func([]byte) {
		return func(m []byte) { binary.LittleEndian.PutUint32(m[off:], v) }
	}
	put64 := func(off int, v uint64) func([]byte) {
		return func(m []byte) { binary.LittleEndian.PutUint64(m[off:], v) }
	}
	cases := []struct {
		name   string
		mutate func([]byte)
		field  string
		is     error
	}{
		{"zeroed", func(m []byte) { clear(m) }, "magic", ring.ErrIncompatible},
		{"magic", put32(0, 0x12345678), "magic", ring.ErrIncompatible},
		{"version", put32(4, 2), "version", ring.ErrIncompatible},
		{"unknown required feature", put32(8, 1<<5), "features", ring.ErrIncompatible},
		{"desc offset", put32(12, 64), "desc_offset", ring.ErrCorrupt},
		{"slots not a power of two", put32(16, 6), "slots", ring.ErrCorrupt},
		{"slots too few", put32(16, 1), "slots", ring.ErrCorrupt},
		{"slots too many", put32(16, 1<<30), "slots", ring.ErrCorrupt},
		{"slot size odd", put32(20, 12), "slot_size", ring.ErrCorrupt},
		{"slot size zero", put32(20, 0), "slot_size", ring.ErrCorrupt},
		{"meta size", put64(24, 1<<40), "meta_size", ring.ErrCorrupt},
		{"data size", put64(32, 7), "data_size", ring.ErrCorrupt},
		{"desc size", put32(40, 16), "desc_size", ring.ErrCorrupt},
		{"slots disagree with sizes", put32(16, 16), "meta_size", ring.ErrCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, meta, data := newQueue(t, cfg)
			c.mutate(meta)
			q, err := ring.Attach(meta, data)
			require.Nil(t, q)
			require.ErrorIs(t, err, c.is)
			var he *ring.HeaderError
			require.ErrorAs(t, err, &he)
			require.Equal(t, c.field, he.Field)
			require.Contains(t, err.Error(), c.field)
		})
	}
	t.Run("informational feature bits are ignored", func(t *testing.T) {
		_, meta, data := newQueue(t, cfg)
		put32(8, 1<<20)(meta)
		_, err := ring.Attach(meta, data)
		require.NoError(t, err)
	})
	t.Run("short regions", func(t *testing.T) {
		_, meta, data := newQueue(t, cfg)
		_, err := ring.Attach(meta[:cfg.MetaSize()-8], data)
		require.ErrorIs(t, err, ring.ErrInvalid)
		_, err = ring.Attach(meta, data[:len(data)-1])
		require.ErrorIs(t, err, ring.ErrInvalid)
		_, err = ring.Attach(meta[:10], data)
		require.ErrorIs(t, err, ring.ErrInvalid)
		_, err = ring.Attach(nil, nil)
		require.ErrorIs(t, err, ring.ErrInvalid)
	})
}

func TestReserveFullAndEmpty(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 4, SlotSize: 8})
	p, c := q.Producer(), q.Consumer()
	_, err := c.ReserveUpTo(1)
	require.ErrorIs(t, err, ring.ErrEmpty)
	_, err = c.Reserve(1)
	require.ErrorIs(t, err, ring.ErrEmpty)

	w, err := p.Reserve(3)
	require.NoError(t, err)
	require.Equal(t, 3, w.Len())
	_, err = p.Reserve(2)
	require.ErrorIs(t, err, ring.ErrFull, "all-or-nothing refuses when fewer are free")
	w2, err := p.ReserveUpTo(2)
	require.NoError(t, err, "best effort takes what is free")
	require.Equal(t, 1, w2.Len())
	_, err = p.ReserveUpTo(1)
	require.ErrorIs(t, err, ring.ErrFull)

	// Reserved but unpublished slots are not visible.
	_, err = c.ReserveUpTo(4)
	require.ErrorIs(t, err, ring.ErrEmpty)
	require.NoError(t, w.PublishAll(8))
	_, err = c.Reserve(4)
	require.ErrorIs(t, err, ring.ErrEmpty, "only 3 published")
	r, err := c.Reserve(3)
	require.NoError(t, err)
	require.Equal(t, 3, r.Len())
	// Held by a consumer: still not free for producers.
	_, err = p.ReserveUpTo(1)
	require.ErrorIs(t, err, ring.ErrFull)
	require.NoError(t, r.Release(1))
	_, err = p.ReserveUpTo(1)
	require.ErrorIs(t, err, ring.ErrFull, "slot 0 is not released yet; producers go in order")
	require.NoError(t, r.Release(0))
	w3, err := p.ReserveUpTo(4)
	require.NoError(t, err)
	require.Equal(t, 2, w3.Len(), "slots 0 and 1 came back")

	st := q.Stats()
	require.Equal(t, uint64(6), st.Reserved)
	require.Equal(t, uint64(3), st.Published)
	require.Equal(t, uint64(3), st.Consumed)
	require.Equal(t, uint64(2), st.Released)
	require.Equal(t, uint64(4), st.Full)
	require.Equal(t, uint64(4), st.Empty)
}

func TestWrapAroundAndBatchAcrossWrap(t *testing.T) {
	for _, cfg := range []ring.Config{
		{Slots: 8, SlotSize: 8},
		{Slots: 8, SlotSize: 8, SingleProducer: true, SingleConsumer: true},
	} {
		q, _, _ := newQueue(t, cfg)
		next, want := uint64(0), uint64(0)
		// Batches of 5 on 8 slots cross the wrap point at every other
		// batch; run many laps.
		for lap := 0; lap < 200; lap++ {
			vals := make([]uint64, 5)
			for i := range vals {
				vals[i] = next
				next++
			}
			produce(t, q, vals...)
			w, _ := q.Producer().Reserve(1)
			r, err := q.Consumer().Reserve(5)
			require.NoError(t, err)
			if lap%2 == 1 {
				require.NotEqual(t, r.Position(0)%8 < 4, r.Position(4)%8 < 4, "batch should cross the wrap point")
			}
			for i := range 5 {
				b, err := r.Slot(i)
				require.NoError(t, err)
				require.Equal(t, want, binary.LittleEndian.Uint64(b))
				require.Equal(t, want+uint64(lap), r.Position(i), "positions count every slot")
				want++
			}
			require.NoError(t, r.ReleaseAll())
			require.NoError(t, w.Abort(0))
		}
		_, err := q.Consumer().ReserveUpTo(1)
		require.ErrorIs(t, err, ring.ErrEmpty, "passes the last hole")
		st := q.Stats()
		require.Equal(t, uint64(1000), st.Published)
		require.Equal(t, uint64(200), st.Aborted)
		require.Equal(t, uint64(200), st.Skipped)
	}
}

func TestPublishAndReleaseOutOfOrder(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 8})
	w, err := q.Producer().Reserve(4)
	require.NoError(t, err)
	for i := range 4 {
		binary.LittleEndian.PutUint64(w.Slot(i), uint64(10+i))
	}
	require.NoError(t, w.Publish(2, 8))
	require.NoError(t, w.Publish(3, 8))
	_, err = q.Consumer().ReserveUpTo(4)
	require.ErrorIs(t, err, ring.ErrEmpty, "slot 0 is not published: nothing is ready in order")
	require.NoError(t, w.Publish(0, 8))
	require.Equal(t, []uint64{10}, consume(t, q, 4), "a run stops at the first unpublished slot")
	require.NoError(t, w.Publish(1, 8))

	r, err := q.Consumer().Reserve(3)
	require.NoError(t, err)
	require.NoError(t, r.Release(2))
	require.NoError(t, r.Release(0))
	b, err := r.Slot(1)
	require.NoError(t, err)
	require.Equal(t, uint64(12), binary.LittleEndian.Uint64(b))
	require.NoError(t, r.Release(1))
}

func TestMisuse(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 4, SlotSize: 8})
	p, c := q.Producer(), q.Consumer()
	for _, n := range []int{0, -1, 5} {
		_, err := p.Reserve(n)
		require.ErrorIs(t, err, ring.ErrInvalid)
		_, err = c.ReserveUpTo(n)
		require.ErrorIs(t, err, ring.ErrInvalid)
	}
	w, err := p.Reserve(2)
	require.NoError(t, err)
	require.ErrorIs(t, w.Publish(2, 8), ring.ErrInvalid)
	require.ErrorIs(t, w.Publish(-1, 8), ring.ErrInvalid)
	require.ErrorIs(t, w.Publish(0, 9), ring.ErrInvalid, "longer than the slot")
	require.ErrorIs(t, w.Publish(0, -1), ring.ErrInvalid)
	require.ErrorIs(t, w.Abort(5), ring.ErrInvalid)
	require.Panics(t, func() { w.Slot(2) })
	require.NoError(t, w.Publish(0, 8))
	require.ErrorIs(t, w.Publish(0, 8), ring.ErrNotHeld, "published twice")
	require.ErrorIs(t, w.Abort(0), ring.ErrNotHeld, "aborted after publish")
	require.NoError(t, w.Abort(1))
	require.ErrorIs(t, w.Publish(1, 8), ring.ErrNotHeld, "published after abort")
	require.NoError(t, w.PublishAll(8), "nothing left to publish is not an error")

	r, err := c.Reserve(1)
	require.NoError(t, err)
	require.ErrorIs(t, r.Release(1), ring.ErrInvalid)
	require.Panics(t, func() { _, _ = r.Slot(1) })
	require.NoError(t, r.Release(0))
	require.ErrorIs(t, r.Release(0), ring.ErrNotHeld, "released twice")
	_, err = r.Slot(0)
	require.ErrorIs(t, err, ring.ErrNotHeld, "read after release")
	require.NoError(t, r.ReleaseAll())
	require.ErrorIs(t, r.AbortFrom(2), ring.ErrInvalid)
	require.ErrorIs(t, r.AbortAll(), ring.ErrNotHeld, "cannot give back a released record")

	// The zero runs are harmless.
	var zw ring.WriteRun
	var zr ring.ReadRun
	require.Equal(t, 0, zw.Len())
	require.NoError(t, zw.PublishAll(0))
	require.NoError(t, zr.ReleaseAll())
}

func TestProducerAbort(t *testing.T) {
	t.Run("rollback of an unpublished tail", func(t *testing.T) {
		q, _, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 8})
		w, err := q.Producer().Reserve(4)
		require.NoError(t, err)
		binary.LittleEndian.PutUint64(w.Slot(0), 7)
		require.NoError(t, w.Publish(0, 8))
		require.NoError(t, w.AbortAll())
		require.Equal(t, 1, w.Len(), "the run keeps only what was published")
		st := q.Stats()
		require.Equal(t, uint64(1), st.ProducerCursor, "cursor moved back")
		require.Equal(t, uint64(3), st.Aborted)
		require.Equal(t, uint64(3), st.RolledBack)
		require.Equal(t, uint64(4), st.Reserved)
		produce(t, q, 8, 9)
		require.Equal(t, []uint64{7, 8, 9}, consume(t, q, 8))
		require.Equal(t, uint64(0), q.Stats().Skipped, "no holes left behind")
	})
	t.Run("holes when a later run exists", func(t *testing.T) {
		q, _, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 8})
		w, err := q.Producer().Reserve(3)
		require.NoError(t, err)
		produce(t, q, 100) // a later run, published
		binary.LittleEndian.PutUint64(w.Slot(1), 1)
		require.NoError(t, w.Publish(1, 8))
		require.NoError(t, w.AbortAll())
		require.Equal(t, 3, w.Len())
		require.Equal(t, []uint64{1, 100}, consume(t, q, 8), "consumers never see aborted slots")
		st := q.Stats()
		require.Equal(t, uint64(2), st.Aborted)
		require.Equal(t, uint64(2), st.Skipped)
		// The slots are not lost: all 8 can be reserved again.
		w, err = q.Producer().Reserve(8)
		require.NoError(t, err)
		require.NoError(t, w.AbortAll())
	})
	t.Run("single abort is a hole, also mid-run", func(t *testing.T) {
		q, _, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 8, SingleProducer: true})
		w, err := q.Producer().Reserve(5)
		require.NoError(t, err)
		for i := range 5 {
			binary.LittleEndian.PutUint64(w.Slot(i), uint64(i))
		}
		require.NoError(t, w.Abort(1))
		require.NoError(t, w.Abort(3))
		require.NoError(t, w.PublishAll(8))
		r, err := q.Consumer().Reserve(3)
		require.NoError(t, err, "all-or-nothing counts records, not holes")
		for i, want := range []uint64{0, 2, 4} {
			b, err := r.Slot(i)
			require.NoError(t, err)
			require.Equal(t, want, binary.LittleEndian.Uint64(b))
		}
		require.Equal(t, []uint64{0, 2, 4}, []uint64{r.Position(0), r.Position(1), r.Position(2)})
		require.NoError(t, r.Release(1)) // releases position 2 and the hole at 3
		require.NoError(t, r.Release(0)) // position 0 and the hole at 1
		require.NoError(t, r.Release(2))
		w, err = q.Producer().Reserve(8)
		require.NoError(t, err, "every slot is back")
		require.Equal(t, uint64(2), q.Stats().Skipped)
		require.NoError(t, w.AbortAll())
	})
}

func TestConsumerAbort(t *testing.T) {
	for _, single := range []bool{false, true} {
		q, _, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 8, SingleConsumer: single})
		produce(t, q, 1, 2, 3, 4, 5)
		c := q.Consumer()
		r, err := c.Reserve(4)
		require.NoError(t, err)
		require.NoError(t, r.AbortFrom(2))
		require.Equal(t, 2, r.Len())
		r2, err := c.Reserve(3)
		require.NoError(t, err, "records 3, 4 came back, and 5 follows")
		require.ErrorIs(t, r.AbortAll(), ring.ErrNotLast, "a later run exists")
		require.Equal(t, 2, r.Len(), "records stay held")
		var got []uint64
		for _, run := range []*ring.ReadRun{&r, &r2} {
			for i := range run.Len() {
				b, err := run.Slot(i)
				require.NoError(t, err)
				got = append(got, binary.LittleEndian.Uint64(b))
			}
			require.NoError(t, run.ReleaseAll())
		}
		require.Equal(t, []uint64{1, 2, 3, 4, 5}, got)
		require.Equal(t, uint64(5), q.Stats().Consumed, "given back records are not counted twice")
		require.Equal(t, uint64(2), q.Stats().Returned)

		// Give back a run with holes in it: they come back too.
		w, err := q.Producer().Reserve(4)
		require.NoError(t, err)
		require.NoError(t, w.Abort(1))
		require.NoError(t, w.PublishAll(8))
		r, err = c.Reserve(3)
		require.NoError(t, err)
		require.NoError(t, r.AbortFrom(1))
		r2, err = c.Reserve(2)
		require.NoError(t, err)
		require.Equal(t, r.Position(0)+2, r2.Position(0))
		require.NoError(t, r.ReleaseAll())
		require.NoError(t, r2.ReleaseAll())
		_, err = c.ReserveUpTo(1)
		require.ErrorIs(t, err, ring.ErrEmpty)
		st := q.Stats()
		require.Equal(t, uint64(1), st.Skipped, "the given-back hole is counted once")
		require.Equal(t, uint64(4), st.Returned)
		require.Equal(t, st.Consumed, st.Released)
		w, err = q.Producer().Reserve(8)
		require.NoError(t, err, "nothing was lost")
		require.NoError(t, w.AbortAll())
	}
}

// TestManyHolesEndARun: a run carries holes among its records only within
// its first 64 positions; the records past that come in the next run, and
// every hole is passed over exactly once.
func TestManyHolesEndARun(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 256, SlotSize: 8})
	w, err := q.Producer().Reserve(200)
	require.NoError(t, err)
	for i := range 200 {
		if i%2 == 1 {
			require.NoError(t, w.Abort(i))
		}
	}
	require.NoError(t, w.PublishAll(0))
	total, runs := 0, 0
	for {
		r, err := q.Consumer().ReserveUpTo(256)
		if errors.Is(err, ring.ErrEmpty) {
			break
		}
		require.NoError(t, err)
		require.LessOrEqual(t, r.Len(), 33, "holes only within the first 64 positions of a run")
		for i := range r.Len() {
			require.Equal(t, uint64(2*(total+i)), r.Position(i), "records in order, holes passed over")
		}
		total += r.Len()
		runs++
		require.NoError(t, r.ReleaseAll())
	}
	require.Equal(t, 100, total)
	require.Equal(t, 4, runs)
	require.Equal(t, uint64(100), q.Stats().Skipped)
	w, err = q.Producer().Reserve(256)
	require.NoError(t, err, "every slot came back")
	require.NoError(t, w.AbortAll())
}

// TestExactReserveAcrossTooManyHoles: records split by holes further from
// the run's start than a run carries them make an exact Reserve say so
// (ErrFragmented), not ErrEmpty forever; ReserveUpTo takes them.
func TestExactReserveAcrossTooManyHoles(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 128, SlotSize: 8})
	w, err := q.Producer().Reserve(66)
	require.NoError(t, err)
	for i := 1; i <= 64; i++ {
		require.NoError(t, w.Abort(i))
	}
	require.NoError(t, w.Publish(0, 8))
	require.NoError(t, w.Publish(65, 8))
	require.Equal(t, 66, q.Ready())
	c := q.Consumer()
	for range 3 {
		_, err = c.Reserve(2)
		require.ErrorIs(t, err, ring.ErrFragmented, "the records are there: waiting would not help")
		require.NotErrorIs(t, err, ring.ErrEmpty)
	}
	_, err = c.Reserve(1)
	require.NoError(t, err, "a smaller exact run is fine")
	r, err := c.ReserveUpTo(2)
	require.NoError(t, err)
	require.Equal(t, 1, r.Len(), "the record after the holes")
	require.Equal(t, uint64(65), r.Position(0))
	require.Equal(t, uint64(64), q.Stats().Skipped)
	_, err = c.Reserve(1)
	require.ErrorIs(t, err, ring.ErrEmpty, "nothing left")
}

func TestDataRegionGarbageChangesPayloadOnly(t *testing.T) {
	q, _, data := newQueue(t, ring.Config{Slots: 4, SlotSize: 8})
	for range 50 {
		produce(t, q, 1, 2)
		for i := range data {
			data[i] = 0xFF
		}
		got := consume(t, q, 4)
		require.Equal(t, []uint64{^uint64(0), ^uint64(0)}, got)
	}
	st := q.Stats()
	require.Zero(t, st.ProducerCorrupt+st.ConsumerCorrupt)
}

// TestReadyReadsStamps: Ready counts what a consumer could take from the
// stamps, so records a far producer published without storing its cursor
// yet count; Len, from the cursors, does not see them.
func TestReadyReadsStamps(t *testing.T) {
	q, meta, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 8, SingleProducer: true})
	require.Zero(t, q.Ready())
	produce(t, q, 1, 2)
	require.Equal(t, 2, q.Ready())
	require.Equal(t, 2, q.Len())
	// A far producer publishes positions 2 and 3 and has not stored its
	// cursor yet.
	for p := uint64(2); p < 4; p++ {
		binary.LittleEndian.PutUint64(meta[ring.OffDescs+ring.DescSize*p:], (p+1)|8<<32)
	}
	require.Equal(t, 4, q.Ready())
	require.Equal(t, 2, q.Len())
	require.Equal(t, []uint64{1}, consume(t, q, 1))
	require.Equal(t, 3, q.Ready())
	// A reserved, unpublished slot ends the count even with records after it.
	binary.LittleEndian.PutUint64(meta[ring.OffProdCursor:], 4)
	w, err := q.Producer().Reserve(2)
	require.NoError(t, err)
	require.NoError(t, w.Publish(1, 8))
	require.Equal(t, 3, q.Ready())
	require.NoError(t, w.Publish(0, 8))
	require.Equal(t, 5, q.Ready())
}

// TestCounterEvents pins which event moves which counter (LAYOUT.md,
// consumer line): published excludes aborts, released excludes holes, a
// successful reserve counts nothing, refusals count one each.
func TestCounterEvents(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 8})
	p, c := q.Producer(), q.Consumer()
	_, err := c.ReserveUpTo(1)
	require.ErrorIs(t, err, ring.ErrEmpty)
	w, err := p.Reserve(6)
	require.NoError(t, err)
	require.Equal(t, ring.Stats{ProducerCursor: 6, Reserved: 6, Empty: 1}, q.Stats(), "a reserve counts nothing")
	require.NoError(t, w.Publish(0, 8))
	require.NoError(t, w.Abort(1)) // a hole
	require.NoError(t, w.Publish(2, 0))
	require.NoError(t, w.AbortAll()) // slots 3-5: the last ones, rolled back
	_, err = p.Reserve(8)
	require.ErrorIs(t, err, ring.ErrFull)
	r, err := c.ReserveUpTo(8)
	require.NoError(t, err)
	require.Equal(t, 2, r.Len())
	require.NoError(t, r.AbortAll()) // given back, with the hole inside
	r, err = c.ReserveUpTo(8)
	require.NoError(t, err)
	require.NoError(t, r.ReleaseAll())
	require.Equal(t, ring.Stats{
		ProducerCursor: 3, ConsumerCursor: 3,
		Reserved: 6, Published: 2, Aborted: 4, RolledBack: 3, Full: 1,
		Consumed: 2, Returned: 2, Released: 2, Skipped: 1, Empty: 1,
	}, q.Stats())
	st := q.Stats()
	require.Equal(t, st.Reserved, st.Published+st.Aborted)
	require.Equal(t, st.Published+st.Aborted-st.RolledBack, st.Released+st.Skipped)
}

// TestAttachIgnoresV1Reserved: generation, the header's reserved bytes and
// the link line mean nothing in version 1; Attach accepts any value there
// (LAYOUT.md, attaching).
func TestAttachIgnoresV1Reserved(t *testing.T) {
	_, meta, data := newQueue(t, ring.Config{Slots: 8, SlotSize: 8})
	for i := ring.OffGeneration; i < 64; i++ {
		meta[i] = 0xA5
	}
	for i := ring.OffLink; i < ring.OffLink+64; i++ {
		meta[i] = 0x5A
	}
	q, err := ring.Attach(meta, data)
	require.NoError(t, err)
	produce(t, q, 42)
	require.Equal(t, 1, q.Ready())
	// The mapping is checked before a word of it is read: too short for
	// the header, or not 8-byte aligned.
	_, err = ring.Attach(meta[:63], data)
	require.ErrorIs(t, err, ring.ErrInvalid)
	shifted := ring.AlignedBytes(len(meta) + 1)[1:]
	copy(shifted, meta)
	_, err = ring.Attach(shifted, data)
	require.ErrorIs(t, err, ring.ErrInvalid)
}

// TestPublishLengths: a run published with a length per slot reads back
// with those lengths, counted once; a bad length or too many refuses the
// whole call and changes nothing; slots already finished are skipped.
func TestPublishLengths(t *testing.T) {
	q, meta, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 16})
	w, err := q.Producer().Reserve(4)
	require.NoError(t, err)
	before := append([]byte(nil), meta...)
	require.ErrorIs(t, w.PublishLengths([]int{1, 2, 17}), ring.ErrInvalid)
	require.ErrorIs(t, w.PublishLengths([]int{1, 2, 3, 4, 5}), ring.ErrInvalid)
	require.ErrorIs(t, w.PublishLengths([]int{-1}), ring.ErrInvalid)
	require.Equal(t, before, meta, "a refused call writes nothing")
	require.NoError(t, w.Abort(1))
	require.NoError(t, w.PublishLengths([]int{3, 9, 16}), "the aborted slot is skipped")
	require.Equal(t, uint64(2), q.Stats().Published)
	require.NoError(t, w.Publish(3, 0))
	r, err := q.Consumer().ReserveUpTo(8)
	require.NoError(t, err)
	var lengths []int
	for i := range r.Len() {
		b, err := r.Slot(i)
		require.NoError(t, err)
		lengths = append(lengths, len(b))
	}
	require.Equal(t, []int{3, 16, 0}, lengths)
	require.NoError(t, r.ReleaseAll())
	require.NoError(t, q.Check())
}
