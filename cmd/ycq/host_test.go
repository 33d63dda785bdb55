package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/vfio/pci"
	"github.com/ycq-dev/ycq/vfio/pci/pcitest"
)

// fakeBus points the host commands at a fake sysfs tree that plays the
// kernel's part in binding.
func fakeBus(t *testing.T) *pcitest.Tree {
	tree := pcitest.New(t.TempDir())
	tree.AddDriver("e1000e")
	tree.AddDriver("vfio-pci")
	tree.AddDevice(pcitest.Dev{Addr: "0000:03:00.0", Vendor: 0x8086, Device: 0x10d3, Class: 0x020000, Driver: "e1000e", Group: 7})
	tree.AddDevice(pcitest.Dev{Addr: "0000:00:1c.0", Vendor: 0x8086, Device: 0x2940, Class: 0x060400, Driver: "pcieport", Group: 3})
	old := hostBus
	hostBus = func(string) *pci.Bus { return &pci.Bus{Root: tree.Sys, WriteAttr: tree.Write, Settle: time.Second} }
	t.Cleanup(func() { hostBus = old })
	return tree
}

func TestHostListBindUnbind(t *testing.T) {
	tree := fakeBus(t)
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"host", "list"}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "0000:03:00.0")
	require.Contains(t, out.String(), "e1000e")
	require.Contains(t, out.String(), "bindable")
	require.NotContains(t, out.String(), "0000:00:1c.0", "bridges only with -all")
	out.Reset()
	require.Equal(t, 0, run([]string{"host", "list", "-all"}, &out, &errb))
	require.Contains(t, out.String(), "0000:00:1c.0")

	out.Reset()
	require.Equal(t, 0, run([]string{"host", "bind", "03:00.0"}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "bound to vfio-pci (was on e1000e)")
	require.Equal(t, "vfio-pci", tree.Driver("0000:03:00.0"))
	out.Reset()
	require.Equal(t, 0, run([]string{"host", "list"}, &out, &errb))
	require.Contains(t, out.String(), "bound")

	out.Reset()
	require.Equal(t, 0, run([]string{"host", "unbind", "0000:03:00.0"}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "now on e1000e")
	require.Equal(t, "e1000e", tree.Driver("0000:03:00.0"))
}

func TestHostErrors(t *testing.T) {
	fakeBus(t)
	var out, errb bytes.Buffer
	require.Equal(t, 2, run([]string{"host", "bind"}, &out, &errb))
	require.Equal(t, 2, run([]string{"host", "bind", "not-an-address"}, &out, &errb))
	errb.Reset()
	require.Equal(t, 1, run([]string{"host", "bind", "0000:09:00.0"}, &out, &errb))
	require.Contains(t, errb.String(), "0000:09:00.0")
	errb.Reset()
	require.Equal(t, 1, run([]string{"host", "bind", "0000:00:1c.0"}, &out, &errb), "a bridge")
	require.NotEmpty(t, errb.String())
}
