package usbproto

import (
	"bytes"
	"errors"
	"testing"
)

// TestInfoGolden pins GET_INFO's layout.
func TestInfoGolden(t *testing.T) {
	in := Info{Version: 1, Pairs: 2, MaxRecordSize: 65536, MaxRecordsPerTransfer: 256, MaxTransferBytes: 262144,
		OutWindow: 4, InWindow: 64, Engines: 0x1E}
	want := []byte{
		0x01, 0x00, // version 1
		0x02,                   // pairs
		0x00,                   // reserved
		0x00, 0x00, 0x01, 0x00, // max_record_size 65536
		0x00, 0x01, 0x00, 0x00, // max_records_per_transfer 256
		0x00, 0x00, 0x04, 0x00, // max_transfer_bytes 262144
		0x04, 0x00, // out_window 4
		0x40, 0x00, // in_window 64
		0x1E, 0x00, 0x00, 0x00, // engines: bits 1 to 4
	}
	got := in.Encode(nil)
	if !bytes.Equal(got, want) || len(got) != SizeofInfo {
		t.Fatalf("Info\n got % x\nwant % x", got, want)
	}
	if back, err := DecodeInfo(want); err != nil || back != in {
		t.Fatalf("DecodeInfo: %+v, %v", back, err)
	}
	refused(t, "GET_INFO", DecodeInfo, want[:23], append(clone(want), 0), set(want, offInfoReserved, 1))
}

// TestQueueSetupGolden pins SET_QUEUE's data.
func TestQueueSetupGolden(t *testing.T) {
	s := QueueSetup{Engine: 2, RecordSize: 16384}
	want := []byte{
		0x02, 0x00, 0x00, 0x00, // engine 2: crc32c
		0x00, 0x40, 0x00, 0x00, // record_size 16384
	}
	if got := s.Encode(nil); !bytes.Equal(got, want) {
		t.Fatalf("QueueSetup\n got % x\nwant % x", got, want)
	}
	if back, err := DecodeQueueSetup(want); err != nil || back != s {
		t.Fatalf("DecodeQueueSetup: %+v, %v", back, err)
	}
	refused(t, "SET_QUEUE", DecodeQueueSetup, nil, want[:7], append(clone(want), 0))
}

// TestQueueStateGolden pins GET_QUEUE's layout.
func TestQueueStateGolden(t *testing.T) {
	s := QueueState{Engine: 1, RecordSize: 64, ResponseSize: 64, RecordsPerTransfer: 256, RingSlots: 1024, State: QueueRunning | QueueInHalted}
	want := []byte{
		0x01, 0x00, 0x00, 0x00, // engine 1: echo
		0x40, 0x00, 0x00, 0x00, // record_size 64
		0x40, 0x00, 0x00, 0x00, // response_size 64
		0x00, 0x01, 0x00, 0x00, // records_per_transfer 256
		0x00, 0x04, // ring_slots 1024
		0x05, 0x00, // state: running, IN halted
		0x00, 0x00, 0x00, 0x00, // reserved
	}
	if got := s.Encode(nil); !bytes.Equal(got, want) {
		t.Fatalf("QueueState\n got % x\nwant % x", got, want)
	}
	back, err := DecodeQueueState(want)
	if err != nil || back != s || !back.Running() {
		t.Fatalf("DecodeQueueState: %+v, %v", back, err)
	}
	if (QueueState{State: QueueFailed | QueueOutHalted}).Running() {
		t.Fatal("a failed pair runs")
	}
	refused(t, "GET_QUEUE", DecodeQueueState, want[1:], append(clone(want), 0), set(want, offQueueReserved+3, 0x80))
}

// TestCountersGolden pins GET_COUNTERS' layout for one pair.
func TestCountersGolden(t *testing.T) {
	c := Counters{Resets: 3, BadControl: 4, BadPackets: 5, Pairs: []PairCounters{{Requests: 6, Responses: 7, OutBytes: 0x0102030405060708, InBytes: 9, BadTransfers: 10}}}
	want := []byte{
		0x03, 0x00, 0x00, 0x00, // resets
		0x04, 0x00, 0x00, 0x00, // bad_control
		0x05, 0x00, 0x00, 0x00, // bad_packets
		0x01,             // pairs
		0x00, 0x00, 0x00, // reserved
		6, 0, 0, 0, 0, 0, 0, 0, // pair 0 requests
		7, 0, 0, 0, 0, 0, 0, 0, // responses
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // out_bytes
		9, 0, 0, 0, 0, 0, 0, 0, // in_bytes
		10, 0, 0, 0, 0, 0, 0, 0, // bad_transfers
	}
	got := c.Encode(nil)
	if !bytes.Equal(got, want) || len(got) != SizeofCounters(1) {
		t.Fatalf("Counters\n got % x\nwant % x", got, want)
	}
	back, err := DecodeCounters(want)
	if err != nil || back.Resets != 3 || back.BadControl != 4 || back.BadPackets != 5 || len(back.Pairs) != 1 || back.Pairs[0] != c.Pairs[0] {
		t.Fatalf("DecodeCounters: %+v, %v", back, err)
	}
	nine := set(want[:SizeofCountersHeader], offCtrPairs, 9)
	nine = append(nine, make([]byte, 9*SizeofPairCounters)...)
	refused(t, "GET_COUNTERS", DecodeCounters, want[:15], want[:len(want)-1], append(clone(want), 0),
		set(want, offCtrPairs, 0), set(want, offCtrPairs, 200), set(want, offCtrReserved+2, 1), nine)
	if n := len(Counters{Pairs: make([]PairCounters, MaxPairs)}.Encode(nil)); n != 16+8*40 || n != SizeofCounters(MaxPairs) {
		t.Fatalf("%d pairs' counters: %d bytes", MaxPairs, n)
	}
}

// refused checks that decode refuses each of bad with a *LayoutError for
// request name, wrapping ErrLayout.
func refused[T any](t *testing.T, name string, decode func([]byte) (T, error), bad ...[]byte) {
	t.Helper()
	for _, b := range bad {
		_, err := decode(b)
		var le *LayoutError
		if !errors.Is(err, ErrLayout) || !errors.As(err, &le) || RequestName(le.Request) != name || le.Len != len(b) {
			t.Errorf("%s of % x: %v", name, b, err)
		}
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// set is a copy of b with byte i set to v.
func set(b []byte, i int, v byte) []byte {
	c := clone(b)
	c[i] = v
	return c
}
