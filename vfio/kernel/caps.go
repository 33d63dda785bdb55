package kernel

import (
	"fmt"
	"math"

	"github.com/ycq-dev/ycq/vfio"
)

// Parsers of the variable-length info the kernel writes: region info and
// type1 IOMMU info with their capability chains. The kernel is trusted
// more than a vfio-user peer, but a bug or a future layout must give an
// error, never a panic, a loop or a read outside the buffer: every offset
// and count is checked against the bytes present, and a chain must move
// forward.

const (
	// maxInfoSize bounds the buffer a retry may ask for. Real replies are
	// a few hundred bytes.
	maxInfoSize = 64 << 10
	// maxCaps bounds a capability chain's length.
	maxCaps = 64
)

// IOVARange is a window of addresses the IOMMU will map; Last is
// inclusive.
type IOVARange struct {
	Start vfio.IOVA
	Last  vfio.IOVA
}

func (r IOVARange) String() string { return fmt.Sprintf("[%#x, %#x]", r.Start, r.Last) }

// RegionType is the type capability of a device-specific region
// (VFIO_REGION_INFO_CAP_TYPE).
type RegionType struct {
	Type    uint32
	Subtype uint32
}

// regionDesc is one region as the kernel describes it.
type regionDesc struct {
	info         vfio.RegionInfo
	offset       uint64      // where the region starts in the device fd
	typ          *RegionType // nil without a type capability
	msixMappable bool        // VFIO_REGION_INFO_CAP_MSIX_MAPPABLE
}

// walkCaps visits the capability chain that starts at first in buf, the
// complete reply of an info ioctl whose fixed part is fixed bytes. A
// capability extends to the next one or to the end of buf. Each next must
// lie beyond the current header and inside buf, so the chain only moves
// forward and ends.
func walkCaps(what string, buf []byte, fixed, first uint32, visit func(id uint16, c []byte) error) error {
	hdrSize := uint64(sizeof[vfioInfoCapHeader]())
	off := uint64(first)
	for n := 0; off != 0; n++ {
		if n == maxCaps {
			return badInfo(what, "more than %d capabilities", maxCaps)
		}
		if off < uint64(fixed) {
			return badInfo(what, "capability at %d overlaps the %d-byte info struct", off, fixed)
		}
		h, ok := decode[vfioInfoCapHeader](buf, off)
		if !ok {
			return badInfo(what, "capability at %d runs past the %d-byte reply", off, len(buf))
		}
		end := uint64(len(buf))
		if h.next != 0 {
			next := uint64(h.next)
			if next < off+hdrSize {
				return badInfo(what, "capability at %d: next %d does not move forward", off, next)
			}
			if next >= end {
				return badInfo(what, "capability at %d: next %d is outside the %d-byte reply", off, next, end)
			}
			end = next
		}
		if err := visit(h.id, buf[off:end]); err != nil {
			return err
		}
		off = uint64(h.next)
	}
	return nil
}

// parseRegionInfo decodes the buffer deviceGetRegionInfo filled. When the
// capabilities did not fit, need is the argsz to call again with and the
// result is not valid.
func parseRegionInfo(buf []byte) (d regionDesc, need uint32, err error) {
	fixed := sizeof[vfioRegionInfo]()
	ri, ok := decode[vfioRegionInfo](buf, 0)
	if !ok {
		return d, 0, badInfo("region info", "%d bytes, need %d", len(buf), fixed)
	}
	what := fmt.Sprintf("region %d info", ri.index)
	if ri.argsz < fixed {
		return d, 0, badInfo(what, "argsz %d is smaller than the struct (%d)", ri.argsz, fixed)
	}
	if uint64(ri.argsz) > uint64(len(buf)) {
		if ri.flags&VFIO_REGION_INFO_FLAG_CAPS == 0 {
			return d, 0, badInfo(what, "argsz grew to %d without capabilities", ri.argsz)
		}
		return d, ri.argsz, nil
	}
	if ri.size > math.MaxUint64-ri.offset {
		return d, 0, badInfo(what, "offset %#x + size %#x overflows", ri.offset, ri.size)
	}
	d.offset = ri.offset
	d.info = vfio.RegionInfo{Index: vfio.RegionIndex(ri.index), Size: ri.size}
	for _, f := range []struct {
		k uint32
		v vfio.RegionFlags
	}{
		{VFIO_REGION_INFO_FLAG_READ, vfio.RegionRead},
		{VFIO_REGION_INFO_FLAG_WRITE, vfio.RegionWrite},
		{VFIO_REGION_INFO_FLAG_MMAP, vfio.RegionMmap},
	} {
		if ri.flags&f.k != 0 {
			d.info.Flags |= f.v
		}
	}
	if ri.flags&VFIO_REGION_INFO_FLAG_CAPS == 0 || ri.cap_offset == 0 {
		return d, 0, nil
	}
	var (
		areas     []vfio.Area
		sawSparse bool
	)
	err = walkCaps(what, buf[:ri.argsz], fixed, ri.cap_offset, func(id uint16, c []byte) error {
		switch id {
		case VFIO_REGION_INFO_CAP_SPARSE_MMAP:
			if sawSparse {
				return badInfo(what, "two sparse mmap capabilities")
			}
			sawSparse = true
			sp, ok := decode[vfioRegionInfoCapSparseMmap](c, 0)
			if !ok {
				return badInfo(what, "sparse mmap capability of %d bytes", len(c))
			}
			areaSize := uint64(sizeof[vfioRegionSparseMmapArea]())
			head := uint64(sizeof[vfioRegionInfoCapSparseMmap]())
			if uint64(sp.nr_areas) > (uint64(len(c))-head)/areaSize {
				return badInfo(what, "%d sparse areas do not fit in %d bytes", sp.nr_areas, len(c))
			}
			for i := uint64(0); i < uint64(sp.nr_areas); i++ {
				a, _ := decode[vfioRegionSparseMmapArea](c, head+i*areaSize)
				if a.offset > ri.size || a.size > ri.size-a.offset {
					return badInfo(what, "sparse area %d [%#x, +%#x) is outside the %#x-byte region", i, a.offset, a.size, ri.size)
				}
				if a.size != 0 {
					areas = append(areas, vfio.Area{Offset: a.offset, Size: a.size})
				}
			}
		case VFIO_REGION_INFO_CAP_TYPE:
			if d.typ != nil {
				return badInfo(what, "two type capabilities")
			}
			ct, ok := decode[vfioRegionInfoCapType](c, 0)
			if !ok {
				return badInfo(what, "type capability of %d bytes", len(c))
			}
			d.typ = &RegionType{Type: ct.type_, Subtype: ct.subtype}
		case VFIO_REGION_INFO_CAP_MSIX_MAPPABLE:
			d.msixMappable = true
		}
		return nil // other capabilities are not used
	})
	if err != nil {
		return regionDesc{}, 0, err
	}
	if sawSparse && d.info.Flags&vfio.RegionMmap != 0 {
		if len(areas) == 0 {
			// Nothing may be mapped; vfio.RegionInfo reads "mmap and
			// no areas" as the whole region, so drop the flag.
			d.info.Flags &^= vfio.RegionMmap
		} else {
			d.info.Areas = areas
		}
	}
	return d, 0, nil
}

