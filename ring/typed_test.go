package ring_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

type point struct {
	X, Y int32
	Tag  [4]byte
	W    float64
}

func TestTyped(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 8, SlotSize: 24})
	tq, err := ring.NewTyped[point](q)
	require.NoError(t, err)
	require.Same(t, q, tq.Queue())

	w, err := tq.Producer().Reserve(3)
	require.NoError(t, err)
	for i := range w.Len() {
		p := w.At(i)
		*p = point{X: int32(i), Y: -int32(i), Tag: [4]byte{'p', byte('0' + i)}, W: float64(i) / 2}
	}
	require.NoError(t, w.Publish(1))
	require.NoError(t, w.Abort(2))
	require.NoError(t, w.PublishAll())

	r, err := tq.Consumer().ReserveUpTo(8)
	require.NoError(t, err)
	require.Equal(t, 2, r.Len())
	for i := range r.Len() {
		p, err := r.At(i)
		require.NoError(t, err)
		require.Equal(t, point{X: int32(i), Y: -int32(i), Tag: [4]byte{'p', byte('0' + i)}, W: float64(i) / 2}, *p)
	}
	// Zero copy: the pointer is into the data region.
	p0, _ := r.At(0)
	p0.X = 42
	again, _ := r.At(0)
	require.Equal(t, int32(42), again.X)
	require.NoError(t, r.ReleaseAll())

	// A record of the wrong size is refused.
	raw, err := q.Producer().Reserve(1)
	require.NoError(t, err)
	require.NoError(t, raw.Publish(0, 8))
	r, err = tq.Consumer().Reserve(1)
	require.NoError(t, err)
	_, err = r.At(0)
	require.ErrorIs(t, err, ring.ErrCorrupt)
	require.NoError(t, r.AbortAll())
	r, err = tq.Consumer().Reserve(1)
	require.NoError(t, err)
	require.NoError(t, r.Release(0))
}

func TestTypedRefusesNonPlainTypes(t *testing.T) {
	q, _, _ := newQueue(t, ring.Config{Slots: 4, SlotSize: 64})
	check := func(err error, want string) {
		t.Helper()
		require.ErrorIs(t, err, ring.ErrInvalid)
		require.Contains(t, err.Error(), want)
	}
	_, err := ring.NewTyped[*int](q)
	check(err, "ptr")
	_, err = ring.NewTyped[string](q)
	check(err, "string")
	_, err = ring.NewTyped[[]byte](q)
	check(err, "slice")
	_, err = ring.NewTyped[map[int]int](q)
	check(err, "map")
	_, err = ring.NewTyped[chan int](q)
	check(err, "chan")
	_, err = ring.NewTyped[func()](q)
	check(err, "func")
	_, err = ring.NewTyped[any](q)
	check(err, "interface")
	_, err = ring.NewTyped[uintptr](q)
	check(err, "uintptr")
	_, err = ring.NewTyped[struct {
		A int
		B *int
	}](q)
	check(err, "field B")
	_, err = ring.NewTyped[[2]struct{ S string }](q)
	check(err, "element")
	_, err = ring.NewTyped[struct{}](q)
	check(err, "size 0")
	_, err = ring.NewTyped[[9]uint64](q)
	check(err, "72 bytes")

	_, err = ring.NewTyped[[8]uint64](q)
	require.NoError(t, err)
	_, err = ring.NewTyped[complex128](q)
	require.NoError(t, err)
	_, err = ring.NewTyped[bool](q)
	require.NoError(t, err)
}
