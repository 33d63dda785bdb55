//go:build cgo

package usbhost

// #cgo pkg-config: libusb-1.0
// #include <libusb.h>
// #include <sys/mman.h>
import "C"

import (
	"fmt"
	"unsafe"
)

// deviceMemory maps usbfs memory with libusb_dev_mem_alloc, which on
// Linux is an mmap of the device's usbfs file: the kernel then submits a
// transfer on it without the copy it makes of any other buffer. It is
// unmapped with munmap, as libusb_dev_mem_free does, so it needs no handle
// (the mapping holds the usbfs file open, so it outlives the handle and
// the device).
func (g *gousbDevice) deviceMemory(size int) ([]byte, func() error, error) {
	p := C.libusb_dev_mem_alloc(g.h, C.size_t(size))
	if p == nil {
		return nil, nil, fmt.Errorf("%w: libusb_dev_mem_alloc of %d bytes failed", ErrIO, size)
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(p)), size)
	unmap := func() error {
		if rc, err := C.munmap(unsafe.Pointer(p), C.size_t(size)); rc != 0 {
			return fmt.Errorf("usbhost: munmap device memory: %w", err)
		}
		return nil
	}
	return b, unmap, nil
}
