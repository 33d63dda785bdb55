package ring_test

import (
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/ring"
)

// sliceMemory is a metadata region reached through ring.Memory at a base
// address, as a device reaches host memory by IOVA. Accesses outside it,
// or misaligned, fail.
type sliceMemory struct {
	meta []byte
	base uint64
}

var errOutside = errors.New("outside the mapped range")

func (m sliceMemory) off(a uint64, n uint64) (int, error) {
	if a < m.base || a-m.base > uint64(len(m.meta)) || n > uint64(len(m.meta))-(a-m.base) || a%n != 0 {
		return 0, errOutside
	}
	return int(a - m.base), nil
}

func (m sliceMemory) Load32(a uint64) (uint32, error) {
	o, err := m.off(a, 4)
	if err != nil {
		return 0, err
	}
	return word32(m.meta, o).Load(), nil
}

func (m sliceMemory) Store32(a uint64, v uint32) error {
	o, err := m.off(a, 4)
	if err == nil {
		word32(m.meta, o).Store(v)
	}
	return err
}

func (m sliceMemory) Load64(a uint64) (uint64, error) {
	o, err := m.off(a, 8)
	if err != nil {
		return 0, err
	}
	return word64(m.meta, o).Load(), nil
}

func (m sliceMemory) Store64(a uint64, v uint64) error {
	o, err := m.off(a, 8)
	if err == nil {
		word64(m.meta, o).Store(v)
	}
	return err
}

const agentBase = 0x40000

// TestAgentEcho: two Go producers feed an AgentConsumer, which echoes each
// record through an AgentProducer to two Go consumers; holes, batches of
// syncs and the wake lines are exercised. Every record arrives once, in
// order per producer, and the counters agree.
func TestAgentEcho(t *testing.T) {
	const perProducer, slots, slotSize = 20000, 16, 16
	in, inMeta, inData := newQueue(t, ring.Config{Slots: slots, SlotSize: slotSize, SingleConsumer: true})
	out, outMeta, outData := newQueue(t, ring.Config{Slots: slots, SlotSize: slotSize, SingleProducer: true})
	geo := ring.Config{Slots: slots, SlotSize: slotSize}
	cons, err := ring.AttachConsumer(sliceMemory{inMeta, agentBase}, agentBase, geo)
	require.NoError(t, err)
	prod, err := ring.AttachProducer(sliceMemory{outMeta, agentBase}, agentBase, geo)
	require.NoError(t, err)

	var wg sync.WaitGroup
	for id := range 2 {
		wg.Go(func() { produceWithHoles(t, in, uint32(id), perProducer, slotSize, 5) })
	}
	agentErr := make(chan error, 1)
	wg.Go(func() { agentErr <- echo(cons, prod, inData, outData, 2*perProducer) })
	verify := record.NewVerifier(2)
	consumeRecords(t, out, 2*perProducer, 4, func(producer uint32, seq uint64) {
		require.NoError(t, verify.Add(producer, seq))
	})
	wg.Wait()
	require.NoError(t, <-agentErr)
	require.NoError(t, verify.Done(perProducer))
	_, ok, err := cons.Peek()
	require.NoError(t, err)
	require.False(t, ok, "nothing left")

	st := in.Stats()
	require.Equal(t, uint64(2*perProducer), st.Released)
	require.NotZero(t, st.Skipped)
	require.Equal(t, st.Aborted-st.RolledBack, st.Skipped, "every hole passed over once")
	require.Equal(t, st.Skipped, cons.HolesPassed(), "the agent counted the holes it passed")
	require.Equal(t, cons.Pos(), st.ConsumerCursor)
	require.NoError(t, in.Check())
	ost := out.Stats()
	require.Equal(t, uint64(2*perProducer), ost.Published)
	require.Equal(t, prod.Pos(), ost.ProducerCursor)
	require.NotZero(t, ost.ProducerWakeSuppressed, "nobody slept: every wake was suppressed")
	require.Zero(t, ost.ProducerWakeSent)
	require.NoError(t, out.Check())
}

