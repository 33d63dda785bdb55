// Package vfio is host-side device access for the ycq driver, behind one
// interface, Device, with two implementations: the Linux VFIO uapi (kernel
// backend) and a vfio-user client over a UNIX socket (package vfio/user).
// The host driver is written only against Device, so the same code drives
// hardware bound to vfio-pci, a device inside a QEMU guest, and the Go
// device model.
//
// Indexes, offsets and addresses have distinct types (RegionIndex,
// IRQIndex, IOVA) so they are not swapped by accident. Everything a Device
// reports came from a kernel or a peer: callers check it like any input.
package vfio

import (
	"errors"
	"fmt"

	"github.com/ycq-dev/ycq/dma"
)

// RegionIndex names a device region, as VFIO numbers them for PCI.
type RegionIndex uint32

// PCI regions, numbered as linux/vfio.h numbers them for vfio-pci (and
// vfio-user for a PCI device).
const (
	BAR0         RegionIndex = iota // VFIO_PCI_BAR0_REGION_INDEX
	BAR1                            // VFIO_PCI_BAR1_REGION_INDEX
	BAR2                            // VFIO_PCI_BAR2_REGION_INDEX
	BAR3                            // VFIO_PCI_BAR3_REGION_INDEX
	BAR4                            // VFIO_PCI_BAR4_REGION_INDEX
	BAR5                            // VFIO_PCI_BAR5_REGION_INDEX
	ROMRegion                       // VFIO_PCI_ROM_REGION_INDEX
	ConfigRegion                    // VFIO_PCI_CONFIG_REGION_INDEX
	VGARegion                       // VFIO_PCI_VGA_REGION_INDEX
	// NumPCIRegions is VFIO_PCI_NUM_REGIONS; indexes from here on are
	// device-specific and carry a region type capability.
	NumPCIRegions
)

func (r RegionIndex) String() string {
	switch {
	case r <= BAR5:
		return fmt.Sprintf("BAR%d", uint32(r))
	case r == ROMRegion:
		return "ROM"
	case r == ConfigRegion:
		return "config"
	case r == VGARegion:
		return "VGA"
	}
	return fmt.Sprintf("region %d", uint32(r))
}

// IRQIndex names an interrupt type, as VFIO numbers them for PCI.
type IRQIndex uint32

// PCI interrupt types, numbered as linux/vfio.h numbers them for vfio-pci
// (and vfio-user for a PCI device).
const (
	IRQINTx    IRQIndex = iota // VFIO_PCI_INTX_IRQ_INDEX
	IRQMSI                     // VFIO_PCI_MSI_IRQ_INDEX
	IRQMSIX                    // VFIO_PCI_MSIX_IRQ_INDEX
	IRQErr                     // VFIO_PCI_ERR_IRQ_INDEX
	IRQReq                     // VFIO_PCI_REQ_IRQ_INDEX
	NumPCIIRQs                 // VFIO_PCI_NUM_IRQS
)

func (i IRQIndex) String() string {
	switch i {
	case IRQINTx:
		return "INTx"
	case IRQMSI:
		return "MSI"
	case IRQMSIX:
		return "MSI-X"
	case IRQErr:
		return "ERR"
	case IRQReq:
		return "REQ"
	}
	return fmt.Sprintf("irq %d", uint32(i))
}

// IOVA is an address in the device's view of host memory, as the IOMMU
// translates it.
type IOVA uint64

// DeviceInfo describes a device.
type DeviceInfo struct {
	Reset      bool // the device supports Reset
	PCI        bool
	NumRegions uint32
	NumIRQs    uint32
}

// RegionFlags say how a region may be accessed.
type RegionFlags uint32

const (
	RegionRead  RegionFlags = 1 << 0
	RegionWrite RegionFlags = 1 << 1
	RegionMmap  RegionFlags = 1 << 2
)

// Area is a part of a region that can be mapped, relative to the region.
type Area struct {
	Offset uint64
	Size   uint64
}

// RegionInfo describes one region. Size 0 means the region does not exist.
type RegionInfo struct {
	Index RegionIndex
	Flags RegionFlags
	Size  uint64
	// Areas lists the parts that can be mapped; with RegionMmap and no
	// areas, the whole region can.
	Areas []Area
}

// Mappable returns the areas that can be mapped.
func (r RegionInfo) Mappable() []Area {
	if r.Flags&RegionMmap == 0 {
		return nil
	}
	if len(r.Areas) == 0 {
		return []Area{{0, r.Size}}
	}
	return r.Areas
}

// IRQFlags describe an interrupt type.
type IRQFlags uint32

const (
	IRQEventfd    IRQFlags = 1 << 0
	IRQMaskable   IRQFlags = 1 << 1
	IRQAutomasked IRQFlags = 1 << 2
	IRQNoResize   IRQFlags = 1 << 3
)

// IRQInfo describes one interrupt type. Count 0 means it does not exist.
type IRQInfo struct {
	Index IRQIndex
	Flags IRQFlags
	Count uint32
}

// Perm is the access a DMA mapping grants the device.
type Perm uint32

const (
	DMARead  Perm = 1 << 0 // the device may read host memory
	DMAWrite Perm = 1 << 1 // the device may write host memory
)

// Mapping is a region area mapped into this process.
type Mapping interface {
	Bytes() []byte
	Close() error
}

// Device is a PCI device reached through VFIO or vfio-user.
//
// Methods may be called from several goroutines at once. Close releases
// everything the Device holds: mappings it returned must not be used after.
type Device interface {
	Info() DeviceInfo
	RegionInfo(RegionIndex) (RegionInfo, error)
	// ReadRegion and WriteRegion access a region at off; len(b) is the
	// access width for registers (1, 2, 4 or 8) or any length for memory.
	ReadRegion(idx RegionIndex, off uint64, b []byte) error
	WriteRegion(idx RegionIndex, off uint64, b []byte) error
	// MapRegion maps size bytes of a mappable area of a region at off.
	MapRegion(idx RegionIndex, off, size uint64) (Mapping, error)
	IRQInfo(IRQIndex) (IRQInfo, error)
	// SetIRQs routes interrupts start, start+1, ... of idx to the given
	// eventfds, which the device keeps its own copies of. No fds disables
	// every interrupt of idx.
	SetIRQs(idx IRQIndex, start uint32, eventfds []int) error
	// MapDMA lets the device reach size bytes of r from offset on, at
	// iova. UnmapDMA takes exactly one earlier mapping back.
	MapDMA(iova IOVA, r *dma.Region, offset, size uint64, perm Perm) error
	UnmapDMA(iova IOVA, size uint64) error
	Reset() error
	Close() error
}

// Errors every backend may return; backends wrap them with detail.
var (
	// ErrNoRegion: the region does not exist or cannot be accessed that way.
	ErrNoRegion = errors.New("vfio: no such region")
	// ErrNoIRQ: the interrupt type does not exist or has fewer vectors.
	ErrNoIRQ = errors.New("vfio: no such interrupt")
	// ErrClosed: the device was closed, or its connection went away.
	ErrClosed = errors.New("vfio: device closed")
	// ErrInvalid: an argument out of range.
	ErrInvalid = errors.New("vfio: invalid argument")
)
