package ring_test

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

// knownErr reports whether err is one of the errors the API promises.
func knownErr(err error) bool {
	for _, e := range []error{ring.ErrFull, ring.ErrEmpty, ring.ErrCorrupt, ring.ErrInvalid, ring.ErrNotHeld, ring.ErrNotLast, ring.ErrIncompatible, ring.ErrFragmented, ring.ErrSealed, ring.ErrResizing} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// FuzzAttach gives Attach arbitrary metadata. It must refuse with a typed
// error or return a queue whose operations stay in bounds.
func FuzzAttach(f *testing.F) {
	cfg := ring.Config{Slots: 4, SlotSize: 16}
	q, err := ring.New(cfg)
	require.NoError(f, err)
	good := ring.AlignedBytes(cfg.MetaSize())
	_, err = ring.Format(good, make([]byte, cfg.DataSize()), cfg)
	require.NoError(f, err)
	_ = q
	f.Add(good, uint16(cfg.DataSize()))
	f.Add(good[:64], uint16(64))
	f.Add([]byte{}, uint16(0))
	f.Add(append([]byte("YCQ1\x01\x00\x00\x00"), make([]byte, 100)...), uint16(8))
	f.Fuzz(func(t *testing.T, metaIn []byte, dataLen uint16) {
		meta := ring.AlignedBytes(len(metaIn))
		copy(meta, metaIn)
		data := make([]byte, dataLen)
		q, err := ring.Attach(meta, data)
		if err != nil {
			if !knownErr(err) {
				t.Fatalf("untyped error: %v", err)
			}
			if q != nil {
				t.Fatal("queue returned with an error")
			}
			return
		}
		c := q.Config()
		if c.MetaSize() > len(meta) || c.DataSize() > len(data) {
			t.Fatalf("attached a queue larger than its regions: %+v", c)
		}
		exercise(t, q, meta, []byte{0, 3, 1, 2, 6, 8, 9, 7, 10, 4, 5, 11, 1, 3, 7, 9})
	})
}

// FuzzOps runs arbitrary operation sequences on an honest queue and checks
// it against a model: every published record is read back intact, once, in
// position order, and no corruption is ever reported.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 4, 3, 6, 4, 8, 0, 9, 0})
	f.Add([]byte{1, 8, 2, 0, 5, 2, 1, 5, 7, 8, 11, 1, 7, 8, 10})
	f.Add([]byte{0, 7, 4, 2, 3, 7, 3, 11, 0, 6, 2, 10, 1, 3, 0, 3, 1, 7, 5, 9, 1, 9, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		for _, single := range []bool{false, true} {
			q, err := ring.New(ring.Config{Slots: 8, SlotSize: 16, SingleProducer: single, SingleConsumer: single})
			require.NoError(t, err)
			m := newModel(q)
			m.run(t, ops, nil)
			m.drain(t)
		}
	})
}

// FuzzHostile runs arbitrary operation sequences while the sequence itself
// and another goroutine write arbitrary words over the metadata. Nothing may
// panic, run out of bounds or spin forever, and every error must be typed.
func FuzzHostile(f *testing.F) {
	f.Add([]byte{0, 4, 12, 9, 1, 2, 3, 4, 5, 6, 7, 8, 3, 6, 4, 8, 0, 9, 0}, uint64(1))
	f.Add([]byte{1, 8, 12, 64, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 6, 8, 9}, uint64(2))
	f.Add([]byte{12, 128, 255, 255, 255, 255, 255, 255, 255, 255, 6, 7, 12, 200, 1, 0, 0, 0, 0, 0, 0, 9, 7, 8}, uint64(3))
	f.Fuzz(func(t *testing.T, ops []byte, seed uint64) {
		cfg := ring.Config{Slots: 8, SlotSize: 16, SingleConsumer: seed&1 == 1}
		meta := ring.AlignedBytes(cfg.MetaSize())
		q, err := ring.Format(meta, make([]byte, cfg.DataSize()), cfg)
		require.NoError(t, err)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, 0))
			for {
				select {
				case <-stop:
					return
				default:
				}
				v := rng.Uint64()
				if rng.IntN(2) == 0 {
					v &= 0xff // small values hit the interesting cases
				}
				scribble(meta, rng.IntN(len(meta)), v)
			}
		})
		exercise(t, q, meta, ops)
		close(stop)
		wg.Wait()
	})
}

// exercise interprets ops against q with no model of the contents: every
// call must return, with nil or a typed error.
func exercise(t *testing.T, q *ring.Queue, meta []byte, ops []byte) {
	m := newModel(q)
	m.hostile = true
	m.run(t, ops, meta)
	m.drain(t)
}

// model drives a queue from an op stream and, unless hostile, checks what
// consumers read against what producers wrote.
type model struct {
	q       *ring.Queue
	hostile bool
	w       []ring.WriteRun
	r       []ring.ReadRun
	next    uint64            // value written into the next record
	written map[uint64]uint64 // position -> value, published and not yet read
	done    map[uint64]bool   // positions published or aborted
	read    uint64            // records read and released
}

