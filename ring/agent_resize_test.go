package ring_test

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

// arenas is one byte slice standing for a device's address space: regions
// of it are queues' metadata and data, each at address agentBase+offset.
// The owner hands arenas out for new generations and takes them back once
// every agent is done with them.
type arenas struct {
	mem              []byte
	metaSize, stride int
	free             []int // offsets of arenas not in use
}

func newArenas(n, maxSlots, slotSize int) *arenas {
	meta := (ring.MetaSize(maxSlots) + 63) &^ 63
	stride := meta + maxSlots*slotSize
	a := &arenas{mem: ring.AlignedBytes(n * stride), metaSize: meta, stride: stride}
	for i := range n {
		a.free = append(a.free, i*stride)
	}
	return a
}

// take formats a queue of cfg in a free arena and returns it with its
// addresses.
func (a *arenas) take(t *testing.T, cfg ring.Config) (q *ring.Queue, off int) {
	t.Helper()
	require.NotEmpty(t, a.free, "arenas exhausted: generations are not retired")
	off, a.free = a.free[0], a.free[1:]
	meta := a.mem[off:][:cfg.MetaSize()]
	data := a.mem[off+a.metaSize:][:cfg.DataSize()]
	clear(a.mem[off:][:a.stride])
	q, err := ring.Format(meta, data, cfg)
	require.NoError(t, err)
	return q, off
}

func (a *arenas) metaAddr(off int) uint64 { return agentBase + uint64(off) }
func (a *arenas) dataAddr(off int) uint64 { return agentBase + uint64(off+a.metaSize) }

// leaving is a retired generation of an agent's input queue whose arena
// waits for the agent's link_left.
type leaving struct {
	meta []byte
	off  int
}

// giveBack takes back the arenas of the generations in and out retired:
// out's at once (its consumer is this process), in's once the agent that
// consumes it stored link_left there, its last touch; waitLeft are those
// still waiting, which it returns with in's newly retired ones.
func (a *arenas) giveBack(in, out *ring.Resizable, offs map[*ring.Queue]int, waitLeft []leaving) []leaving {
	for _, q := range in.Retire() {
		waitLeft = append(waitLeft, leaving{a.mem[offs[q]:][:ring.OffDescs], offs[q]})
		delete(offs, q)
	}
	kept := waitLeft[:0]
	for _, l := range waitLeft {
		if word32(l.meta, ring.OffLinkLeft).Load() != 0 {
			a.free = append(a.free, l.off)
		} else {
			kept = append(kept, l)
		}
	}
	for _, q := range out.Retire() {
		a.free = append(a.free, offs[q])
		delete(offs, q)
	}
	return kept
}

// memory is the whole space as the agent reaches it.
func (a *arenas) memory() sliceMemory { return sliceMemory{a.mem, agentBase} }

// at is the space's bytes at address addr.
func (a *arenas) at(addr uint64, n int) []byte { return a.mem[addr-agentBase:][:n] }

// putEchoed writes a record (seq, checksum of seq) into b.
func putEchoed(b []byte, seq uint64) {
	binary.LittleEndian.PutUint64(b, seq)
	binary.LittleEndian.PutUint64(b[8:], seq*0x9e3779b97f4a7c15^0x5bd1e995)
}

func checkEchoed(b []byte, want uint64) error {
	if len(b) != 16 {
		return errors.New("record length")
	}
	seq, sum := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
	if sum != seq*0x9e3779b97f4a7c15^0x5bd1e995 {
		return errors.New("checksum")
	}
	if seq != want {
		return errors.New("out of order, lost or duplicated")
	}
	return nil
}

// echoFollowing is an agent that consumes one queue and produces into
// another through Memory alone, as a device does, following every resize
// of both: the producer looks at its link once a batch, the consumer when
// it has drained its generation. It returns after want records.
func echoFollowing(sp *arenas, cons *ring.AgentConsumer, prod *ring.AgentProducer, inData, outData uint64, want int) (follows int, err error) {
	for echoed := 0; echoed < want; {
		if next, ok, err := prod.Follow(nil); err != nil {
			return follows, err
		} else if ok {
			outData = next.DataAddr
			follows++
		}
		n := 0
		for n < 8 {
			length, ok, err := cons.Peek()
			if err != nil {
				return follows, err
			}
			if !ok {
				if err := cons.Sync(); err != nil {
					return follows, err
				}
				next, moved, err := cons.Follow(nil)
				if err != nil {
					return follows, err
				}
				if !moved {
					break
				}
				inData = next.DataAddr
				follows++
				continue
			}
			free, err := prod.Free()
			if err != nil || !free {
				if err != nil {
					return follows, err
				}
				break
			}
			copy(sp.at(outData+prod.SlotOffset(), int(length)), sp.at(inData+cons.SlotOffset(), int(length)))
			if err := prod.Publish(length); err != nil {
				return follows, err
			}
			if err := cons.Release(); err != nil {
				return follows, err
			}
			n++
		}
		if n == 0 {
			runtime.Gosched()
			continue
		}
		echoed += n
		if err := prod.Sync(); err != nil {
			return follows, err
		}
		if err := cons.Sync(); err != nil {
			return follows, err
		}
	}
	return follows, nil
}

