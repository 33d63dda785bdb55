package hostdriver

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestResizePageGolden pins the resize page's layout, a field a comment.
func TestResizePageGolden(t *testing.T) {
	b := make([]byte, ResizePageSize(2))
	require.NoError(t, FormatResizePage(b, 2))
	PutPairResizes(b, PairResizes{Pair: 1, Generation: 5, Slots: 256, Started: 6, Completed: 4,
		RolledBack: 1, Failed: 1, Draining: 3 * time.Microsecond})
	want := make([]byte, 192)
	copy(want[0:], []byte{0x59, 0x43, 0x51, 0x5a}) // magic "YCQZ"
	want[4] = 1                                    // version
	want[8] = 2                                    // pairs
	// pair 0's line, 64..127: all zero (nothing written yet)
	want[128] = 5                     // pair 1: generation
	want[132], want[133] = 0x00, 0x01 // slots 256
	want[136] = 6                     // started
	want[144] = 4                     // completed
	want[152] = 1                     // rolled back
	want[160] = 1                     // failed
	want[168], want[169] = 0xb8, 0x0b // draining 3000 ns
	require.Equal(t, want, b)
	got, err := DecodeResizePage(b)
	require.NoError(t, err)
	require.Equal(t, []PairResizes{{Pair: 0}, {Pair: 1, Generation: 5, Slots: 256, Started: 6, Completed: 4,
		RolledBack: 1, Failed: 1, Draining: 3 * time.Microsecond}}, got)
	require.ErrorIs(t, FormatResizePage(b[:100], 2), ErrConfig)
}

// TestDecodeResizePageRefuses: what is not a resize page of this version,
// or claims more pairs than its bytes hold, is ErrResizePage.
func TestDecodeResizePageRefuses(t *testing.T) {
	good := make([]byte, ResizePageSize(1))
	require.NoError(t, FormatResizePage(good, 1))
	for name, b := range map[string][]byte{
		"short":     good[:63],
		"magic":     append([]byte{0, 0, 0, 0}, good[4:]...),
		"version":   append(append(append([]byte(nil), good[:4]...), 2, 0, 0, 0), good[8:]...),
		"too many":  append(append(append([]byte(nil), good[:8]...), 2, 0, 0, 0), good[12:]...),
		"max pairs": append(append(append([]byte(nil), good[:8]...), 0xff, 0xff, 0xff, 0xff), good[12:]...),
	} {
		_, err := DecodeResizePage(b)
		require.ErrorIs(t, err, ErrResizePage, name)
	}
}

// FuzzDecodeResizePage: any bytes decode to no more pairs than they hold,
// each numbered, or to ErrResizePage.
func FuzzDecodeResizePage(f *testing.F) {
	good := make([]byte, ResizePageSize(3))
	if err := FormatResizePage(good, 3); err != nil {
		f.Fatal(err)
	}
	PutPairResizes(good, PairResizes{Pair: 2, Generation: 9, Slots: 64, Started: 8, Completed: 8, Draining: time.Second})
	f.Add(good)
	f.Add(good[:100])
	f.Add([]byte{0x59, 0x43, 0x51, 0x5a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := DecodeResizePage(b)
		if err != nil {
			if !errors.Is(err, ErrResizePage) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if ResizePageSize(len(rs)) > len(b) {
			t.Fatalf("%d pairs from %d bytes", len(rs), len(b))
		}
		for i, r := range rs {
			if r.Pair != i || r.Draining < 0 {
				t.Fatalf("pair %d: %+v", i, r)
			}
		}
	})
}
