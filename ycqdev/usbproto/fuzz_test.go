package usbproto

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode: no bytes make a decoder panic; each refuses with a
// *LayoutError wrapping ErrLayout, or decodes something that encodes back
// to exactly the bytes it was given (so nothing of the input is ignored:
// not a reserved byte, not a trailing one), and GET_COUNTERS' pairs are at
// most MaxPairs.
func FuzzDecode(f *testing.F) {
	f.Add(Info{Version: 1, Pairs: 2, MaxRecordSize: 65536, MaxRecordsPerTransfer: 256, MaxTransferBytes: 262144,
		OutWindow: 4, InWindow: 64, Engines: 0x1E}.Encode(nil))
	f.Add(QueueSetup{Engine: 1, RecordSize: 64}.Encode(nil))
	f.Add(QueueState{Engine: 2, RecordSize: 4096, ResponseSize: 8, RecordsPerTransfer: 64, RingSlots: 128, State: QueueRunning}.Encode(nil))
	f.Add(Counters{Resets: 1, Pairs: make([]PairCounters, 2)}.Encode(nil))
	f.Add(Counters{Pairs: make([]PairCounters, MaxPairs)}.Encode(nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		check(t, "GET_INFO", b, DecodeInfo, Info.Encode)
		check(t, "SET_QUEUE", b, DecodeQueueSetup, QueueSetup.Encode)
		check(t, "GET_QUEUE", b, DecodeQueueState, QueueState.Encode)
		if c := check(t, "GET_COUNTERS", b, DecodeCounters, Counters.Encode); len(c.Pairs) > MaxPairs {
			t.Fatalf("GET_COUNTERS of % x: %d pairs", b, len(c.Pairs))
		}
	})
}

func check[T any](t *testing.T, name string, b []byte, decode func([]byte) (T, error), encode func(T, []byte) []byte) T {
	t.Helper()
	v, err := decode(b)
	if err != nil {
		var le *LayoutError
		if !errors.Is(err, ErrLayout) || !errors.As(err, &le) || le.Len != len(b) {
			t.Fatalf("%s of % x: %v is not a *LayoutError wrapping ErrLayout", name, b, err)
		}
		return v
	}
	if back := encode(v, nil); !bytes.Equal(back, b) {
		t.Fatalf("%s: % x decodes to %+v, which encodes to % x", name, b, v, back)
	}
	return v
}
