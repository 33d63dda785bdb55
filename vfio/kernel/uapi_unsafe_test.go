package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// layout is one mirrored struct: its size and field offsets as the header
// defines them (literal numbers, from include/uapi/linux/vfio.h and
// iommufd.h on a 64-bit ABI), and where the C side can be checked.
type layout struct {
	goType reflect.Type
	c      string // C struct name
	guard  string // C preprocessor condition under which the system header has it
	size   uintptr
	fields []field
}

type field struct {
	goName string
	cName  string
	off    uintptr
	newer  bool // added to the header later: the C check probes for it
}

func f(name string, off uintptr) field { return field{goName: name, cName: name, off: off} }

var layouts = []layout{
	{reflect.TypeFor[vfioInfoCapHeader](), "vfio_info_cap_header", "1", 8, []field{
		f("id", 0),      // __u16 id
		f("version", 2), // __u16 version
		f("next", 4),    // __u32 next
	}},
	{reflect.TypeFor[vfioGroupStatus](), "vfio_group_status", "1", 8, []field{
		f("argsz", 0), // __u32 argsz
		f("flags", 4), // __u32 flags
	}},
	{reflect.TypeFor[vfioDeviceInfo](), "vfio_device_info", "1", 24, []field{
		f("argsz", 0),       // __u32 argsz
		f("flags", 4),       // __u32 flags
		f("num_regions", 8), // __u32 num_regions
		f("num_irqs", 12),   // __u32 num_irqs
		f("cap_offset", 16), // __u32 cap_offset
		{goName: "pad", cName: "pad", off: 20, newer: true}, // __u32 pad
	}},
	{reflect.TypeFor[vfioRegionInfo](), "vfio_region_info", "1", 32, []field{
		f("argsz", 0),       // __u32 argsz
		f("flags", 4),       // __u32 flags
		f("index", 8),       // __u32 index
		f("cap_offset", 12), // __u32 cap_offset
		f("size", 16),       // __u64 size
		f("offset", 24),     // __u64 offset
	}},
	{reflect.TypeFor[vfioRegionSparseMmapArea](), "vfio_region_sparse_mmap_area", "1", 16, []field{
		f("offset", 0), // __u64 offset
		f("size", 8),   // __u64 size
	}},
	{reflect.TypeFor[vfioRegionInfoCapSparseMmap](), "vfio_region_info_cap_sparse_mmap", "1", 16, []field{
		f("header", 0),    // struct vfio_info_cap_header header
		f("nr_areas", 8),  // __u32 nr_areas
		f("reserved", 12), // __u32 reserved; areas[] follow
	}},
	{reflect.TypeFor[vfioRegionInfoCapType](), "vfio_region_info_cap_type", "1", 16, []field{
		f("header", 0),                           // struct vfio_info_cap_header header
		{goName: "type_", cName: "type", off: 8}, // __u32 type
		f("subtype", 12),                         // __u32 subtype
	}},
	{reflect.TypeFor[vfioIrqInfo](), "vfio_irq_info", "1", 16, []field{
		f("argsz", 0),  // __u32 argsz
		f("flags", 4),  // __u32 flags
		f("index", 8),  // __u32 index
		f("count", 12), // __u32 count
	}},
	{reflect.TypeFor[vfioIrqSet](), "vfio_irq_set", "1", 20, []field{
		f("argsz", 0),  // __u32 argsz
		f("flags", 4),  // __u32 flags
		f("index", 8),  // __u32 index
		f("start", 12), // __u32 start
		f("count", 16), // __u32 count; data[] follows at 20
	}},
	{reflect.TypeFor[vfioIommuType1Info](), "vfio_iommu_type1_info", "1", 24, []field{
		f("argsz", 0),        // __u32 argsz
		f("flags", 4),        // __u32 flags
		f("iova_pgsizes", 8), // __u64 iova_pgsizes
		f("cap_offset", 16),  // __u32 cap_offset
		{goName: "pad", cName: "pad", off: 20, newer: true}, // __u32 pad
	}},
	{reflect.TypeFor[vfioIovaRange](), "vfio_iova_range", "1", 16, []field{
		f("start", 0), // __u64 start
		f("end", 8),   // __u64 end (inclusive)
	}},
	{reflect.TypeFor[vfioIommuType1InfoCapIovaRange](), "vfio_iommu_type1_info_cap_iova_range", "1", 16, []field{
		f("header", 0),    // struct vfio_info_cap_header header
		f("nr_iovas", 8),  // __u32 nr_iovas
		f("reserved", 12), // __u32 reserved; iova_ranges[] follow
	}},
	{reflect.TypeFor[vfioIommuType1DmaMap](), "vfio_iommu_type1_dma_map", "1", 32, []field{
		f("argsz", 0), // __u32 argsz
		f("flags", 4), // __u32 flags
		f("vaddr", 8), // __u64 vaddr
		f("iova", 16), // __u64 iova
		f("size", 24), // __u64 size
	}},
	{reflect.TypeFor[vfioIommuType1DmaUnmap](), "vfio_iommu_type1_dma_unmap", "1", 24, []field{
		f("argsz", 0), // __u32 argsz
		f("flags", 4), // __u32 flags
		f("iova", 8),  // __u64 iova
		f("size", 16), // __u64 size; data[] follows
	}},
	{reflect.TypeFor[vfioDeviceBindIommufd](), "vfio_device_bind_iommufd", "defined(VFIO_DEVICE_BIND_IOMMUFD)", 24, []field{
		f("argsz", 0),      // __u32 argsz
		f("flags", 4),      // __u32 flags
		f("iommufd", 8),    // __s32 iommufd
		f("out_devid", 12), // __u32 out_devid
		{goName: "token_uuid_ptr", cName: "token_uuid_ptr", off: 16, newer: true}, // __aligned_u64 token_uuid_ptr
	}},
	{reflect.TypeFor[vfioDeviceAttachIommufdPt](), "vfio_device_attach_iommufd_pt", "defined(VFIO_DEVICE_ATTACH_IOMMUFD_PT)", 16, []field{
		f("argsz", 0), // __u32 argsz
		f("flags", 4), // __u32 flags
		f("pt_id", 8), // __u32 pt_id
		{goName: "pasid", cName: "pasid", off: 12, newer: true}, // __u32 pasid
	}},
	{reflect.TypeFor[iommuIoasAlloc](), "iommu_ioas_alloc", "HAVE_IOMMUFD", 12, []field{
		f("size", 0),        // __u32 size
		f("flags", 4),       // __u32 flags
		f("out_ioas_id", 8), // __u32 out_ioas_id
	}},
	{reflect.TypeFor[iommuIovaRange](), "iommu_iova_range", "HAVE_IOMMUFD", 16, []field{
		f("start", 0), // __aligned_u64 start
		f("last", 8),  // __aligned_u64 last (inclusive)
	}},
	{reflect.TypeFor[iommuIoasIovaRanges](), "iommu_ioas_iova_ranges", "HAVE_IOMMUFD", 32, []field{
		f("size", 0),                // __u32 size
		f("ioas_id", 4),             // __u32 ioas_id
		f("num_iovas", 8),           // __u32 num_iovas
		f("__reserved", 12),         // __u32 __reserved
		f("allowed_iovas", 16),      // __aligned_u64 allowed_iovas
		f("out_iova_alignment", 24), // __aligned_u64 out_iova_alignment
	}},
	{reflect.TypeFor[iommuIoasMap](), "iommu_ioas_map", "HAVE_IOMMUFD", 40, []field{
		f("size", 0),        // __u32 size
		f("flags", 4),       // __u32 flags
		f("ioas_id", 8),     // __u32 ioas_id
		f("__reserved", 12), // __u32 __reserved
		f("user_va", 16),    // __aligned_u64 user_va
		f("length", 24),     // __aligned_u64 length
		f("iova", 32),       // __aligned_u64 iova
	}},
	{reflect.TypeFor[iommuIoasUnmap](), "iommu_ioas_unmap", "HAVE_IOMMUFD", 24, []field{
		f("size", 0),    // __u32 size
		f("ioas_id", 4), // __u32 ioas_id
		f("iova", 8),    // __aligned_u64 iova
		f("length", 16), // __aligned_u64 length
	}},
}