// echo is a device's loop: copy each record from cons to prod in batches,
// syncing the cursors and waking the other sides after each batch.
func echo(cons *ring.AgentConsumer, prod *ring.AgentProducer, inData, outData []byte, want int) error {
	for echoed := 0; echoed < want; {
		n := 0
		for n < 8 {
			length, ok, err := cons.Peek()
			if err != nil || !ok {
				if err != nil {
					return err
				}
				break
			}
			free, err := prod.Free()
			if err != nil {
				return err
			}
			if !free {
				break
			}
			copy(outData[prod.SlotOffset():][:length], inData[cons.SlotOffset():][:length])
			if err := prod.Publish(length); err != nil {
				return err
			}
			if err := cons.Release(); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			runtime.Gosched()
			continue
		}
		echoed += n
		for _, f := range []func() error{
			func() error { return prod.Sync() },
			func() error { _, err := prod.WakeConsumers(); return err },
			func() error { return cons.Sync() },
			func() error { _, err := cons.WakeProducers(); return err },
		} {
			if err := f(); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestAgentRefuses: a header that does not describe the queue the agent
// was told of, or that its side cannot drive, is refused with the field
// and its offset; an access that fails is a *MemoryError.
func TestAgentRefuses(t *testing.T) {
	geo := ring.Config{Slots: 16, SlotSize: 16}
	for _, c := range []struct {
		name  string
		cfg   ring.Config
		want  ring.Config
		scrib func(meta []byte)
		base  uint64
		field string
		off   uint64
		is    error
	}{
		{"not formatted", ring.Config{Slots: 16, SlotSize: 16, SingleConsumer: true}, geo, func(m []byte) { clear(m[:64]) }, agentBase, "magic", ring.OffMagic, ring.ErrIncompatible},
		{"slot count disagrees", ring.Config{Slots: 32, SlotSize: 16, SingleConsumer: true}, geo, nil, agentBase, "slots", ring.OffSlots, ring.ErrIncompatible},
		{"slot size disagrees", ring.Config{Slots: 16, SlotSize: 32, SingleConsumer: true}, geo, nil, agentBase, "slot_size", ring.OffSlotSize, ring.ErrIncompatible},
		{"not single consumer", ring.Config{Slots: 16, SlotSize: 16}, geo, nil, agentBase, "features", ring.OffFeatures, ring.ErrIncompatible},
		{"meta size rewritten", ring.Config{Slots: 16, SlotSize: 16, SingleConsumer: true}, geo, func(m []byte) { m[ring.OffMetaSize]++ }, agentBase, "meta_size", ring.OffMetaSize, ring.ErrCorrupt},
		{"unknown required feature", ring.Config{Slots: 16, SlotSize: 16, SingleConsumer: true}, geo, func(m []byte) { m[ring.OffFeatures] |= 0x80 }, agentBase, "features", ring.OffFeatures, ring.ErrIncompatible},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, meta, _ := newQueue(t, c.cfg)
			if c.scrib != nil {
				c.scrib(meta)
			}
			before := append([]byte(nil), meta...)
			_, err := ring.AttachConsumer(sliceMemory{meta, c.base}, c.base, c.want)
			var he *ring.HeaderError
			require.ErrorAs(t, err, &he)
			require.Equal(t, c.field, he.Field)
			require.Equal(t, c.off, he.Off)
			require.ErrorIs(t, err, c.is)
			require.Equal(t, before, meta, "a refused attach writes nothing")
		})
	}
	_, meta, _ := newQueue(t, ring.Config{Slots: 16, SlotSize: 16, SingleProducer: true})
	_, err := ring.AttachProducer(sliceMemory{meta, agentBase}, agentBase+0x1000, geo)
	var me *ring.MemoryError
	require.ErrorAs(t, err, &me)
	require.Equal(t, uint64(agentBase+0x1000+ring.OffMagic), me.Addr)
	require.ErrorIs(t, err, errOutside)
	_, err = ring.AttachProducer(sliceMemory{meta, agentBase}, agentBase, ring.Config{Slots: 12, SlotSize: 16})
	require.ErrorIs(t, err, ring.ErrInvalid)
}

// TestAgentCorrupt: stamps and lengths no correct peer writes are a
// *CorruptError with the descriptor's address, and change nothing.
func TestAgentCorrupt(t *testing.T) {
	geo := ring.Config{Slots: 16, SlotSize: 16}
	desc0 := uint64(agentBase + ring.OffDescs)
	for _, c := range []struct {
		name string
		word uint64
	}{
		{"stamp from nowhere", 0x77 | 8<<32},
		{"length larger than the slot", 1 | 24<<32},
		{"unknown flag", 1 | 1<<57},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, meta, _ := newQueue(t, ring.Config{Slots: 16, SlotSize: 16, SingleConsumer: true})
			cons, err := ring.AttachConsumer(sliceMemory{meta, agentBase}, agentBase, geo)
			require.NoError(t, err)
			word64(meta, ring.OffDescs).Store(c.word)
			before := append([]byte(nil), meta...)
			_, _, err = cons.Peek()
			var ce *ring.CorruptError
			require.ErrorAs(t, err, &ce)
			require.ErrorIs(t, err, ring.ErrCorrupt)
			require.Equal(t, desc0, ce.Addr)
			require.Equal(t, before, meta)
			require.Zero(t, cons.Pos())
		})
	}
	_, meta, _ := newQueue(t, ring.Config{Slots: 16, SlotSize: 16, SingleProducer: true})
	prod, err := ring.AttachProducer(sliceMemory{meta, agentBase}, agentBase, geo)
	require.NoError(t, err)
	word64(meta, ring.OffDescs+ring.DescSize).Store(0x1234)
	free, err := prod.Free()
	require.NoError(t, err)
	require.True(t, free)
	require.ErrorIs(t, prod.Publish(17), ring.ErrInvalid, "a record longer than the slot")
	require.Zero(t, prod.Pos())
	require.NoError(t, prod.Publish(16))
	_, err = prod.Free()
	var ce *ring.CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, desc0+ring.DescSize, ce.Addr)
}

