package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/vfio"
)

// fileDevice builds a Device over regular files: the "device" is a file
// holding the regions at their offsets, so pread, pwrite and mmap behave
// as on a vfio-pci fd, while every ioctl fails with ENOTTY, which shows the
// call got as far as the kernel. Layout:
//
//	BAR0   rw, mmap          0x2000 bytes at 0x0000
//	BAR1   rw, mmap sparse   0x3000 bytes at 0x4000, mappable [0x1000, 0x2000)
//	BAR2   absent (size 0)
//	BAR3   read-only         0x100 bytes at 0x9000
//	BAR4   its info failed
//	config rw                0x100 bytes at 0xa000
func fileDevice(t *testing.T) *Device {
	t.Helper()
	dir := t.TempDir()
	open := func(name string, size int64) int {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, nil, 0o600))
		require.NoError(t, os.Truncate(p, size))
		fd, err := openFile(p)
		require.NoError(t, err)
		return fd
	}
	d := newDevice(nic)
	d.backend = Container
	d.group = 7
	d.devFD = open("device", 0x10000)
	d.containerFD = open("container", 0)
	d.groupFD = open("group", 0)
	d.info = vfio.DeviceInfo{PCI: true, NumRegions: 9, NumIRQs: 5}
	rw := vfio.RegionRead | vfio.RegionWrite
	d.regions = []regionSlot{
		{desc: regionDesc{info: vfio.RegionInfo{Index: 0, Flags: rw | vfio.RegionMmap, Size: 0x2000}, offset: 0}},
		{desc: regionDesc{info: vfio.RegionInfo{Index: 1, Flags: rw | vfio.RegionMmap, Size: 0x3000,
			Areas: []vfio.Area{{Offset: 0x1000, Size: 0x1000}}}, offset: 0x4000}},
		{desc: regionDesc{info: vfio.RegionInfo{Index: 2}, offset: 0x8000}},
		{desc: regionDesc{info: vfio.RegionInfo{Index: 3, Flags: vfio.RegionRead, Size: 0x100}, offset: 0x9000}},
		{desc: regionDesc{info: vfio.RegionInfo{Index: 4}}, err: badInfo("region 4 info", "test")},
		{desc: regionDesc{info: vfio.RegionInfo{Index: 5}}},
		{desc: regionDesc{info: vfio.RegionInfo{Index: 6}}},
		{desc: regionDesc{info: vfio.RegionInfo{Index: 7, Flags: rw, Size: 0x100}, offset: 0xa000}},
		{desc: regionDesc{info: vfio.RegionInfo{Index: 8}}},
	}
	d.irqs = []irqSlot{
		{info: vfio.IRQInfo{Index: vfio.IRQINTx, Flags: vfio.IRQEventfd | vfio.IRQMaskable | vfio.IRQAutomasked, Count: 1}},
		{info: vfio.IRQInfo{Index: vfio.IRQMSI}},
		{info: vfio.IRQInfo{Index: vfio.IRQMSIX, Flags: vfio.IRQEventfd | vfio.IRQNoResize, Count: 4}},
		{info: vfio.IRQInfo{Index: vfio.IRQErr, Flags: vfio.IRQEventfd, Count: 1}},
		{info: vfio.IRQInfo{Index: vfio.IRQReq}, err: badInfo("irq info", "test")},
	}
	d.ranges = []IOVARange{{Start: 0, Last: 0xfedfffff}, {Start: 0xfef00000, Last: 1<<48 - 1}}
	d.pgsizes = 0x40201000
	t.Cleanup(func() { d.Close() })
	return d
}

// fileAt reads n bytes of the backing file at off.
func fileAt(t *testing.T, d *Device, off int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := unix.Pread(d.devFD, b, off)
	require.NoError(t, err)
	return b
}