// TestAgentFollowsResizes: an owner (ring.Resizable on both queues, one
// goroutine producing, consuming, resizing and retiring between its calls)
// grows and shrinks both queues at random while an agent that reaches
// them only through Memory echoes every record from one to the other.
// Every record comes back once, in order, with its checksum; every resize
// is followed by the agent (its producer seals, its consumer leaves), and
// an arena is reused only after both the queue's Retire and, for the
// queue the agent consumes, its link_left say every agent is done with it.
func TestAgentFollowsResizes(t *testing.T) {
	const records, slotSize, resizes = 60000, 16, 150
	sizes := []int{2, 4, 8, 16, 32, 64}
	sp := newArenas(12, 64, slotSize)
	inCfg := ring.Config{Slots: 16, SlotSize: slotSize, SingleConsumer: true, Resizable: true, Generation: 1}
	outCfg := ring.Config{Slots: 16, SlotSize: slotSize, SingleProducer: true, Resizable: true, Generation: 1}
	in0, inOff := sp.take(t, inCfg)
	out0, outOff := sp.take(t, outCfg)
	offs := map[*ring.Queue]int{in0: inOff, out0: outOff}
	in, err := ring.NewResizableOn(in0)
	require.NoError(t, err)
	out, err := ring.NewResizableOn(out0)
	require.NoError(t, err)

	cons, err := ring.AttachConsumer(sp.memory(), sp.metaAddr(inOff), ring.Config{Slots: 16, SlotSize: slotSize, Resizable: true})
	require.NoError(t, err)
	prod, err := ring.AttachProducer(sp.memory(), sp.metaAddr(outOff), ring.Config{Slots: 16, SlotSize: slotSize, Resizable: true})
	require.NoError(t, err)
	require.Equal(t, uint32(1), cons.Generation())

	var wg sync.WaitGroup
	var follows int
	var agentErr error
	var agentDone atomic.Bool
	wg.Go(func() {
		defer agentDone.Store(true)
		follows, agentErr = echoFollowing(sp, cons, prod, sp.dataAddr(inOff), sp.dataAddr(outOff), records)
	})

	rng := rand.New(rand.NewPCG(1, 2))
	var sent, got uint64
	done := 0
	var waitLeft []leaving
	resize := func(r *ring.Resizable, base ring.Config) bool {
		cfg := base
		cfg.Slots = sizes[rng.IntN(len(sizes))]
		cfg.Generation = r.NextGeneration()
		if r.ResizePending() || len(sp.free) == 0 {
			return false
		}
		q, off := sp.take(t, cfg)
		if err := r.ResizeTo(q, sp.metaAddr(off), sp.dataAddr(off)); err != nil {
			require.ErrorIs(t, err, ring.ErrResizing)
			sp.free = append(sp.free, off)
			return false
		}
		offs[q] = off
		return true
	}
	for got < records {
		if sent < records {
			if w, err := in.Producer().ReserveUpTo(int(min(8, records-sent))); err == nil {
				for i := range w.Len() {
					putEchoed(w.Slot(i), sent)
					sent++
				}
				require.NoError(t, w.PublishAll(16))
			} else {
				require.ErrorIs(t, err, ring.ErrFull)
			}
		}
		if r, err := out.Consumer().ReserveUpTo(8); err == nil {
			for i := range r.Len() {
				b, err := r.Slot(i)
				require.NoError(t, err)
				require.NoError(t, checkEchoed(b, got), "record %d", got)
				got++
			}
			require.NoError(t, r.ReleaseAll())
		} else {
			require.ErrorIs(t, err, ring.ErrEmpty)
		}
		if done < resizes && rng.IntN(40) == 0 {
			a := resize(in, inCfg)
			b := resize(out, outCfg)
			if a || b {
				done++
			}
		}
		waitLeft = sp.giveBack(in, out, offs, waitLeft)
		if agentDone.Load() && agentErr != nil {
			break // the agent stopped early (the atomic orders its error before); reported below
		}
	}
	wg.Wait()
	require.NoError(t, agentErr)
	require.Equal(t, uint64(records), got)
	require.GreaterOrEqual(t, done, 50, "resizes made")
	require.Equal(t, int(in.Stats().Resizes+out.Stats().Resizes), follows, "the agent followed every resize of both queues")
	t.Logf("%d resizes, %d follows by the agent, %d generations of the input queue, %d of the output queue", done, follows, in.Stats().Resizes+1, out.Stats().Resizes+1)
}

