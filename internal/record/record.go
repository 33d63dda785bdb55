package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The two layouts, little-endian. This file is the only one that knows
// them; record_test.go pins both against literal bytes.
const (
	offSeq = 0 // u64 sequence number, from 0, per producer (both layouts)

	// Plain: no send time.
	plainOffProducer = 8  // u32 producer id
	plainOffSum      = 12 // u32 CRC-32C of [0, 12) and [16, length); 0 without Sum
	plainOffFill     = 16 // fill derived from seq and producer, to the end

	// Timed: a send time after the sequence number, as `ycq ipc` writes.
	timedOffSentNs   = 8  // u64 the writer's clock when it wrote the record
	timedOffProducer = 16 // u32 producer id
	timedOffSum      = 20 // u32 CRC-32C of [0, 20) and [24, length); 0 without Sum
	timedOffFill     = 24 // fill derived from seq and producer, to the end

	sizeofSum = 4
)

// PlainSize and TimedSize are the smallest records, their headers alone.
const (
	PlainSize = plainOffFill
	TimedSize = timedOffFill
)

// ErrCorrupt is wrapped by every error Check returns.
var ErrCorrupt = errors.New("record: corrupt")

// CorruptError is a record that fails its own checks: too short to hold a
// header, or with a checksum that does not match its bytes.
type CorruptError struct {
	Seq      uint64 // the sequence number the record claims, if it holds one
	Len      int    // the record's length
	Min      int    // the header's size
	Stored   uint32 // the checksum in the record
	Computed uint32 // the checksum of its bytes
}

func (e *CorruptError) Error() string {
	if e.Len < e.Min {
		return fmt.Sprintf("%d bytes, shorter than the %d-byte header", e.Len, e.Min)
	}
	return fmt.Sprintf("record %d: checksum %#x, computed %#x", e.Seq, e.Stored, e.Computed)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Header is what a record says about itself.
type Header struct {
	Seq      uint64 // from 0, per producer
	Producer uint32
	SentNs   uint64 // the writer's clock; carried only by a Timed record, else 0
}

// Format is a record layout and whether its checksum is written and
// checked. The zero Format is the Plain layout without a checksum.
type Format struct {
	// Timed records carry Header.SentNs, in an 8-byte field after the
	// sequence number; Plain ones do not.
	Timed bool
	// Sum: Fill computes the checksum and Check verifies it. Without it
	// the field holds 0 and neither looks at it (nor at the fill), which
	// is for benchmarks that measure the queue rather than the CRC.
	Sum bool
}

// layout is where a Format keeps its fields.
type layout struct{ producer, sum, fill int }

func (f Format) layout() layout {
	if f.Timed {
		return layout{timedOffProducer, timedOffSum, timedOffFill}
	}
	return layout{plainOffProducer, plainOffSum, plainOffFill}
}

// HeaderSize is the smallest record of f: PlainSize or TimedSize.
func (f Format) HeaderSize() int { return f.layout().fill }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Fill writes h as a record into all of b: the header, then a fill derived
// from h.Seq and h.Producer, then, with Sum, the checksum. b is the
// caller's own buffer and must hold at least HeaderSize bytes.
func (f Format) Fill(b []byte, h Header) {
	l := f.layout()
	f.PutHeader(b, h)
	fill := b[l.fill:]
	x := h.Seq*0x9E3779B97F4A7C15 ^ uint64(h.Producer)<<32
	for i := 0; i+8 <= len(fill); i += 8 {
		binary.LittleEndian.PutUint64(fill[i:], x+uint64(i))
	}
	for i := len(fill) &^ 7; i < len(fill); i++ {
		fill[i] = byte(x)
	}
	if f.Sum {
		binary.LittleEndian.PutUint32(b[l.sum:], checksum(b, l))
	}
}

// PutHeader writes h into the first HeaderSize bytes of b, with a zero
// checksum, and leaves the rest of b alone: for a writer that brings its
// own payload after the header (and so does not use Sum).
func (f Format) PutHeader(b []byte, h Header) {
	l := f.layout()
	b = b[:l.fill]
	binary.LittleEndian.PutUint64(b[offSeq:], h.Seq)
	if f.Timed {
		binary.LittleEndian.PutUint64(b[timedOffSentNs:], h.SentNs)
	}
	binary.LittleEndian.PutUint32(b[l.producer:], h.Producer)
	binary.LittleEndian.PutUint32(b[l.sum:], 0)
}

// Check checks b as one record of f and returns its header. b may come
// from a hostile peer: anything wrong is a *CorruptError. The header is
// returned with a checksum error too, to say which record it was.
func (f Format) Check(b []byte) (Header, error) {
	l := f.layout()
	if len(b) < l.fill {
		return Header{}, &CorruptError{Len: len(b), Min: l.fill}
	}
	h := Header{Seq: binary.LittleEndian.Uint64(b[offSeq:]), Producer: binary.LittleEndian.Uint32(b[l.producer:])}
	if f.Timed {
		h.SentNs = binary.LittleEndian.Uint64(b[timedOffSentNs:])
	}
	if f.Sum {
		if got, want := checksum(b, l), binary.LittleEndian.Uint32(b[l.sum:]); got != want {
			return h, &CorruptError{Seq: h.Seq, Len: len(b), Min: l.fill, Stored: want, Computed: got}
		}
	}
	return h, nil
}

// checksum is the CRC-32C of all of b but its checksum field.
func checksum(b []byte, l layout) uint32 {
	return crc32.Update(crc32.Checksum(b[:l.sum], castagnoli), castagnoli, b[l.sum+sizeofSum:])
}