func is64bit() bool { return unsafe.Sizeof(uintptr(0)) == 8 }

// TestLayouts pins each struct's size and field offsets to the header's
// numbers, and checks that the Go struct has exactly those fields.
func TestLayouts(t *testing.T) {
	if !is64bit() {
		t.Skip("the pinned layouts are those of 64-bit ABIs")
	}
	for _, l := range layouts {
		t.Run(l.c, func(t *testing.T) {
			assert.Equal(t, l.size, l.goType.Size(), "size")
			require.Equal(t, len(l.fields), l.goType.NumField(), "field count")
			for i, fl := range l.fields {
				sf := l.goType.Field(i)
				assert.Equal(t, fl.goName, sf.Name, "field %d", i)
				assert.Equal(t, fl.off, sf.Offset, "offset of %s", fl.goName)
			}
			last := l.goType.Field(l.goType.NumField() - 1)
			assert.Equal(t, l.size, last.Offset+last.Type.Size(), "the last field ends the struct (no tail padding)")
		})
	}
	// Reserved and padding fields keep their header names and places.
	assert.Equal(t, uintptr(12), unsafe.Offsetof(vfioRegionInfoCapSparseMmap{}.reserved))
	assert.Equal(t, uintptr(12), unsafe.Offsetof(vfioIommuType1InfoCapIovaRange{}.reserved))
	assert.Equal(t, uintptr(20), unsafe.Offsetof(vfioIommuType1Info{}.pad))
	assert.Equal(t, uintptr(20), unsafe.Offsetof(vfioDeviceInfo{}.pad))
	// The argsz passed for the structs that grew.
	assert.Equal(t, uint32(unsafe.Offsetof(vfioDeviceBindIommufd{}.out_devid)+4), uint32(sizeofVfioDeviceBindIommufdV1))
	assert.Equal(t, uint32(unsafe.Offsetof(vfioDeviceAttachIommufdPt{}.pt_id)+4), uint32(sizeofVfioDeviceAttachIommufdPtV1))
}