func assertIoctl(t *testing.T, err error, op string) {
	t.Helper()
	var ie *IoctlError
	if assert.ErrorAs(t, err, &ie, "the call should reach the kernel") {
		assert.Equal(t, op, ie.Op)
		assert.ErrorIs(t, err, unix.ENOTTY)
	}
}

func TestDeviceInfoAccessors(t *testing.T) {
	d := fileDevice(t)
	assert.Equal(t, vfio.DeviceInfo{PCI: true, NumRegions: 9, NumIRQs: 5}, d.Info())
	assert.Equal(t, uint64(0x1000), d.PageSize())
	assert.Equal(t, nic, d.Addr())
	assert.Equal(t, 7, d.IOMMUGroup())
	assert.Equal(t, Container, d.Backend())
	rs := d.IOVARanges()
	rs[0].Start = 99
	assert.Equal(t, vfio.IOVA(0), d.IOVARanges()[0].Start, "IOVARanges returns a copy")
	d.pgsizes = 0
	assert.Equal(t, uint64(4096), d.PageSize())

	info, err := d.RegionInfo(1)
	require.NoError(t, err)
	assert.Equal(t, []vfio.Area{{Offset: 0x1000, Size: 0x1000}}, info.Mappable())
	info.Areas[0].Size = 1
	again, _ := d.RegionInfo(1)
	assert.Equal(t, uint64(0x1000), again.Areas[0].Size, "RegionInfo returns a copy")

	_, err = d.RegionInfo(9)
	assert.ErrorIs(t, err, vfio.ErrNoRegion)
	_, err = d.RegionInfo(4)
	assert.ErrorIs(t, err, vfio.ErrNoRegion)
	assert.ErrorIs(t, err, ErrBadInfo)
	assert.Nil(t, d.RegionType(0))

	irq, err := d.IRQInfo(vfio.IRQMSIX)
	require.NoError(t, err)
	assert.Equal(t, uint32(4), irq.Count)
	_, err = d.IRQInfo(5)
	assert.ErrorIs(t, err, vfio.ErrNoIRQ)
	_, err = d.IRQInfo(vfio.IRQReq)
	assert.ErrorIs(t, err, ErrBadInfo)
}

func TestReadWriteRegion(t *testing.T) {
	d := fileDevice(t)
	require.NoError(t, vfio.Write32(d, vfio.BAR0, 0x10, 0xdeadbeef))
	assert.Equal(t, []byte{0xef, 0xbe, 0xad, 0xde}, fileAt(t, d, 0x10, 4))
	v, err := vfio.Read32(d, vfio.BAR0, 0x10)
	require.NoError(t, err)
	assert.Equal(t, uint32(0xdeadbeef), v)

	require.NoError(t, vfio.Write64(d, vfio.BAR1, 0x2ff8, 0x0102030405060708), "the last 8 bytes of BAR1")
	assert.Equal(t, []byte{8, 7, 6, 5, 4, 3, 2, 1}, fileAt(t, d, 0x4000+0x2ff8, 8))

	require.NoError(t, vfio.WriteConfig16(d, 4, 0x0406))
	cmd, err := vfio.ReadConfig16(d, 4)
	require.NoError(t, err)
	assert.Equal(t, uint16(0x0406), cmd)
	assert.Equal(t, []byte{6, 4}, fileAt(t, d, 0xa000+4, 2))

	big := make([]byte, 0x2000)
	for i := range big {
		big[i] = byte(i * 7)
	}
	require.NoError(t, d.WriteRegion(vfio.BAR0, 0, big))
	got := make([]byte, 0x2000)
	require.NoError(t, d.ReadRegion(vfio.BAR0, 0, got))
	assert.Equal(t, big, got)
	assert.NoError(t, d.ReadRegion(vfio.BAR0, 0x2000, nil), "an empty access at the end")

	for _, c := range []struct {
		name  string
		err   error
		check error
	}{
		{"past the end", d.ReadRegion(vfio.BAR0, 0x1ffd, make([]byte, 4)), vfio.ErrInvalid},
		{"offset past the end", d.WriteRegion(vfio.BAR0, 0x3000, make([]byte, 1)), vfio.ErrInvalid},
		{"offset wraps", d.ReadRegion(vfio.BAR0, ^uint64(0), make([]byte, 2)), vfio.ErrInvalid},
		{"absent region", d.ReadRegion(vfio.BAR2, 0, make([]byte, 4)), vfio.ErrNoRegion},
		{"write to read-only", d.WriteRegion(vfio.BAR3, 0, make([]byte, 4)), vfio.ErrNoRegion},
		{"failed region", d.ReadRegion(vfio.BAR4, 0, make([]byte, 4)), vfio.ErrNoRegion},
		{"no such region", d.ReadRegion(12, 0, make([]byte, 4)), vfio.ErrNoRegion},
	} {
		assert.ErrorIs(t, c.err, c.check, c.name)
	}
	assert.NoError(t, d.ReadRegion(vfio.BAR3, 0xfc, make([]byte, 4)))
}