// TestAgentWake: a side that sleeps is woken (futex bumped, counted as
// sent), one that does not is not (counted as suppressed); each agent
// counts in its own line and registers itself on the line it waits on.
func TestAgentWake(t *testing.T) {
	geo := ring.Config{Slots: 16, SlotSize: 16}
	q, meta, _ := newQueue(t, ring.Config{Slots: 16, SlotSize: 16, SingleProducer: true, SingleConsumer: true})
	m := sliceMemory{meta, agentBase}
	prod, err := ring.AttachProducer(m, agentBase, geo)
	require.NoError(t, err)
	cons, err := ring.AttachConsumer(m, agentBase, geo)
	require.NoError(t, err)

	woke, err := prod.WakeConsumers()
	require.NoError(t, err)
	require.False(t, woke)
	require.NoError(t, cons.Sleeping(true))
	require.Equal(t, uint32(1), q.ItemsWake().Waiters().Load())
	woke, err = prod.WakeConsumers()
	require.NoError(t, err)
	require.True(t, woke)
	require.Equal(t, uint32(1), q.ItemsWake().Futex().Load())
	require.NoError(t, cons.Sleeping(false))
	require.Zero(t, q.ItemsWake().Waiters().Load())

	require.NoError(t, prod.Sleeping(true))
	require.Equal(t, uint32(1), q.SpaceWake().Waiters().Load())
	woke, err = cons.WakeProducers()
	require.NoError(t, err)
	require.True(t, woke)
	require.Equal(t, uint32(1), q.SpaceWake().Futex().Load())
	st := q.Stats()
	require.Equal(t, [4]uint64{1, 1, 1, 0}, [4]uint64{st.ProducerWakeSent, st.ProducerWakeSuppressed, st.ConsumerWakeSent, st.ConsumerWakeSuppressed})
}

// FuzzAgent: an agent over metadata a hostile peer wrote in full never
// panics, reads or writes outside the region, hands out a record longer
// than a slot, or moves the producer cursor on an error; every error is
// one of the typed ones.
func FuzzAgent(f *testing.F) {
	cfg := ring.Config{Slots: 4, SlotSize: 8, SingleProducer: true, SingleConsumer: true}
	meta := ring.AlignedBytes(cfg.MetaSize())
	if _, err := ring.Format(meta, make([]byte, cfg.DataSize()), cfg); err != nil {
		f.Fatal(err)
	}
	f.Add(meta, []byte{0, 1, 2, 3, 2, 6, 0, 1})
	f.Fuzz(func(t *testing.T, meta, ops []byte) {
		m := sliceMemory{meta: meta, base: agentBase}
		typed := func(err error) {
			var (
				he *ring.HeaderError
				ce *ring.CorruptError
				me *ring.MemoryError
			)
			if err != nil && !errors.As(err, &he) && !errors.As(err, &ce) && !errors.As(err, &me) && !errors.Is(err, ring.ErrInvalid) {
				t.Fatalf("untyped error %v", err)
			}
		}
		geo := ring.Config{Slots: 4, SlotSize: 8}
		cons, err := ring.AttachConsumer(m, agentBase, geo)
		typed(err)
		prod, err := ring.AttachProducer(m, agentBase, geo)
		typed(err)
		for _, op := range ops {
			switch {
			case cons != nil && op%4 == 0:
				// Holes passed before an error stay passed; the slot
				// that was bad is not consumed.
				length, ok, err := cons.Peek()
				typed(err)
				if ok {
					require.LessOrEqual(t, length, uint32(8))
					typed(cons.Release())
				}
			case cons != nil && op%4 == 1:
				typed(cons.Sync())
				_, err := cons.WakeProducers()
				typed(err)
			case prod != nil && op%4 == 2:
				free, err := prod.Free()
				typed(err)
				if free {
					pos := prod.Pos()
					err := prod.Publish(uint32(op >> 2))
					typed(err)
					if err != nil {
						require.Equal(t, pos, prod.Pos())
					}
				}
			case prod != nil:
				typed(prod.Sync())
				typed(prod.Sleeping(op&4 != 0))
			}
		}
	})
}