// TestAgentFollowHostile: link words and next headers no correct owner
// writes give a typed error, never an access outside the space, and leave
// the agent where it was: its generation not sealed, not left. An agent
// that does not follow resizes still refuses a resizable queue.
func TestAgentFollowHostile(t *testing.T) {
	const slotSize = 16
	geo := ring.Config{Slots: 8, SlotSize: slotSize, Resizable: true}
	for _, c := range []struct {
		name  string
		scrib func(sp *arenas, link []byte, nextOff int)
		is    error
		field string // of a *HeaderError, if one
		mem   bool   // a *ring.MemoryError
	}{
		{"skips a generation", func(_ *arenas, l []byte, _ int) { binary.LittleEndian.PutUint32(l[ring.OffLinkNext:], 3) }, ring.ErrCorrupt, "", false},
		{"slots not a power of two", func(_ *arenas, l []byte, _ int) { binary.LittleEndian.PutUint32(l[ring.OffLinkSlots:], 12) }, ring.ErrCorrupt, "", false},
		{"slots beyond the limit", func(_ *arenas, l []byte, _ int) { binary.LittleEndian.PutUint32(l[ring.OffLinkSlots:], 1<<31) }, ring.ErrCorrupt, "", false},
		{"slots disagree with the header", func(_ *arenas, l []byte, _ int) { binary.LittleEndian.PutUint32(l[ring.OffLinkSlots:], 32) }, ring.ErrIncompatible, "slots", false},
		{"metadata outside the space", func(_ *arenas, l []byte, _ int) { binary.LittleEndian.PutUint64(l[ring.OffLinkMetaAddr:], 1<<62) }, nil, "", true},
		{"metadata address wraps", func(_ *arenas, l []byte, _ int) {
			binary.LittleEndian.PutUint64(l[ring.OffLinkMetaAddr:], ^uint64(0)-7)
		}, nil, "", true},
		{"metadata misaligned", func(_ *arenas, l []byte, _ int) {
			binary.LittleEndian.PutUint64(l[ring.OffLinkMetaAddr:], binary.LittleEndian.Uint64(l[ring.OffLinkMetaAddr:])+4)
		}, ring.ErrCorrupt, "", false},
		{"next header of another generation", func(sp *arenas, _ []byte, off int) {
			binary.LittleEndian.PutUint32(sp.mem[off+ring.OffGeneration:], 7)
		}, ring.ErrCorrupt, "generation", false},
		{"next header not resizable", func(sp *arenas, _ []byte, off int) {
			sp.mem[off+ring.OffFeatures] &^= ring.FeatureResizable
		}, ring.ErrCorrupt, "generation", false},
		{"next header not formatted", func(sp *arenas, _ []byte, off int) { clear(sp.mem[off:][:64]) }, ring.ErrIncompatible, "magic", false},
	} {
		for _, side := range []string{"producer", "consumer"} {
			t.Run(side+"/"+c.name, func(t *testing.T) {
				sp := newArenas(2, 16, slotSize)
				cfg := ring.Config{Slots: 8, SlotSize: slotSize, Resizable: true, Generation: 1}
				if side == "producer" {
					cfg.SingleProducer = true
				} else {
					cfg.SingleConsumer = true
				}
				q0, off0 := sp.take(t, cfg)
				r, err := ring.NewResizableOn(q0)
				require.NoError(t, err)
				cfg.Generation = 2
				q1, off1 := sp.take(t, cfg)
				require.NoError(t, r.ResizeTo(q1, sp.metaAddr(off1), sp.dataAddr(off1)))
				c.scrib(sp, sp.mem[off0:][:ring.OffDescs], off1)
				before := append([]byte(nil), sp.mem...)
				var ferr error
				if side == "producer" {
					p, err := ring.AttachProducer(sp.memory(), sp.metaAddr(off0), geo)
					require.NoError(t, err)
					_, ok, err := p.Follow(nil)
					require.False(t, ok)
					ferr = err
					require.Equal(t, uint32(1), p.Generation(), "still in its generation")
				} else {
					cons, err := ring.AttachConsumer(sp.memory(), sp.metaAddr(off0), geo)
					require.NoError(t, err)
					_, ok, err := cons.Follow(nil)
					require.False(t, ok)
					ferr = err
					require.Equal(t, uint32(1), cons.Generation())
				}
				require.Error(t, ferr)
				if c.is != nil {
					require.ErrorIs(t, ferr, c.is)
				}
				if c.field != "" {
					var he *ring.HeaderError
					require.ErrorAs(t, ferr, &he)
					require.Equal(t, c.field, he.Field)
				}
				if c.mem {
					var me *ring.MemoryError
					require.ErrorAs(t, ferr, &me)
				}
				require.Equal(t, before, sp.mem, "a refused follow writes nothing: not sealed, not left")
			})
		}
	}

	t.Run("consumer/sealed without a next generation", func(t *testing.T) {
		sp := newArenas(1, 16, slotSize)
		_, off := sp.take(t, ring.Config{Slots: 8, SlotSize: slotSize, SingleConsumer: true, Resizable: true, Generation: 1})
		word64(sp.mem, off+ring.OffProdCursor).Store(ring.Sealed)
		cons, err := ring.AttachConsumer(sp.memory(), sp.metaAddr(off), geo)
		require.NoError(t, err)
		_, ok, err := cons.Follow(nil)
		require.False(t, ok)
		require.ErrorIs(t, err, ring.ErrCorrupt)
	})
	t.Run("consumer/sealed behind the consumer", func(t *testing.T) {
		sp := newArenas(1, 16, slotSize)
		_, off := sp.take(t, ring.Config{Slots: 8, SlotSize: slotSize, SingleConsumer: true, Resizable: true, Generation: 1})
		word64(sp.mem, off+ring.OffConsCursor).Store(5)
		word64(sp.mem, off+ring.OffProdCursor).Store(ring.Sealed | 3)
		cons, err := ring.AttachConsumer(sp.memory(), sp.metaAddr(off), geo)
		require.NoError(t, err)
		_, ok, err := cons.Follow(nil)
		require.False(t, ok)
		require.ErrorIs(t, err, ring.ErrCorrupt)
	})
	t.Run("not following refuses", func(t *testing.T) {
		sp := newArenas(1, 16, slotSize)
		_, off := sp.take(t, ring.Config{Slots: 8, SlotSize: slotSize, SingleProducer: true, Resizable: true, Generation: 1})
		_, err := ring.AttachProducer(sp.memory(), sp.metaAddr(off), ring.Config{Slots: 8, SlotSize: slotSize})
		var he *ring.HeaderError
		require.ErrorAs(t, err, &he)
		require.Equal(t, "features", he.Field)
		require.ErrorIs(t, err, ring.ErrIncompatible)
	})
	t.Run("producer attached sealed moves on without storing", func(t *testing.T) {
		sp := newArenas(2, 16, slotSize)
		cfg := ring.Config{Slots: 8, SlotSize: slotSize, SingleProducer: true, Resizable: true, Generation: 1}
		q0, off0 := sp.take(t, cfg)
		r, err := ring.NewResizableOn(q0)
		require.NoError(t, err)
		cfg.Generation = 2
		q1, off1 := sp.take(t, cfg)
		require.NoError(t, r.ResizeTo(q1, sp.metaAddr(off1), sp.dataAddr(off1)))
		word64(sp.mem, off0+ring.OffProdCursor).Store(ring.Sealed | 2)
		p, err := ring.AttachProducer(sp.memory(), sp.metaAddr(off0), geo)
		require.NoError(t, err)
		free, err := p.Free()
		require.NoError(t, err)
		require.False(t, free, "a sealed generation has no room")
		next, ok, err := p.Follow(nil)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, ring.Next{Generation: 2, Slots: 8, MetaAddr: sp.metaAddr(off1), DataAddr: sp.dataAddr(off1)}, next)
		require.Equal(t, uint64(ring.Sealed|2), word64(sp.mem, off0+ring.OffProdCursor).Load())
		free, err = p.Free()
		require.NoError(t, err)
		require.True(t, free)
	})
}

