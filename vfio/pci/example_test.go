package pci_test

import (
	"fmt"
	"os"

	"github.com/ycq-dev/ycq/vfio/pci"
	"github.com/ycq-dev/ycq/vfio/pci/pcitest"
)

// Binding a NIC to vfio-pci and back, on a fake sysfs tree whose writes
// pcitest turns into what the kernel would do.
func Example() {
	dir, err := os.MkdirTemp("", "pci-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	tr := pcitest.New(dir)
	tr.AddDriver(pci.VFIODriver)
	tr.AddDevice(pcitest.Dev{Addr: "0000:00:03.0", Vendor: 0x8086, Device: 0x100e, Class: 0x020000, Driver: "e1000", Group: 7})

	bus := &pci.Bus{Root: tr.Sys, WriteAttr: tr.Write}
	d, _ := bus.Lookup("00:03.0")
	fmt.Printf("%s %04x:%04x %s group %d driver %s\n", d.Addr, d.VendorID, d.DeviceID, d.VendorName, d.IOMMUGroup, d.Driver)

	prev, err := bus.Bind(d.Addr)
	fmt.Println("was", prev, "now", tr.Driver(d.Addr), err)
	now, err := bus.Unbind(d.Addr)
	fmt.Println("back on", now, err)
	// Output:
	// 0000:00:03.0 8086:100e Intel Corporation group 7 driver e1000
	// was e1000 now vfio-pci <nil>
	// back on e1000 <nil>
}