// TestLateSingleAgentCursor: a single agent that stores its cursor late, as
// LAYOUT.md allows, leaves Len, Ready and Check right (issue 12, bug 4:
// Len read 0 and Check reported cursors a lap apart).
func TestLateSingleAgentCursor(t *testing.T) {
	geo := ring.Config{Slots: 8, SlotSize: 16}
	t.Run("producer", func(t *testing.T) {
		q, meta, data := newQueue(t, ring.Config{Slots: 8, SlotSize: 16, SingleProducer: true})
		prod, err := ring.AttachProducer(sliceMemory{meta, agentBase}, agentBase, geo)
		require.NoError(t, err)
		for i := range 3 {
			writeRecord(data[prod.SlotOffset():][:16], 1, uint64(i), 16)
			require.NoError(t, prod.Publish(16)) // no Sync: the stored cursor stays 0
		}
		require.Equal(t, 3, q.Len())
		require.Equal(t, 3, q.Ready())
		r, err := q.Consumer().Reserve(2)
		require.NoError(t, err)
		require.NoError(t, r.ReleaseAll())
		require.NoError(t, q.Check(), "consumers ahead of a late single producer's cursor")
		require.Equal(t, 1, q.Len())
		require.NoError(t, prod.Sync())
		require.NoError(t, q.Check())
		require.Equal(t, 1, q.Len())
	})
	t.Run("consumer", func(t *testing.T) {
		q, meta, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 16, SingleConsumer: true})
		cons, err := ring.AttachConsumer(sliceMemory{meta, agentBase}, agentBase, geo)
		require.NoError(t, err)
		p := q.Producer()
		w, err := p.Reserve(8)
		require.NoError(t, err)
		require.NoError(t, w.PublishAll(16))
		for range 7 { // less than a lap, as the rule says
			_, ok, err := cons.Peek()
			require.NoError(t, err)
			require.True(t, ok)
			require.NoError(t, cons.Release()) // no Sync: the stored cursor stays 0
		}
		w, err = p.Reserve(7)
		require.NoError(t, err)
		require.NoError(t, w.PublishAll(16))
		require.NoError(t, q.Check(), "producers more than a lap past a late single consumer's cursor")
		require.Equal(t, 8, q.Ready(), "the stamps past what the consumer released")
		require.NoError(t, cons.Sync())
		require.NoError(t, q.Check())
		require.Equal(t, 8, q.Ready())
		require.Equal(t, 8, q.Len())
	})
}

// TestAgentHoleLengthIgnored: an aborted slot is a hole whatever length it
// carries, for the agent as for a Queue's consumers (LAYOUT.md, descriptors).
func TestAgentHoleLengthIgnored(t *testing.T) {
	geo := ring.Config{Slots: 8, SlotSize: 16}
	q, meta, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 16, SingleConsumer: true})
	w, err := q.Producer().Reserve(2)
	require.NoError(t, err)
	require.NoError(t, w.Publish(1, 0)) // an empty record is a record
	// A hole whose length field holds garbage.
	word64(meta, ring.OffDescs).Store(1 | uint64(ring.FlagAborted<<ring.InfoFlagsShift|0x123456)<<32)
	cons, err := ring.AttachConsumer(sliceMemory{meta, agentBase}, agentBase, geo)
	require.NoError(t, err)
	length, ok, err := cons.Peek()
	require.NoError(t, err)
	require.True(t, ok)
	require.Zero(t, length)
	require.Equal(t, uint64(1), cons.Pos(), "the hole was passed")
	require.Equal(t, uint64(1), cons.HolesPassed())
	// A Queue consumer reads the same bytes the same way.
	q2, meta2, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 16})
	w, err = q2.Producer().Reserve(2)
	require.NoError(t, err)
	require.NoError(t, w.Publish(1, 0))
	word64(meta2, ring.OffDescs).Store(1 | uint64(ring.FlagAborted<<ring.InfoFlagsShift|0x123456)<<32)
	r, err := q2.Consumer().ReserveUpTo(2)
	require.NoError(t, err)
	require.Equal(t, 1, r.Len())
	b, err := r.Slot(0)
	require.NoError(t, err)
	require.Empty(t, b)
}
