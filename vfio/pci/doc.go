// Package pci finds PCI devices in sysfs and hands them to vfio-pci and
// back.
//
// List and Lookup read one device directory per function: ids and class
// (parsed by u-root's pkg/pci, which also names them), the bound driver,
// the driver_override, the IOMMU group and the other members of that group,
// and whether the device can be bound to vfio-pci now. Bind and Unbind
// move a device between its driver and vfio-pci through driver_override,
// unbind and drivers_probe, and check where it ended.
//
// The sysfs root is a parameter (Bus.Root, or the sysRoot argument of the
// functions), and so is the function that writes attributes
// (Bus.WriteAttr), so tests run against a fake tree from package pcitest
// that plays the kernel's part. The real effect of the writes is tested in
// the QEMU guest.
//
// Concurrency: a Bus holds no state and may be used from several
// goroutines, but sysfs binding is machine-wide: two binds of the same
// device at once race in the kernel too. Serialise them.
//
// Errors wrap the sentinels in errors.go and say what to do (run as root,
// modprobe vfio-pci, enable the IOMMU).
package pci
