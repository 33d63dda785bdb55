package kernel

// This file mirrors the parts of the Linux VFIO and iommufd uapi that the
// backend uses, once, with the kernel's spellings:
//
//   - include/uapi/linux/vfio.h (group/container, device, type1 IOMMU and
//     the cdev ioctls VFIO_DEVICE_BIND_IOMMUFD and
//     VFIO_DEVICE_ATTACH_IOMMUFD_PT, which appeared in Linux 6.6);
//   - include/uapi/linux/iommufd.h (IOAS allocation, IOVA ranges, map and
//     unmap).
//
// Struct types are the C names in Go case (struct vfio_region_info is
// vfioRegionInfo) and their fields keep the C names, so a reader can hold
// this file next to the header. Constants keep the C names verbatim. A
// struct's flag set is mirrored whole, the bits the backend never tests
// included, so it reads as the header does; vfio.IRQFlags has the bit
// values of VFIO_IRQ_INFO_*, and Device.load converts between them by
// value. The ioctl types (VFIO_TYPE, IOMMUFD_TYPE) are named for the
// reader: both are ';', which _IO_SEMICOLON spells.
// Nothing else in the package knows a field offset or a struct size: the
// ioctl wrappers in uapi_unsafe.go pass these structs to the kernel, and
// the capability parsers in caps.go read them out of byte buffers with
// decode. uapi_unsafe_test.go pins every size and offset against literal
// numbers and, when gcc and the system header are present, against the C
// compiler's.
//
// The layouts are those of the 64-bit ABIs (x86-64, arm64, riscv64); the
// structs are written so that they need no hidden padding there.

// Generic ioctl encoding, from include/uapi/asm-generic/ioctl.h: _IO(type,
// nr) is _IOC(_IOC_NONE, type, nr, 0). The direction bits differ by
// architecture (ioctl_dir_*.go); every ioctl here is _IO, and both headers
// share the type ';', so each number below is _IO_SEMICOLON | nr.
const (
	_IOC_NRSHIFT   = 0
	_IOC_TYPESHIFT = 8

	_IO_SEMICOLON = _IOC_NONE<<_IOC_DIRSHIFT | ';'<<_IOC_TYPESHIFT // _IO(';', 0)
)

// linux/vfio.h: API version, IOMMU types and extensions.
const (
	VFIO_API_VERSION = 0

	VFIO_TYPE1_IOMMU   = 1
	VFIO_TYPE1v2_IOMMU = 3
)

// linux/vfio.h: ioctl numbers. All are _IO(VFIO_TYPE, VFIO_BASE + n); the
// argument size is carried in each struct's argsz.
const (
	VFIO_TYPE = ';'
	VFIO_BASE = 100
)

const (
	VFIO_GET_API_VERSION          = _IO_SEMICOLON | (VFIO_BASE+0)<<_IOC_NRSHIFT
	VFIO_CHECK_EXTENSION          = _IO_SEMICOLON | (VFIO_BASE+1)<<_IOC_NRSHIFT
	VFIO_SET_IOMMU                = _IO_SEMICOLON | (VFIO_BASE+2)<<_IOC_NRSHIFT
	VFIO_GROUP_GET_STATUS         = _IO_SEMICOLON | (VFIO_BASE+3)<<_IOC_NRSHIFT
	VFIO_GROUP_SET_CONTAINER      = _IO_SEMICOLON | (VFIO_BASE+4)<<_IOC_NRSHIFT
	VFIO_GROUP_GET_DEVICE_FD      = _IO_SEMICOLON | (VFIO_BASE+6)<<_IOC_NRSHIFT
	VFIO_DEVICE_GET_INFO          = _IO_SEMICOLON | (VFIO_BASE+7)<<_IOC_NRSHIFT
	VFIO_DEVICE_GET_REGION_INFO   = _IO_SEMICOLON | (VFIO_BASE+8)<<_IOC_NRSHIFT
	VFIO_DEVICE_GET_IRQ_INFO      = _IO_SEMICOLON | (VFIO_BASE+9)<<_IOC_NRSHIFT
	VFIO_DEVICE_SET_IRQS          = _IO_SEMICOLON | (VFIO_BASE+10)<<_IOC_NRSHIFT
	VFIO_DEVICE_RESET             = _IO_SEMICOLON | (VFIO_BASE+11)<<_IOC_NRSHIFT
	VFIO_IOMMU_GET_INFO           = _IO_SEMICOLON | (VFIO_BASE+12)<<_IOC_NRSHIFT
	VFIO_IOMMU_MAP_DMA            = _IO_SEMICOLON | (VFIO_BASE+13)<<_IOC_NRSHIFT
	VFIO_IOMMU_UNMAP_DMA          = _IO_SEMICOLON | (VFIO_BASE+14)<<_IOC_NRSHIFT
	VFIO_DEVICE_BIND_IOMMUFD      = _IO_SEMICOLON | (VFIO_BASE+18)<<_IOC_NRSHIFT
	VFIO_DEVICE_ATTACH_IOMMUFD_PT = _IO_SEMICOLON | (VFIO_BASE+19)<<_IOC_NRSHIFT
)

