package redir

import (
	"errors"
	"fmt"
)

// Sentinel errors. Check them with errors.Is; the errors returned wrap them
// with detail.
var (
	// ErrMalformed: the bytes are not a well-formed usbredir packet: a
	// length that disagrees with the packet type or with the bytes present,
	// an unknown type, a type the sender's role may not send, a field out
	// of range. Returned as a *ProtocolError.
	ErrMalformed = errors.New("usbredir: malformed packet")
	// ErrTooLarge: a header announces a packet longer than the receiver's
	// limit. Returned as a *ProtocolError. The stream is not in step any
	// more: the body was not read.
	ErrTooLarge = errors.New("usbredir: packet too large")
	// ErrInvalid: a caller passed a value this package cannot put on the
	// wire (a body longer than the u32 length field, a role that is
	// neither host nor guest).
	ErrInvalid = errors.New("usbredir: invalid argument")
)

// ProtocolError says which packet type and field were refused, and why. It
// unwraps to ErrMalformed, or to ErrTooLarge for an over-long packet.
type ProtocolError struct {
	Type   Type   // the packet type (usb_redir_header.type)
	Field  string // protocol name of the offending field, e.g. "interface_count"
	Reason string
	Err    error // ErrMalformed or ErrTooLarge; nil means ErrMalformed
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("%v: %s: %s: %s", e.Unwrap(), e.Type, e.Field, e.Reason)
}

// Unwrap returns the sentinel: ErrMalformed unless Err says otherwise.
func (e *ProtocolError) Unwrap() error {
	if e.Err == nil {
		return ErrMalformed
	}
	return e.Err
}

func malformed(t Type, field, format string, args ...any) error {
	return &ProtocolError{Type: t, Field: field, Reason: fmt.Sprintf(format, args...)}
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
