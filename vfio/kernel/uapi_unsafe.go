package kernel

// The ioctl wrappers: one typed function per request, each a thin shell
// that fills the struct uapi.go mirrors, issues the ioctl and returns what
// the kernel wrote. Policy (retrying with a bigger buffer, checking what
// came back) lives in the callers. This file and decode/encode below are
// the package's only use of unsafe.

import (
	"encoding/binary"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlNames names each request for IoctlError.Op. A duplicate number
// would not compile (duplicate map key).
var ioctlNames = map[uintptr]string{
	VFIO_GET_API_VERSION:          "VFIO_GET_API_VERSION",
	VFIO_CHECK_EXTENSION:          "VFIO_CHECK_EXTENSION",
	VFIO_SET_IOMMU:                "VFIO_SET_IOMMU",
	VFIO_GROUP_GET_STATUS:         "VFIO_GROUP_GET_STATUS",
	VFIO_GROUP_SET_CONTAINER:      "VFIO_GROUP_SET_CONTAINER",
	VFIO_GROUP_GET_DEVICE_FD:      "VFIO_GROUP_GET_DEVICE_FD",
	VFIO_DEVICE_GET_INFO:          "VFIO_DEVICE_GET_INFO",
	VFIO_DEVICE_GET_REGION_INFO:   "VFIO_DEVICE_GET_REGION_INFO",
	VFIO_DEVICE_GET_IRQ_INFO:      "VFIO_DEVICE_GET_IRQ_INFO",
	VFIO_DEVICE_SET_IRQS:          "VFIO_DEVICE_SET_IRQS",
	VFIO_DEVICE_RESET:             "VFIO_DEVICE_RESET",
	VFIO_IOMMU_GET_INFO:           "VFIO_IOMMU_GET_INFO",
	VFIO_IOMMU_MAP_DMA:            "VFIO_IOMMU_MAP_DMA",
	VFIO_IOMMU_UNMAP_DMA:          "VFIO_IOMMU_UNMAP_DMA",
	VFIO_DEVICE_BIND_IOMMUFD:      "VFIO_DEVICE_BIND_IOMMUFD",
	VFIO_DEVICE_ATTACH_IOMMUFD_PT: "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
	IOMMU_IOAS_ALLOC:              "IOMMU_IOAS_ALLOC",
	IOMMU_IOAS_IOVA_RANGES:        "IOMMU_IOAS_IOVA_RANGES",
	IOMMU_IOAS_MAP:                "IOMMU_IOAS_MAP",
	IOMMU_IOAS_UNMAP:              "IOMMU_IOAS_UNMAP",
}

// ioctlPtr issues a request whose argument is a pointer. Taking
// unsafe.Pointer (not uintptr) keeps the argument alive, and converting it
// inside the Syscall call keeps it valid across a stack move. A signal
// that interrupts the call makes it start again.
func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) (uintptr, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		switch e {
		case 0:
			return r, nil
		case unix.EINTR:
			continue
		}
		return 0, &IoctlError{Op: ioctlNames[req], Err: e}
	}
}

// ioctlVal issues a request whose argument is a plain integer.
func ioctlVal(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		switch e {
		case 0:
			return r, nil
		case unix.EINTR:
			continue
		}
		return 0, &IoctlError{Op: ioctlNames[req], Err: e}
	}
}

// sizeof is the size of a mirrored struct.
func sizeof[T any]() uint32 {
	var v T
	return uint32(unsafe.Sizeof(v))
}

// decode copies a T out of b at off; ok is false when b is too short. T
// must be one of the pointer-free structs of uapi.go.
func decode[T any](b []byte, off uint64) (v T, ok bool) {
	n := uint64(unsafe.Sizeof(v))
	if off > uint64(len(b)) || n > uint64(len(b))-off {
		return v, false
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&v)), n), b[off:])
	return v, true
}

// encode returns a copy of the bytes of *v, as the kernel would read them.
func encode[T any](v *T) []byte {
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))...)
}

// getAPIVersion: VFIO_GET_API_VERSION on a container.
func getAPIVersion(container int) (int, error) {
	r, err := ioctlVal(container, VFIO_GET_API_VERSION, 0)
	return int(r), err
}

// checkExtension: VFIO_CHECK_EXTENSION on a container; the extension id
// is passed by value.
func checkExtension(container int, ext uintptr) (bool, error) {
	r, err := ioctlVal(container, VFIO_CHECK_EXTENSION, ext)
	return r > 0, err
}

