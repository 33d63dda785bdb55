// Package record is the self-checking record that ycq's stress tests,
// benchmarks, demo and `ycq ipc` move through queues: a producer id, a
// sequence number, optionally a send time, a CRC-32C checksum, and a fill
// derived from the header, so that a record that was garbled, cut short,
// or written for another producer or sequence number fails its check. A
// Verifier then proves that none was lost, duplicated or reordered and that
// each producer's count is exactly what it sent.
//
// The byte layout (record.go) crosses processes: `ycq ipc` peers and the
// device benchmark exchange it, so it changes only with them.
//
// # Concurrency and memory
//
// Format is a small value, safe to copy and to use from any goroutine.
// Fill and Check work on the caller's buffer in place, keep no reference to
// it, and allocate nothing; Check treats the bytes as hostile and reports
// anything wrong as an error wrapping ErrCorrupt, never a panic. A Verifier
// is not safe for concurrent use: give each consumer its own log of Seen
// records and verify the logs together (VerifyLog) once they are done.
//
// The package imports nothing of ycq, so the ring's own tests and library
// code alike can use it.
package record
