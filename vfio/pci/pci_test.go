package pci_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/vfio/pci"
	"github.com/ycq-dev/ycq/vfio/pci/pcitest"
)

// machine builds a small fake machine: an e1000 NIC alone in group 7, a
// two-function device sharing group 9 (one function on its driver, one
// unbound), a bridge in group 1, vfio-pci loaded.
func machine(t *testing.T) *pcitest.Tree {
	t.Helper()
	tr := pcitest.New(t.TempDir())
	tr.AddDriver(pci.VFIODriver)
	tr.AddDevice(pcitest.Dev{Addr: "0000:00:03.0", Vendor: 0x8086, Device: 0x100e, Class: 0x020000, Driver: "e1000", Group: 7})
	tr.AddDevice(pcitest.Dev{Addr: "0000:01:00.0", Vendor: 0x1b36, Device: 0x0010, Class: 0x010802, Driver: "nvme", Group: 9})
	tr.AddDevice(pcitest.Dev{Addr: "0000:01:00.1", Vendor: 0x1b36, Device: 0x0010, Class: 0x010802, Native: "nvme", Group: 9})
	tr.AddDevice(pcitest.Dev{Addr: "0000:00:1c.0", Vendor: 0x8086, Device: 0x2948, Class: 0x060400, Driver: "pcieport", Group: 1})
	return tr
}

func bus(tr *pcitest.Tree) *pci.Bus {
	return &pci.Bus{Root: tr.Sys, WriteAttr: tr.Write, Settle: 20 * time.Millisecond}
}

func TestParseAddr(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"0000:00:03.0", "0000:00:03.0"},
		{"00:03.0", "0000:00:03.0"},
		{" 0000:AF:1F.7\n", "0000:af:1f.7"},
		{"10000:00:02.0", "10000:00:02.0"},
	} {
		got, err := pci.ParseAddr(c.in)
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
	}
	for _, in := range []string{"", "0000:00:03", "0000:00:20.0", "0000:00:03.8", "000:00:03.0",
		"0000:0:03.0", "0000:00:03.0.1", "../../etc:00:03.0", "0000:00:03.0/..", "a:b:c:d.0", "0000:00:0g.0"} {
		_, err := pci.ParseAddr(in)
		assert.ErrorIs(t, err, pci.ErrBadAddress, "%q", in)
	}
}

func TestList(t *testing.T) {
	tr := machine(t)
	devs, err := pci.List(tr.Sys)
	require.NoError(t, err)
	var addrs []string
	for _, d := range devs {
		addrs = append(addrs, d.Addr)
	}
	assert.Equal(t, []string{"0000:00:03.0", "0000:00:1c.0", "0000:01:00.0", "0000:01:00.1"}, addrs)

	nic := devs[0]
	assert.Equal(t, uint16(0x8086), nic.VendorID)
	assert.Equal(t, uint16(0x100e), nic.DeviceID)
	assert.Equal(t, "Intel Corporation", nic.VendorName)
	assert.Contains(t, nic.DeviceName, "82540EM")
	assert.Equal(t, uint32(0x020000), nic.Class)
	assert.Equal(t, "NetworkEthernet", nic.ClassName)
	assert.Equal(t, "e1000", nic.Driver)
	assert.Equal(t, "", nic.Override)
	assert.Equal(t, 7, nic.IOMMUGroup)
	assert.Empty(t, nic.GroupPeers)
	assert.True(t, nic.Bindable, nic.Reason)

	bridge := devs[1]
	assert.True(t, bridge.IsBridge())
	assert.False(t, bridge.Bindable)
	assert.Contains(t, bridge.Reason, "bridge")

	f0 := devs[2]
	assert.Equal(t, "StorageNVMHCI", f0.ClassName)
	assert.Equal(t, []pci.Peer{{Addr: "0000:01:00.1", Driver: ""}}, f0.GroupPeers)
	assert.Empty(t, f0.GroupBlockers(), "an unbound peer does not block the group")
	f1 := devs[3]
	assert.Equal(t, []pci.Peer{{Addr: "0000:01:00.0", Driver: "nvme"}}, f1.GroupPeers)
	assert.Equal(t, []pci.Peer{{Addr: "0000:01:00.0", Driver: "nvme"}}, f1.GroupBlockers())
	assert.Equal(t, "", f1.Driver)
}

