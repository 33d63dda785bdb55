package devicemodel

import (
	"errors"

	"github.com/ycq-dev/ycq/vfio"
)

// Region is one region a device exposes to a client.
type Region struct {
	Info vfio.RegionInfo
	// FD backs the mappable areas (vfio.RegionMmap): the client maps
	// Info.Areas of it at MmapOffset + area offset. -1 when not mappable.
	// The device owns it.
	FD         int
	MmapOffset uint64
}

// Device is what a vfio-user server serves: a PCI function with regions,
// interrupts and a reset, which reaches host memory through a Host. The
// server calls these methods from its own goroutine, one at a time and in
// the order the client's messages arrive; a device may run goroutines of
// its own, which use the Host.
type Device interface {
	Info() vfio.DeviceInfo
	// Region describes region idx; a region with size 0 does not exist.
	Region(idx vfio.RegionIndex) Region
	// IRQ describes interrupt type idx; count 0 means none.
	IRQ(idx vfio.IRQIndex) vfio.IRQInfo
	// ReadRegion and WriteRegion serve REGION_READ and REGION_WRITE. The
	// server has checked that [off, off+len(b)) lies inside the region.
	ReadRegion(idx vfio.RegionIndex, off uint64, b []byte) error
	WriteRegion(idx vfio.RegionIndex, off uint64, b []byte) error
	// Reset returns the device to its power-on state (DEVICE_RESET).
	Reset() error
	// Attach hands the device the host of a newly connected client, and
	// Detach takes it back when the client goes; after Detach returns the
	// device must not use that Host again.
	Attach(h Host)
	Detach()
}

// Host is the device's view of the connected client: its memory, through
// the client's DMA mappings, and its interrupts. Safe for concurrent use.
type Host interface {
	// Read and Write copy between b and host memory at iova. An address
	// range the client has not mapped, or mapped without that permission,
	// gives an error wrapping ErrDMAFault; nothing else is touched.
	Read(iova vfio.IOVA, b []byte) error
	Write(iova vfio.IOVA, b []byte) error
	// Load32, Store32, Load64 and Store64 access one naturally aligned
	// word as a single access with acquire (load) or release (store)
	// ordering, as a device's DMA does; they are how a device reads and
	// writes queue metadata.
	Load32(iova vfio.IOVA) (uint32, error)
	Store32(iova vfio.IOVA, v uint32) error
	Load64(iova vfio.IOVA) (uint64, error)
	Store64(iova vfio.IOVA, v uint64) error
	// Interrupt raises vector of interrupt type idx: it signals the
	// eventfd the client set for it, or, if the vector is masked, marks it
	// pending to fire on unmask. An unwired vector is not an error; the
	// interrupt is dropped and counted.
	Interrupt(idx vfio.IRQIndex, vector uint32) error
}

// Pinner is a Host that can hand the device a direct view of host memory,
// so that the device's accesses need no lookup each (the server's Host
// does, for memory that came with a descriptor). The view is valid until
// release; an unmap of that memory first calls revoke, then waits for
// release. Faults through the view (a client that truncates its file) are
// the device's to catch, with debug.SetPanicOnFault.
type Pinner interface {
	Pin(iova vfio.IOVA, size uint64, perm vfio.Perm, revoke func()) (b []byte, release func(), err error)
}

// ErrDMAFault: a device access to host memory the client has not mapped
// for it.
var ErrDMAFault = errors.New("devicemodel: DMA fault")
