// Package kernel is the vfio.Device backend over the Linux VFIO uapi: a PCI
// device bound to vfio-pci, reached through the group/container interface
// (/dev/vfio/vfio and /dev/vfio/<group>, type1 IOMMU) or, on kernels that
// have it, the iommufd/cdev interface (/dev/iommu and
// /dev/vfio/devices/vfio<N>). Open picks one (Options.Backend).
//
// # Layout of the package
//
//   - uapi.go mirrors the structs and constants of linux/vfio.h and
//     linux/iommufd.h, with the kernel's names; uapi_unsafe.go has one
//     typed function per ioctl and is the only file that uses unsafe.
//   - caps.go parses what the kernel writes back (region info and type1
//     IOMMU info with their capability chains), bounds-checking every
//     offset; each parser has a fuzz target.
//   - resolve.go does everything Open can do before its first open or
//     ioctl, from sysfs (through package pci) and /dev: it finds the
//     device, checks for an IOMMU, the driver and the group's other
//     members, and picks the device nodes. Its roots are Options fields,
//     so tests run it against a fake tree; its errors say what to do.
//   - device.go is Device: Open, the vfio.Device methods and Close.
//
// # Ownership and concurrency
//
// A Device owns its descriptors (device, group and container, or device
// and iommufd), its region mappings and its DMA mappings; Close releases
// them all. Its methods may be called from several goroutines at once;
// Close waits for calls in progress, and later calls return
// vfio.ErrClosed. Mappings returned by MapRegion must not be used after
// their Close or the Device's. DMA mappings pin the memory of the
// dma.Region they came from; the region must stay mapped until UnmapDMA
// or Close.
//
// A VFIO group can be open once at a time, system-wide, so open each
// device at most once and not while another program holds its group.
//
// What the fake tree cannot show (the ioctls themselves) is tested in the
// QEMU guest: TestRealDevice runs when YCQ_VFIO_DEVICE names a device on
// vfio-pci.
package kernel
