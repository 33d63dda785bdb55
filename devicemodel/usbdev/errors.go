package usbdev

import "errors"

// Sentinel errors. Check them with errors.Is; the errors returned wrap them
// with detail.
var (
	// ErrHandshake: the peer's first packet was not a usbredir hello.
	ErrHandshake = errors.New("usbdev: no usbredir hello")
	// ErrClosed: the device was closed.
	ErrClosed = errors.New("usbdev: device closed")
	// ErrInvalid: a caller passed an argument out of range (Options, or
	// Plug on a plugged device, Unplug on an unplugged one).
	ErrInvalid = errors.New("usbdev: invalid argument")
)
