package usbproto

import (
	"errors"
	"fmt"
)

// ErrLayout: a vendor request's data does not fit its layout (a wrong
// length, a reserved field that is not 0). Decode's errors are
// *LayoutError values that wrap it; check with errors.Is.
var ErrLayout = errors.New("usbproto: bad vendor request layout")

// LayoutError is data Decode refused: whose it was, how long, and what is
// wrong with it. Unwrap returns ErrLayout.
type LayoutError struct {
	Request uint8  // the vendor request whose data it is (ReqGetInfo, ReqSetQueue, ReqGetQueue, ReqGetCounters)
	Len     int    // the bytes given
	Problem string // what is wrong with them, e.g. "want 24 bytes"
}

func (e *LayoutError) Error() string {
	return fmt.Sprintf("usbproto: %s: %d bytes: %s", RequestName(e.Request), e.Len, e.Problem)
}

func (e *LayoutError) Unwrap() error { return ErrLayout }

func layoutErr(req uint8, p []byte, format string, args ...any) error {
	return &LayoutError{Request: req, Len: len(p), Problem: fmt.Sprintf(format, args...)}
}
