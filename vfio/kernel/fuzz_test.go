package kernel

import (
	"math"
	"testing"

	"github.com/ycq-dev/ycq/vfio"
)

// Fuzz targets for every parser of bytes the kernel writes. The seeds are
// the table tests' replies (testdata/fuzz holds them as files too, so a
// plain `go test` replays them).

func regionSeeds() [][]byte {
	bar := vfioRegionInfo{flags: rwm, size: 0x4000}
	seeds := [][]byte{
		regionReply(bar),
		regionReply(bar, sparseCap(vfioRegionSparseMmapArea{size: 0x1000}, vfioRegionSparseMmapArea{offset: 0x3000, size: 0x1000})),
		regionReply(vfioRegionInfo{index: 9, flags: VFIO_REGION_INFO_FLAG_READ, size: 0x100, offset: 9 << 40},
			typeCap(1, 1), capHeader(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE)),
		encode(&vfioRegionInfo{argsz: 80, flags: rwm | VFIO_REGION_INFO_FLAG_CAPS}),
	}
	for _, b := range malformedRegion() {
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzParseRegionInfo: parseRegionInfo never panics, and what it accepts
// is consistent: a retry asks for more than it got; an accepted region
// fits the offset space, its areas lie inside it, are not empty, and exist
// only for a mappable region.
func FuzzParseRegionInfo(f *testing.F) {
	for _, s := range regionSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, need, err := parseRegionInfo(b)
		if err != nil {
			if need != 0 || d.info.Size != 0 || d.info.Areas != nil {
				t.Fatalf("error %v with a result: need %d, %+v", err, need, d)
			}
			return
		}
		if need != 0 {
			if uint64(need) <= uint64(len(b)) || need < sizeof[vfioRegionInfo]() {
				t.Fatalf("retry with %d bytes after %d", need, len(b))
			}
			return
		}
		ri, _ := decode[vfioRegionInfo](b, 0)
		if d.info.Index != vfio.RegionIndex(ri.index) || d.info.Size != ri.size || d.offset != ri.offset {
			t.Fatalf("result %+v does not match the struct %+v", d, ri)
		}
		if d.offset > math.MaxUint64-d.info.Size {
			t.Fatalf("offset %#x + size %#x overflows", d.offset, d.info.Size)
		}
		if d.info.Flags&^(vfio.RegionRead|vfio.RegionWrite|vfio.RegionMmap) != 0 {
			t.Fatalf("flags %#x", d.info.Flags)
		}
		if len(d.info.Areas) > 0 && d.info.Flags&vfio.RegionMmap == 0 {
			t.Fatalf("areas on a region that cannot be mapped: %+v", d.info)
		}
		if len(d.info.Areas) > len(b)/int(sizeof[vfioRegionSparseMmapArea]()) {
			t.Fatalf("%d areas from %d bytes", len(d.info.Areas), len(b))
		}
		for _, a := range d.info.Areas {
			if a.Size == 0 || a.Offset > d.info.Size || a.Size > d.info.Size-a.Offset {
				t.Fatalf("area %+v of a %#x-byte region", a, d.info.Size)
			}
		}
		for _, a := range d.info.Mappable() {
			if a.Offset+a.Size > d.info.Size || a.Size == 0 && d.info.Size != 0 {
				t.Fatalf("mappable %+v of a %#x-byte region", a, d.info.Size)
			}
		}
	})
}

// FuzzParseIOMMUInfo: parseIOMMUInfo never panics; accepted ranges are
// ordered pairs and no more than the bytes can hold.
func FuzzParseIOMMUInfo(f *testing.F) {
	ii := vfioIommuType1Info{flags: VFIO_IOMMU_INFO_PGSIZES, iova_pgsizes: 0x40201000}
	f.Add(iommuReply(ii))
	f.Add(iommuReply(ii, capHeader(3), iovaCap(vfioIovaRange{end: 0xfedfffff}, vfioIovaRange{start: 0xfef00000, end: 1<<48 - 1})))
	f.Add(encode(&vfioIommuType1Info{argsz: 64, flags: VFIO_IOMMU_INFO_CAPS}))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, need, err := parseIOMMUInfo(b)
		if err != nil || need != 0 {
			if need != 0 && uint64(need) <= uint64(len(b)) {
				t.Fatalf("retry with %d bytes after %d", need, len(b))
			}
			return
		}
		if len(d.ranges) > len(b)/int(sizeof[vfioIovaRange]()) {
			t.Fatalf("%d ranges from %d bytes", len(d.ranges), len(b))
		}
		for _, r := range d.ranges {
			if r.Start > r.Last {
				t.Fatalf("range %v", r)
			}
		}
	})
}
