package user

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ycq-dev/ycq/vfio"
)

// Sentinel errors of the protocol. Check them with errors.Is; the errors
// returned wrap them with detail.
//
// Errors that are not the protocol's use package vfio's sentinels, so a
// caller of vfio.Device checks one sentinel whichever backend it holds: an
// argument out of range wraps vfio.ErrInvalid, whether a Client method was
// given a range the device does not have or an encoder a value the wire
// cannot carry (a count wider than its field, an unknown DMAWire, a message
// without a header); a closed client or connection wraps vfio.ErrClosed
// (through ErrClosed, conn.go).
var (
	// ErrMalformed: the bytes are not a well-formed vfio-user message: too
	// short, a count or length that disagrees with the bytes present, a
	// capability pointer outside the payload or going backwards, an invalid
	// JSON capability. Returned as a *ProtocolError.
	ErrMalformed = errors.New("vfio-user: malformed message")
	// ErrTooLarge: a header announces a message larger than the receiver's
	// limit (Header.CheckSize). Returned as a *ProtocolError.
	ErrTooLarge = errors.New("vfio-user: message too large")
)

// ProtocolError says which message and field a decoder refused, and why.
// It unwraps to ErrMalformed (or ErrTooLarge for Header.CheckSize).
type ProtocolError struct {
	Command Command // the command whose payload was refused (0 if unknown)
	Field   string  // protocol name of the offending field, e.g. "cap_offset"
	Reason  string
	Err     error // ErrMalformed or ErrTooLarge; nil means ErrMalformed
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("%v: %s: %s: %s", e.Unwrap(), e.Command, e.Field, e.Reason)
}

// Unwrap returns the sentinel: ErrMalformed unless Err says otherwise.
func (e *ProtocolError) Unwrap() error {
	if e.Err == nil {
		return ErrMalformed
	}
	return e.Err
}

func malformed(cmd Command, field, format string, args ...any) error {
	return &ProtocolError{Command: cmd, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// invalidf reports an argument this package cannot use, wrapping
// vfio.ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{vfio.ErrInvalid}, args...)...)
}

// RemoteError is the error a peer reported in a reply with the ERROR flag
// (Header.Err). It unwraps to the errno, so errors.Is(err, syscall.EEXIST)
// works. Errno may be 0: the protocol allows the ERROR flag without a code.
type RemoteError struct {
	Command Command
	Errno   syscall.Errno
}

func (e *RemoteError) Error() string {
	if e.Errno == 0 {
		return fmt.Sprintf("vfio-user: %s failed (no errno given)", e.Command)
	}
	return fmt.Sprintf("vfio-user: %s failed: %v", e.Command, e.Errno)
}

// Unwrap returns the errno, or nil when the peer gave none.
func (e *RemoteError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}
