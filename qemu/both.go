package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
)

// The two-device guest: the ycq device on vfio-user-pci behind the
// emulated IOMMU, as RunVM attaches it, and the ycq USB device on a
// qemu-xhci controller through usb-redir, as RunUSBVM attaches it, in one
// machine, so that one guest program can drive both and compare them
// (`ycq bench usb`).

// VFIOUserAppend are the kernel parameters a guest with a vfio-user-pci
// device needs: the emulated Intel IOMMU on (sp_off: it maps 4 KiB pages
// even for huge pages, so QEMU sends the device model a DMA_MAP per page,
// as it does for ordinary memory), no passthrough mode, and no IO-APIC
// timer check (under software emulation it can run too slowly to pass,
// and the kernel panics).
var VFIOUserAppend = []string{"intel_iommu=on,sp_off", "iommu=nopt", "no_timer_check"}

// VFIOUserMachine is the -machine value of a guest with the emulated
// IOMMU, which needs the split irqchip for interrupt remapping.
const VFIOUserMachine = "q35,kernel-irqchip=split"

// VFIOUserArgs are the QEMU arguments that attach the ycq device through
// vfio-user-pci to a device model serving on socket: the emulated Intel
// IOMMU, guest RAM of size memory in a shared memfd (the device model maps
// it), and the device.
func VFIOUserArgs(socket, memory string) []string {
	return []string{
		"-device", "intel-iommu,intremap=on,caching-mode=on",
		"-object", "memory-backend-memfd,id=mem,size=" + memory + ",share=on",
		"-numa", "node,memdev=mem",
		"-device", fmt.Sprintf(`{"driver":"vfio-user-pci","socket":{"type":"unix","path":%q}}`, socket),
	}
}

// BothVMConfig describes a guest with both devices: the ycq device on
// vfio-user-pci (its device model serving vfio-user on Socket) and the
// ycq USB device through usb-redir on qemu-xhci (its device model serving
// usbredir on USBSocket), and a cgo guest /init that loads the VFIO and
// the xHCI modules (GuestModules, then USBGuestModules).
type BothVMConfig struct {
	// Socket is where the ycq device model serves vfio-user.
	Socket string
	// USBSocket is where the usbredir peer listens; QEMU connects to it
	// at start, so it must be listening by then.
	USBSocket string
	// Mode is the guest's ycq.mode.
	Mode string
	// Params are more ycq.* kernel parameters.
	Params []string
	// Memory is the guest RAM, default 1G.
	Memory string
	// CPUs is the guest's vCPU count, default 2.
	CPUs int
	// Module is the ycq module's directory, found from the working
	// directory when empty.
	Module string
	// Init is the main package of the guest /init, relative to Module;
	// default DefaultUSBGuest.
	Init string
	// Console receives the serial console as it comes.
	Console io.Writer
}

// BothGuestModules are the kernel modules of a guest with both devices.
func BothGuestModules() []string { return slices.Concat(GuestModules, USBGuestModules) }

// bootConfig is the machine of cfg, with its files.
func (cfg BothVMConfig) bootConfig(files []File) BootConfig {
	args := append([]string{"-smp", fmt.Sprint(cfg.CPUs)}, VFIOUserArgs(cfg.Socket, cfg.Memory)...)
	return BootConfig{
		Files:   files,
		Machine: VFIOUserMachine,
		Memory:  cfg.Memory,
		Append:  slices.Concat(VFIOUserAppend, []string{"ycq.mode=" + cfg.Mode}, cfg.Params),
		Args:    append(args, USBArgs(cfg.USBSocket)...),
		Console: cfg.Console,
	}
}

// RunBothVM boots a guest with both devices and returns once it powered
// off, with its YCQ-RESULT line and table decoded, as RunUSBVM does. The
// guest's own failure is an error too.
func (e *Env) RunBothVM(ctx context.Context, cfg BothVMConfig) (*VMResult, error) {
	if cfg.Socket == "" || cfg.USBSocket == "" {
		return nil, errors.New("qemu: a guest with both devices needs the vfio-user and the usbredir sockets")
	}
	if cfg.Memory == "" {
		cfg.Memory = "1G"
	}
	if cfg.CPUs <= 0 {
		cfg.CPUs = 2
	}
	if cfg.Init == "" {
		cfg.Init = DefaultUSBGuest
	}
	module, err := orModuleDir(cfg.Module)
	if err != nil {
		return nil, err
	}
	files, err := e.cgoGuestFiles(ctx, module, cfg.Init, BothGuestModules())
	if err != nil {
		return nil, err
	}
	return e.runGuest(ctx, cfg.bootConfig(files))
}