func newModel(q *ring.Queue) *model {
	return &model{q: q, written: map[uint64]uint64{}, done: map[uint64]bool{}}
}

func (m *model) check(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if !knownErr(err) {
		t.Fatalf("%s: untyped error %v", what, err)
	}
	if !m.hostile && errors.Is(err, ring.ErrCorrupt) {
		t.Fatalf("%s: corruption reported on an honest queue: %v", what, err)
	}
}

func (m *model) run(t *testing.T, ops []byte, meta []byte) {
	arg := func(i *int) int {
		*i++
		if *i < len(ops) {
			return int(ops[*i])
		}
		return 0
	}
	for i := 0; i < len(ops); i++ {
		op := ops[i] % 14
		switch op {
		case 0, 1: // producer reserve
			if len(m.w) == 4 {
				continue
			}
			n := arg(&i)%9 + 0 // 0 is an invalid argument
			var w ring.WriteRun
			var err error
			if op == 0 {
				w, err = m.q.Producer().Reserve(n)
			} else {
				w, err = m.q.Producer().ReserveUpTo(n)
			}
			m.check(t, "producer reserve", err)
			if err == nil {
				m.w = append(m.w, w)
			}
		case 2, 3, 4, 5: // publish one, publish all, abort one, abort all
			if len(m.w) == 0 {
				continue
			}
			k := arg(&i) % len(m.w)
			w := &m.w[k]
			if w.Len() == 0 {
				continue
			}
			j := arg(&i) % w.Len()
			switch op {
			case 2:
				v, fresh := m.fill(w, j)
				err := w.Publish(j, 8)
				m.check(t, "publish", err)
				if err == nil {
					m.published(t, w.Position(j), v, fresh)
				}
			case 3:
				m.publishAll(t, w)
				m.w = append(m.w[:k], m.w[k+1:]...)
			case 4:
				err := w.Abort(j)
				m.check(t, "abort", err)
				if err == nil {
					m.done[w.Position(j)] = true
				}
			case 5:
				var pos []uint64
				for j := range w.Len() {
					pos = append(pos, w.Position(j))
				}
				m.check(t, "abort all", w.AbortAll())
				for j, p := range pos {
					if j < w.Len() {
						m.done[p] = true
					} else {
						delete(m.done, p) // rolled back: the position is reused
					}
				}
				m.w = append(m.w[:k], m.w[k+1:]...)
			}
		case 6, 7: // consumer reserve
			if len(m.r) == 4 {
				continue
			}
			n := arg(&i) % 9
			var r ring.ReadRun
			var err error
			if op == 6 {
				r, err = m.q.Consumer().Reserve(n)
			} else {
				r, err = m.q.Consumer().ReserveUpTo(n)
			}
			m.check(t, "consumer reserve", err)
			if err == nil {
				m.verify(t, &r)
				m.r = append(m.r, r)
			}
		case 8, 9, 10, 11: // read, release one, release all, abort from
			if len(m.r) == 0 {
				continue
			}
			k := arg(&i) % len(m.r)
			r := &m.r[k]
			if r.Len() == 0 {
				continue
			}
			j := arg(&i) % r.Len()
			switch op {
			case 8:
				m.verify(t, r)
			case 9:
				if err := r.Release(j); err == nil {
					m.consumed(r, j)
				} else {
					m.check(t, "release", err)
				}
			case 10:
				for j := range r.Len() {
					m.consumed(r, j)
				}
				m.check(t, "release all", r.ReleaseAll())
				m.r = append(m.r[:k], m.r[k+1:]...)
			case 11:
				m.check(t, "abort from", r.AbortFrom(j))
			}
		case 12: // scribble a word
			if meta == nil {
				continue
			}
			off := arg(&i) * 8 % len(meta)
			var v [8]byte
			for b := range v {
				v[b] = byte(arg(&i))
			}
			scribble(meta, off, binary.LittleEndian.Uint64(v[:]))
		case 13:
			_ = m.q.Stats()
		}
	}
}

// fill writes the next value into slot j unless that slot is finished.
func (m *model) fill(w *ring.WriteRun, j int) (uint64, bool) {
	if m.done[w.Position(j)] {
		return 0, false
	}
	v := m.next
	m.next++
	binary.LittleEndian.PutUint64(w.Slot(j), v)
	return v, true
}

func (m *model) published(t *testing.T, pos, v uint64, fresh bool) {
	if !fresh {
		if m.hostile {
			return
		}
		t.Fatalf("publish of finished position %d succeeded", pos)
	}
	m.done[pos] = true
	m.written[pos] = v
}

func (m *model) publishAll(t *testing.T, w *ring.WriteRun) {
	type pv struct{ pos, v uint64 }
	var filled []pv
	for j := range w.Len() {
		if v, fresh := m.fill(w, j); fresh {
			filled = append(filled, pv{w.Position(j), v})
		}
	}
	m.check(t, "publish all", w.PublishAll(8))
	for _, f := range filled {
		m.published(t, f.pos, f.v, true)
	}
}