// ioctlNumbers pins every request to its number on the generic ioctl
// encoding (x86, arm, riscv): 0x3B00 | nr.
var ioctlNumbers = []struct {
	name string
	got  uintptr
	want uintptr
}{
	{"VFIO_GET_API_VERSION", VFIO_GET_API_VERSION, 0x3B64},
	{"VFIO_CHECK_EXTENSION", VFIO_CHECK_EXTENSION, 0x3B65},
	{"VFIO_SET_IOMMU", VFIO_SET_IOMMU, 0x3B66},
	{"VFIO_GROUP_GET_STATUS", VFIO_GROUP_GET_STATUS, 0x3B67},
	{"VFIO_GROUP_SET_CONTAINER", VFIO_GROUP_SET_CONTAINER, 0x3B68},
	{"VFIO_GROUP_GET_DEVICE_FD", VFIO_GROUP_GET_DEVICE_FD, 0x3B6A},
	{"VFIO_DEVICE_GET_INFO", VFIO_DEVICE_GET_INFO, 0x3B6B},
	{"VFIO_DEVICE_GET_REGION_INFO", VFIO_DEVICE_GET_REGION_INFO, 0x3B6C},
	{"VFIO_DEVICE_GET_IRQ_INFO", VFIO_DEVICE_GET_IRQ_INFO, 0x3B6D},
	{"VFIO_DEVICE_SET_IRQS", VFIO_DEVICE_SET_IRQS, 0x3B6E},
	{"VFIO_DEVICE_RESET", VFIO_DEVICE_RESET, 0x3B6F},
	{"VFIO_IOMMU_GET_INFO", VFIO_IOMMU_GET_INFO, 0x3B70},
	{"VFIO_IOMMU_MAP_DMA", VFIO_IOMMU_MAP_DMA, 0x3B71},
	{"VFIO_IOMMU_UNMAP_DMA", VFIO_IOMMU_UNMAP_DMA, 0x3B72},
	{"VFIO_DEVICE_BIND_IOMMUFD", VFIO_DEVICE_BIND_IOMMUFD, 0x3B76},
	{"VFIO_DEVICE_ATTACH_IOMMUFD_PT", VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3B77},
	{"IOMMU_IOAS_ALLOC", IOMMU_IOAS_ALLOC, 0x3B81},
	{"IOMMU_IOAS_IOVA_RANGES", IOMMU_IOAS_IOVA_RANGES, 0x3B84},
	{"IOMMU_IOAS_MAP", IOMMU_IOAS_MAP, 0x3B85},
	{"IOMMU_IOAS_UNMAP", IOMMU_IOAS_UNMAP, 0x3B86},
}

