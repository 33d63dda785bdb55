package ring_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

// TestPrefetchBounds: the prefetch hints take any count and stride, and
// never reach past the slice (a block past its end is left out);
// PrefetchSlots takes any position and count, wrapping, and no slot size
// or no data.
func TestPrefetchBounds(t *testing.T) {
	b := make([]byte, 200)
	for _, c := range []struct{ n, stride int }{{0, 64}, {-1, 64}, {1, 0}, {100, 64}, {4, 64}, {3, 1 << 20}, {1, -8}} {
		ring.PrefetchRead(b, c.n, c.stride)
		ring.PrefetchWrite(b, c.n, c.stride)
		ring.PrefetchRead(nil, c.n, c.stride)
		ring.PrefetchWrite(b[:0], c.n, c.stride)
	}
	data := make([]byte, 8*64)
	for _, c := range []struct {
		p       uint64
		size, n int
		data    []byte
	}{{0, 64, 8, data}, {6, 64, 5, data}, {7, 64, 100, data}, {3, 0, 4, data}, {3, 64, 4, nil}, {3, 64, -1, data}, {1 << 40, 64, 3, data}} {
		ring.PrefetchSlots(c.data, c.p, c.size, c.n, false)
		ring.PrefetchSlots(c.data, c.p, c.size, c.n, true)
	}
}

// prefetchCall is one Prefetch a recordingMemory was asked for.
type prefetchCall struct {
	a         uint64
	n, stride int
	write     bool
}

// recordingMemory is a sliceMemory that is a ring.Prefetcher and records
// what it was asked to prefetch.
type recordingMemory struct {
	sliceMemory
	calls *[]prefetchCall
}

func (m recordingMemory) Prefetch(a uint64, n, stride int, write bool) {
	*m.calls = append(*m.calls, prefetchCall{a, n, stride, write})
}

// TestAgentPrefetch: an agent asks its Memory for the descriptor lines of
// its next n positions, to own, in two parts where they wrap, and never
// for more than the ring; a Memory that is no Prefetcher is not asked.
func TestAgentPrefetch(t *testing.T) {
	const slots = 16
	geo := ring.Config{Slots: slots, SlotSize: 16}
	q, meta, _ := newQueue(t, ring.Config{Slots: slots, SlotSize: 16, SingleConsumer: true})
	var calls []prefetchCall
	m := recordingMemory{sliceMemory{meta, agentBase}, &calls}
	cons, err := ring.AttachConsumer(m, agentBase, geo)
	require.NoError(t, err)
	desc := func(p uint64) uint64 { return agentBase + ring.OffDescs + ring.DescSize*(p%slots) }

	cons.Prefetch(8)
	require.Equal(t, []prefetchCall{{desc(0), 1, 64, true}}, calls)

	// Move the consumer to position 12: 4 slots to the end, then 4 from
	// the start.
	for i := range 12 {
		produce(t, q, uint64(i))
		_, ok, err := cons.Peek()
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, cons.Release())
	}
	calls = calls[:0]
	cons.Prefetch(8)
	require.Equal(t, []prefetchCall{{desc(12), 1, 64, true}, {desc(0), 1, 64, true}}, calls)

	calls = calls[:0]
	cons.Prefetch(100) // clamped to the ring: 4 to the end, 12 from the start
	require.Equal(t, []prefetchCall{{desc(12), 1, 64, true}, {desc(0), 2, 64, true}}, calls)

	calls = calls[:0]
	cons.Prefetch(0)
	require.Empty(t, calls)

	// A Memory that cannot prefetch is not asked (and nothing fails).
	plain, err := ring.AttachConsumer(sliceMemory{meta, agentBase}, agentBase, geo)
	require.NoError(t, err)
	plain.Prefetch(8)
}

// TestRunPrefetch: a run's Prefetch covers its slots where they wrap and
// where a read run holds holes, and a zero run does nothing.
func TestRunPrefetch(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 64})
	produce(t, q, 1, 2, 3, 4, 5, 6)
	consume(t, q, 6)
	w, err := q.Producer().Reserve(5) // positions 6 to 10: wraps
	require.NoError(t, err)
	w.Prefetch()
	require.NoError(t, w.Publish(0, 8))
	require.NoError(t, w.Abort(1))
	require.NoError(t, w.PublishAll(8))
	r, err := q.Consumer().ReserveUpTo(8)
	require.NoError(t, err)
	r.Prefetch()
	require.NoError(t, r.ReleaseAll())
	var zw ring.WriteRun
	zw.Prefetch()
	var zr ring.ReadRun
	zr.Prefetch()
}
