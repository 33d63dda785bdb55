package pci

import "errors"

// Sentinel errors. The errors the package returns wrap them with the device
// address and what to do; check them with errors.Is.
var (
	// ErrNoDevice: no PCI device has that address.
	ErrNoDevice = errors.New("pci: no such device")
	// ErrBadAddress: the string is not a PCI address (DDDD:BB:DD.F).
	ErrBadAddress = errors.New("pci: malformed address")
	// ErrNoIOMMU: the kernel runs without an IOMMU (no groups at all).
	ErrNoIOMMU = errors.New("pci: no IOMMU")
	// ErrNoIOMMUGroup: the device belongs to no IOMMU group, so VFIO
	// cannot reach it. Returned together with ErrNoIOMMU when the cause is
	// that there is no IOMMU at all.
	ErrNoIOMMUGroup = errors.New("pci: device has no IOMMU group")
	// ErrVFIONotLoaded: the vfio-pci driver is not registered.
	ErrVFIONotLoaded = errors.New("pci: vfio-pci is not loaded")
	// ErrPermission: a sysfs write was refused; it also matches
	// fs.ErrPermission.
	ErrPermission = errors.New("pci: permission denied")
	// ErrNotBindable: vfio-pci cannot drive this kind of device (a bridge).
	ErrNotBindable = errors.New("pci: device cannot be bound to vfio-pci")
	// ErrBindFailed: the writes succeeded but the device did not end up
	// on the driver asked for.
	ErrBindFailed = errors.New("pci: bind did not take")
)