func TestMapRegion(t *testing.T) {
	d := fileDevice(t)
	m, err := d.MapRegion(vfio.BAR0, 0, 0x2000)
	require.NoError(t, err)
	require.Len(t, m.Bytes(), 0x2000)
	copy(m.Bytes()[0x100:], "through the mapping")
	got := make([]byte, 19)
	require.NoError(t, d.ReadRegion(vfio.BAR0, 0x100, got))
	assert.Equal(t, "through the mapping", string(got), "the mapping is shared with the device")
	require.NoError(t, m.Close())
	require.NoError(t, m.Close(), "second Close")

	// An unaligned piece of a sparse area.
	m, err = d.MapRegion(vfio.BAR1, 0x1010, 0x20)
	require.NoError(t, err)
	assert.Len(t, m.Bytes(), 0x20)
	assert.Equal(t, 0x20, cap(m.Bytes()), "the caller cannot reach past its piece")
	require.NoError(t, d.WriteRegion(vfio.BAR1, 0x1010, []byte("sparse")))
	assert.Equal(t, "sparse", string(m.Bytes()[:6]))

	for name, err := range map[string]error{
		"outside the sparse area": func() error { _, err := d.MapRegion(vfio.BAR1, 0, 0x1000); return err }(),
		"across the area's end":   func() error { _, err := d.MapRegion(vfio.BAR1, 0x1800, 0x1000); return err }(),
		"zero size":               func() error { _, err := d.MapRegion(vfio.BAR0, 0, 0); return err }(),
		"size wraps":              func() error { _, err := d.MapRegion(vfio.BAR0, 0x1000, ^uint64(0)); return err }(),
	} {
		assert.ErrorIs(t, err, vfio.ErrInvalid, name)
	}
	for name, err := range map[string]error{
		"not mappable": func() error { _, err := d.MapRegion(vfio.ConfigRegion, 0, 0x100); return err }(),
		"absent":       func() error { _, err := d.MapRegion(vfio.BAR2, 0, 0x1000); return err }(),
		"no region":    func() error { _, err := d.MapRegion(20, 0, 0x1000); return err }(),
	} {
		assert.ErrorIs(t, err, vfio.ErrNoRegion, name)
	}

	// Close takes back mappings still open; their Close is then a no-op.
	require.NoError(t, d.Close())
	assert.Nil(t, m.Bytes())
	assert.NoError(t, m.Close())
}