func TestIoctlNumbers(t *testing.T) {
	if _IOC_NONE != 0 {
		t.Skipf("%s encodes _IO with direction bits; the pinned numbers are the generic encoding's", runtime.GOARCH)
	}
	for _, c := range ioctlNumbers {
		assert.Equal(t, c.want, c.got, "%s = %#x, want %#x", c.name, c.got, c.want)
		assert.Equal(t, c.name, ioctlNames[c.got], "IoctlError name of %#x", c.got)
	}
	assert.Len(t, ioctlNames, len(ioctlNumbers), "every request is pinned")
}

// TestEncodeBytes pins the bytes the kernel reads for a filled struct on a
// little-endian host, one comment per field.
func TestEncodeBytes(t *testing.T) {
	if !is64bit() || !littleEndian() {
		t.Skip("pinned for 64-bit little-endian hosts")
	}
	m := vfioIommuType1DmaMap{argsz: 32, flags: 3, vaddr: 0x7f0000001000, iova: 0x100000, size: 0x200000}
	assert.Equal(t, []byte{
		0x20, 0, 0, 0, // argsz 32
		0x03, 0, 0, 0, // flags READ|WRITE
		0x00, 0x10, 0, 0, 0x00, 0x7f, 0, 0, // vaddr 0x7f0000001000
		0, 0, 0x10, 0, 0, 0, 0, 0, // iova 0x100000
		0, 0, 0x20, 0, 0, 0, 0, 0, // size 2 MiB
	}, encode(&m))
	s := vfioIrqSet{argsz: 28, flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: 2, start: 1, count: 2}
	assert.Equal(t, []byte{
		28, 0, 0, 0, // argsz: 20 + 2 eventfds
		0x24, 0, 0, 0, // flags DATA_EVENTFD|ACTION_TRIGGER
		2, 0, 0, 0, // index MSI-X
		1, 0, 0, 0, // start
		2, 0, 0, 0, // count
	}, encode(&s))
	ri, ok := decode[vfioRegionInfo]([]byte{
		0x50, 0, 0, 0, // argsz 80
		0x0f, 0, 0, 0, // flags READ|WRITE|MMAP|CAPS
		0, 0, 0, 0, // index 0
		0x20, 0, 0, 0, // cap_offset 32
		0, 0x40, 0, 0, 0, 0, 0, 0, // size 0x4000
		0, 0, 0, 0, 0, 0, 0, 0, // offset 0
	}, 0)
	require.True(t, ok)
	assert.Equal(t, vfioRegionInfo{argsz: 80, flags: 0xf, cap_offset: 32, size: 0x4000}, ri)
	_, ok = decode[vfioRegionInfo](make([]byte, 31), 0)
	assert.False(t, ok, "one byte short")
	_, ok = decode[vfioInfoCapHeader](make([]byte, 16), 9)
	assert.False(t, ok, "past the end")
	_, ok = decode[vfioInfoCapHeader](make([]byte, 16), 1<<63)
	assert.False(t, ok, "offset beyond any buffer")
}

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// TestLayoutsMatchC compiles a C program against the system's
// <linux/vfio.h> (and <linux/iommufd.h> when present) that prints every
// size, offset and ioctl number the Go side pins, and compares. Structs
// and fields the installed header predates are reported and skipped.
func TestLayoutsMatchC(t *testing.T) {
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc: install gcc (and linux-libc-dev) to cross-check layouts against the C header")
	}
	if _, err := os.Stat("/usr/include/linux/vfio.h"); err != nil {
		t.Skip("no /usr/include/linux/vfio.h: install linux-libc-dev to cross-check layouts against the C header")
	}
	if !is64bit() {
		t.Skip("the pinned layouts are those of 64-bit ABIs")
	}
	dir := t.TempDir()
	const prelude = "#include <stdio.h>\n#include <stddef.h>\n#include <linux/vfio.h>\n" +
		"#if __has_include(<linux/iommufd.h>)\n#include <linux/iommufd.h>\n#define HAVE_IOMMUFD 1\n#else\n#define HAVE_IOMMUFD 0\n#endif\n"
	compile := func(name, src string) (string, error) {
		cfile, bin := filepath.Join(dir, name+".c"), filepath.Join(dir, name)
		if err := os.WriteFile(cfile, []byte(src), 0o644); err != nil {
			return "", err
		}
		out, err := exec.Command(cc, "-o", bin, cfile).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%v\n%s", err, out)
		}
		return bin, nil
	}
	// Fields a newer header added (no macro marks them): probe each with
	// a compile of its own.
	have := map[string]bool{}
	for _, l := range layouts {
		for _, fl := range l.fields {
			if !fl.newer {
				continue
			}
			probe := fmt.Sprintf("%s#if %s\nsize_t x = offsetof(struct %s, %s);\n#endif\nint main(void) { return 0; }\n", prelude, l.guard, l.c, fl.cName)
			_, err := compile("probe", probe)
			have[l.c+"."+fl.cName] = err == nil
		}
	}
	var src strings.Builder
	src.WriteString(prelude)
	src.WriteString("int main(void) {\n")
	for _, l := range layouts {
		fmt.Fprintf(&src, "#if %s\n", l.guard)
		fmt.Fprintf(&src, "  printf(\"size %s %%zu\\n\", sizeof(struct %s));\n", l.c, l.c)
		for _, fl := range l.fields {
			if fl.newer && !have[l.c+"."+fl.cName] {
				continue
			}
			fmt.Fprintf(&src, "  printf(\"off %s.%s %%zu\\n\", offsetof(struct %s, %s));\n", l.c, fl.cName, l.c, fl.cName)
		}
		src.WriteString("#endif\n")
	}
	for _, c := range ioctlNumbers {
		fmt.Fprintf(&src, "#ifdef %s\n  printf(\"ioctl %s %%lu\\n\", (unsigned long)%s);\n#endif\n", c.name, c.name, c.name)
	}
	src.WriteString("  return 0;\n}\n")
	bin, err := compile("layout", src.String())
	if err != nil {
		t.Fatalf("gcc: %v\n%s", err, src.String())
	}
	out, err := exec.Command(bin).Output()
	require.NoError(t, err)
	c := map[string]uintptr{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		require.Len(t, parts, 3, sc.Text())
		n, err := strconv.ParseUint(parts[2], 10, 64)
		require.NoError(t, err)
		c[parts[0]+" "+parts[1]] = uintptr(n)
	}
	checked := 0
	for _, l := range layouts {
		got, ok := c["size "+l.c]
		if !ok {
			t.Logf("struct %s: not in the system header (newer kernel); pinned by TestLayouts only", l.c)
			continue
		}
		checked++
		// A struct the installed header has in an older, shorter form is
		// checked field by field; its size only when every field is there.
		complete := true
		for _, fl := range l.fields {
			off, ok := c["off "+l.c+"."+fl.cName]
			if !ok {
				t.Logf("struct %s: field %s not in the system header (newer kernel)", l.c, fl.cName)
				complete = false
				continue
			}
			assert.Equal(t, fl.off, off, "C offsetof(struct %s, %s)", l.c, fl.cName)
		}
		if complete {
			assert.Equal(t, l.size, got, "C sizeof(struct %s)", l.c)
		}
	}
	for _, n := range ioctlNumbers {
		if v, ok := c["ioctl "+n.name]; ok {
			assert.Equal(t, n.got, v, "C %s", n.name)
		} else {
			t.Logf("%s: not in the system header (newer kernel)", n.name)
		}
	}
	require.GreaterOrEqual(t, checked, 14, "the vfio.h structs every kernel since 5.x has must all be checked")
}
