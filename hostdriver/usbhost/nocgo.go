//go:build !cgo

package usbhost

// usbOpener without cgo: there is no libusb to open a device with.
func usbOpener(Config) opener {
	return func() (device, error) { return nil, ErrNoUSB }
}
