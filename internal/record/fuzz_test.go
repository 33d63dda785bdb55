package record_test

import (
	"errors"
	"testing"

	"github.com/ycq-dev/ycq/internal/record"
)

// FuzzCheck: Check takes any bytes, as from a hostile peer, without a
// panic, and fails only with a *CorruptError; a record Fill wrote checks
// and gives its header back; and with Sum, one changed byte fails.
func FuzzCheck(f *testing.F) {
	f.Add([]byte{}, uint8(3), uint64(1), uint32(2), uint64(3), uint16(40), uint16(7), uint8(1))
	f.Add(make([]byte, 24), uint8(1), uint64(0), uint32(0), uint64(0), uint16(16), uint16(0), uint8(0x80))
	f.Fuzz(func(t *testing.T, raw []byte, flags uint8, seq uint64, producer uint32, sent uint64, n, at uint16, flip uint8) {
		fm := record.Format{Timed: flags&1 != 0, Sum: flags&2 != 0}
		if _, err := fm.Check(raw); err != nil {
			var ce *record.CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, record.ErrCorrupt) {
				t.Fatalf("Check: %v, not a *CorruptError", err)
			}
		}
		b := make([]byte, fm.HeaderSize()+int(n)%4096)
		h := record.Header{Seq: seq, Producer: producer}
		if fm.Timed {
			h.SentNs = sent
		}
		fm.Fill(b, h)
		got, err := fm.Check(b)
		if err != nil || got != h {
			t.Fatalf("%+v: Fill(%+v) checks as %+v, %v", fm, h, got, err)
		}
		if !fm.Sum || flip == 0 {
			return
		}
		b[int(at)%len(b)] ^= flip
		if _, err := fm.Check(b); !errors.Is(err, record.ErrCorrupt) {
			t.Fatalf("%+v: byte %d changed by %#x and the record still checks", fm, int(at)%len(b), flip)
		}
	})
}
