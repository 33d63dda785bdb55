//go:build cgo

package usbhost

// #include <libusb.h>
// #cgo pkg-config: libusb-1.0
import "C"

import (
	"fmt"
	"reflect"

	"github.com/google/gousb"
)

// deviceHandle returns the libusb_device_handle behind an open gousb
// Device. gousb v1.1.3 keeps it in the unexported field handle (a
// *libusbDevHandle, its name for C.libusb_device_handle) and offers no
// way to submit a transfer on a caller's buffer, which is what a
// zero-copy transport needs. The field is read with reflect, checked for
// being a non-nil pointer; a gousb without it fails here, with the
// reason, not later. go.mod pins v1.1.3; TestDeviceHandleField pins the
// field.
func deviceHandle(d *gousb.Device) (*C.libusb_device_handle, error) {
	v := reflect.ValueOf(d).Elem().FieldByName("handle")
	if !v.IsValid() || v.Kind() != reflect.Pointer {
		return nil, fmt.Errorf("%w: gousb.Device has no handle pointer (not gousb v1.1.3?)", ErrConfig)
	}
	p := v.UnsafePointer()
	if p == nil {
		return nil, fmt.Errorf("%w: gousb.Device is closed", ErrIO)
	}
	return (*C.libusb_device_handle)(p), nil
}
