//go:build cgo

package usbhost

// #include <stdint.h>
import "C"

import "runtime/cgo"

// usbhostDone is libusb's transfer callback (usb_cgo.go's usbhost_done),
// called on gousb's event goroutine with the transfer's handle. (A file
// with an //export may declare C, not define it: hence a file of its own.)
//
//export usbhostDone
func usbhostDone(id C.uintptr_t) {
	if x, ok := cgo.Handle(id).Value().(*libusbTransfer); ok {
		x.completed()
	}
}