// FuzzAgentFollow: a following agent over a link line, a next header and
// cursors a hostile owner wrote never panics or reaches outside its space;
// every error is typed and leaves it in its generation with nothing
// sealed; a follow that succeeds lands on a header that names the
// generation, slot count and slot size the link promised.
func FuzzAgentFollow(f *testing.F) {
	const slotSize = 8
	f.Add([]byte{2, 0, 0, 0, 4, 0, 0, 0}, []byte{}, uint64(0), uint64(0))
	f.Add([]byte{3, 0, 0, 0, 4, 0, 0, 0}, []byte{0xff}, uint64(ring.Sealed), uint64(0))
	f.Fuzz(func(t *testing.T, link, header []byte, prodCursor, consCursor uint64) {
		sp := newArenas(2, 8, slotSize)
		cfg := ring.Config{Slots: 4, SlotSize: slotSize, SingleProducer: true, SingleConsumer: true, Resizable: true, Generation: 1}
		q0, off0 := sp.take(t, cfg)
		cfg.Generation = 2
		q1, off1 := sp.take(t, cfg)
		r, err := ring.NewResizableOn(q0)
		require.NoError(t, err)
		require.NoError(t, r.ResizeTo(q1, sp.metaAddr(off1), sp.dataAddr(off1)))
		copy(sp.mem[off0+ring.OffLink:][:64], link)
		copy(sp.mem[off1:][:64], header)
		word64(sp.mem, off0+ring.OffProdCursor).Store(prodCursor)
		word64(sp.mem, off0+ring.OffConsCursor).Store(consCursor)
		typed := func(err error) {
			var (
				he *ring.HeaderError
				ce *ring.CorruptError
				me *ring.MemoryError
			)
			if err != nil && !errors.As(err, &he) && !errors.As(err, &ce) && !errors.As(err, &me) {
				t.Fatalf("untyped error %v", err)
			}
		}
		landed := func(next ring.Next) {
			h, err := ring.ReadHeader(sp.memory(), next.MetaAddr)
			require.NoError(t, err)
			require.Equal(t, next.Generation, h.Generation)
			require.Equal(t, next.Slots, h.Slots)
			require.Equal(t, slotSize, h.SlotSize)
		}
		geo := ring.Config{Slots: 4, SlotSize: slotSize, Resizable: true}
		if p, err := ring.AttachProducer(sp.memory(), sp.metaAddr(off0), geo); err == nil {
			before := word64(sp.mem, off0+ring.OffProdCursor).Load()
			next, ok, err := p.Follow(nil)
			typed(err)
			if ok {
				landed(next)
				require.NotZero(t, word64(sp.mem, off0+ring.OffProdCursor).Load()&ring.Sealed, "left sealed")
			} else {
				require.Equal(t, before, word64(sp.mem, off0+ring.OffProdCursor).Load(), "not sealed on a refusal")
				require.Equal(t, uint32(1), p.Generation())
			}
		} else {
			typed(err)
		}
		if c, err := ring.AttachConsumer(sp.memory(), sp.metaAddr(off0), geo); err == nil {
			next, ok, err := c.Follow(nil)
			typed(err)
			left := word32(sp.mem, off0+ring.OffLinkLeft).Load()
			if ok {
				landed(next)
				require.Equal(t, next.Generation, left)
			} else {
				require.Equal(t, uint32(1), c.Generation())
			}
		} else {
			typed(err)
		}
	})
}

