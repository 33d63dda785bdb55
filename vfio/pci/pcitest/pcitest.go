// Package pcitest builds fake sysfs and /dev trees in a directory, shaped
// like the kernel's, for tests of PCI discovery, binding and VFIO opening.
//
// A Tree lays out what the code under test reads: device directories under
// sys/devices with vendor, device, class, irq, resource and
// driver_override files and driver and iommu_group symlinks; their links in
// sys/bus/pci/devices; driver directories with bind and unbind files; IOMMU
// groups; drivers_probe; and, on request, /dev/vfio nodes (plain files,
// so opening them works and the first ioctl fails with ENOTTY).
//
// Writing to a plain file does nothing by itself, so Tree.Write plays the
// kernel's part for the attributes binding uses: it moves driver symlinks
// the way unbind, bind and drivers_probe would. Pass it as pci.Bus.WriteAttr.
// It models the rules binding depends on, not the whole driver core.
//
// Setup methods panic on failure: a fixture that cannot be built means the
// temporary directory is broken, not that the code under test is wrong.
package pcitest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Dev describes one fake PCI function.
type Dev struct {
	Addr   string // "0000:00:03.0"
	Vendor uint16
	Device uint16
	Class  uint32 // 24-bit class code, 0x020000 for Ethernet
	Driver string // driver bound now; "" for none
	// Native is the driver drivers_probe binds when no override is set;
	// it defaults to Driver.
	Native string
	Group  int // IOMMU group; -1 for none
}

// Tree is a fake sysfs root (Sys) and /dev root (Dev).
type Tree struct {
	Sys string
	Dev string

	mu     sync.Mutex
	native map[string]string
	refuse map[string]bool
	deny   bool
	writes []string
}

// New makes an empty tree under dir: a PCI bus with no devices and no
// drivers, an empty iommu_groups directory and an empty /dev/vfio.
func New(dir string) *Tree {
	t := &Tree{
		Sys:    filepath.Join(dir, "sys"),
		Dev:    filepath.Join(dir, "dev"),
		native: map[string]string{},
		refuse: map[string]bool{},
	}
	must(os.MkdirAll(filepath.Join(t.Sys, "bus", "pci", "devices"), 0o755))
	must(os.MkdirAll(filepath.Join(t.Sys, "bus", "pci", "drivers"), 0o755))
	must(os.MkdirAll(filepath.Join(t.Sys, "kernel", "iommu_groups"), 0o755))
	must(os.MkdirAll(filepath.Join(t.Sys, "devices"), 0o755))
	must(os.MkdirAll(filepath.Join(t.Dev, "vfio"), 0o755))
	must(os.WriteFile(filepath.Join(t.Sys, "bus", "pci", "drivers_probe"), nil, 0o200))
	return t
}

func must(err error) {
	if err != nil {
		panic("pcitest: " + err.Error())
	}
}

// AddDriver registers a driver directory with bind, unbind and new_id.
func (t *Tree) AddDriver(name string) {
	dir := t.driverDir(name)
	must(os.MkdirAll(dir, 0o755))
	for _, f := range []string{"bind", "unbind", "new_id", "remove_id"} {
		must(os.WriteFile(filepath.Join(dir, f), nil, 0o200))
	}
}

// RemoveDriver unregisters a driver, as rmmod would; bound devices lose it.
func (t *Tree) RemoveDriver(name string) {
	ents, _ := os.ReadDir(filepath.Join(t.Sys, "bus", "pci", "devices"))
	for _, e := range ents {
		if t.Driver(e.Name()) == name {
			must(t.unbind(e.Name(), name))
		}
	}
	must(os.RemoveAll(t.driverDir(name)))
}

