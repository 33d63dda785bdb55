package usbhost

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// Sentinel errors; check them with errors.Is.
var (
	// ErrGone: the device vanished (unplugged, or its handle no longer
	// reaches it). Recover waits for it to come back.
	ErrGone = errors.New("usbhost: device gone")
	// ErrStall: an endpoint or a control request was halted by the
	// device. The driver clears a bulk endpoint's halt before it reports
	// the error.
	ErrStall = errors.New("usbhost: endpoint stalled")
	// ErrTimeout: a transfer did not complete within Config.Timeout.
	ErrTimeout = errors.New("usbhost: transfer timed out")
	// ErrIO: a transfer failed on the bus (an I/O error, an overflow, or
	// the device cancelling what it held, as a reset elsewhere does).
	ErrIO = errors.New("usbhost: transfer failed")
	// ErrProtocol: the device broke its contract (USB.md): a short or
	// unaligned completion, a response nobody asked for, a bad answer to a
	// vendor request.
	ErrProtocol = errors.New("usbhost: device broke the protocol")
	// ErrNotFound: no device with the vendor and product IDs is attached.
	ErrNotFound = errors.New("usbhost: device not found")
	// ErrClosed: the driver was closed.
	ErrClosed = errors.New("usbhost: closed")
	// ErrConfig: a Config the device cannot run with.
	ErrConfig = errors.New("usbhost: bad configuration")
	// ErrNoUSB: this binary was built without cgo, so without libusb.
	ErrNoUSB = errors.New("usbhost: built without cgo: no libusb")
)

// errCancelled is a transfer the driver itself cancelled (Reset, Close,
// Recover); it never reaches the application.
var errCancelled = errors.New("usbhost: transfer cancelled")

// TransferError is a bulk transfer that failed: which pair and endpoint,
// and why (an error wrapping one of the sentinels, which Unwrap returns).
type TransferError struct {
	Pair     int
	Endpoint uint8
	N        int   // bytes the transfer moved before it failed
	Err      error // wraps ErrGone, ErrStall, ErrTimeout, ErrIO or ErrProtocol
	Detail   string
}

func (e *TransferError) Error() string {
	dir := "OUT"
	if e.Endpoint&usbproto.EndpointDirIn != 0 {
		dir = "IN"
	}
	msg := fmt.Sprintf("usbhost: pair %d: %s transfer on endpoint %#02x: %v", e.Pair, dir, e.Endpoint, e.Err)
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

func (e *TransferError) Unwrap() error { return e.Err }

// Pending names what a pair had in hand when the driver stopped: records
// it sent whose answers had not come (they stay in the request queue, not
// released, and Recover sends them again), and responses it had received
// (published in the response queue, readable with Receive).
type Pending struct {
	Pair       int
	Unanswered int    // requests reserved by the transport and not answered
	Sent       uint64 // requests whose OUT transfer completed, since Open
	Answered   uint64 // requests answered (responses published), since Open
}

// IncompleteError is an error that stopped the driver, with what each pair
// had not finished. Nothing in it is lost: Recover resends the unanswered
// requests.
type IncompleteError struct {
	Err   error
	Pairs []Pending
}

func (e *IncompleteError) Error() string {
	var parts []string
	for _, p := range e.Pairs {
		if p.Unanswered > 0 {
			parts = append(parts, fmt.Sprintf("pair %d: %d requests unanswered (kept for Recover)", p.Pair, p.Unanswered))
		}
	}
	if len(parts) == 0 {
		return e.Err.Error() + "; every request sent was answered"
	}
	return e.Err.Error() + "; " + strings.Join(parts, ", ")
}

func (e *IncompleteError) Unwrap() error { return e.Err }
