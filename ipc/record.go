package ipc

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/internal/record"
)

// Records are internal/record's Timed layout: sequence number, send time
// (CLOCK_MONOTONIC), producer id, CRC-32C (or 0 without Hello.Checksum),
// and a fill. Both sides write and check them.

// MinPayload is the smallest record: its header.
const MinPayload = record.TimedSize

// ErrRecord: a record failed its checks.
var ErrRecord = errors.New("ipc: bad record")

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

// recordFormat is how a side with the session's checksum setting writes
// and checks records.
func recordFormat(checksum bool) record.Format { return record.Format{Timed: true, Sum: checksum} }

// readRecord checks b as a record of want bytes and returns its header.
func readRecord(b []byte, want int, checksum bool) (record.Header, error) {
	if len(b) != want || len(b) < MinPayload {
		return record.Header{}, fmt.Errorf("%w: %d bytes, %d expected", ErrRecord, len(b), want)
	}
	h, err := recordFormat(checksum).Check(b)
	if err != nil {
		return h, fmt.Errorf("%w: %w", ErrRecord, err)
	}
	return h, nil
}
