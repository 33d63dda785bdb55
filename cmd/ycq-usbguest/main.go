//go:build linux

// Command ycq-usbguest is the QEMU guest's /init for the USB tier: it
// loads the xHCI modules, waits for the USB devices to show in usbfs, and,
// depending on ycq.mode on the kernel command line:
//
//	probe  list the USB devices libusb enumerates (the xHCI root hubs, and
//	       the usbredir device if one is attached)
//
// Every mode ends with one machine-readable line, "YCQ-RESULT {json}", and
// powers off. It is built with cgo (gousb, libusb): qemu.GoBuildCgo puts
// the shared libraries it needs into the initramfs.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/gousb"

	"github.com/ycq-dev/ycq/qemu/guest"
)

// result is the YCQ-RESULT line.
type result struct {
	Mode    string   `json:"mode"`
	Modules int      `json:"modules"`
	Devices []string `json:"devices"`
	Error   string   `json:"error,omitempty"`
}

func main() {
	guest.Main(func() error {
		res := result{Mode: param("ycq.mode", "probe")}
		err := run(&res)
		if err != nil {
			res.Error = err.Error()
		}
		b, _ := json.Marshal(res)
		fmt.Printf("YCQ-RESULT %s\n", b)
		return err
	})
}

func run(res *result) error {
	mods, err := guest.LoadModules(guest.ModuleList)
	res.Modules = len(mods)
	if err != nil {
		return err
	}
	switch res.Mode {
	case "probe":
		return probe(res)
	default:
		return fmt.Errorf("unknown ycq.mode %q", res.Mode)
	}
}

// probe lists what libusb enumerates once the root hubs are there.
func probe(res *result) error {
	if err := waitUSB(30 * time.Second); err != nil {
		return err
	}
	ctx := gousb.NewContext()
	defer ctx.Close()
	_, err := ctx.OpenDevices(func(d *gousb.DeviceDesc) bool {
		res.Devices = append(res.Devices, fmt.Sprintf("%s:%s", d.Vendor, d.Product))
		return false
	})
	return err
}

// waitUSB waits until usbfs has a device node under /dev/bus/usb.
func waitUSB(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ents, _ := os.ReadDir("/dev/bus/usb")
		if len(ents) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no /dev/bus/usb after %v: is xhci-pci loaded and devtmpfs mounted?", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// param reads name=value from the kernel command line.
func param(name, def string) string {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return def
}