// AddDevice creates a device, its driver link (registering the driver if
// needed) and its IOMMU group membership.
func (t *Tree) AddDevice(d Dev) {
	real := t.realDir(d.Addr)
	must(os.MkdirAll(real, 0o755))
	files := map[string]string{
		"vendor":          fmt.Sprintf("0x%04x\n", d.Vendor),
		"device":          fmt.Sprintf("0x%04x\n", d.Device),
		"class":           fmt.Sprintf("0x%06x\n", d.Class),
		"irq":             "11\n",
		"resource":        "0x00000000febc0000 0x00000000febdffff 0x0000000000040200\n0x0000000000000000 0x0000000000000000 0x0000000000000000\n",
		"driver_override": "(null)\n",
	}
	for name, v := range files {
		must(os.WriteFile(filepath.Join(real, name), []byte(v), 0o644))
	}
	rel, err := filepath.Rel(filepath.Join(t.Sys, "bus", "pci", "devices"), real)
	must(err)
	must(os.Symlink(rel, filepath.Join(t.Sys, "bus", "pci", "devices", d.Addr)))
	if d.Group >= 0 {
		gdir := filepath.Join(t.Sys, "kernel", "iommu_groups", fmt.Sprint(d.Group), "devices")
		must(os.MkdirAll(gdir, 0o755))
		rel, err := filepath.Rel(gdir, real)
		must(err)
		must(os.Symlink(rel, filepath.Join(gdir, d.Addr)))
		grel, err := filepath.Rel(real, filepath.Dir(gdir))
		must(err)
		must(os.Symlink(grel, filepath.Join(real, "iommu_group")))
	}
	native := d.Native
	if native == "" {
		native = d.Driver
	}
	t.mu.Lock()
	t.native[d.Addr] = native
	t.mu.Unlock()
	if d.Driver != "" {
		if _, err := os.Stat(t.driverDir(d.Driver)); err != nil {
			t.AddDriver(d.Driver)
		}
		must(t.bind(d.Addr, d.Driver))
	}
}

// AddVFIONodes creates /dev/vfio/vfio and /dev/vfio/<group> for each group.
func (t *Tree) AddVFIONodes(groups ...int) {
	must(os.WriteFile(filepath.Join(t.Dev, "vfio", "vfio"), nil, 0o666))
	for _, g := range groups {
		must(os.WriteFile(filepath.Join(t.Dev, "vfio", fmt.Sprint(g)), nil, 0o600))
	}
}

// AddCdev gives the device a VFIO character device, vfio<n>: the sysfs
// vfio-dev entry, /dev/vfio/devices/vfio<n> and /dev/iommu.
func (t *Tree) AddCdev(addr string, n int) {
	name := fmt.Sprintf("vfio%d", n)
	must(os.MkdirAll(filepath.Join(t.realDir(addr), "vfio-dev", name), 0o755))
	must(os.MkdirAll(filepath.Join(t.Dev, "vfio", "devices"), 0o755))
	must(os.WriteFile(filepath.Join(t.Dev, "vfio", "devices", name), nil, 0o600))
	must(os.WriteFile(filepath.Join(t.Dev, "iommu"), nil, 0o666))
}

// Refuse makes the driver's probe fail, as a driver that rejects a device
// does: bind and drivers_probe leave the device unbound.
func (t *Tree) Refuse(driver string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refuse[driver] = true
}

// Deny makes every Write fail with EACCES, as sysfs does for non-root.
func (t *Tree) Deny() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deny = true
}

// Writes returns the writes made through Write, as "path-in-sys=value".
func (t *Tree) Writes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.writes...)
}

// Driver returns the driver the device is bound to, "" for none.
func (t *Tree) Driver(addr string) string {
	l, err := os.Readlink(filepath.Join(t.realDir(addr), "driver"))
	if err != nil {
		return ""
	}
	return filepath.Base(l)
}

// Override returns the device's driver_override, "" when unset.
func (t *Tree) Override(addr string) string {
	b, err := os.ReadFile(filepath.Join(t.realDir(addr), "driver_override"))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if s == "(null)" {
		return ""
	}
	return s
}

