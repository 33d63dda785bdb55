package ring_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

// Offsets used to play the hostile peer; layout_test.go pins them.
const (
	tOffProdCursor = 64
	tOffConsCursor = 128
	tOffDescs      = 384
)

func descAt(meta []byte, slot int) []byte { return meta[tOffDescs+8*slot:][:8] }

func TestCorruptionIsTypedAndCounted(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(t *testing.T, q *ring.Queue) // honest operations first
		poison func(meta []byte)
		op     func(q *ring.Queue) error
		side   string
	}{
		{
			name:   "producer finds a stamp from nowhere",
			poison: func(m []byte) { binary.LittleEndian.PutUint32(descAt(m, 0), 0x1234) },
			op:     func(q *ring.Queue) error { _, err := q.Producer().Reserve(1); return err },
			side:   "producer",
		},
		{
			name:   "producer cursor moved far ahead",
			poison: func(m []byte) { binary.LittleEndian.PutUint64(m[tOffProdCursor:], 1<<40+10) },
			op:     func(q *ring.Queue) error { _, err := q.Producer().ReserveUpTo(4); return err },
			side:   "producer",
		},
		{
			name:   "consumer finds a stamp from nowhere",
			poison: func(m []byte) { binary.LittleEndian.PutUint32(descAt(m, 0), 0x99) },
			op:     func(q *ring.Queue) error { _, err := q.Consumer().ReserveUpTo(1); return err },
			side:   "consumer",
		},
		{
			name:   "consumer cursor moved",
			setup:  func(t *testing.T, q *ring.Queue) { produce(t, q, 1) },
			poison: func(m []byte) { binary.LittleEndian.PutUint64(m[tOffConsCursor:], 77) },
			op:     func(q *ring.Queue) error { _, err := q.Consumer().ReserveUpTo(1); return err },
			side:   "consumer",
		},
		{
			name:   "published length larger than the slot",
			setup:  func(t *testing.T, q *ring.Queue) { produce(t, q, 1) },
			poison: func(m []byte) { binary.LittleEndian.PutUint32(descAt(m, 0)[4:], 17) },
			op:     func(q *ring.Queue) error { _, err := q.Consumer().ReserveUpTo(1); return err },
			side:   "consumer",
		},
		{
			name:   "unknown flag bits",
			setup:  func(t *testing.T, q *ring.Queue) { produce(t, q, 1) },
			poison: func(m []byte) { descAt(m, 0)[7] = 0x80 },
			op:     func(q *ring.Queue) error { _, err := q.Consumer().Reserve(1); return err },
			side:   "consumer",
		},
		{
			name:   "stamp rewound under a held write run",
			poison: func(m []byte) { binary.LittleEndian.PutUint32(descAt(m, 0), 0xFFFFFFF0) },
			op: func(q *ring.Queue) error {
				// The run was reserved before the poison in setupRun.
				return heldWrite.Publish(0, 8)
			},
			setup: func(t *testing.T, q *ring.Queue) {
				var err error
				heldWrite, err = q.Producer().Reserve(1)
				require.NoError(t, err)
			},
			side: "producer",
		},
		{
			name: "length rewritten under a held read run",
			setup: func(t *testing.T, q *ring.Queue) {
				produce(t, q, 1)
				var err error
				heldRead, err = q.Consumer().Reserve(1)
				require.NoError(t, err)
			},
			poison: func(m []byte) { binary.LittleEndian.PutUint32(descAt(m, 0)[4:], 0xFFFF) },
			op:     func(q *ring.Queue) error { _, err := heldRead.Slot(0); return err },
			side:   "consumer",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, meta, _ := newQueue(t, ring.Config{Slots: 4, SlotSize: 16})
			if c.setup != nil {
				c.setup(t, q)
			}
			c.poison(meta)
			before := q.Stats()
			err := c.op(q)
			require.ErrorIs(t, err, ring.ErrCorrupt)
			var ce *ring.CorruptError
			require.True(t, errors.As(err, &ce))
			require.Equal(t, c.side, ce.Side)
			require.NotEmpty(t, ce.Reason)
			after := q.Stats()
			require.Equal(t, before.ProducerCorrupt+before.ConsumerCorrupt+1, after.ProducerCorrupt+after.ConsumerCorrupt)
		})
	}
}

var (
	heldWrite ring.WriteRun
	heldRead  ring.ReadRun
)

// TestCheckFindsWholeLapJumps: stamps are 32 bits, so a cursor moved by a
// multiple of 2^32 positions passes the per-slot checks. The queue goes on
// working, since every stamp still agrees modulo 2^32, and Check names the
// inconsistency between the cursors.
func TestCheckFindsWholeLapJumps(t *testing.T) {
	q, meta, _ := newQueue(t, ring.Config{Slots: 4, SlotSize: 16})
	produce(t, q, 1, 2)
	require.NoError(t, q.Check())
	binary.LittleEndian.PutUint64(meta[tOffProdCursor:], 1<<40+2)
	for v := uint64(3); v < 40; v += 2 {
		produce(t, q, v, v+1)
		require.Equal(t, []uint64{v - 2, v - 1}, consume(t, q, 2))
	}
	err := q.Check()
	require.ErrorIs(t, err, ring.ErrCorrupt)
	require.Contains(t, err.Error(), "within one lap")

	q, meta, _ = newQueue(t, ring.Config{Slots: 4, SlotSize: 16})
	_, err = q.Producer().Reserve(3)
	require.NoError(t, err)
	require.NoError(t, q.Check(), "reserved slots are consistent")
	binary.LittleEndian.PutUint32(descAt(meta, 1), 0xFFFFFFFF)
	require.ErrorIs(t, q.Check(), ring.ErrCorrupt)
}
