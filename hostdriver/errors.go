package hostdriver

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// Sentinel errors; check them with errors.Is.
var (
	// ErrGone: the device cannot be reached any more (its vfio-user socket
	// closed, or the kernel device failed).
	ErrGone = errors.New("hostdriver: device gone")
	// ErrReset: the device was reset while the driver ran it.
	ErrReset = errors.New("hostdriver: device reset")
	// ErrDevice: the device stopped on an error; see *DeviceError.
	ErrDevice = errors.New("hostdriver: device error")
	// ErrClosed: the driver was closed.
	ErrClosed = errors.New("hostdriver: closed")
	// ErrConfig: a Config the device cannot run with.
	ErrConfig = errors.New("hostdriver: bad configuration")
	// ErrNotYCQ: BAR0 does not hold the ycq register map.
	ErrNotYCQ = errors.New("hostdriver: not a ycq device")
)

// gone marks an error of the vfio.Device as the device being unreachable.
func gone(err error) error {
	if err == nil || errors.Is(err, ErrGone) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrGone, err)
}

// DeviceError is the device's own report of why it stopped, from its error
// registers.
type DeviceError struct {
	Code   uint32 // ycqdev.Code*
	Queue  uint32 // queue pair, or ycqdev.NoQueue
	Addr   uint64 // the address or value the error is about
	During string // what the driver was doing
}

var codeNames = map[uint32]string{
	ycqdev.CodeBadConfig:    "bad configuration",
	ycqdev.CodeBadMetadata:  "bad queue metadata",
	ycqdev.CodeDMAFault:     "DMA fault",
	ycqdev.CodeCorruptQueue: "corrupt queue",
	ycqdev.CodeBadRecord:    "bad record",
}

func (e *DeviceError) Error() string {
	name := codeNames[e.Code]
	if name == "" {
		name = fmt.Sprintf("code %d", e.Code)
	}
	q := "no queue pair"
	if e.Queue != ycqdev.NoQueue {
		q = fmt.Sprintf("queue pair %d", e.Queue)
	}
	return fmt.Sprintf("hostdriver: device error during %s: %s (%s, address or value %#x)", e.During, name, q, e.Addr)
}

// Is makes errors.Is(err, ErrDevice) true.
func (e *DeviceError) Is(target error) bool { return target == ErrDevice }

// deviceError reads the device's error registers.
func (d *Driver) deviceError(during string) error {
	code, err := vfio.Read32(d.dev, vfio.BAR0, ycqdev.RegErrorCode)
	if err != nil {
		return gone(err)
	}
	q, err := vfio.Read32(d.dev, vfio.BAR0, ycqdev.RegErrorQueue)
	if err != nil {
		return gone(err)
	}
	addr, err := vfio.Read64(d.dev, vfio.BAR0, ycqdev.RegErrorAddr)
	if err != nil {
		return gone(err)
	}
	return d.withIncomplete(&DeviceError{Code: code, Queue: q, Addr: addr, During: during})
}

// Incomplete names the requests of one pair that the device had not
// completed: queue positions First to End-1 of the host-to-device queue,
// sent (or still held by their senders) but not answered. Responses the
// device did publish stay readable with Receive.
type Incomplete struct {
	Pair       int
	First, End uint64
}

// IncompleteError is an error that stopped the driver, with the requests it
// left incomplete.
type IncompleteError struct {
	Err   error
	Pairs []Incomplete
}

func (e *IncompleteError) Error() string {
	var parts []string
	for _, p := range e.Pairs {
		if p.End > p.First {
			parts = append(parts, fmt.Sprintf("pair %d: %d requests (positions %d to %d)", p.Pair, p.End-p.First, p.First, p.End-1))
		}
	}
	if len(parts) == 0 {
		return e.Err.Error() + "; every request sent was completed"
	}
	return e.Err.Error() + "; not completed: " + strings.Join(parts, ", ")
}

func (e *IncompleteError) Unwrap() error { return e.Err }

// withIncomplete adds to err which requests each pair had not completed.
func (d *Driver) withIncomplete(err error) error {
	ie := &IncompleteError{Err: err}
	for _, p := range d.pairs {
		first, end := p.incomplete()
		ie.Pairs = append(ie.Pairs, Incomplete{Pair: p.index, First: first, End: end})
	}
	return ie
}