// Write writes value to the attribute at path and does what the kernel
// would: driver_override is stored (a lone newline clears it); an address
// written to drivers/<d>/unbind unbinds the device from d (ENODEV if it is
// not bound there); to drivers/<d>/bind binds it (EBUSY if bound, ENODEV if
// an override names another driver or d refuses it); to drivers_probe
// binds an unbound device to its override, or else to its native driver,
// if that driver is registered and does not refuse it. Other paths are
// written as plain files.
func (t *Tree) Write(path, value string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	rel, err := filepath.Rel(t.Sys, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("pcitest: %s is outside the fake sysfs", path)
	}
	t.writes = append(t.writes, rel+"="+value)
	if t.deny {
		return &os.PathError{Op: "open", Path: path, Err: syscall.EACCES}
	}
	el := strings.Split(filepath.ToSlash(rel), "/")
	arg := strings.TrimSpace(value)
	switch {
	case len(el) == 5 && el[0] == "bus" && el[2] == "devices" && el[4] == "driver_override":
		if arg == "" {
			arg = "(null)"
		}
		return t.writeFile(path, arg+"\n")
	case len(el) == 5 && el[0] == "bus" && el[2] == "drivers" && el[4] == "unbind":
		if t.Driver(arg) != el[3] {
			return &os.PathError{Op: "write", Path: path, Err: syscall.ENODEV}
		}
		return t.unbind(arg, el[3])
	case len(el) == 5 && el[0] == "bus" && el[2] == "drivers" && el[4] == "bind":
		switch {
		case t.Driver(arg) != "":
			return &os.PathError{Op: "write", Path: path, Err: syscall.EBUSY}
		case t.refuse[el[3]], t.Override(arg) != "" && t.Override(arg) != el[3]:
			return &os.PathError{Op: "write", Path: path, Err: syscall.ENODEV}
		}
		return t.bind(arg, el[3])
	case len(el) == 3 && el[0] == "bus" && el[2] == "drivers_probe":
		if _, err := os.Stat(t.realDir(arg)); err != nil {
			return &os.PathError{Op: "write", Path: path, Err: syscall.EINVAL}
		}
		if t.Driver(arg) != "" {
			return nil
		}
		drv := t.Override(arg)
		if drv == "" {
			drv = t.native[arg]
		}
		if drv == "" || t.refuse[drv] {
			return nil
		}
		if _, err := os.Stat(t.driverDir(drv)); err != nil {
			return nil
		}
		return t.bind(arg, drv)
	}
	return t.writeFile(path, value)
}

func (t *Tree) writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	return errors.Join(err, f.Close())
}

func (t *Tree) bind(addr, driver string) error {
	real := t.realDir(addr)
	rel, err := filepath.Rel(real, t.driverDir(driver))
	if err != nil {
		return err
	}
	if err := os.Symlink(rel, filepath.Join(real, "driver")); err != nil {
		return err
	}
	back, err := filepath.Rel(t.driverDir(driver), real)
	if err != nil {
		return err
	}
	return os.Symlink(back, filepath.Join(t.driverDir(driver), addr))
}

func (t *Tree) unbind(addr, driver string) error {
	return errors.Join(
		os.Remove(filepath.Join(t.realDir(addr), "driver")),
		os.Remove(filepath.Join(t.driverDir(driver), addr)))
}

func (t *Tree) driverDir(name string) string {
	return filepath.Join(t.Sys, "bus", "pci", "drivers", name)
}

// realDir is where the device's directory lives, under sys/devices, as
// /sys/devices/pci0000:00/0000:00:03.0 does.
func (t *Tree) realDir(addr string) string {
	host := "pci0000:00"
	if i := strings.LastIndex(addr, ":"); i > 0 {
		host = "pci" + addr[:i]
	}
	return filepath.Join(t.Sys, "devices", host, addr)
}
