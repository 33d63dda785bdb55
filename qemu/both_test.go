package qemu

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestVFIOUserArgs pins the vfio-user-pci attachment RunVM and RunBothVM
// share.
func TestVFIOUserArgs(t *testing.T) {
	require.Equal(t, []string{
		"-device", "intel-iommu,intremap=on,caching-mode=on",
		"-object", "memory-backend-memfd,id=mem,size=1G,share=on",
		"-numa", "node,memdev=mem",
		"-device", `{"driver":"vfio-user-pci","socket":{"type":"unix","path":"/run/d.sock"}}`,
	}, VFIOUserArgs("/run/d.sock", "1G"))
}

// TestBothVMMachine: a guest with both devices has the IOMMU machine, the
// vfio-user-pci device and the xHCI controller with usb-redir, and loads
// the VFIO modules and the xHCI driver.
func TestBothVMMachine(t *testing.T) {
	cfg := BothVMConfig{Socket: "/run/d.sock", USBSocket: "/run/u.sock", Mode: "bench", Params: []string{"ycq.rounds=3"},
		Memory: "1G", CPUs: 2}
	bc := cfg.bootConfig(nil)
	require.Equal(t, VFIOUserMachine, bc.Machine)
	require.Equal(t, "1G", bc.Memory)
	require.Equal(t, []string{"intel_iommu=on,sp_off", "iommu=nopt", "no_timer_check", "ycq.mode=bench", "ycq.rounds=3"}, bc.Append)
	want := append([]string{"-smp", "2"}, VFIOUserArgs("/run/d.sock", "1G")...)
	require.Equal(t, append(want, USBArgs("/run/u.sock")...), bc.Args)
	require.Equal(t, []string{"vfio", "vfio_iommu_type1", "irqbypass", "vfio-pci-core", "vfio-pci", "xhci-pci"}, BothGuestModules())
}