// verify reads every record of r and compares it with the model.
func (m *model) verify(t *testing.T, r *ring.ReadRun) {
	for j := range r.Len() {
		b, err := r.Slot(j)
		m.check(t, "slot", err)
		if err != nil || m.hostile {
			continue
		}
		pos := r.Position(j)
		want, ok := m.written[pos]
		if !ok {
			t.Fatalf("record at position %d was never published", pos)
		}
		if len(b) != 8 || binary.LittleEndian.Uint64(b) != want {
			t.Fatalf("record at position %d: got %x, want %d", pos, b, want)
		}
	}
}

func (m *model) consumed(r *ring.ReadRun, j int) {
	if m.hostile {
		return
	}
	pos := r.Position(j)
	if _, ok := m.written[pos]; ok {
		delete(m.written, pos)
		m.read++
	}
}

// drain finishes every held run, then empties the queue; on an honest queue
// every published record must have been read exactly once.
func (m *model) drain(t *testing.T) {
	for k := range m.w {
		m.publishAll(t, &m.w[k])
	}
	m.w = nil
	for k := range m.r {
		for j := range m.r[k].Len() {
			m.consumed(&m.r[k], j)
		}
		m.check(t, "drain release", m.r[k].ReleaseAll())
	}
	m.r = nil
	for range 64 {
		r, err := m.q.Consumer().ReserveUpTo(8)
		m.check(t, "drain reserve", err)
		if err != nil {
			break
		}
		m.verify(t, &r)
		for j := range r.Len() {
			m.consumed(&r, j)
		}
		m.check(t, "drain release", r.ReleaseAll())
	}
	if !m.hostile && len(m.written) != 0 {
		t.Fatalf("%d published records never read: %v", len(m.written), m.written)
	}
}

// FuzzResizeLink plays a peer that writes what it likes into the words a
// Resizable's agents read to follow a resize (link_next, link_slots,
// link_left, the sealed bit and the cursors of the current generation)
// between operations of a producer, a consumer and the agent that resizes.
// Every operation returns or fails with a promised error, nothing panics,
// and every record read is one that was written, once.
func FuzzResizeLink(f *testing.F) {
	f.Add([]byte{0, 3, 1, 2, 2, 8, 0, 2, 1, 8})
	f.Add([]byte{3, 2, 8, 0, 1, 0, 9, 1, 2, 0, 1, 1, 8})
	f.Add([]byte{4, 0, 0, 0, 128, 0, 3, 1, 4, 0, 4, 4, 2, 0, 1, 8})
	f.Fuzz(func(t *testing.T, ops []byte) {
		cfg := ring.Config{Slots: 8, SlotSize: 8, Resizable: true}
		meta, data := ring.AlignedBytes(cfg.MetaSize()), make([]byte, cfg.DataSize())
		q, err := ring.Format(meta, data, cfg)
		require.NoError(t, err)
		r, err := ring.NewResizableOn(q)
		require.NoError(t, err)
		metas := [][]byte{meta} // every generation's metadata, by generation - 1
		written, read := map[uint64]bool{}, map[uint64]bool{}
		next := uint64(1)
		check := func(err error) {
			if err != nil && !knownErr(err) {
				t.Fatalf("unpromised error %T: %v", err, err)
			}
		}
		for len(ops) >= 2 {
			op, arg := ops[0], ops[1]
			ops = ops[2:]
			m := metas[len(metas)-1]
			switch op % 8 {
			case 0:
				w, err := r.Producer().ReserveUpTo(1 + int(arg%8))
				check(err)
				if err == nil {
					for i := range w.Len() {
						le.PutUint64(w.Slot(i), next)
						written[next] = true
						next++
					}
					check(w.PublishAll(8))
				}
			case 1:
				run, err := r.Consumer().ReserveUpTo(1 + int(arg%8))
				check(err)
				if err == nil {
					for i := range run.Len() {
						b, err := run.Slot(i)
						check(err)
						if err != nil {
							continue
						}
						v := le.Uint64(b)
						if !written[v] || read[v] {
							// A peer may rewrite stamps only through the
							// words below, so payload is ours: a record
							// read is one written, once.
							t.Fatalf("record %d read but not written, or twice", v)
						}
						read[v] = true
					}
					check(run.ReleaseAll())
				}
			case 2:
				check(r.Resize(2 << (arg % 4)))
				if g := r.ProducerQueue().Config().Generation; int(g) > len(metas) {
					metas = append(metas, nil) // heap generation: not poked
				}
			case 3:
				word32(m, ring.OffLinkNext).Store(uint32(arg % 4))
			case 4:
				word32(m, ring.OffLinkSlots).Store(uint32(arg))
			case 5:
				word32(m, ring.OffLinkLeft).Store(uint32(arg))
			case 6:
				c := word64(m, ring.OffProdCursor)
				c.Store(c.Load() ^ ring.Sealed)
			case 7:
				g := cfg
				g.Slots, g.Generation = 2<<(arg%4), uint32(arg%4)
				if nq, err := ring.New(g); err == nil {
					check(r.Add(nq))
				} else {
					check(err)
				}
			}
			if metas[len(metas)-1] == nil {
				metas = metas[:len(metas)-1]
			}
		}
		check(r.ProducerQueue().Check())
	})
}
