package record_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/record"
)

// TestTimedLayout pins the Timed layout, which `ycq ipc` peers exchange,
// against literal bytes.
func TestTimedLayout(t *testing.T) {
	b := make([]byte, 36)
	record.Format{Timed: true, Sum: true}.Fill(b, record.Header{Seq: 0x0102030405060708, Producer: 0x11223344, SentNs: 0xa1a2a3a4a5a6a7a8})
	want := []byte{
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // [0, 8) u64 sequence number
		0xa8, 0xa7, 0xa6, 0xa5, 0xa4, 0xa3, 0xa2, 0xa1, // [8, 16) u64 send time
		0x44, 0x33, 0x22, 0x11, // [16, 20) u32 producer
		0x97, 0x76, 0x2e, 0xda, // [20, 24) u32 CRC-32C of [0, 20) and [24, 36)
		0xa8, 0x73, 0x36, 0x55, 0x82, 0x4c, 0x8f, 0xc8, // [24, 32) fill: x = seq*0x9E3779B97F4A7C15 ^ producer<<32, as u64
		0xa8, 0xa8, 0xa8, 0xa8, // [32, 36) fill tail: the low byte of x
	}
	require.Equal(t, want, b)
	require.Equal(t, 24, record.TimedSize)
}

// TestPlainLayout pins the Plain layout; without Sum the checksum field is
// zero.
func TestPlainLayout(t *testing.T) {
	b := make([]byte, 27)
	record.Format{}.Fill(b, record.Header{Seq: 5, Producer: 2, SentNs: 99})
	want := []byte{
		0x05, 0, 0, 0, 0, 0, 0, 0, // [0, 8) u64 sequence number
		0x02, 0, 0, 0, // [8, 12) u32 producer
		0, 0, 0, 0, // [12, 16) u32 checksum, 0 without Sum
		0x69, 0x6c, 0x74, 0x7c, 0x9d, 0x60, 0x15, 0x17, // [16, 24) fill x = 5*0x9E3779B97F4A7C15 ^ 2<<32
		0x69, 0x69, 0x69, // [24, 27) fill tail
	}
	require.Equal(t, want, b)
	require.Equal(t, 16, record.PlainSize)

	// PutHeader writes the header alone.
	c := []byte("0123456789abcdefXYZ")
	record.Format{Timed: false}.PutHeader(c, record.Header{Seq: 5, Producer: 2})
	require.Equal(t, append(want[:16:16], "XYZ"...), c)
}

func formats() []record.Format {
	return []record.Format{{}, {Sum: true}, {Timed: true}, {Timed: true, Sum: true}}
}

func TestRoundTrip(t *testing.T) {
	for _, f := range formats() {
		for _, n := range []int{f.HeaderSize(), f.HeaderSize() + 1, 64, 4099} {
			b := make([]byte, n)
			h := record.Header{Seq: uint64(n) * 7, Producer: 3}
			if f.Timed {
				h.SentNs = 12345
			}
			f.Fill(b, h)
			got, err := f.Check(b)
			require.NoError(t, err, "%+v, %d bytes", f, n)
			require.Equal(t, h, got)
		}
	}
}

// TestCheckCatches: with Sum, any byte changed anywhere, or a record cut
// short, fails the check.
func TestCheckCatches(t *testing.T) {
	for _, f := range []record.Format{{Sum: true}, {Timed: true, Sum: true}} {
		b := make([]byte, 61)
		f.Fill(b, record.Header{Seq: 9, Producer: 1})
		for i := range b {
			c := append([]byte(nil), b...)
			c[i] ^= 0x20
			_, err := f.Check(c)
			var ce *record.CorruptError
			require.ErrorAs(t, err, &ce, "%+v: byte %d changed", f, i)
			require.ErrorIs(t, err, record.ErrCorrupt)
		}
		_, err := f.Check(b[:f.HeaderSize()-1])
		require.ErrorIs(t, err, record.ErrCorrupt)
		require.EqualError(t, err, map[bool]string{false: "15 bytes, shorter than the 16-byte header",
			true: "23 bytes, shorter than the 24-byte header"}[f.Timed])
	}
	_, err := record.Format{}.Check(nil)
	require.ErrorIs(t, err, record.ErrCorrupt)
}

func problem(t *testing.T, err error) record.Problem {
	t.Helper()
	var se *record.SequenceError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, record.ErrSequence)
	return se.Problem
}

// log is what two producers of n records each, interleaved, look like to
// the consumers: position 2k+p holds record k of producer p.
func log(n int) []record.Seen {
	var l []record.Seen
	for k := range n {
		for p := range 2 {
			l = append(l, record.Seen{Pos: uint64(2*k + p), Producer: uint32(p), Seq: uint64(k)})
		}
	}
	return l
}

func TestVerifyLog(t *testing.T) {
	good := log(10)
	// Consumers hand their logs in any order.
	shuffled := append(append([]record.Seen(nil), good[10:]...), good[:10]...)
	require.NoError(t, record.VerifyLog(shuffled, 2, 10))

	for _, c := range []struct {
		name string
		edit func([]record.Seen) []record.Seen
		want record.Problem
		msg  string
	}{
		{"lost", func(l []record.Seen) []record.Seen { return append(l[:7], l[8:]...) }, record.Lost,
			"producer 1: record 4 at position 9, want 3 (lost)"},
		{"duplicated", func(l []record.Seen) []record.Seen {
			l[9].Seq = 3 // position 9 carries producer 1's record 3 again
			return l
		}, record.Duplicated, "producer 1: record 3 at position 9, want 4 (duplicated)"},
		{"reordered", func(l []record.Seen) []record.Seen {
			l[4].Seq, l[6].Seq = 3, 2
			return l
		}, record.Reordered, "producer 0: record 3 at position 4, want 2 (reordered)"},
		{"short count", func(l []record.Seen) []record.Seen { return l[:len(l)-1] }, record.Short,
			"producer 1: 9 records, 10 sent (short count)"},
		{"excess count", func(l []record.Seen) []record.Seen {
			return append(l, record.Seen{Pos: 20, Producer: 0, Seq: 10})
		}, record.Excess, "producer 0: 11 records, 10 sent (excess count)"},
		{"unknown producer", func(l []record.Seen) []record.Seen {
			l[3].Producer = 2
			return l
		}, record.Unknown, "record 1 at position 3: producer 2 of 2 (unknown producer)"},
		{"position twice", func(l []record.Seen) []record.Seen {
			l[5].Pos = 4
			return l
		}, record.Position, "position 4 consumed twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := record.VerifyLog(c.edit(log(10)), 2, 10)
			require.Equal(t, c.want, problem(t, err))
			require.EqualError(t, err, c.msg)
		})
	}
}

// TestVerifierStream: records checked as one consumer takes them.
func TestVerifierStream(t *testing.T) {
	v := record.NewVerifier(2)
	for k := range uint64(3) {
		require.NoError(t, v.Add(0, k))
	}
	require.NoError(t, v.Add(1, 0))
	require.Equal(t, uint64(3), v.Count(0))
	require.Equal(t, record.Short, problem(t, v.Done(3)))
	require.NoError(t, v.Add(1, 1))
	require.NoError(t, v.Add(1, 2))
	require.NoError(t, v.Done(3))

	require.Equal(t, record.Duplicated, problem(t, v.Add(0, 2)))
	err := v.Add(1, 4)
	require.Equal(t, record.Lost, problem(t, err))
	require.EqualError(t, err, "producer 1: record 4 where 3 was due (lost or reordered)")
	require.Equal(t, record.Unknown, problem(t, v.Add(7, 0)))
	require.Zero(t, v.Count(7))
}