// TestAgentConsumerNamed: Named says whether a resize named the next
// generation, which a consumer polling an empty queue asks before it loads
// the producer cursor (Drained); an agent that does not follow resizes
// never sees one named.
func TestAgentConsumerNamed(t *testing.T) {
	sp := newArenas(2, 16, 16)
	cfg := ring.Config{Slots: 16, SlotSize: 16, SingleConsumer: true, Resizable: true, Generation: 1}
	q0, off0 := sp.take(t, cfg)
	r, err := ring.NewResizableOn(q0)
	require.NoError(t, err)
	cons, err := ring.AttachConsumer(sp.memory(), sp.metaAddr(off0), ring.Config{Slots: 16, SlotSize: 16, Resizable: true})
	require.NoError(t, err)
	named, err := cons.Named()
	require.NoError(t, err)
	require.False(t, named, "nothing named yet")
	drained, err := cons.Drained()
	require.NoError(t, err)
	require.False(t, drained)

	next := cfg
	next.Slots, next.Generation = 8, r.NextGeneration()
	q1, off1 := sp.take(t, next)
	require.NoError(t, r.ResizeTo(q1, sp.metaAddr(off1), sp.dataAddr(off1)))
	named, err = cons.Named()
	require.NoError(t, err)
	require.True(t, named, "the resize named generation 2")
	drained, err = cons.Drained()
	require.NoError(t, err)
	require.True(t, drained, "sealed and empty")
	_, ok, err := cons.Follow(nil)
	require.NoError(t, err)
	require.True(t, ok)
	named, err = cons.Named()
	require.NoError(t, err)
	require.False(t, named, "generation 2 names none")
}
