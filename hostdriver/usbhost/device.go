package usbhost

import "time"

// device is what the driver needs of a USB device: control requests on
// endpoint 0, bulk transfers, and clearing a halt. The gousb/libusb one is
// in usb_cgo.go; the tests use an in-memory device that keeps USB.md.
// Its errors wrap the package's sentinels (ErrGone, ErrStall, ErrTimeout,
// ErrIO) so that the driver can tell them apart.
type device interface {
	// control runs one control transfer; data is its data stage, IN or
	// OUT as bit 7 of rType says. It returns the bytes moved.
	control(rType, request uint8, value, index uint16, data []byte, timeout time.Duration) (int, error)
	// newTransfer returns an idle bulk transfer on endpoint ep.
	newTransfer(ep uint8) (transfer, error)
	// clearHalt clears endpoint ep's halt (CLEAR_FEATURE ENDPOINT_HALT).
	clearHalt(ep uint8) error
	// deviceMemory maps size bytes that the host controller's driver
	// moves transfers to and from without copying (usbfs memory, from
	// libusb_dev_mem_alloc), with what unmaps it. The mapping outlives the
	// device: it stays valid after close and after the device is gone.
	deviceMemory(size int) (mem []byte, unmap func() error, err error)
	// close releases the interface and the device.
	close() error
}

// transfer is one bulk transfer, reused: submit it on a buffer, wait for
// done, read result, submit again. buf is slot memory that stays in use
// until done is closed; it is never copied.
type transfer interface {
	// submit starts the transfer on buf (all of it is sent, or up to all
	// of it received); a zero timeout is none.
	submit(buf []byte, timeout time.Duration) error
	// done is closed when the submitted transfer completed, failed or was
	// cancelled; a new submit gives a new channel.
	done() <-chan struct{}
	// result is, after done, the bytes moved and nil, or what stopped it
	// (errCancelled when cancel did).
	result() (int, error)
	// cancel asks for the transfer to end early; done follows.
	cancel()
	// free releases the transfer; it must not be in flight.
	free()
}

// opener finds and opens the device, claiming its interface: once at
// Open, and again when Recover finds it gone.
type opener func() (device, error)
