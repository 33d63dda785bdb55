package ring_test

import (
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

// The far side: a single producer and a single consumer written from
// LAYOUT.md alone, with its literal offsets and nothing from package ring,
// using only ordered 32-bit loads and stores, as firmware on a 32-bit
// device would. It proves the page is enough to interoperate.
const (
	lmSlots       = 16  // header: u32 slot count
	lmSlotSize    = 20  // header: u32 slot size
	lmProdCursor  = 64  // u64
	lmConsCursor  = 128 // u64
	lmDescs       = 384
	lmDescSize    = 8
	lmFlagAborted = 1 << 24 // in the info word
)

type farSide struct {
	meta, data      []byte
	n, slotSize     uint32
	prodPos, conPos uint64 // a single agent keeps its cursor privately
}

func newFarSide(meta, data []byte) *farSide {
	f := &farSide{meta: meta, data: data,
		n: word32(meta, lmSlots).Load(), slotSize: word32(meta, lmSlotSize).Load()}
	f.prodPos = word64(meta, lmProdCursor).Load()
	f.conPos = word64(meta, lmConsCursor).Load()
	return f
}

func (f *farSide) desc(p uint64) int { return lmDescs + lmDescSize*int(p%uint64(f.n)) }

// produce publishes one record if the next slot is free.
func (f *farSide) produce(payload []byte) bool {
	p := f.prodPos
	d := f.desc(p)
	if word32(f.meta, d).Load() != uint32(p) { // stamp p: free
		return false
	}
	f.prodPos++
	word32(f.meta, lmProdCursor).Store(uint32(f.prodPos)) // low half first, then high
	word32(f.meta, lmProdCursor+4).Store(uint32(f.prodPos >> 32))
	off := int(p%uint64(f.n)) * int(f.slotSize)
	copy(f.data[off:off+int(f.slotSize)], payload)
	word32(f.meta, d+4).Store(uint32(len(payload))) // info, then the stamp
	word32(f.meta, d).Store(uint32(p) + 1)
	return true
}

// consume takes one record if the next slot is published, skipping holes.
func (f *farSide) consume(out func([]byte)) bool {
	for {
		p := f.conPos
		d := f.desc(p)
		if word32(f.meta, d).Load() != uint32(p)+1 { // stamp p+1: published
			return false
		}
		info := word32(f.meta, d+4).Load()
		f.conPos++
		word32(f.meta, lmConsCursor).Store(uint32(f.conPos))
		word32(f.meta, lmConsCursor+4).Store(uint32(f.conPos >> 32))
		if info&lmFlagAborted == 0 {
			off := int(p%uint64(f.n)) * int(f.slotSize)
			out(f.data[off : off+int(info&0xffffff)])
		}
		word32(f.meta, d+4).Store(0)
		word32(f.meta, d).Store(uint32(p) + f.n) // stamp p+N: released
		if info&lmFlagAborted == 0 {
			return true
		}
	}
}

// produceWithHoles publishes perProducer records of size bytes from
// producer id into q, in runs of up to 3, aborting the first slot of a run
// now and then (when seq%holeEvery == holeEvery/2) so consumers meet holes.
func produceWithHoles(t *testing.T, q *ring.Queue, id uint32, perProducer uint64, size, holeEvery int) {
	p := q.Producer()
	for seq := uint64(0); seq < perProducer; {
		w, err := p.ReserveUpTo(3)
		if errors.Is(err, ring.ErrFull) {
			runtime.Gosched()
			continue
		}
		if err != nil {
			t.Error(err)
			return
		}
		for i := range w.Len() {
			if seq%uint64(holeEvery) == uint64(holeEvery/2) && i == 0 && w.Len() > 1 {
				_ = w.Abort(i)
				continue
			}
			writeRecord(w.Slot(i), id, seq, size)
			_ = w.Publish(i, size)
			seq++
			if seq == perProducer {
				_ = w.AbortAll()
				break
			}
		}
	}
}

// consumeRecords takes n records from q in runs of up to batch, checks
// each one's format and hands what it carries to got, in queue order.
func consumeRecords(t *testing.T, q *ring.Queue, n, batch int, got func(producer uint32, seq uint64)) {
	t.Helper()
	c := q.Consumer()
	for taken := 0; taken < n; {
		r, err := c.ReserveUpTo(batch)
		if errors.Is(err, ring.ErrEmpty) {
			runtime.Gosched()
			continue
		}
		require.NoError(t, err)
		for i := range r.Len() {
			b, err := r.Slot(i)
			require.NoError(t, err)
			producer, seq, err := checkRecord(b)
			require.NoError(t, err)
			got(producer, seq)
		}
		taken += r.Len()
		require.NoError(t, r.ReleaseAll())
	}
}

// TestFarSide: ring producers feed the far consumer, and the far producer
// feeds ring consumers, all at once.
func TestFarSide(t *testing.T) {
	const perProducer = 20000
	toFar, toFarMeta, toFarData := newQueue(t, ring.Config{Slots: 32, SlotSize: 32, SingleConsumer: true})
	fromFar, fromFarMeta, fromFarData := newQueue(t, ring.Config{Slots: 32, SlotSize: 32, SingleProducer: true})

	var wg sync.WaitGroup
	// Two ring producers, with aborts, into the far consumer.
	for id := range 2 {
		wg.Go(func() { produceWithHoles(t, toFar, uint32(id), perProducer, 32, 7) })
	}
	// The far side: consume everything, and echo it back through its own
	// producer into the other queue.
	farErr := make(chan error, 1)
	wg.Go(func() {
		in := newFarSide(toFarMeta, toFarData)
		out := newFarSide(fromFarMeta, fromFarData)
		var pending [][]byte
		got := 0
		for got < 2*perProducer || len(pending) > 0 {
			if got < 2*perProducer && in.consume(func(b []byte) { pending = append(pending, append([]byte(nil), b...)) }) {
				got++
				continue
			}
			if len(pending) > 0 && out.produce(pending[0]) {
				pending = pending[1:]
				continue
			}
			runtime.Gosched()
		}
		farErr <- nil
	})
	// Two ring consumers on the far producer's queue.
	logs := make([][]seen, 2)
	var taken sync.Mutex
	total := 0
	for id := range 2 {
		wg.Go(func() {
			c := fromFar.Consumer()
			for {
				taken.Lock()
				done := total == 2*perProducer
				taken.Unlock()
				if done {
					return
				}
				r, err := c.ReserveUpTo(4)
				if errors.Is(err, ring.ErrEmpty) {
					runtime.Gosched()
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				for i := range r.Len() {
					b, err := r.Slot(i)
					var s seen
					if err == nil {
						s.producer, s.seq, err = checkRecord(b)
					}
					if err != nil {
						t.Error(err)
						return
					}
					s.pos = r.Position(i)
					logs[id] = append(logs[id], s)
				}
				taken.Lock()
				total += r.Len()
				taken.Unlock()
				if err := r.ReleaseAll(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, <-farErr)
	// The far side passed each producer's records on in the order it got
	// them, so per-producer order must hold end to end.
	verifySeen(t, append(logs[0], logs[1]...), 2, perProducer)
	require.NoError(t, toFar.Check())
	require.NoError(t, fromFar.Check())
	st := toFar.Stats()
	require.NotZero(t, st.Aborted)
	require.Equal(t, uint64(2*perProducer), fromFar.Stats().Released)
}