func TestListUnknownIDs(t *testing.T) {
	tr := pcitest.New(t.TempDir())
	tr.AddDevice(pcitest.Dev{Addr: "0000:00:04.0", Vendor: 0xbeef, Device: 0x1234, Class: 0xff0000, Group: 3})
	d, err := pci.Lookup(tr.Sys, "00:04.0")
	require.NoError(t, err)
	assert.Equal(t, "beef", d.VendorName)
	assert.Equal(t, "", d.ClassName)
	assert.Equal(t, "1234", d.DeviceName)
	assert.False(t, d.Bindable)
	assert.Contains(t, d.Reason, "modprobe vfio-pci")
}

func TestClassNameFallback(t *testing.T) {
	tr := pcitest.New(t.TempDir())
	tr.AddDevice(pcitest.Dev{Addr: "0000:00:04.0", Vendor: 0x1b36, Device: 0x000d, Class: 0x0c0330, Group: 3})
	d, err := pci.Lookup(tr.Sys, "0000:00:04.0")
	require.NoError(t, err)
	assert.Equal(t, "SerialUSB", d.ClassName, "an unnamed programming interface falls back to its subclass")
}

func TestLookupErrors(t *testing.T) {
	tr := machine(t)
	_, err := pci.Lookup(tr.Sys, "0000:00:09.0")
	assert.ErrorIs(t, err, pci.ErrNoDevice)
	assert.Contains(t, err.Error(), "lspci")
	_, err = pci.Lookup(tr.Sys, "nonsense")
	assert.ErrorIs(t, err, pci.ErrBadAddress)
	_, err = pci.List(filepath.Join(tr.Sys, "missing"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestBindUnbindRoundTrip(t *testing.T) {
	tr := machine(t)
	b := bus(tr)
	prev, err := b.Bind("0000:00:03.0")
	require.NoError(t, err)
	assert.Equal(t, "e1000", prev)
	assert.Equal(t, pci.VFIODriver, tr.Driver("0000:00:03.0"))
	assert.Equal(t, pci.VFIODriver, tr.Override("0000:00:03.0"))
	assert.Equal(t, []string{
		"bus/pci/devices/0000:00:03.0/driver_override=vfio-pci",
		"bus/pci/drivers/e1000/unbind=0000:00:03.0",
		"bus/pci/drivers_probe=0000:00:03.0",
	}, tr.Writes())

	d, err := b.Lookup("0000:00:03.0")
	require.NoError(t, err)
	assert.Equal(t, pci.VFIODriver, d.Driver)
	assert.True(t, d.Bindable)

	prev, err = b.Bind("0000:00:03.0")
	require.NoError(t, err, "binding again is a no-op")
	assert.Equal(t, pci.VFIODriver, prev)

	now, err := b.Unbind("0000:00:03.0")
	require.NoError(t, err)
	assert.Equal(t, "e1000", now)
	assert.Equal(t, "e1000", tr.Driver("0000:00:03.0"))
	assert.Equal(t, "", tr.Override("0000:00:03.0"))

	now, err = b.Unbind("0000:00:03.0")
	require.NoError(t, err, "unbinding a device on its own driver is a no-op")
	assert.Equal(t, "e1000", now)
}

func TestBindUnboundDevice(t *testing.T) {
	tr := machine(t)
	b := bus(tr)
	prev, err := b.Bind("0000:01:00.1")
	require.NoError(t, err)
	assert.Equal(t, "", prev)
	assert.Equal(t, pci.VFIODriver, tr.Driver("0000:01:00.1"))
	now, err := b.Unbind("0000:01:00.1")
	require.NoError(t, err)
	assert.Equal(t, "nvme", now, "the probe gives the device to the driver that matches it")
}

func TestBindErrors(t *testing.T) {
	t.Run("no device", func(t *testing.T) {
		tr := machine(t)
		_, err := bus(tr).Bind("0000:00:05.0")
		assert.ErrorIs(t, err, pci.ErrNoDevice)
	})
	t.Run("bridge", func(t *testing.T) {
		tr := machine(t)
		_, err := bus(tr).Bind("0000:00:1c.0")
		assert.ErrorIs(t, err, pci.ErrNotBindable)
		assert.Empty(t, tr.Writes())
	})
	t.Run("no IOMMU", func(t *testing.T) {
		tr := pcitest.New(t.TempDir())
		tr.AddDriver(pci.VFIODriver)
		tr.AddDevice(pcitest.Dev{Addr: "0000:00:03.0", Vendor: 0x8086, Device: 0x100e, Class: 0x020000, Driver: "e1000", Group: -1})
		_, err := bus(tr).Bind("0000:00:03.0")
		assert.ErrorIs(t, err, pci.ErrNoIOMMU)
		assert.ErrorIs(t, err, pci.ErrNoIOMMUGroup)
		assert.Contains(t, err.Error(), "intel_iommu=on")
		assert.Empty(t, tr.Writes())
	})
	t.Run("device outside the IOMMU", func(t *testing.T) {
		tr := machine(t)
		tr.AddDevice(pcitest.Dev{Addr: "0000:00:05.0", Vendor: 0x8086, Device: 0x100e, Class: 0x020000, Group: -1})
		_, err := bus(tr).Bind("0000:00:05.0")
		assert.ErrorIs(t, err, pci.ErrNoIOMMUGroup)
		assert.NotErrorIs(t, err, pci.ErrNoIOMMU)
	})
	t.Run("vfio-pci not loaded", func(t *testing.T) {
		tr := machine(t)
		tr.RemoveDriver(pci.VFIODriver)
		_, err := bus(tr).Bind("0000:00:03.0")
		assert.ErrorIs(t, err, pci.ErrVFIONotLoaded)
		assert.Contains(t, err.Error(), "modprobe vfio-pci")
		assert.Equal(t, "e1000", tr.Driver("0000:00:03.0"))
	})
	t.Run("permission", func(t *testing.T) {
		tr := machine(t)
		tr.Deny()
		_, err := bus(tr).Bind("0000:00:03.0")
		assert.ErrorIs(t, err, pci.ErrPermission)
		assert.ErrorIs(t, err, fs.ErrPermission)
		assert.Contains(t, err.Error(), "run as root")
		assert.Equal(t, "e1000", tr.Driver("0000:00:03.0"))
	})
	t.Run("vfio-pci refuses", func(t *testing.T) {
		tr := machine(t)
		tr.Refuse(pci.VFIODriver)
		_, err := bus(tr).Bind("0000:00:03.0")
		assert.ErrorIs(t, err, pci.ErrBindFailed)
		assert.Contains(t, err.Error(), "no driver")
		assert.Equal(t, "e1000", tr.Driver("0000:00:03.0"), "the failed bind gives the device back")
		assert.Equal(t, "", tr.Override("0000:00:03.0"))
	})
}

// TestBindPlainWrites runs Bind with its real writer against the fake
// tree, where writes are only stored: the device never moves, so Bind must
// notice, report ErrBindFailed and leave the override cleared. The kernel's
// side of these writes is exercised in the QEMU guest.
func TestBindPlainWrites(t *testing.T) {
	tr := machine(t)
	b := &pci.Bus{Root: tr.Sys, Settle: 20 * time.Millisecond}
	_, err := b.Bind("0000:00:03.0")
	assert.ErrorIs(t, err, pci.ErrBindFailed)
	assert.Contains(t, err.Error(), "on e1000 after the probe")
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(tr.Sys, rel))
		require.NoError(t, err)
		return string(b)
	}
	assert.Equal(t, "\n", read("bus/pci/devices/0000:00:03.0/driver_override"))
	assert.Equal(t, "0000:00:03.0", read("bus/pci/drivers/e1000/unbind"))
	assert.Equal(t, "0000:00:03.0", read("bus/pci/drivers_probe"))
	assert.True(t, strings.HasSuffix(read("bus/pci/drivers_probe"), "0"))
}

func TestUnbindKeepsForeignOverride(t *testing.T) {
	tr := machine(t)
	require.NoError(t, tr.Write(filepath.Join(tr.Sys, "bus/pci/devices/0000:01:00.1/driver_override"), "pci-stub"))
	_, err := bus(tr).Unbind("0000:01:00.1")
	require.NoError(t, err)
	assert.Equal(t, "pci-stub", tr.Override("0000:01:00.1"))
}

func TestErrorsAreDistinct(t *testing.T) {
	all := []error{pci.ErrNoDevice, pci.ErrBadAddress, pci.ErrNoIOMMU, pci.ErrNoIOMMUGroup,
		pci.ErrVFIONotLoaded, pci.ErrPermission, pci.ErrNotBindable, pci.ErrBindFailed}
	for i, a := range all {
		for j, b := range all {
			assert.Equal(t, i == j, errors.Is(a, b), "%v vs %v", a, b)
		}
	}
}
