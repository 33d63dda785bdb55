package kernel

import (
	"errors"
	"fmt"

	"github.com/ycq-dev/ycq/vfio/pci"
)

// IoctlError is a failed ioctl: Op is the request's kernel name
// ("VFIO_DEVICE_GET_REGION_INFO") and Err the errno, which Unwrap returns,
// so errors.Is(err, unix.EINVAL) works.
type IoctlError struct {
	Op  string
	Err error
}

func (e *IoctlError) Error() string { return "vfio: " + e.Op + ": " + e.Err.Error() }

// Unwrap returns the errno.
func (e *IoctlError) Unwrap() error { return e.Err }

// Errors of opening a device, besides those of package pci that Open also
// returns (pci.ErrNoDevice, pci.ErrNoIOMMU, pci.ErrNoIOMMUGroup,
// pci.ErrVFIONotLoaded, pci.ErrPermission). All are wrapped with the
// device, the path and what to do.
var (
	// ErrNotVFIO: the device is bound to another driver, or to none.
	ErrNotVFIO = errors.New("vfio: device not bound to vfio-pci")
	// ErrGroupNotViable: another member of the device's IOMMU group is
	// bound to a driver that does DMA on its own, so VFIO may not take
	// the group.
	ErrGroupNotViable = errors.New("vfio: IOMMU group not viable")
	// ErrBusy: the group or device is already open (by another process,
	// or by another Device of this one).
	ErrBusy = errors.New("vfio: group or device busy")
	// ErrUnsupported: the kernel lacks what the backend needs (the VFIO
	// API version, a type1 IOMMU, the iommufd interface asked for).
	ErrUnsupported = errors.New("vfio: not supported by this kernel")
	// ErrBadInfo: the kernel returned an info structure the backend
	// refuses (a capability chain that loops or points outside the
	// buffer, a count or range that does not fit).
	ErrBadInfo = errors.New("vfio: malformed info from the kernel")
)

// Re-exported from package pci, so callers of Open need one import.
var (
	ErrNoDevice      = pci.ErrNoDevice
	ErrNoIOMMU       = pci.ErrNoIOMMU
	ErrNoIOMMUGroup  = pci.ErrNoIOMMUGroup
	ErrVFIONotLoaded = pci.ErrVFIONotLoaded
	ErrPermission    = pci.ErrPermission
)

func badInfo(what, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrBadInfo, what, fmt.Sprintf(format, args...))
}