// setIOMMU: VFIO_SET_IOMMU on a container; the type is passed by value.
func setIOMMU(container int, typ uintptr) error {
	_, err := ioctlVal(container, VFIO_SET_IOMMU, typ)
	return err
}

// groupGetStatus: VFIO_GROUP_GET_STATUS.
func groupGetStatus(group int) (vfioGroupStatus, error) {
	s := vfioGroupStatus{argsz: sizeof[vfioGroupStatus]()}
	_, err := ioctlPtr(group, VFIO_GROUP_GET_STATUS, unsafe.Pointer(&s))
	return s, err
}

// groupSetContainer: VFIO_GROUP_SET_CONTAINER; the argument points to the
// container's fd.
func groupSetContainer(group, container int) error {
	fd := int32(container)
	_, err := ioctlPtr(group, VFIO_GROUP_SET_CONTAINER, unsafe.Pointer(&fd))
	return err
}

// groupGetDeviceFD: VFIO_GROUP_GET_DEVICE_FD; the argument is the device
// name as a NUL-terminated string, the result a new fd.
func groupGetDeviceFD(group int, name string) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	r, err := ioctlPtr(group, VFIO_GROUP_GET_DEVICE_FD, unsafe.Pointer(p))
	if err != nil {
		return -1, err
	}
	return int(r), nil
}

// deviceGetInfo: VFIO_DEVICE_GET_INFO.
func deviceGetInfo(dev int) (vfioDeviceInfo, error) {
	s := vfioDeviceInfo{argsz: sizeof[vfioDeviceInfo]()}
	_, err := ioctlPtr(dev, VFIO_DEVICE_GET_INFO, unsafe.Pointer(&s))
	return s, err
}

// deviceGetRegionInfo: VFIO_DEVICE_GET_REGION_INFO with a buffer of argsz
// bytes (at least the fixed struct), which it returns as the kernel filled
// it: the struct, then any capabilities.
func deviceGetRegionInfo(dev int, index, argsz uint32) ([]byte, error) {
	argsz = max(argsz, sizeof[vfioRegionInfo]())
	s := vfioRegionInfo{argsz: argsz, index: index}
	buf := make([]byte, argsz)
	copy(buf, encode(&s))
	_, err := ioctlPtr(dev, VFIO_DEVICE_GET_REGION_INFO, unsafe.Pointer(&buf[0]))
	return buf, err
}

// deviceGetIrqInfo: VFIO_DEVICE_GET_IRQ_INFO.
func deviceGetIrqInfo(dev int, index uint32) (vfioIrqInfo, error) {
	s := vfioIrqInfo{argsz: sizeof[vfioIrqInfo](), index: index}
	_, err := ioctlPtr(dev, VFIO_DEVICE_GET_IRQ_INFO, unsafe.Pointer(&s))
	return s, err
}

// deviceSetIrqs: VFIO_DEVICE_SET_IRQS with len(data) s32 elements (eventfds
// for VFIO_IRQ_SET_DATA_EVENTFD, none for VFIO_IRQ_SET_DATA_NONE).
func deviceSetIrqs(dev int, flags, index, start uint32, data []int32) error {
	hdr := vfioIrqSet{
		argsz: sizeof[vfioIrqSet]() + 4*uint32(len(data)),
		flags: flags,
		index: index,
		start: start,
		count: uint32(len(data)),
	}
	buf := encode(&hdr)
	for _, fd := range data {
		buf = binary.NativeEndian.AppendUint32(buf, uint32(fd))
	}
	_, err := ioctlPtr(dev, VFIO_DEVICE_SET_IRQS, unsafe.Pointer(&buf[0]))
	return err
}

// deviceReset: VFIO_DEVICE_RESET.
func deviceReset(dev int) error {
	_, err := ioctlVal(dev, VFIO_DEVICE_RESET, 0)
	return err
}

// iommuGetInfo: VFIO_IOMMU_GET_INFO with a buffer of argsz bytes, returned
// as the kernel filled it.
func iommuGetInfo(container int, argsz uint32) ([]byte, error) {
	argsz = max(argsz, sizeof[vfioIommuType1Info]())
	s := vfioIommuType1Info{argsz: argsz}
	buf := make([]byte, argsz)
	copy(buf, encode(&s))
	_, err := ioctlPtr(container, VFIO_IOMMU_GET_INFO, unsafe.Pointer(&buf[0]))
	return buf, err
}

