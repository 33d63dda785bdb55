package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/ycq-dev/ycq/vfio/pci"
)

// hostBus is the PCI bus the host commands use; tests swap in a fake
// sysfs tree that plays the kernel's part.
var hostBus = func(sysRoot string) *pci.Bus { return &pci.Bus{Root: sysRoot} }

func hostFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	sys := fs.String("sys", pci.DefaultSysRoot, "where sysfs is mounted")
	return fs, sys
}

// hostList is `ycq host list`: every PCI function, its driver, IOMMU group
// and whether it can be bound to vfio-pci.
func hostList(args []string, stdout, stderr io.Writer) error {
	fs, sys := hostFlags("ycq host list", stderr)
	all := fs.Bool("all", false, "also list bridges and devices that cannot be bound")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	bus := hostBus(*sys)
	devs, err := bus.List()
	if err != nil {
		return err
	}
	if !bus.IOMMUEnabled() {
		fmt.Fprintln(stdout, "note: no IOMMU groups: enable the IOMMU (intel_iommu=on or amd_iommu=on) to use VFIO")
	}
	if !bus.VFIOLoaded() {
		fmt.Fprintln(stdout, "note: vfio-pci is not loaded: modprobe vfio-pci")
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tID\tCLASS\tDEVICE\tDRIVER\tGROUP\tVFIO")
	shown := 0
	for _, d := range devs {
		if !*all && d.IsBridge() {
			continue
		}
		group := "-"
		if d.IOMMUGroup >= 0 {
			group = fmt.Sprint(d.IOMMUGroup)
			if len(d.GroupPeers) > 0 {
				group += fmt.Sprintf(" (+%d)", len(d.GroupPeers))
			}
		}
		vfio := "bindable"
		switch {
		case d.Driver == "vfio-pci":
			vfio = "bound"
		case !d.Bindable:
			vfio = "no: " + d.Reason
		}
		driver := d.Driver
		if driver == "" {
			driver = "-"
		}
		name := strings.TrimSpace(d.VendorName + " " + d.DeviceName)
		fmt.Fprintf(tw, "%s\t%04x:%04x\t%06x\t%s\t%s\t%s\t%s\n", d.Addr, d.VendorID, d.DeviceID, d.Class, name, driver, group, vfio)
		shown++
	}
	tw.Flush()
	if shown == 0 {
		fmt.Fprintln(stdout, "no PCI devices")
	}
	return nil
}

// hostDeviceArgs parses the arguments of a command that takes one PCI
// address.
func hostDeviceArgs(name string, args []string, stderr io.Writer) (*pci.Bus, string, error) {
	fs, sys := hostFlags(name, stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, "usage: %s [-sys DIR] ADDR\n", name) }
	if err := fs.Parse(args); err != nil {
		return nil, "", usageError{err}
	}
	if fs.NArg() != 1 {
		return nil, "", usagef("want one PCI address, like 0000:03:00.0")
	}
	addr, err := pci.ParseAddr(fs.Arg(0))
	if err != nil {
		return nil, "", usageError{err}
	}
	return hostBus(*sys), addr, nil
}

// hostBind is `ycq host bind ADDR`: hand the device to vfio-pci.
func hostBind(args []string, stdout, stderr io.Writer) error {
	bus, addr, err := hostDeviceArgs("ycq host bind", args, stderr)
	if err != nil {
		return err
	}
	prev, err := bus.Bind(addr)
	if err != nil {
		return err
	}
	if prev == "" {
		prev = "no driver"
	}
	fmt.Fprintf(stdout, "%s: bound to vfio-pci (was on %s); `ycq host unbind %s` gives it back\n", addr, prev, addr)
	return nil
}

// hostUnbind is `ycq host unbind ADDR`: give the device back to its own
// driver.
func hostUnbind(args []string, stdout, stderr io.Writer) error {
	bus, addr, err := hostDeviceArgs("ycq host unbind", args, stderr)
	if err != nil {
		return err
	}
	now, err := bus.Unbind(addr)
	if err != nil {
		return err
	}
	if now == "" {
		now = "no driver"
	}
	fmt.Fprintf(stdout, "%s: released from vfio-pci, now on %s\n", addr, now)
	return nil
}
