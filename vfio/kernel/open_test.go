package kernel

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/vfio/pci"
	"github.com/ycq-dev/ycq/vfio/pci/pcitest"
)

const nic = "0000:00:03.0"

// vfioMachine is a fake machine with an IOMMU, vfio-pci loaded, a NIC on
// vfio-pci alone in group 7 and the container nodes for that group.
func vfioMachine(t *testing.T) *pcitest.Tree {
	t.Helper()
	tr := pcitest.New(t.TempDir())
	tr.AddDriver(pci.VFIODriver)
	tr.AddDevice(pcitest.Dev{Addr: nic, Vendor: 0x8086, Device: 0x100e, Class: 0x020000, Driver: pci.VFIODriver, Native: "e1000", Group: 7})
	tr.AddVFIONodes(7)
	return tr
}

func opts(tr *pcitest.Tree) Options { return Options{SysRoot: tr.Sys, DevRoot: tr.Dev} }

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

func TestResolveContainer(t *testing.T) {
	tr := vfioMachine(t)
	p, err := resolve("00:03.0", opts(tr))
	require.NoError(t, err)
	assert.Equal(t, nic, p.addr)
	assert.Equal(t, Container, p.backend)
	assert.Equal(t, filepath.Join(tr.Dev, "vfio", "vfio"), p.containerPath)
	assert.Equal(t, filepath.Join(tr.Dev, "vfio", "7"), p.groupPath)
	assert.Equal(t, 7, p.dev.IOMMUGroup)
}

func TestResolveIOMMUFD(t *testing.T) {
	tr := vfioMachine(t)
	tr.AddCdev(nic, 3)

	p, err := resolve(nic, Options{SysRoot: tr.Sys, DevRoot: tr.Dev, Backend: IOMMUFD})
	require.NoError(t, err)
	assert.Equal(t, IOMMUFD, p.backend)
	assert.Equal(t, filepath.Join(tr.Dev, "iommu"), p.iommuPath)
	assert.Equal(t, filepath.Join(tr.Dev, "vfio", "devices", "vfio3"), p.cdevPath)

	p, err = resolve(nic, opts(tr))
	require.NoError(t, err)
	assert.Equal(t, Container, p.backend, "auto prefers the container path when both exist")

	require.NoError(t, os.Remove(filepath.Join(tr.Dev, "vfio", "vfio")))
	p, err = resolve(nic, opts(tr))
	require.NoError(t, err)
	assert.Equal(t, IOMMUFD, p.backend, "auto falls back to iommufd")

	_, err = resolve(nic, Options{SysRoot: tr.Sys, DevRoot: tr.Dev, Backend: Container})
	assert.ErrorIs(t, err, ErrVFIONotLoaded)
}

func TestResolveErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, tr *pcitest.Tree) Options
		addr  string
		is    []error
		says  []string
	}{
		{name: "no such device", addr: "0000:00:09.0", is: []error{ErrNoDevice}, says: []string{"0000:00:09.0", "lspci"}},
		{name: "bad address", addr: "00:03", is: []error{pci.ErrBadAddress}},
		{name: "no IOMMU", addr: "0000:00:04.0",
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				tr2 := pcitest.New(t.TempDir())
				tr2.AddDriver(pci.VFIODriver)
				tr2.AddDevice(pcitest.Dev{Addr: "0000:00:04.0", Vendor: 0x8086, Device: 0x100e, Class: 0x020000, Driver: pci.VFIODriver, Group: -1})
				return opts(tr2)
			},
			is: []error{ErrNoIOMMU, ErrNoIOMMUGroup}, says: []string{"intel_iommu=on", "iommu_groups"}},
		{name: "device outside the IOMMU", addr: "0000:00:04.0",
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				tr.AddDevice(pcitest.Dev{Addr: "0000:00:04.0", Vendor: 0x8086, Device: 0x100e, Class: 0x020000, Group: -1})
				return opts(tr)
			},
			is: []error{ErrNoIOMMUGroup}, says: []string{"0000:00:04.0"}},
		{name: "bound to another driver", addr: "0000:00:04.0",
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				tr.AddDevice(pcitest.Dev{Addr: "0000:00:04.0", Vendor: 0x8086, Device: 0x100e, Class: 0x020000, Driver: "e1000", Group: 8})
				return opts(tr)
			},
			is: []error{ErrNotVFIO}, says: []string{"bound to e1000", "ycq host bind 0000:00:04.0"}},
		{name: "no driver", addr: "0000:00:04.0",
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				tr.AddDevice(pcitest.Dev{Addr: "0000:00:04.0", Vendor: 0x8086, Device: 0x100e, Class: 0x020000, Group: 8})
				return opts(tr)
			},
			is: []error{ErrNotVFIO}, says: []string{"no driver", "ycq host bind 0000:00:04.0"}},
		{name: "vfio-pci not loaded", addr: nic,
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				tr.RemoveDriver(pci.VFIODriver)
				return opts(tr)
			},
			is: []error{ErrVFIONotLoaded}, says: []string{"modprobe vfio-pci", "ycq host bind " + nic}},
		{name: "group not viable", addr: nic,
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				tr.AddDevice(pcitest.Dev{Addr: "0000:00:03.1", Vendor: 0x8086, Device: 0x10d3, Class: 0x020000, Driver: "e1000e", Group: 7})
				tr.AddDevice(pcitest.Dev{Addr: "0000:00:03.2", Vendor: 0x8086, Device: 0x10d3, Class: 0x020000, Group: 7})
				return opts(tr)
			},
			is: []error{ErrGroupNotViable}, says: []string{"group 7", "0000:00:03.1 (on e1000e)", "ycq host bind"}},
		{name: "no container node", addr: nic,
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				require.NoError(t, os.Remove(filepath.Join(tr.Dev, "vfio", "vfio")))
				return opts(tr)
			},
			is: []error{ErrVFIONotLoaded}, says: []string{"modprobe vfio-pci"}},
		{name: "no group node", addr: nic,
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				require.NoError(t, os.Remove(filepath.Join(tr.Dev, "vfio", "7")))
				return opts(tr)
			},
			is: []error{fs.ErrNotExist}, says: []string{"devtmpfs"}},
		{name: "no-IOMMU group", addr: nic,
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				require.NoError(t, os.Rename(filepath.Join(tr.Dev, "vfio", "7"), filepath.Join(tr.Dev, "vfio", "noiommu-7")))
				return opts(tr)
			},
			is: []error{ErrUnsupported}, says: []string{"no-IOMMU", "intel_iommu=on"}},
		{name: "iommufd without cdev", addr: nic,
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				return Options{SysRoot: tr.Sys, DevRoot: tr.Dev, Backend: IOMMUFD}
			},
			is: []error{ErrUnsupported}, says: []string{"CONFIG_VFIO_DEVICE_CDEV"}},
		{name: "iommufd without /dev/iommu", addr: nic,
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				tr.AddCdev(nic, 0)
				require.NoError(t, os.Remove(filepath.Join(tr.Dev, "iommu")))
				return Options{SysRoot: tr.Sys, DevRoot: tr.Dev, Backend: IOMMUFD}
			},
			is: []error{ErrUnsupported}, says: []string{"CONFIG_IOMMUFD", "modprobe iommufd"}},
		{name: "unknown backend", addr: nic,
			setup: func(t *testing.T, tr *pcitest.Tree) Options {
				return Options{SysRoot: tr.Sys, DevRoot: tr.Dev, Backend: 9}
			},
			says: []string{"backend(9)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := vfioMachine(t)
			o := opts(tr)
			if c.setup != nil {
				o = c.setup(t, tr)
			}
			before := openFDs(t)
			d, err := Open(c.addr, o)
			require.Error(t, err)
			assert.Nil(t, d)
			for _, want := range c.is {
				assert.ErrorIs(t, err, want)
			}
			for _, s := range c.says {
				assert.Contains(t, err.Error(), s)
			}
			assert.Equal(t, before, openFDs(t), "descriptors leaked")
		})
	}
}

