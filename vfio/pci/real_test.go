package pci_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/vfio/pci"
)

// TestRealBind moves a real device to vfio-pci and back: set
// YCQ_PCI_BIND_DEVICE to its address, as root, with vfio-pci loaded (the
// QEMU guest run does this). It skips otherwise, and fails instead when
// YCQ_REQUIRE names "pci" (or "all").
func TestRealBind(t *testing.T) {
	addr := os.Getenv("YCQ_PCI_BIND_DEVICE")
	if addr == "" {
		testenv.Missing(t, "pci", "changes a real device's driver: set YCQ_PCI_BIND_DEVICE=DDDD:BB:DD.F, as root with vfio-pci loaded")
	}
	before, err := pci.Lookup(pci.DefaultSysRoot, addr)
	require.NoError(t, err)
	t.Logf("%+v", before)
	prev, err := pci.Bind(pci.DefaultSysRoot, addr)
	require.NoError(t, err)
	assert.Equal(t, before.Driver, prev)
	on, err := pci.Lookup(pci.DefaultSysRoot, addr)
	require.NoError(t, err)
	assert.Equal(t, pci.VFIODriver, on.Driver)
	assert.Equal(t, pci.VFIODriver, on.Override)
	if before.Driver == pci.VFIODriver {
		return
	}
	now, err := pci.Unbind(pci.DefaultSysRoot, addr)
	require.NoError(t, err)
	assert.Equal(t, before.Driver, now, "the device goes back to its driver")
	after, err := pci.Lookup(pci.DefaultSysRoot, addr)
	require.NoError(t, err)
	assert.Equal(t, "", after.Override)
}