// iommuMapDma: VFIO_IOMMU_MAP_DMA of mem (non-empty, page aligned) at iova.
func iommuMapDma(container int, mem []byte, iova uint64, flags uint32) error {
	m := vfioIommuType1DmaMap{
		argsz: sizeof[vfioIommuType1DmaMap](),
		flags: flags,
		vaddr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem)))),
		iova:  iova,
		size:  uint64(len(mem)),
	}
	_, err := ioctlPtr(container, VFIO_IOMMU_MAP_DMA, unsafe.Pointer(&m))
	runtime.KeepAlive(mem)
	return err
}

// iommuUnmapDma: VFIO_IOMMU_UNMAP_DMA; returns the bytes unmapped.
func iommuUnmapDma(container int, iova, size uint64) (uint64, error) {
	u := vfioIommuType1DmaUnmap{argsz: sizeof[vfioIommuType1DmaUnmap](), iova: iova, size: size}
	_, err := ioctlPtr(container, VFIO_IOMMU_UNMAP_DMA, unsafe.Pointer(&u))
	return u.size, err
}

// deviceBindIommufd: VFIO_DEVICE_BIND_IOMMUFD; returns the device id.
func deviceBindIommufd(dev, iommufd int) (uint32, error) {
	b := vfioDeviceBindIommufd{argsz: sizeofVfioDeviceBindIommufdV1, iommufd: int32(iommufd)}
	_, err := ioctlPtr(dev, VFIO_DEVICE_BIND_IOMMUFD, unsafe.Pointer(&b))
	return b.out_devid, err
}

// deviceAttachIommufdPt: VFIO_DEVICE_ATTACH_IOMMUFD_PT to an IOAS or
// HWPT; returns the id actually attached.
func deviceAttachIommufdPt(dev int, ptID uint32) (uint32, error) {
	a := vfioDeviceAttachIommufdPt{argsz: sizeofVfioDeviceAttachIommufdPtV1, pt_id: ptID}
	_, err := ioctlPtr(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, unsafe.Pointer(&a))
	return a.pt_id, err
}

// ioasAlloc: IOMMU_IOAS_ALLOC; returns the new IOAS id.
func ioasAlloc(iommufd int) (uint32, error) {
	a := iommuIoasAlloc{size: sizeof[iommuIoasAlloc]()}
	_, err := ioctlPtr(iommufd, IOMMU_IOAS_ALLOC, unsafe.Pointer(&a))
	return a.out_ioas_id, err
}

// ioasIovaRanges: IOMMU_IOAS_IOVA_RANGES into ranges. It returns the
// number of ranges the IOAS has (more than len(ranges) with EMSGSIZE) and
// the IOVA alignment.
func ioasIovaRanges(iommufd int, ioas uint32, ranges []iommuIovaRange) (uint32, uint64, error) {
	r := iommuIoasIovaRanges{
		size:          sizeof[iommuIoasIovaRanges](),
		ioas_id:       ioas,
		num_iovas:     uint32(len(ranges)),
		allowed_iovas: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(ranges)))),
	}
	_, err := ioctlPtr(iommufd, IOMMU_IOAS_IOVA_RANGES, unsafe.Pointer(&r))
	runtime.KeepAlive(ranges)
	return r.num_iovas, r.out_iova_alignment, err
}

// ioasMap: IOMMU_IOAS_MAP of mem; with IOMMU_IOAS_MAP_FIXED_IOVA at iova,
// otherwise where the kernel chooses. Returns the IOVA used.
func ioasMap(iommufd int, ioas uint32, mem []byte, iova uint64, flags uint32) (uint64, error) {
	m := iommuIoasMap{
		size:    sizeof[iommuIoasMap](),
		flags:   flags,
		ioas_id: ioas,
		user_va: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(mem)))),
		length:  uint64(len(mem)),
		iova:    iova,
	}
	_, err := ioctlPtr(iommufd, IOMMU_IOAS_MAP, unsafe.Pointer(&m))
	runtime.KeepAlive(mem)
	return m.iova, err
}

// ioasUnmap: IOMMU_IOAS_UNMAP; returns the bytes unmapped.
func ioasUnmap(iommufd int, ioas uint32, iova, length uint64) (uint64, error) {
	u := iommuIoasUnmap{size: sizeof[iommuIoasUnmap](), ioas_id: ioas, iova: iova, length: length}
	_, err := ioctlPtr(iommufd, IOMMU_IOAS_UNMAP, unsafe.Pointer(&u))
	return u.length, err
}
