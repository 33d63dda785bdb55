package usbhost

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestInfoLayout pins GET_INFO's answer (USB.md section 3) against
// literal bytes.
func TestInfoLayout(t *testing.T) {
	b := []byte{
		0x01, 0x00, // version 1
		0x02,                   // pairs 2
		0x00,                   // reserved
		0x00, 0x00, 0x01, 0x00, // max_record_size 65536
		0x00, 0x01, 0x00, 0x00, // max_records_per_transfer 256
		0x00, 0x00, 0x04, 0x00, // max_transfer_bytes 262144
		0x04, 0x00, // out_window 4
		0x40, 0x00, // in_window 64
		0x1e, 0x00, 0x00, 0x00, // engines: bits 1 to 4
	}
	in, err := decodeInfo(b)
	require.NoError(t, err)
	require.Equal(t, Info{Version: 1, Pairs: 2, MaxRecordSize: 65536, MaxRecordsPerTransfer: 256,
		MaxTransferBytes: 262144, OutWindow: 4, InWindow: 64, Engines: 0x1e}, in)
	for _, bad := range [][]byte{b[:23], append(append([]byte(nil), b...), 0)} {
		_, err := decodeInfo(bad)
		require.ErrorIs(t, err, ErrProtocol)
	}
	lie := append([]byte(nil), b...)
	lie[offInfoPairs] = 9
	_, err = decodeInfo(lie)
	require.ErrorIs(t, err, ErrProtocol, "more pairs than the contract allows")
}

// TestQueueSetupLayout pins SET_QUEUE's data.
func TestQueueSetupLayout(t *testing.T) {
	require.Equal(t, []byte{
		0x02, 0x00, 0x00, 0x00, // engine 2 (crc32c)
		0x00, 0x40, 0x00, 0x00, // record_size 16384
	}, encodeQueueSetup(engineCRC32C, 16384))
}

// TestQueueStateLayout pins GET_QUEUE's answer.
func TestQueueStateLayout(t *testing.T) {
	b := []byte{
		0x01, 0x00, 0x00, 0x00, // engine 1 (echo)
		0x40, 0x00, 0x00, 0x00, // record_size 64
		0x40, 0x00, 0x00, 0x00, // response_size 64
		0x00, 0x01, 0x00, 0x00, // records_per_transfer 256
		0x00, 0x04, // ring_slots 1024
		0x05, 0x00, // state: running, IN halted
		0x00, 0x00, 0x00, 0x00, // reserved
	}
	q, err := decodeQueueState(b)
	require.NoError(t, err)
	require.Equal(t, QueueState{Engine: 1, RecordSize: 64, ResponseSize: 64, RecordsPerTransfer: 256, RingSlots: 1024, State: queueRunning | queueInHalted}, q)
	require.True(t, q.Running())
	_, err = decodeQueueState(b[:20])
	require.ErrorIs(t, err, ErrProtocol)
}

// TestCountersLayout pins GET_COUNTERS' answer, one pair.
func TestCountersLayout(t *testing.T) {
	b := []byte{
		0x03, 0x00, 0x00, 0x00, // resets 3
		0x01, 0x00, 0x00, 0x00, // bad_control 1
		0x02, 0x00, 0x00, 0x00, // bad_packets 2
		0x01,             // pairs 1
		0x00, 0x00, 0x00, // reserved
		0x10, 0, 0, 0, 0, 0, 0, 0, // requests 16
		0x11, 0, 0, 0, 0, 0, 0, 0, // responses 17
		0x00, 0x04, 0, 0, 0, 0, 0, 0, // out_bytes 1024
		0x40, 0x04, 0, 0, 0, 0, 0, 0, // in_bytes 1088
		0x05, 0, 0, 0, 0, 0, 0, 0, // bad_transfers 5
	}
	c, err := decodeCounters(b)
	require.NoError(t, err)
	require.Equal(t, Counters{Resets: 3, BadControl: 1, BadPackets: 2,
		Pairs: []PairCounters{{Requests: 16, Responses: 17, OutBytes: 1024, InBytes: 1088, BadTransfers: 5}}}, c)
	_, err = decodeCounters(b[:len(b)-1])
	require.ErrorIs(t, err, ErrProtocol)
	lie := append([]byte(nil), b...)
	lie[offCtrPairs] = 200
	_, err = decodeCounters(lie)
	require.ErrorIs(t, err, ErrProtocol)
}

// TestAnswers: how many responses each engine gives a record.
func TestAnswers(t *testing.T) {
	rec := func(n uint32) []byte { b := make([]byte, 8); le.PutUint32(b, n); return b }
	require.Equal(t, 1, answers(engineEcho, rec(7)))
	require.Equal(t, 1, answers(engineCRC32C, rec(7)))
	require.Equal(t, 0, answers(engineSink, rec(7)))
	require.Equal(t, 7, answers(engineSource, rec(7)))
	require.Equal(t, 1, answers(engineSource, rec(0)), "0 means 1")
	require.Equal(t, 1<<20, answers(engineSource, rec(1<<31)), "at most 2^20")
	require.Equal(t, 8, responseSize(engineCRC32C, 4096))
	require.Equal(t, 4096, responseSize(engineEcho, 4096))
	require.Equal(t, 0, responseSize(engineSink, 4096))
}

// FuzzDecoders: no answer a device gives makes a decoder panic, and what
// decodeInfo accepts is within the contract's limits.
func FuzzDecoders(f *testing.F) {
	f.Add(make([]byte, sizeofInfo))
	f.Add(make([]byte, countersSize(2)))
	f.Fuzz(func(t *testing.T, b []byte) {
		if in, err := decodeInfo(b); err == nil {
			if in.Pairs < 1 || in.Pairs > maxPairs || in.OutWindow < 1 || in.InWindow < 1 {
				t.Fatalf("accepted %+v", in)
			}
		}
		decodeQueueState(b)
		if c, err := decodeCounters(b); err == nil && len(c.Pairs) > maxPairs {
			t.Fatalf("%d pairs", len(c.Pairs))
		}
	})
}
