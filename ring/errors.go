package ring

import (
	"errors"
	"fmt"
)

// Sentinel errors. Check them with errors.Is; the errors returned may wrap
// them with detail.
var (
	// ErrFull: no slot is free for the reservation asked for. Try again
	// after consumers release.
	ErrFull = errors.New("ring: full")
	// ErrEmpty: no published record is ready for the reservation asked for.
	// Try again after producers publish.
	ErrEmpty = errors.New("ring: empty")
	// ErrCorrupt: the metadata region holds something no correct agent
	// writes. Returned as a *CorruptError with the reason, and counted.
	ErrCorrupt = errors.New("ring: metadata corrupt")
	// ErrIncompatible: the metadata region is not a queue this package can
	// drive (magic, version or a required feature bit).
	ErrIncompatible = errors.New("ring: incompatible metadata")
	// ErrInvalid: a caller passed an argument out of range.
	ErrInvalid = errors.New("ring: invalid argument")
	// ErrNotHeld: the slot is no longer held by this run: it was already
	// published, released or aborted.
	ErrNotHeld = errors.New("ring: slot not held by this run")
	// ErrFragmented: an exact Reserve found records, but split by aborted
	// slots further from the run's start than one run can carry them (64
	// positions), so no exact run of the size asked for can be made from
	// them, now or later. Take them with
	// ReserveUpTo, which returns the records before the holes and then
	// passes the holes over, or ask for fewer.
	ErrFragmented = errors.New("ring: records split by more aborted slots than one run holds; use ReserveUpTo")
	// ErrSealed: a producer reserved on a generation of a Resizable that a
	// resize has sealed (only possible on the queue ProducerQueue returned
	// earlier); reserve through the Resizable's Producer, which moves on.
	ErrSealed = errors.New("ring: generation sealed by a resize; reserve through the Resizable")
	// ErrResizing: a Resize or ResizeTo found the previous one not yet
	// followed: a single producer has not reserved since and so has not
	// sealed the generation it is leaving (ResizePending says so); or Add
	// found this process's agents that many resizes behind. Nothing
	// changed; try again once they have followed, or give up after a
	// deadline.
	ErrResizing = errors.New("ring: the previous resize is not yet followed")
	// ErrNotPending: Resizable.SealAbandoned found no resize waiting for
	// a single producer: none was named since the producer last followed,
	// or the producer sealed its generation itself before it stopped.
	// Nothing changed.
	ErrNotPending = errors.New("ring: no resize waits for the producer")
	// ErrNotLast: a consumer tried to give records back, but another run
	// was reserved after this one. The records are still held by the run:
	// read and release them.
	ErrNotLast = errors.New("ring: a later run was reserved; records are still held")
)

// CorruptError says what was wrong with the metadata and where.
type CorruptError struct {
	Side   string // "producer", "consumer", "check" or "attach"
	Reason string
	// Addr is the address of the word found corrupt, for an agent that
	// reaches the metadata through Memory (AgentConsumer, AgentProducer);
	// 0 otherwise.
	Addr uint64
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("ring: metadata corrupt (%s): %s", e.Side, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// HeaderError is returned by Attach for a header it will not drive: which
// field, the value found, and why it is refused. It unwraps to
// ErrIncompatible or ErrCorrupt.
type HeaderError struct {
	Field  string
	Off    uint64 // the field's offset in the metadata region (Off*)
	Value  uint64
	Reason string
	Err    error
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("ring: attach: header %s = %#x: %s", e.Field, e.Value, e.Reason)
}

func (e *HeaderError) Unwrap() error { return e.Err }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// corruptf is corruption of the link between generations of a Resizable,
// which no side's counter owns.
func corruptf(format string, args ...any) error {
	return &CorruptError{Side: "link", Reason: fmt.Sprintf(format, args...)}
}
