package kernel

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/vfio"
)

// Builders of kernel replies, from the mirrored structs.

func capHeader(id uint16) []byte { return encode(&vfioInfoCapHeader{id: id, version: 1}) }

func sparseCap(areas ...vfioRegionSparseMmapArea) []byte {
	c := vfioRegionInfoCapSparseMmap{header: vfioInfoCapHeader{id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1}, nr_areas: uint32(len(areas))}
	b := encode(&c)
	for i := range areas {
		b = append(b, encode(&areas[i])...)
	}
	return b
}

func typeCap(typ, sub uint32) []byte {
	c := vfioRegionInfoCapType{header: vfioInfoCapHeader{id: VFIO_REGION_INFO_CAP_TYPE, version: 1}, type_: typ, subtype: sub}
	return encode(&c)
}

func iovaCap(ranges ...vfioIovaRange) []byte {
	c := vfioIommuType1InfoCapIovaRange{header: vfioInfoCapHeader{id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, version: 1}, nr_iovas: uint32(len(ranges))}
	b := encode(&c)
	for i := range ranges {
		b = append(b, encode(&ranges[i])...)
	}
	return b
}

// chain appends caps to fixed, each 8-aligned, links them with next and
// returns the buffer and the first cap's offset.
func chain(fixed []byte, caps ...[]byte) ([]byte, uint32) {
	b := fixed
	first := uint32(0)
	prev := -1
	for _, c := range caps {
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		off := len(b)
		if prev < 0 {
			first = uint32(off)
		} else {
			binary.NativeEndian.PutUint32(b[prev+4:], uint32(off)) // header.next
		}
		b = append(b, c...)
		prev = off
	}
	return b, first
}

// regionReply is a complete VFIO_DEVICE_GET_REGION_INFO reply.
func regionReply(ri vfioRegionInfo, caps ...[]byte) []byte {
	b, first := chain(encode(&ri), caps...)
	if len(caps) > 0 {
		ri.flags |= VFIO_REGION_INFO_FLAG_CAPS
		ri.cap_offset = first
	}
	ri.argsz = uint32(len(b))
	copy(b, encode(&ri))
	return b
}

func iommuReply(ii vfioIommuType1Info, caps ...[]byte) []byte {
	b, first := chain(encode(&ii), caps...)
	if len(caps) > 0 {
		ii.flags |= VFIO_IOMMU_INFO_CAPS
		ii.cap_offset = first
	}
	ii.argsz = uint32(len(b))
	copy(b, encode(&ii))
	return b
}

const rwm = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP

func TestParseRegionInfo(t *testing.T) {
	bar0 := vfioRegionInfo{index: 0, flags: rwm, size: 0x4000, offset: 0}
	for _, c := range []struct {
		name string
		buf  []byte
		want regionDesc
	}{
		{"plain BAR", regionReply(bar0), regionDesc{info: vfio.RegionInfo{Index: 0, Flags: vfio.RegionRead | vfio.RegionWrite | vfio.RegionMmap, Size: 0x4000}}},
		{"config space", regionReply(vfioRegionInfo{index: 7, flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE, size: 256, offset: 7 << 40}),
			regionDesc{info: vfio.RegionInfo{Index: 7, Flags: vfio.RegionRead | vfio.RegionWrite, Size: 256}, offset: 7 << 40}},
		{"absent BAR", regionReply(vfioRegionInfo{index: 3, offset: 3 << 40}), regionDesc{info: vfio.RegionInfo{Index: 3}, offset: 3 << 40}},
		{"sparse around an MSI-X table", regionReply(bar0, sparseCap(
			vfioRegionSparseMmapArea{offset: 0, size: 0x1000},
			vfioRegionSparseMmapArea{offset: 0x1000, size: 0}, // empty areas are dropped
			vfioRegionSparseMmapArea{offset: 0x3000, size: 0x1000})),
			regionDesc{info: vfio.RegionInfo{Flags: vfio.RegionRead | vfio.RegionWrite | vfio.RegionMmap, Size: 0x4000,
				Areas: []vfio.Area{{Offset: 0, Size: 0x1000}, {Offset: 0x3000, Size: 0x1000}}}}},
		{"sparse with no areas clears mmap", regionReply(bar0, sparseCap()),
			regionDesc{info: vfio.RegionInfo{Flags: vfio.RegionRead | vfio.RegionWrite, Size: 0x4000}}},
		{"sparse areas ignored without mmap", regionReply(vfioRegionInfo{flags: VFIO_REGION_INFO_FLAG_READ, size: 0x4000},
			sparseCap(vfioRegionSparseMmapArea{offset: 0, size: 0x1000})),
			regionDesc{info: vfio.RegionInfo{Flags: vfio.RegionRead, Size: 0x4000}}},
		{"type, msix mappable and unknown caps", regionReply(vfioRegionInfo{index: 9, flags: VFIO_REGION_INFO_FLAG_READ, size: 0x100, offset: 9 << 40},
			typeCap(1<<31|0x8086, 1), capHeader(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE), append(capHeader(77), 1, 2, 3, 4)),
			regionDesc{info: vfio.RegionInfo{Index: 9, Flags: vfio.RegionRead, Size: 0x100}, offset: 9 << 40,
				typ: &RegionType{Type: 1<<31 | 0x8086, Subtype: 1}, msixMappable: true}},
		{"region at the top of the offset space", regionReply(vfioRegionInfo{flags: VFIO_REGION_INFO_FLAG_READ, size: 0x1000, offset: math.MaxUint64 - 0x1000}),
			regionDesc{info: vfio.RegionInfo{Flags: vfio.RegionRead, Size: 0x1000}, offset: math.MaxUint64 - 0x1000}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, need, err := parseRegionInfo(c.buf)
			require.NoError(t, err)
			assert.Zero(t, need)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestParseRegionInfoRetry(t *testing.T) {
	// The kernel's answer when the caps did not fit: CAPS set, argsz
	// raised, cap_offset 0.
	ri := vfioRegionInfo{argsz: 80, flags: rwm | VFIO_REGION_INFO_FLAG_CAPS, size: 0x4000}
	_, need, err := parseRegionInfo(encode(&ri))
	require.NoError(t, err)
	assert.Equal(t, uint32(80), need)

	// A larger buffer than the reply needs is fine.
	buf := append(regionReply(vfioRegionInfo{flags: rwm, size: 0x4000}, sparseCap(vfioRegionSparseMmapArea{size: 0x1000})), make([]byte, 64)...)
	d, need, err := parseRegionInfo(buf)
	require.NoError(t, err)
	assert.Zero(t, need)
	assert.Equal(t, []vfio.Area{{Offset: 0, Size: 0x1000}}, d.info.Areas)
}

func TestQueryInfoRetries(t *testing.T) {
	full := regionReply(vfioRegionInfo{flags: rwm, size: 0x4000}, sparseCap(vfioRegionSparseMmapArea{size: 0x1000}))
	var sizes []uint32
	call := func(argsz uint32) ([]byte, error) {
		sizes = append(sizes, argsz)
		if argsz < uint32(len(full)) {
			ri, _ := decode[vfioRegionInfo](full, 0)
			ri.cap_offset = 0
			return encode(&ri)[:argsz], nil
		}
		return full, nil
	}
	d, err := queryInfo(call, sizeof[vfioRegionInfo](), parseRegionInfo)
	require.NoError(t, err)
	assert.Equal(t, []uint32{32, uint32(len(full))}, sizes)
	assert.Equal(t, []vfio.Area{{Offset: 0, Size: 0x1000}}, d.info.Areas)

	// A kernel that keeps asking for more, or for too much, is refused.
	grow := func(argsz uint32) ([]byte, error) {
		ri := vfioRegionInfo{argsz: argsz + 8, flags: VFIO_REGION_INFO_FLAG_CAPS}
		return append(encode(&ri), make([]byte, argsz-32)...), nil
	}
	_, err = queryInfo(grow, sizeof[vfioRegionInfo](), parseRegionInfo)
	assert.ErrorIs(t, err, ErrBadInfo)
	huge := func(argsz uint32) ([]byte, error) {
		ri := vfioRegionInfo{argsz: maxInfoSize + 1, flags: VFIO_REGION_INFO_FLAG_CAPS}
		return encode(&ri), nil
	}
	_, err = queryInfo(huge, sizeof[vfioRegionInfo](), parseRegionInfo)
	assert.ErrorIs(t, err, ErrBadInfo)
	same := func(argsz uint32) ([]byte, error) {
		ri := vfioRegionInfo{argsz: argsz, flags: VFIO_REGION_INFO_FLAG_CAPS}
		b := encode(&ri)
		return b[:min(uint32(len(b)), argsz)], nil
	}
	_, err = queryInfo(same, 16, parseRegionInfo)
	assert.ErrorIs(t, err, ErrBadInfo, "a reply shorter than the struct")
}

// malformedRegion lists replies parseRegionInfo must refuse with
// ErrBadInfo, each breaking one rule.
func malformedRegion() map[string][]byte {
	bar := vfioRegionInfo{flags: rwm, size: 0x4000}
	setNext := func(b []byte, capOff, next uint32) []byte {
		binary.NativeEndian.PutUint32(b[capOff+4:], next)
		return b
	}
	withCapOffset := func(b []byte, off uint32) []byte {
		binary.NativeEndian.PutUint32(b[12:], off) // vfio_region_info.cap_offset
		return b
	}
	m := map[string][]byte{
		"empty":                    nil,
		"short":                    make([]byte, 31),
		"argsz below struct":       encode(&vfioRegionInfo{argsz: 16}),
		"argsz grew without caps":  encode(&vfioRegionInfo{argsz: 64, flags: rwm}),
		"offset plus size wraps":   regionReply(vfioRegionInfo{size: 0x2000, offset: math.MaxUint64 - 0x1000}),
		"cap inside the struct":    withCapOffset(regionReply(bar, capHeader(77)), 8),
		"cap past the end":         withCapOffset(regionReply(bar, capHeader(77)), 30000),
		"cap header cut off":       withCapOffset(regionReply(bar, capHeader(77)), 36),
		"cap pointing to itself":   setNext(regionReply(bar, capHeader(77)), 32, 32),
		"cap next into its header": setNext(regionReply(bar, capHeader(77)), 32, 36),
		"cap next backwards":       setNext(regionReply(bar, capHeader(77), capHeader(78)), 40, 32),
		"cap next past the end":    setNext(regionReply(bar, capHeader(77)), 32, 40),
		"sparse header cut off":    regionReply(bar, capHeader(VFIO_REGION_INFO_CAP_SPARSE_MMAP)),
		"sparse areas past the cap": func() []byte {
			b := regionReply(bar, sparseCap(vfioRegionSparseMmapArea{size: 0x1000}))
			binary.NativeEndian.PutUint32(b[32+8:], 2) // nr_areas
			return b
		}(),
		"sparse nr_areas huge": func() []byte {
			b := regionReply(bar, sparseCap(vfioRegionSparseMmapArea{size: 0x1000}))
			binary.NativeEndian.PutUint32(b[32+8:], math.MaxUint32)
			return b
		}(),
		"sparse area past the region":  regionReply(bar, sparseCap(vfioRegionSparseMmapArea{offset: 0x3000, size: 0x2000})),
		"sparse area offset past":      regionReply(bar, sparseCap(vfioRegionSparseMmapArea{offset: 0x5000, size: 0})),
		"sparse area wraps":            regionReply(bar, sparseCap(vfioRegionSparseMmapArea{offset: 0x1000, size: math.MaxUint64})),
		"two sparse caps":              regionReply(bar, sparseCap(), sparseCap()),
		"type cap cut off":             regionReply(bar, capHeader(VFIO_REGION_INFO_CAP_TYPE)),
		"two type caps":                regionReply(bar, typeCap(1, 1), typeCap(1, 2)),
		"sparse cut by the next cap":   regionReply(bar, sparseCap(vfioRegionSparseMmapArea{size: 0x1000})[:24], capHeader(77)),
		"more caps than the chain cap": regionReply(bar, manyCaps(maxCaps+1)...),
	}
	return m
}

func manyCaps(n int) [][]byte {
	var cs [][]byte
	for i := 0; i < n; i++ {
		cs = append(cs, capHeader(100))
	}
	return cs
}

func TestParseRegionInfoMalformed(t *testing.T) {
	for name, buf := range malformedRegion() {
		t.Run(name, func(t *testing.T) {
			_, need, err := parseRegionInfo(buf)
			assert.ErrorIs(t, err, ErrBadInfo)
			assert.Zero(t, need)
		})
	}
	// maxCaps capabilities are still accepted.
	_, _, err := parseRegionInfo(regionReply(vfioRegionInfo{flags: rwm, size: 0x4000}, manyCaps(maxCaps)...))
	assert.NoError(t, err)
}

func TestParseIOMMUInfo(t *testing.T) {
	ii := vfioIommuType1Info{flags: VFIO_IOMMU_INFO_PGSIZES, iova_pgsizes: 0x40201000}
	d, need, err := parseIOMMUInfo(iommuReply(ii, capHeader(3), iovaCap(
		vfioIovaRange{start: 0, end: 0xfedfffff},
		vfioIovaRange{start: 0xfef00000, end: 0xffffffffffff})))
	require.NoError(t, err)
	assert.Zero(t, need)
	assert.Equal(t, uint64(0x40201000), d.pgsizes)
	assert.Equal(t, []IOVARange{{0, 0xfedfffff}, {0xfef00000, 0xffffffffffff}}, d.ranges)

	d, _, err = parseIOMMUInfo(iommuReply(vfioIommuType1Info{}))
	require.NoError(t, err)
	assert.Equal(t, iommuDesc{}, d, "no page sizes, no ranges")

	_, need, err = parseIOMMUInfo(encode(&vfioIommuType1Info{argsz: 64, flags: VFIO_IOMMU_INFO_CAPS}))
	require.NoError(t, err)
	assert.Equal(t, uint32(64), need)

	for name, buf := range map[string][]byte{
		"short":              make([]byte, 23),
		"argsz below struct": encode(&vfioIommuType1Info{argsz: 8}),
		"argsz grew":         encode(&vfioIommuType1Info{argsz: 64}),
		"range reversed":     iommuReply(ii, iovaCap(vfioIovaRange{start: 2, end: 1})),
		"ranges past the cap": func() []byte {
			b := iommuReply(ii, iovaCap(vfioIovaRange{end: 1}))
			binary.NativeEndian.PutUint32(b[24+8:], 1000) // nr_iovas
			return b
		}(),
		"range cap cut off": iommuReply(ii, capHeader(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)),
		"two range caps":    iommuReply(ii, iovaCap(), iovaCap()),
		"chain loop": func() []byte {
			b := iommuReply(ii, capHeader(9), capHeader(9))
			binary.NativeEndian.PutUint32(b[32+4:], 24) // second cap's next: back to the first
			return b
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := parseIOMMUInfo(buf)
			assert.ErrorIs(t, err, ErrBadInfo)
		})
	}
}

func TestIOMMUFDRanges(t *testing.T) {
	rs, err := iommufdRanges([]iommuIovaRange{{start: 0x1000, last: 0xfedfffff}})
	require.NoError(t, err)
	assert.Equal(t, []IOVARange{{0x1000, 0xfedfffff}}, rs)
	_, err = iommufdRanges([]iommuIovaRange{{start: 2, last: 1}})
	assert.ErrorIs(t, err, ErrBadInfo)
}