// struct vfio_info_cap_header: the header of every capability in a
// chain. next is the offset of the following capability from the start of
// the info struct, 0 for the last.
type vfioInfoCapHeader struct {
	id      uint16
	version uint16
	next    uint32
}

// struct vfio_group_status (VFIO_GROUP_GET_STATUS).
type vfioGroupStatus struct {
	argsz uint32
	flags uint32
}

const (
	VFIO_GROUP_FLAGS_VIABLE        = 1 << 0
	VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1
)

// struct vfio_device_info (VFIO_DEVICE_GET_INFO).
type vfioDeviceInfo struct {
	argsz       uint32
	flags       uint32
	num_regions uint32
	num_irqs    uint32
	cap_offset  uint32
	pad         uint32
}

const (
	VFIO_DEVICE_FLAGS_RESET = 1 << 0
	VFIO_DEVICE_FLAGS_PCI   = 1 << 1
	VFIO_DEVICE_FLAGS_CAPS  = 1 << 7
)

// struct vfio_region_info (VFIO_DEVICE_GET_REGION_INFO). Capabilities, if
// any, follow it in the same buffer; when they do not fit, the kernel sets
// VFIO_REGION_INFO_FLAG_CAPS, raises argsz to the size needed and leaves
// cap_offset 0.
type vfioRegionInfo struct {
	argsz      uint32
	flags      uint32
	index      uint32
	cap_offset uint32
	size       uint64
	offset     uint64
}

const (
	VFIO_REGION_INFO_FLAG_READ  = 1 << 0
	VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
	VFIO_REGION_INFO_FLAG_MMAP  = 1 << 2
	VFIO_REGION_INFO_FLAG_CAPS  = 1 << 3
)

// Region info capability ids.
const (
	VFIO_REGION_INFO_CAP_SPARSE_MMAP   = 1
	VFIO_REGION_INFO_CAP_TYPE          = 2
	VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3
)

// struct vfio_region_sparse_mmap_area.
type vfioRegionSparseMmapArea struct {
	offset uint64
	size   uint64
}

// struct vfio_region_info_cap_sparse_mmap; nr_areas
// vfioRegionSparseMmapArea follow it.
type vfioRegionInfoCapSparseMmap struct {
	header   vfioInfoCapHeader
	nr_areas uint32
	reserved uint32
}

// struct vfio_region_info_cap_type. The C field "type" is type_ here.
type vfioRegionInfoCapType struct {
	header  vfioInfoCapHeader
	type_   uint32
	subtype uint32
}

// struct vfio_irq_info (VFIO_DEVICE_GET_IRQ_INFO).
type vfioIrqInfo struct {
	argsz uint32
	flags uint32
	index uint32
	count uint32
}

const (
	VFIO_IRQ_INFO_EVENTFD    = 1 << 0
	VFIO_IRQ_INFO_MASKABLE   = 1 << 1
	VFIO_IRQ_INFO_AUTOMASKED = 1 << 2
	VFIO_IRQ_INFO_NORESIZE   = 1 << 3
)

// struct vfio_irq_set (VFIO_DEVICE_SET_IRQS) without its data: count
// elements follow it, s32 eventfds for VFIO_IRQ_SET_DATA_EVENTFD. The C
// struct ends in a flexible array after five u32s, so its size is 20.
type vfioIrqSet struct {
	argsz uint32
	flags uint32
	index uint32
	start uint32
	count uint32
}

const (
	VFIO_IRQ_SET_DATA_NONE      = 1 << 0
	VFIO_IRQ_SET_DATA_BOOL      = 1 << 1
	VFIO_IRQ_SET_DATA_EVENTFD   = 1 << 2
	VFIO_IRQ_SET_ACTION_MASK    = 1 << 3
	VFIO_IRQ_SET_ACTION_UNMASK  = 1 << 4
	VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5
)

// struct vfio_iommu_type1_info (VFIO_IOMMU_GET_INFO), followed by
// capabilities like vfioRegionInfo.
type vfioIommuType1Info struct {
	argsz        uint32
	flags        uint32
	iova_pgsizes uint64
	cap_offset   uint32
	pad          uint32
}

const (
	VFIO_IOMMU_INFO_PGSIZES = 1 << 0
	VFIO_IOMMU_INFO_CAPS    = 1 << 1

	VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1
)

// struct vfio_iova_range; end is inclusive.
type vfioIovaRange struct {
	start uint64
	end   uint64
}

// struct vfio_iommu_type1_info_cap_iova_range; nr_iovas vfioIovaRange
// follow it.
type vfioIommuType1InfoCapIovaRange struct {
	header   vfioInfoCapHeader
	nr_iovas uint32
	reserved uint32
}

