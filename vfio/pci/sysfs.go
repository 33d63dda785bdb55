package pci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	upci "github.com/u-root/u-root/pkg/pci"
)

// VFIODriver is the name of the kernel driver that hands devices to VFIO.
const VFIODriver = "vfio-pci"

// DefaultSysRoot is where sysfs is mounted.
const DefaultSysRoot = "/sys"

// Peer is another member of a device's IOMMU group.
type Peer struct {
	Addr   string // sysfs name; a PCI address for PCI devices
	Driver string // bound driver, "" when none
}

// Device is one PCI function as sysfs shows it.
type Device struct {
	Addr       string // "0000:03:00.0"
	VendorID   uint16
	DeviceID   uint16
	VendorName string // from the PCI ID table; the hex id when unknown
	DeviceName string
	Class      uint32 // 24 bits: base class, subclass, programming interface
	ClassName  string // "" when unknown
	Driver     string // bound driver, "" when none
	Override   string // driver_override, "" when unset
	IOMMUGroup int    // -1 when the device is in no group
	GroupPeers []Peer // the other members of the group, by address
	// Bindable says whether Bind can hand the device to vfio-pci now;
	// Reason says why not. A device already on vfio-pci is bindable.
	Bindable bool
	Reason   string
}

// IsBridge reports whether the device is a PCI-to-PCI or CardBus bridge,
// which vfio-pci refuses to drive.
func (d *Device) IsBridge() bool {
	sub := d.Class >> 8
	return sub == 0x0604 || sub == 0x0607
}

// GroupBlockers returns the group members whose drivers keep the group
// from being viable for VFIO: every member must be unbound, on a VFIO
// driver, or on one of the few drivers that leave DMA to their owner
// (pci-stub, pcieport). The kernel has the last word (it reports the group
// not viable); this is the sysfs view of the same rule.
func (d *Device) GroupBlockers() []Peer {
	var out []Peer
	for _, p := range d.GroupPeers {
		if !groupFriendly(p.Driver) {
			out = append(out, p)
		}
	}
	return out
}

func groupFriendly(driver string) bool {
	switch driver {
	case "", "pci-stub", "pcieport":
		return true
	}
	return strings.Contains(driver, "vfio")
}

// Bus is the PCI bus under one sysfs root. The zero value uses /sys and
// plain writes.
type Bus struct {
	// Root is the sysfs mount point; DefaultSysRoot when empty.
	Root string
	// WriteAttr writes value to the sysfs attribute at path. Nil means
	// open it write-only and write value in one call, as the kernel
	// expects. Tests substitute a function that also plays the kernel's
	// part (package pcitest).
	WriteAttr func(path, value string) error
	// Settle bounds how long Bind and Unbind wait for a driver to appear
	// after a probe; 1 s when zero. PCI probing is normally synchronous,
	// so the wait only matters for drivers that probe asynchronously.
	Settle time.Duration
}

// List returns every PCI device under sysRoot, sorted by address.
func List(sysRoot string) ([]Device, error) { return (&Bus{Root: sysRoot}).List() }

// Lookup returns the device at addr under sysRoot. Nothing in this module
// calls it outside tests; it stays as List's one-device counterpart, for a
// caller that reads sysfs without a Bus.
func Lookup(sysRoot, addr string) (Device, error) { return (&Bus{Root: sysRoot}).Lookup(addr) }

func (b *Bus) root() string {
	if b.Root == "" {
		return DefaultSysRoot
	}
	return b.Root
}

func (b *Bus) devicesDir() string        { return filepath.Join(b.root(), "bus", "pci", "devices") }
func (b *Bus) driversDir() string        { return filepath.Join(b.root(), "bus", "pci", "drivers") }
func (b *Bus) driversProbe() string      { return filepath.Join(b.root(), "bus", "pci", "drivers_probe") }
func (b *Bus) groupsDir() string         { return filepath.Join(b.root(), "kernel", "iommu_groups") }
func (b *Bus) deviceDir(a string) string { return filepath.Join(b.devicesDir(), a) }

// DeviceDir is the sysfs directory of the device at addr (which must
// already be in ParseAddr's spelling).
func (b *Bus) DeviceDir(addr string) string { return b.deviceDir(addr) }

// IOMMUEnabled reports whether the kernel has an IOMMU with at least one
// group. Without one, VFIO (other than the unsafe no-IOMMU mode, which ycq
// does not use) cannot work.
func (b *Bus) IOMMUEnabled() bool {
	ents, err := os.ReadDir(b.groupsDir())
	return err == nil && len(ents) > 0
}

