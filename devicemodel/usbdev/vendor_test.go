package usbdev

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
	if _, err := DecodeInfo(want[:23]); !errors.Is(err, ErrLayout) {
		t.Fatalf("DecodeInfo of 23 bytes: %v", err)
	}
}

// TestQueueSetupGolden pins SET_QUEUE's data.
func TestQueueSetupGolden(t *testing.T) {
	s := QueueSetup{Engine: 2, RecordSize: 4096}
	want := []byte{
		0x02, 0x00, 0x00, 0x00, // engine 2: crc32c
		0x00, 0x10, 0x00, 0x00, // record_size 4096
	}
	if got := s.Encode(nil); !bytes.Equal(got, want) {
		t.Fatalf("QueueSetup\n got % x\nwant % x", got, want)
	}
	if back, err := DecodeQueueSetup(want); err != nil || back != s {
		t.Fatalf("DecodeQueueSetup: %+v, %v", back, err)
	}
	for _, n := range []int{0, 7, 9} {
		if _, err := DecodeQueueSetup(make([]byte, n)); !errors.Is(err, ErrLayout) {
			t.Errorf("DecodeQueueSetup of %d bytes: %v", n, err)
		}
	}
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
	if back, err := DecodeQueueState(want); err != nil || back != s {
		t.Fatalf("DecodeQueueState: %+v, %v", back, err)
	}
	if _, err := DecodeQueueState(want[1:]); !errors.Is(err, ErrLayout) {
		t.Fatalf("DecodeQueueState of 23 bytes: %v", err)
	}
}

// TestCountersGolden pins GET_COUNTERS's layout for one pair.
func TestCountersGolden(t *testing.T) {
	c := Counters{Resets: 3, BadControl: 4, BadPackets: 5, Pairs: []PairCounters{{Requests: 6, Responses: 7, OutBytes: 0x0102030405060708, InBytes: 9, BadTransfers: 10}}}
	want := cat(
		[]byte{
			0x03, 0x00, 0x00, 0x00, // resets
			0x04, 0x00, 0x00, 0x00, // bad_control
			0x05, 0x00, 0x00, 0x00, // bad_packets
			0x01,             // pairs
			0x00, 0x00, 0x00, // reserved
		},
		[]byte{6, 0, 0, 0, 0, 0, 0, 0},                         // pair 0 requests
		[]byte{7, 0, 0, 0, 0, 0, 0, 0},                         // responses
		[]byte{0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01}, // out_bytes
		[]byte{9, 0, 0, 0, 0, 0, 0, 0},                         // in_bytes
		[]byte{10, 0, 0, 0, 0, 0, 0, 0},                        // bad_transfers
	)
	got := c.Encode(nil)
	if !bytes.Equal(got, want) || len(got) != SizeofCountersHeader+SizeofPairCounters {
		t.Fatalf("Counters\n got % x\nwant % x", got, want)
	}
	back, err := DecodeCounters(want)
	if err != nil || back.Resets != 3 || back.BadControl != 4 || back.BadPackets != 5 || len(back.Pairs) != 1 || back.Pairs[0] != c.Pairs[0] {
		t.Fatalf("DecodeCounters: %+v, %v", back, err)
	}
	for _, bad := range [][]byte{want[:15], want[:len(want)-1], append(append([]byte(nil), want...), 0)} {
		if _, err := DecodeCounters(bad); !errors.Is(err, ErrLayout) {
			t.Errorf("DecodeCounters of %d bytes: %v", len(bad), err)
		}
	}
	nine := append([]byte(nil), want[:SizeofCountersHeader]...)
	nine[offCtrPairs] = 9
	nine = append(nine, make([]byte, 9*SizeofPairCounters)...)
	if _, err := DecodeCounters(nine); !errors.Is(err, ErrLayout) {
		t.Errorf("DecodeCounters of 9 pairs: %v", err)
	}
}

// TestGeometry pins the per-pair limits USB.md derives from the record
// size, and that a transfer's records always fit a ring.
func TestGeometry(t *testing.T) {
	for _, tc := range []struct{ rec, perTransfer, slots int }{
		{8, 256, 1024}, {64, 256, 1024}, {512, 256, 1024}, {1024, 256, 512}, {4096, 64, 128},
		{16384, 16, 32}, {40000, 6, 8}, {65528, 4, 8}, {65536, 4, 8},
	} {
		if k, s := RecordsPerTransfer(tc.rec), RingSlots(tc.rec); k != tc.perTransfer || s != tc.slots {
			t.Errorf("record size %d: %d a transfer, %d slots; want %d, %d", tc.rec, k, s, tc.perTransfer, tc.slots)
		}
	}
	for r := MinRecordSize; r <= MaxRecordSize; r += RecordAlign {
		if k, s := RecordsPerTransfer(r), RingSlots(r); k < 1 || k > s || s&(s-1) != 0 || s*r > ringBytes && s != minRingSlots {
			t.Fatalf("record size %d: %d a transfer, %d slots", r, k, s)
		}
	}
	for _, r := range []uint32{0, 4, 12, 65544, 1 << 31} {
		if err := checkRecordSize(r); !errors.Is(err, ErrRequest) {
			t.Errorf("record size %d accepted", r)
		}
	}
}
