package record

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// ErrSequence is wrapped by every error of a Verifier and of VerifyLog.
var ErrSequence = errors.New("record: out of sequence")

// Problem is what is wrong with a producer's records.
type Problem int

const (
	Lost       Problem = iota + 1 // a record never came (Add: or came late)
	Duplicated                    // a record came twice
	Reordered                     // a record came after one that followed it
	Short                         // a producer's count is below what it sent
	Excess                        // a producer's count is above what it sent
	Unknown                       // a producer id beyond the producers there are
	Position                      // one queue position was taken twice
)

var problemNames = [...]string{Lost: "lost", Duplicated: "duplicated", Reordered: "reordered",
	Short: "short count", Excess: "excess count", Unknown: "unknown producer", Position: "position taken twice"}

func (p Problem) String() string {
	if p > 0 && int(p) < len(problemNames) {
		return problemNames[p]
	}
	return fmt.Sprintf("Problem(%d)", int(p))
}

// SequenceError says which record of which producer was out of sequence,
// or which producer's count was wrong.
type SequenceError struct {
	Problem  Problem
	Producer uint32
	Seq      uint64 // the record that came; for Short and Excess, the count
	Want     uint64 // the record that was due; for Short and Excess, the records sent
	Pos      uint64 // the record's queue position, if HasPos
	HasPos   bool   // set by VerifyLog, which knows positions
}

func (e *SequenceError) Error() string {
	at := ""
	if e.HasPos {
		at = fmt.Sprintf(" at position %d", e.Pos)
	}
	switch e.Problem {
	case Short, Excess:
		return fmt.Sprintf("producer %d: %d records, %d sent (%v)", e.Producer, e.Seq, e.Want, e.Problem)
	case Unknown:
		return fmt.Sprintf("record %d%s: producer %d of %d (%v)", e.Seq, at, e.Producer, e.Want, e.Problem)
	case Position:
		return fmt.Sprintf("position %d consumed twice", e.Pos)
	case Lost:
		if !e.HasPos {
			return fmt.Sprintf("producer %d: record %d where %d was due (lost or reordered)", e.Producer, e.Seq, e.Want)
		}
	}
	return fmt.Sprintf("producer %d: record %d%s, want %d (%v)", e.Producer, e.Seq, at, e.Want, e.Problem)
}

// Unwrap returns ErrSequence.
func (e *SequenceError) Unwrap() error { return ErrSequence }

// Verifier checks records in the order one consumer took them: each
// producer's sequence numbers must come 0, 1, 2, ..., none left out, none
// twice, none early. Done then checks each producer's count.
type Verifier struct {
	next []uint64 // by producer: the sequence number due
}

// NewVerifier verifies the records of producers 0 to producers-1.
func NewVerifier(producers int) *Verifier { return &Verifier{next: make([]uint64, producers)} }

// Add accounts for record seq of producer, the next one taken. A record
// due later than the one expected is Lost: Add cannot tell a lost record
// from a late one; VerifyLog, which sees the whole log, can. After an
// error the Verifier's state is not meaningful.
func (v *Verifier) Add(producer uint32, seq uint64) error {
	if int64(producer) >= int64(len(v.next)) {
		return &SequenceError{Problem: Unknown, Producer: producer, Seq: seq, Want: uint64(len(v.next))}
	}
	want := v.next[producer]
	switch {
	case seq < want:
		return &SequenceError{Problem: Duplicated, Producer: producer, Seq: seq, Want: want}
	case seq > want:
		return &SequenceError{Problem: Lost, Producer: producer, Seq: seq, Want: want}
	}
	v.next[producer]++
	return nil
}

// Count is how many records of producer have been added.
func (v *Verifier) Count(producer uint32) uint64 {
	if int64(producer) >= int64(len(v.next)) {
		return 0
	}
	return v.next[producer]
}

// Done checks that every producer's count is exactly sent.
func (v *Verifier) Done(sent uint64) error {
	for p, n := range v.next {
		if n != sent {
			prob := Short
			if n > sent {
				prob = Excess
			}
			return &SequenceError{Problem: prob, Producer: uint32(p), Seq: n, Want: sent}
		}
	}
	return nil
}

// Seen is one record as a consumer took it: where from the queue, and what
// its header said.
type Seen struct {
	Pos      uint64 // queue position
	Producer uint32
	Seq      uint64
}

// VerifyLog proves that the records in log, taken by any number of
// consumers from one queue, are every record that producers producers sent,
// sent records each: sorted by queue position (VerifyLog sorts log in
// place), no position comes twice and each producer's sequence numbers are
// 0, 1, 2, ..., sent-1. Its errors are *SequenceError and tell a lost
// record from a reordered one.
func VerifyLog(log []Seen, producers int, sent uint64) error {
	slices.SortFunc(log, func(a, b Seen) int { return cmp.Compare(a.Pos, b.Pos) })
	v := NewVerifier(producers)
	for i, s := range log {
		if i > 0 && log[i-1].Pos == s.Pos {
			return &SequenceError{Problem: Position, Producer: s.Producer, Seq: s.Seq, Want: s.Seq, Pos: s.Pos, HasPos: true}
		}
		err := v.Add(s.Producer, s.Seq)
		var se *SequenceError
		if !errors.As(err, &se) {
			continue
		}
		se.Pos, se.HasPos = s.Pos, true
		if se.Problem == Lost && slices.ContainsFunc(log[i+1:], func(l Seen) bool {
			return l.Producer == s.Producer && l.Seq == se.Want
		}) {
			se.Problem = Reordered
		}
		return se
	}
	return v.Done(sent)
}