func TestSetIRQs(t *testing.T) {
	d := fileDevice(t)
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	require.NoError(t, err)
	defer unix.Close(efd)

	assertIoctl(t, d.SetIRQs(vfio.IRQMSIX, 0, []int{efd, efd, -1, efd}), "VFIO_DEVICE_SET_IRQS")
	assertIoctl(t, d.SetIRQs(vfio.IRQMSIX, 3, []int{efd}), "VFIO_DEVICE_SET_IRQS")
	assertIoctl(t, d.SetIRQs(vfio.IRQMSIX, 0, nil), "VFIO_DEVICE_SET_IRQS")
	assertIoctl(t, d.SetIRQs(vfio.IRQINTx, 0, []int{efd}), "VFIO_DEVICE_SET_IRQS")

	assert.ErrorIs(t, d.SetIRQs(vfio.IRQMSIX, 3, []int{efd, efd}), vfio.ErrNoIRQ, "past the last vector")
	assert.ErrorIs(t, d.SetIRQs(vfio.IRQMSIX, 4, []int{efd}), vfio.ErrNoIRQ, "start past the count")
	assert.ErrorIs(t, d.SetIRQs(vfio.IRQMSIX, 0xffffffff, []int{efd}), vfio.ErrNoIRQ)
	assert.ErrorIs(t, d.SetIRQs(vfio.IRQMSI, 0, []int{efd}), vfio.ErrNoIRQ, "the device has no MSI")
	assert.ErrorIs(t, d.SetIRQs(vfio.IRQMSI, 0, nil), vfio.ErrNoIRQ)
	assert.ErrorIs(t, d.SetIRQs(vfio.IRQReq, 0, nil), vfio.ErrNoIRQ)
	assert.ErrorIs(t, d.SetIRQs(9, 0, nil), vfio.ErrNoIRQ)
	assert.ErrorIs(t, d.SetIRQs(vfio.IRQMSIX, 0, []int{-2}), vfio.ErrInvalid)
	assert.ErrorIs(t, d.SetIRQs(vfio.IRQMSIX, 0, []int{1 << 40}), vfio.ErrInvalid)
	d.irqs[vfio.IRQErr].info.Flags = 0
	assert.ErrorIs(t, d.SetIRQs(vfio.IRQErr, 0, []int{efd}), vfio.ErrNoIRQ, "no eventfd support")
}

func TestMapDMA(t *testing.T) {
	d := fileDevice(t)
	r, err := dma.Anonymous(4<<20, dma.Options{})
	require.NoError(t, err)
	defer r.Close()
	rw := vfio.DMARead | vfio.DMAWrite

	assertIoctl(t, d.MapDMA(0x100000, r, 0, 2<<20, rw), "VFIO_IOMMU_MAP_DMA")
	assertIoctl(t, d.MapDMA(0xfef00000, r, 0x1000, 0x1000, vfio.DMAWrite), "VFIO_IOMMU_MAP_DMA")
	assert.Empty(t, d.dma, "a failed map is not recorded")

	for name, err := range map[string]error{
		"nil region":           d.MapDMA(0x100000, nil, 0, 0x1000, rw),
		"zero size":            d.MapDMA(0x100000, r, 0, 0, rw),
		"unaligned IOVA":       d.MapDMA(0x100800, r, 0, 0x1000, rw),
		"unaligned size":       d.MapDMA(0x100000, r, 0, 0x1800, rw),
		"unaligned offset":     d.MapDMA(0x100000, r, 0x800, 0x1000, rw),
		"past the region":      d.MapDMA(0x100000, r, 3<<20, 2<<20, rw),
		"offset past":          d.MapDMA(0x100000, r, 8<<20, 0x1000, rw),
		"in the MSI window":    d.MapDMA(0xfee00000, r, 0, 0x1000, rw),
		"across a window edge": d.MapDMA(0xfedff000, r, 0, 0x2000, rw),
		"above the windows":    d.MapDMA(1<<48, r, 0, 0x1000, rw),
		"IOVA wraps":           d.MapDMA(^vfio.IOVA(0)&^0xfff, r, 0, 0x2000, rw),
		"no permission":        d.MapDMA(0x100000, r, 0, 0x1000, 0),
		"unknown permission":   d.MapDMA(0x100000, r, 0, 0x1000, 4),
	} {
		assert.ErrorIs(t, err, vfio.ErrInvalid, name)
	}

	// Overlap and unmap checks run against the live mapping table.
	d.dma[0x200000] = 0x200000
	assert.ErrorIs(t, d.MapDMA(0x3ff000, r, 0, 0x2000, rw), vfio.ErrInvalid, "overlaps the end")
	assert.ErrorIs(t, d.MapDMA(0x1ff000, r, 0, 0x2000, rw), vfio.ErrInvalid, "overlaps the start")
	assertIoctl(t, d.MapDMA(0x400000, r, 0, 0x1000, rw), "VFIO_IOMMU_MAP_DMA")
	assert.ErrorIs(t, d.UnmapDMA(0x300000, 0x1000), vfio.ErrInvalid, "no mapping there")
	assert.ErrorIs(t, d.UnmapDMA(0x200000, 0x1000), vfio.ErrInvalid, "not the mapping's size")
	assertIoctl(t, d.UnmapDMA(0x200000, 0x200000), "VFIO_IOMMU_UNMAP_DMA")
	assert.Contains(t, d.dma, vfio.IOVA(0x200000), "a failed unmap keeps the record")

	// The iommufd path issues its own requests.
	d.backend = IOMMUFD
	d.iommuFD, d.containerFD = d.containerFD, -1
	assertIoctl(t, d.MapDMA(0x100000, r, 0, 0x1000, rw), "IOMMU_IOAS_MAP")
	assertIoctl(t, d.UnmapDMA(0x200000, 0x200000), "IOMMU_IOAS_UNMAP")

	// Without reported windows any aligned IOVA is passed on.
	d.ranges = nil
	assertIoctl(t, d.MapDMA(0xfee00000, r, 0, 0x1000, rw), "IOMMU_IOAS_MAP")

	require.NoError(t, r.Close())
	assert.ErrorIs(t, d.MapDMA(0x100000, r, 0, 0x1000, rw), vfio.ErrInvalid, "a closed region")
}