// VFIOLoaded reports whether the vfio-pci driver is registered.
func (b *Bus) VFIOLoaded() bool {
	st, err := os.Stat(filepath.Join(b.driversDir(), VFIODriver))
	return err == nil && st.IsDir()
}

// List returns every PCI device, sorted by address.
func (b *Bus) List() ([]Device, error) {
	ents, err := os.ReadDir(b.devicesDir())
	if err != nil {
		return nil, fmt.Errorf("pci: list devices: %w", err)
	}
	var out []Device
	for _, e := range ents {
		d, err := b.Lookup(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(x, y Device) int { return strings.Compare(x.Addr, y.Addr) })
	return out, nil
}

// Lookup returns the device at addr.
//
// Identification comes from u-root's pkg/pci: OnePCI parses a device
// directory (vendor, device, class, resources) wherever it is, and Lookup
// names vendors and devices from its ID table. u-root's bus reader is not
// used because it always reads /sys/bus/pci/devices, and this package
// takes the sysfs root as a parameter so tests can use a fake tree.
func (b *Bus) Lookup(addr string) (Device, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return Device{}, err
	}
	dir := b.deviceDir(a)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Device{}, fmt.Errorf("%w: %s is not under %s (lspci -D lists the addresses)", ErrNoDevice, a, b.devicesDir())
		}
		return Device{}, fmt.Errorf("pci: %s: %w", a, err)
	}
	p, err := upci.OnePCI(dir)
	if err != nil {
		return Device{}, fmt.Errorf("pci: read %s: %w", a, err)
	}
	d := Device{
		Addr:       a,
		VendorID:   p.Vendor,
		DeviceID:   p.Device,
		Class:      p.Class,
		IOMMUGroup: -1,
	}
	d.VendorName, d.DeviceName = upci.Lookup(upci.IDs, p.Vendor, p.Device)
	d.ClassName = upci.ClassNames[p.Class]
	if d.ClassName == "" {
		d.ClassName = upci.ClassNames[p.Class&^0xff] // the programming interface is rarely named
	}
	if d.Driver, err = linkBase(filepath.Join(dir, "driver")); err != nil {
		return Device{}, fmt.Errorf("pci: %s: driver: %w", a, err)
	}
	d.Override = readOverride(filepath.Join(dir, "driver_override"))
	group, err := linkBase(filepath.Join(dir, "iommu_group"))
	if err != nil {
		return Device{}, fmt.Errorf("pci: %s: iommu_group: %w", a, err)
	}
	if group != "" {
		n, err := strconv.Atoi(group)
		if err != nil || n < 0 {
			return Device{}, fmt.Errorf("pci: %s: iommu_group %q is not a group number", a, group)
		}
		d.IOMMUGroup = n
		if d.GroupPeers, err = b.groupPeers(n, a); err != nil {
			return Device{}, err
		}
	}
	d.Reason = b.notBindable(&d)
	d.Bindable = d.Reason == ""
	return d, nil
}

// groupPeers lists the members of group n other than self.
func (b *Bus) groupPeers(n int, self string) ([]Peer, error) {
	dir := filepath.Join(b.groupsDir(), strconv.Itoa(n), "devices")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("pci: IOMMU group %d: %w", n, err)
	}
	var out []Peer
	for _, e := range ents {
		if e.Name() == self {
			continue
		}
		drv, err := linkBase(filepath.Join(dir, e.Name(), "driver"))
		if err != nil {
			return nil, fmt.Errorf("pci: IOMMU group %d: %s: %w", n, e.Name(), err)
		}
		out = append(out, Peer{Addr: e.Name(), Driver: drv})
	}
	return out, nil
}

// notBindable says why Bind would refuse d, or "".
func (b *Bus) notBindable(d *Device) string {
	switch {
	case d.Driver == VFIODriver:
		return ""
	case d.IsBridge():
		return "a PCI bridge; vfio-pci drives endpoints only"
	case d.IOMMUGroup < 0 && !b.IOMMUEnabled():
		return "no IOMMU: enable VT-d/AMD-Vi in firmware and boot with intel_iommu=on (or amd_iommu=on)"
	case d.IOMMUGroup < 0:
		return "in no IOMMU group"
	case !b.VFIOLoaded():
		return "vfio-pci is not loaded: modprobe vfio-pci"
	}
	return ""
}

// linkBase returns the last element of the symlink at path, or "" when
// there is no link.
func linkBase(path string) (string, error) {
	t, err := os.Readlink(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return filepath.Base(t), nil
}

// readOverride reads driver_override, which the kernel prints as "(null)"
// when unset.
func readOverride(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if s == "(null)" {
		return ""
	}
	return s
}
