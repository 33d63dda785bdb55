package ring_test

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

// TestAgentDeferred: records an agent publishes with PublishDeferred are
// invisible to consumers until Flush or Sync, then all there, in order;
// slots released with ReleaseDeferred come back to producers at Flush or
// Sync; and neither side holds back more than half the ring (an 8-slot
// ring flushes every 4).
func TestAgentDeferred(t *testing.T) {
	const slots = 8
	geo := ring.Config{Slots: slots, SlotSize: 8}
	out, outMeta, outData := newQueue(t, ring.Config{Slots: slots, SlotSize: 8, SingleProducer: true})
	in, inMeta, inData := newQueue(t, ring.Config{Slots: slots, SlotSize: 8, SingleConsumer: true})
	prod, err := ring.AttachProducer(sliceMemory{outMeta, agentBase}, agentBase, geo)
	require.NoError(t, err)
	cons, err := ring.AttachConsumer(sliceMemory{inMeta, agentBase}, agentBase, geo)
	require.NoError(t, err)

	publish := func(v uint64) {
		t.Helper()
		free, err := prod.Free()
		require.NoError(t, err)
		require.True(t, free)
		binary.LittleEndian.PutUint64(outData[prod.SlotOffset():], v)
		require.NoError(t, prod.PublishDeferred(8))
	}
	publish(1)
	publish(2)
	publish(3)
	require.Empty(t, consume(t, out, slots), "deferred records are not yet published")
	require.NoError(t, prod.Flush())
	require.Equal(t, []uint64{1, 2, 3}, consume(t, out, slots))
	require.NoError(t, prod.Flush()) // nothing pending: a no-op
	require.Empty(t, consume(t, out, slots))

	for v := range uint64(4) {
		publish(10 + v) // the fourth reaches half the ring and flushes
	}
	require.Equal(t, []uint64{10, 11, 12, 13}, consume(t, out, slots))
	publish(20)
	require.NoError(t, prod.Sync())
	require.Equal(t, []uint64{20}, consume(t, out, slots))
	require.NoError(t, out.Check())
	require.ErrorIs(t, prod.PublishDeferred(9), ring.ErrInvalid, "longer than the slot")

	// The consumer side: 8 records in, released deferred.
	produce(t, in, 1, 2, 3, 4, 5, 6, 7, 8)
	_, err = in.Producer().Reserve(1)
	require.ErrorIs(t, err, ring.ErrFull)
	for i := range 3 {
		n, ok, err := cons.Peek()
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, uint32(8), n)
		require.Equal(t, uint64(i+1), binary.LittleEndian.Uint64(inData[cons.SlotOffset():]))
		require.NoError(t, cons.ReleaseDeferred())
	}
	_, err = in.Producer().Reserve(1)
	require.ErrorIs(t, err, ring.ErrFull, "deferred releases give no slot back yet")
	require.NoError(t, cons.Sync())
	w, err := in.Producer().ReserveUpTo(slots)
	require.NoError(t, err)
	require.Equal(t, 3, w.Len())
	require.NoError(t, w.AbortAll())
	require.NoError(t, in.Check())
	for range 4 {
		_, ok, err := cons.Peek()
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, cons.ReleaseDeferred()) // the fourth flushes
	}
	w, err = in.Producer().ReserveUpTo(slots)
	require.NoError(t, err)
	require.Equal(t, 7, w.Len(), "the 3 slots given back before (the abort rolled the cursor back) and 4 released at once")
	require.NoError(t, w.AbortAll())
	// A plain Release stores what was deferred first, in order.
	_, ok, err := cons.Peek()
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, cons.Release())
	require.NoError(t, cons.Sync())
	require.NoError(t, in.Check())
	require.Equal(t, uint64(8), in.Stats().Consumed)
}
