package kernel

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/pci"
)

// TestRealDevice opens a real device through the kernel: set
// YCQ_VFIO_DEVICE to the address of a device bound to vfio-pci, as root
// on a machine (or QEMU guest) with an IOMMU. It reads config space and
// region info, maps and unmaps DMA, routes an MSI-X vector to an eventfd
// and back, and checks that Close releases every descriptor.
func TestRealDevice(t *testing.T) {
	addr := os.Getenv("YCQ_VFIO_DEVICE")
	if addr == "" {
		testenv.Missing(t, "vfio", "needs a device on vfio-pci: set YCQ_VFIO_DEVICE=DDDD:BB:DD.F (after `ycq host bind`), as root with an IOMMU; the QEMU guest run does this")
	}
	backend := Auto
	switch os.Getenv("YCQ_VFIO_BACKEND") {
	case "container":
		backend = Container
	case "iommufd":
		backend = IOMMUFD
	}
	before := testenv.OpenFDs(t)
	d, err := Open(addr, Options{Backend: backend})
	require.NoError(t, err)
	t.Logf("%s: %v backend, group %d, %+v, IOMMU page %#x, windows %v", d.Addr(), d.Backend(), d.IOMMUGroup(), d.Info(), d.PageSize(), d.IOVARanges())

	info := d.Info()
	assert.True(t, info.PCI)
	require.GreaterOrEqual(t, info.NumRegions, uint32(vfio.NumPCIRegions))
	for i := vfio.RegionIndex(0); i < vfio.RegionIndex(info.NumRegions); i++ {
		ri, err := d.RegionInfo(i)
		require.NoError(t, err, "%v", i)
		t.Logf("%v: %+v", i, ri)
	}
	sys, err := pci.Lookup(pci.DefaultSysRoot, addr)
	require.NoError(t, err)
	vendor, err := vfio.ReadConfig16(d, 0)
	require.NoError(t, err)
	assert.Equal(t, sys.VendorID, vendor, "vendor id from config space")

	ranges := d.IOVARanges()
	require.NotEmpty(t, ranges, "the kernel reports usable IOVA windows")
	r, err := dma.Anonymous(dma.HugePageSize, dma.Options{})
	require.NoError(t, err)
	defer r.Close()
	iova := (ranges[0].Start + dma.HugePageSize - 1) &^ (dma.HugePageSize - 1)
	if iova == 0 {
		iova = dma.HugePageSize
	}
	require.NoError(t, d.MapDMA(iova, r, 0, dma.HugePageSize, vfio.DMARead|vfio.DMAWrite))
	assert.ErrorIs(t, d.MapDMA(iova, r, 0, dma.PageSize, vfio.DMARead), vfio.ErrInvalid, "overlap")
	require.NoError(t, d.UnmapDMA(iova, dma.HugePageSize))

	if msix, err := d.IRQInfo(vfio.IRQMSIX); err == nil && msix.Count > 0 {
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		require.NoError(t, err)
		require.NoError(t, d.SetIRQs(vfio.IRQMSIX, 0, []int{efd}))
		require.NoError(t, d.SetIRQs(vfio.IRQMSIX, 0, nil))
		unix.Close(efd)
	}
	require.NoError(t, d.Close())
	assert.Equal(t, before, testenv.OpenFDs(t), "Close releases every descriptor")
}