// struct vfio_iommu_type1_dma_map (VFIO_IOMMU_MAP_DMA).
type vfioIommuType1DmaMap struct {
	argsz uint32
	flags uint32
	vaddr uint64
	iova  uint64
	size  uint64
}

const (
	VFIO_DMA_MAP_FLAG_READ  = 1 << 0
	VFIO_DMA_MAP_FLAG_WRITE = 1 << 1
)

// struct vfio_iommu_type1_dma_unmap (VFIO_IOMMU_UNMAP_DMA) without its
// data; the kernel writes the number of bytes unmapped back to size.
type vfioIommuType1DmaUnmap struct {
	argsz uint32
	flags uint32
	iova  uint64
	size  uint64
}

// struct vfio_device_bind_iommufd (VFIO_DEVICE_BIND_IOMMUFD). Linux 6.6
// to 6.16 know the first 16 bytes; token_uuid_ptr came later. The backend
// passes argsz = offsetofend(out_devid), which every kernel accepts.
type vfioDeviceBindIommufd struct {
	argsz          uint32
	flags          uint32
	iommufd        int32
	out_devid      uint32
	token_uuid_ptr uint64
}

// struct vfio_device_attach_iommufd_pt (VFIO_DEVICE_ATTACH_IOMMUFD_PT).
// pasid came after Linux 6.12; the backend passes argsz =
// offsetofend(pt_id).
type vfioDeviceAttachIommufdPt struct {
	argsz uint32
	flags uint32
	pt_id uint32
	pasid uint32
}

// Argument sizes the backend passes for the structs that grew.
const (
	sizeofVfioDeviceBindIommufdV1     = 16 // offsetofend(struct vfio_device_bind_iommufd, out_devid)
	sizeofVfioDeviceAttachIommufdPtV1 = 12 // offsetofend(struct vfio_device_attach_iommufd_pt, pt_id)
)

// linux/iommufd.h: ioctl numbers are _IO(IOMMUFD_TYPE, IOMMUFD_CMD_*).
const (
	IOMMUFD_TYPE = ';'

	IOMMUFD_CMD_BASE             = 0x80
	IOMMUFD_CMD_IOAS_ALLOC       = IOMMUFD_CMD_BASE + 1
	IOMMUFD_CMD_IOAS_IOVA_RANGES = IOMMUFD_CMD_BASE + 4
	IOMMUFD_CMD_IOAS_MAP         = IOMMUFD_CMD_BASE + 5
	IOMMUFD_CMD_IOAS_UNMAP       = IOMMUFD_CMD_BASE + 6
)

const (
	IOMMU_IOAS_ALLOC       = _IO_SEMICOLON | IOMMUFD_CMD_IOAS_ALLOC<<_IOC_NRSHIFT
	IOMMU_IOAS_IOVA_RANGES = _IO_SEMICOLON | IOMMUFD_CMD_IOAS_IOVA_RANGES<<_IOC_NRSHIFT
	IOMMU_IOAS_MAP         = _IO_SEMICOLON | IOMMUFD_CMD_IOAS_MAP<<_IOC_NRSHIFT
	IOMMU_IOAS_UNMAP       = _IO_SEMICOLON | IOMMUFD_CMD_IOAS_UNMAP<<_IOC_NRSHIFT
)

// struct iommu_ioas_alloc (IOMMU_IOAS_ALLOC).
type iommuIoasAlloc struct {
	size        uint32
	flags       uint32
	out_ioas_id uint32
}

// struct iommu_iova_range; last is inclusive.
type iommuIovaRange struct {
	start uint64
	last  uint64
}

// struct iommu_ioas_iova_ranges (IOMMU_IOAS_IOVA_RANGES). allowed_iovas
// points to num_iovas iommuIovaRange; with too few, the kernel fails with
// EMSGSIZE and sets num_iovas to the number needed.
type iommuIoasIovaRanges struct {
	size               uint32
	ioas_id            uint32
	num_iovas          uint32
	__reserved         uint32
	allowed_iovas      uint64
	out_iova_alignment uint64
}

// enum iommufd_ioas_map_flags.
const (
	IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0
	IOMMU_IOAS_MAP_WRITEABLE  = 1 << 1
	IOMMU_IOAS_MAP_READABLE   = 1 << 2
)

// struct iommu_ioas_map (IOMMU_IOAS_MAP).
type iommuIoasMap struct {
	size       uint32
	flags      uint32
	ioas_id    uint32
	__reserved uint32
	user_va    uint64
	length     uint64
	iova       uint64
}

// struct iommu_ioas_unmap (IOMMU_IOAS_UNMAP); the kernel writes the
// number of bytes unmapped back to length.
type iommuIoasUnmap struct {
	size    uint32
	ioas_id uint32
	iova    uint64
	length  uint64
}
