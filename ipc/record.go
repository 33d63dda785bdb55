package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"golang.org/x/sys/unix"
)

// A record, as both sides write and check it. Little-endian.
const (
	recOffSeq    = 0  // u64 sequence number, from 0, per producer
	recOffSentNs = 8  // u64 CLOCK_MONOTONIC when the producer wrote it
	recOffSource = 16 // u32 producer id
	recOffSum    = 20 // u32 CRC-32C of [0, 20) and [24, length)
	recOffFill   = 24 // filler derived from seq and producer

	// MinPayload is the smallest record: the header above.
	MinPayload = recOffFill
)

// ErrRecord: a record failed its checks.
var ErrRecord = errors.New("ipc: bad record")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// clockBase ties this process's monotonic clock (time.Now, read through the
// vDSO) to CLOCK_MONOTONIC, which every process on the machine shares, so a
// consumer can compare a producer's timestamps with its own without a
// system call per batch. The error is the time between the two readings.
var clockBase = func() struct {
	ns uint64
	t  time.Time
} {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return struct {
		ns uint64
		t  time.Time
	}{uint64(ts.Nano()), time.Now()}
}()

// monotonicNs reads CLOCK_MONOTONIC in nanoseconds.
func monotonicNs() uint64 { return clockBase.ns + uint64(time.Since(clockBase.t)) }

// writeRecord fills b (its whole length) as record seq of source.
func writeRecord(b []byte, source uint32, seq uint64, sentNs uint64, checksum bool) {
	binary.LittleEndian.PutUint64(b[recOffSeq:], seq)
	binary.LittleEndian.PutUint64(b[recOffSentNs:], sentNs)
	binary.LittleEndian.PutUint32(b[recOffSource:], source)
	fill := b[recOffFill:]
	x := seq*0x9E3779B97F4A7C15 ^ uint64(source)<<32
	for i := 0; i+8 <= len(fill); i += 8 {
		binary.LittleEndian.PutUint64(fill[i:], x+uint64(i))
	}
	for i := len(fill) &^ 7; i < len(fill); i++ {
		fill[i] = byte(x)
	}
	var sum uint32
	if checksum {
		sum = recordSum(b)
	}
	binary.LittleEndian.PutUint32(b[recOffSum:], sum)
}

func recordSum(b []byte) uint32 {
	return crc32.Update(crc32.Checksum(b[:recOffSum], castagnoli), castagnoli, b[recOffFill:])
}

// record is what a receiver learns from one record.
type record struct {
	seq    uint64
	sentNs uint64
	source uint32
}

// readRecord checks b as a record of want bytes and returns its header.
func readRecord(b []byte, want int, checksum bool) (record, error) {
	if len(b) != want || len(b) < MinPayload {
		return record{}, fmt.Errorf("%w: %d bytes, %d expected", ErrRecord, len(b), want)
	}
	r := record{
		seq:    binary.LittleEndian.Uint64(b[recOffSeq:]),
		sentNs: binary.LittleEndian.Uint64(b[recOffSentNs:]),
		source: binary.LittleEndian.Uint32(b[recOffSource:]),
	}
	if checksum {
		if got, want := recordSum(b), binary.LittleEndian.Uint32(b[recOffSum:]); got != want {
			return r, fmt.Errorf("%w: record %d: checksum %#x, computed %#x", ErrRecord, r.seq, want, got)
		}
	}
	return r, nil
}