// TestOpenReachesTheKernel: with the fake tree's plain-file nodes, Open
// gets through every sysfs check, opens the nodes and fails at the first
// ioctl, closing what it opened.
func TestOpenReachesTheKernel(t *testing.T) {
	tr := vfioMachine(t)
	before := openFDs(t)
	_, err := Open(nic, opts(tr))
	var ie *IoctlError
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "VFIO_GET_API_VERSION", ie.Op)
	assert.ErrorIs(t, err, unix.ENOTTY)
	assert.Contains(t, err.Error(), filepath.Join(tr.Dev, "vfio", "vfio"))
	assert.Equal(t, before, openFDs(t))

	tr.AddCdev(nic, 3)
	_, err = Open(nic, Options{SysRoot: tr.Sys, DevRoot: tr.Dev, Backend: IOMMUFD})
	require.ErrorAs(t, err, &ie)
	assert.Equal(t, "IOMMU_IOAS_ALLOC", ie.Op)
	assert.Equal(t, before, openFDs(t))
}

func TestNodeErrors(t *testing.T) {
	perm := nodeError("/dev/vfio/7", &os.PathError{Op: "open", Path: "/dev/vfio/7", Err: syscall.EACCES})
	assert.ErrorIs(t, perm, ErrPermission)
	assert.ErrorIs(t, perm, fs.ErrPermission)
	assert.Contains(t, perm.Error(), "run as root")
	assert.Contains(t, perm.Error(), "chown $USER /dev/vfio/7")

	busy := nodeError("/dev/vfio/7", &os.PathError{Op: "open", Path: "/dev/vfio/7", Err: syscall.EBUSY})
	assert.ErrorIs(t, busy, ErrBusy)
	assert.Contains(t, busy.Error(), "another process")

	other := nodeError("/dev/vfio/7", &os.PathError{Op: "open", Path: "/dev/vfio/7", Err: syscall.ENODEV})
	assert.ErrorIs(t, other, syscall.ENODEV)
	assert.False(t, errors.Is(other, ErrPermission) || errors.Is(other, ErrBusy))

	// A node this process may not open, when not running as root.
	if os.Geteuid() != 0 {
		p := filepath.Join(t.TempDir(), "7")
		require.NoError(t, os.WriteFile(p, nil, 0))
		_, err := openNode(p)
		assert.ErrorIs(t, err, ErrPermission)
	}
}

func TestIoctlError(t *testing.T) {
	err := error(&IoctlError{Op: "VFIO_DEVICE_RESET", Err: unix.ENOTTY})
	assert.Equal(t, "vfio: VFIO_DEVICE_RESET: "+unix.ENOTTY.Error(), err.Error())
	assert.ErrorIs(t, err, unix.ENOTTY)
	assert.ErrorIs(t, err, syscall.ENOTTY)
	var ie *IoctlError
	require.ErrorAs(t, errors.Join(errors.New("x"), err), &ie)
	assert.Equal(t, "VFIO_DEVICE_RESET", ie.Op)
}