// iommuDesc is what VFIO_IOMMU_GET_INFO says of a type1 container.
type iommuDesc struct {
	pgsizes uint64      // bitmap of IOMMU page sizes; 0 if not reported
	ranges  []IOVARange // usable IOVA windows; nil if not reported
}

// parseIOMMUInfo decodes the buffer iommuGetInfo filled, like
// parseRegionInfo.
func parseIOMMUInfo(buf []byte) (d iommuDesc, need uint32, err error) {
	const what = "type1 IOMMU info"
	fixed := sizeof[vfioIommuType1Info]()
	ii, ok := decode[vfioIommuType1Info](buf, 0)
	if !ok {
		return d, 0, badInfo(what, "%d bytes, need %d", len(buf), fixed)
	}
	if ii.argsz < fixed {
		return d, 0, badInfo(what, "argsz %d is smaller than the struct (%d)", ii.argsz, fixed)
	}
	if uint64(ii.argsz) > uint64(len(buf)) {
		if ii.flags&VFIO_IOMMU_INFO_CAPS == 0 {
			return d, 0, badInfo(what, "argsz grew to %d without capabilities", ii.argsz)
		}
		return d, ii.argsz, nil
	}
	if ii.flags&VFIO_IOMMU_INFO_PGSIZES != 0 {
		d.pgsizes = ii.iova_pgsizes
	}
	if ii.flags&VFIO_IOMMU_INFO_CAPS == 0 || ii.cap_offset == 0 {
		return d, 0, nil
	}
	sawRanges := false
	err = walkCaps(what, buf[:ii.argsz], fixed, ii.cap_offset, func(id uint16, c []byte) error {
		if id != VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
			return nil
		}
		if sawRanges {
			return badInfo(what, "two IOVA range capabilities")
		}
		sawRanges = true
		cr, ok := decode[vfioIommuType1InfoCapIovaRange](c, 0)
		if !ok {
			return badInfo(what, "IOVA range capability of %d bytes", len(c))
		}
		rangeSize := uint64(sizeof[vfioIovaRange]())
		head := uint64(sizeof[vfioIommuType1InfoCapIovaRange]())
		if uint64(cr.nr_iovas) > (uint64(len(c))-head)/rangeSize {
			return badInfo(what, "%d IOVA ranges do not fit in %d bytes", cr.nr_iovas, len(c))
		}
		d.ranges = make([]IOVARange, 0, cr.nr_iovas)
		for i := uint64(0); i < uint64(cr.nr_iovas); i++ {
			r, _ := decode[vfioIovaRange](c, head+i*rangeSize)
			if r.start > r.end {
				return badInfo(what, "IOVA range %d starts at %#x after its end %#x", i, r.start, r.end)
			}
			d.ranges = append(d.ranges, IOVARange{Start: vfio.IOVA(r.start), Last: vfio.IOVA(r.end)})
		}
		return nil
	})
	if err != nil {
		return iommuDesc{}, 0, err
	}
	return d, 0, nil
}

// iommufdRanges converts and checks what IOMMU_IOAS_IOVA_RANGES returned.
func iommufdRanges(rs []iommuIovaRange) ([]IOVARange, error) {
	out := make([]IOVARange, 0, len(rs))
	for i, r := range rs {
		if r.start > r.last {
			return nil, badInfo("IOAS IOVA ranges", "range %d starts at %#x after its end %#x", i, r.start, r.last)
		}
		out = append(out, IOVARange{Start: vfio.IOVA(r.start), Last: vfio.IOVA(r.last)})
	}
	return out, nil
}