func TestReset(t *testing.T) {
	d := fileDevice(t)
	assert.ErrorIs(t, d.Reset(), ErrUnsupported)
	d.info.Reset = true
	assertIoctl(t, d.Reset(), "VFIO_DEVICE_RESET")
}

func TestCloseReleasesEverything(t *testing.T) {
	before := openFDs(t)
	d := fileDevice(t)
	assert.Equal(t, before+3, openFDs(t))
	_, err := d.MapRegion(vfio.BAR0, 0, 0x1000)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	assert.Equal(t, before, openFDs(t))
	assert.Empty(t, d.mappings)
	require.NoError(t, d.Close(), "second Close")

	r, err := dma.Anonymous(dma.PageSize, dma.Options{})
	require.NoError(t, err)
	defer r.Close()
	for name, err := range map[string]error{
		"ReadRegion":  d.ReadRegion(vfio.BAR0, 0, make([]byte, 4)),
		"WriteRegion": d.WriteRegion(vfio.BAR0, 0, make([]byte, 4)),
		"MapRegion":   func() error { _, err := d.MapRegion(vfio.BAR0, 0, 0x1000); return err }(),
		"SetIRQs":     d.SetIRQs(vfio.IRQMSIX, 0, nil),
		"MapDMA":      d.MapDMA(0x100000, r, 0, dma.PageSize, vfio.DMARead),
		"UnmapDMA":    d.UnmapDMA(0x100000, dma.PageSize),
		"Reset":       func() error { d.info.Reset = true; return d.Reset() }(),
	} {
		assert.ErrorIs(t, err, vfio.ErrClosed, name)
	}
}

// TestCloseWhileInUse races accesses against Close: each access either
// completes or reports ErrClosed, and the race detector sees no race.
func TestCloseWhileInUse(t *testing.T) {
	d := fileDevice(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := make([]byte, 4)
			for i := 0; i < 2000; i++ {
				err := d.ReadRegion(vfio.BAR0, uint64(i%0x800)*4, b)
				if errors.Is(err, vfio.ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	require.NoError(t, d.Close())
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
