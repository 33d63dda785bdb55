package kernel_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/ycq-dev/ycq/vfio/kernel"
	"github.com/ycq-dev/ycq/vfio/pci"
	"github.com/ycq-dev/ycq/vfio/pci/pcitest"
)

// Open checks sysfs before it touches the kernel and says what to do; here
// on a fake tree, a NIC still on its own driver.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "kernel-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	tr := pcitest.New(dir)
	tr.AddDriver(pci.VFIODriver)
	tr.AddDevice(pcitest.Dev{Addr: "0000:00:03.0", Vendor: 0x8086, Device: 0x100e, Class: 0x020000, Driver: "e1000", Group: 7})
	tr.AddVFIONodes(7)

	_, err = kernel.Open("0000:00:03.0", kernel.Options{SysRoot: tr.Sys, DevRoot: tr.Dev})
	fmt.Println(errors.Is(err, kernel.ErrNotVFIO))
	fmt.Println(err)
	// Output:
	// true
	// vfio: device not bound to vfio-pci: 0000:00:03.0 is bound to e1000; run: ycq host bind 0000:00:03.0
}
