//go:build !cgo

package usbhost

// usbOpener without cgo: there is no libusb to open a device with.
func usbOpener(Config) opener {
	return func() (device, error) { return nil, ErrNoUSB }
}

// Devices without cgo: none can be listed.
func Devices() ([]string, error) { return nil, ErrNoUSB }
