package pci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Bind hands the device at addr to vfio-pci; see Bus.Bind.
func Bind(sysRoot, addr string) (previous string, err error) {
	return (&Bus{Root: sysRoot}).Bind(addr)
}

// Unbind gives the device at addr back to its own driver; see Bus.Unbind.
func Unbind(sysRoot, addr string) (now string, err error) {
	return (&Bus{Root: sysRoot}).Unbind(addr)
}

// Bind hands the device at addr to vfio-pci and returns the driver it was
// bound to before ("" for none, "vfio-pci" if it already was).
//
// It writes "vfio-pci" to the device's driver_override, unbinds it from
// its driver, asks the bus to probe it (drivers_probe) and checks that it
// ended on vfio-pci. driver_override binds this one device; the older
// new_id method would bind every device with the same ids. If the device
// does not end on vfio-pci, Bind clears the override, probes again so the
// original driver can take the device back, and returns ErrBindFailed.
//
// Nothing needs to be remembered for Unbind: clearing the override and
// probing again gives the device to the driver the kernel matches for it,
// which is the driver it had unless someone bound it by hand. Bind does
// not touch the other members of the IOMMU group; Device.GroupBlockers
// lists those that would keep the group from being usable.
func (b *Bus) Bind(addr string) (previous string, err error) {
	d, err := b.Lookup(addr)
	if err != nil {
		return "", err
	}
	if d.Driver == VFIODriver {
		return VFIODriver, nil
	}
	if err := b.checkBindable(&d); err != nil {
		return d.Driver, err
	}
	dir := b.deviceDir(d.Addr)
	if err := b.write(filepath.Join(dir, "driver_override"), VFIODriver); err != nil {
		return d.Driver, fmt.Errorf("bind %s: set driver_override: %w", d.Addr, err)
	}
	if d.Driver != "" {
		if err := b.write(filepath.Join(b.driversDir(), d.Driver, "unbind"), d.Addr); err != nil {
			err = fmt.Errorf("bind %s: unbind from %s: %w", d.Addr, d.Driver, err)
			return d.Driver, errors.Join(err, b.restore(d.Addr))
		}
	}
	if err := b.write(b.driversProbe(), d.Addr); err != nil {
		err = fmt.Errorf("bind %s: drivers_probe: %w", d.Addr, err)
		return d.Driver, errors.Join(err, b.restore(d.Addr))
	}
	now, err := b.waitDriver(d.Addr, VFIODriver)
	if err != nil {
		return d.Driver, errors.Join(err, b.restore(d.Addr))
	}
	if now != VFIODriver {
		err := fmt.Errorf("%w: %s is on %s after the probe, not %s; the kernel log (dmesg) says why",
			ErrBindFailed, d.Addr, driverName(now), VFIODriver)
		return d.Driver, errors.Join(err, b.restore(d.Addr))
	}
	return d.Driver, nil
}

// Unbind takes the device at addr from vfio-pci and returns the driver it
// ended on after a probe ("" when no driver claims it). A device that is
// not on vfio-pci is left on its driver; a vfio-pci driver_override is
// cleared either way.
func (b *Bus) Unbind(addr string) (now string, err error) {
	d, err := b.Lookup(addr)
	if err != nil {
		return "", err
	}
	dir := b.deviceDir(d.Addr)
	if d.Override == VFIODriver {
		if err := b.write(filepath.Join(dir, "driver_override"), "\n"); err != nil {
			return d.Driver, fmt.Errorf("unbind %s: clear driver_override: %w", d.Addr, err)
		}
	}
	if d.Driver != VFIODriver && d.Driver != "" {
		return d.Driver, nil // on a driver of its own already
	}
	if d.Driver == VFIODriver {
		if err := b.write(filepath.Join(b.driversDir(), VFIODriver, "unbind"), d.Addr); err != nil {
			return d.Driver, fmt.Errorf("unbind %s: from %s: %w", d.Addr, VFIODriver, err)
		}
	}
	if err := b.write(b.driversProbe(), d.Addr); err != nil {
		return "", fmt.Errorf("unbind %s: drivers_probe: %w", d.Addr, err)
	}
	return b.waitDriver(d.Addr, "")
}

func (b *Bus) checkBindable(d *Device) error {
	switch {
	case d.IsBridge():
		return fmt.Errorf("%w: %s is a PCI bridge (class %06x); vfio-pci drives endpoints only", ErrNotBindable, d.Addr, d.Class)
	case d.IOMMUGroup < 0 && !b.IOMMUEnabled():
		return fmt.Errorf("%w: %w: %s: %s has no IOMMU groups; enable VT-d/AMD-Vi in firmware and boot with intel_iommu=on (or amd_iommu=on)",
			ErrNoIOMMU, ErrNoIOMMUGroup, d.Addr, b.groupsDir())
	case d.IOMMUGroup < 0:
		return fmt.Errorf("%w: %s has no iommu_group link; the IOMMU does not cover it", ErrNoIOMMUGroup, d.Addr)
	case !b.VFIOLoaded():
		return fmt.Errorf("%w: no %s; run: modprobe vfio-pci", ErrVFIONotLoaded, filepath.Join(b.driversDir(), VFIODriver))
	}
	return nil
}

// restore undoes a failed Bind: clear the override and probe, so the
// device's own driver can take it back.
func (b *Bus) restore(addr string) error {
	var errs []error
	if err := b.write(filepath.Join(b.deviceDir(addr), "driver_override"), "\n"); err != nil {
		errs = append(errs, fmt.Errorf("restore %s: clear driver_override: %w", addr, err))
	}
	if err := b.write(b.driversProbe(), addr); err != nil {
		errs = append(errs, fmt.Errorf("restore %s: drivers_probe: %w", addr, err))
	}
	return errors.Join(errs...)
}

// waitDriver polls the device's driver link until it names want (or, with
// want "", any driver) or Settle passes, and returns the last driver seen.
func (b *Bus) waitDriver(addr, want string) (string, error) {
	settle := b.Settle
	if settle <= 0 {
		settle = time.Second
	}
	deadline := time.Now().Add(settle)
	link := filepath.Join(b.deviceDir(addr), "driver")
	for {
		now, err := linkBase(link)
		if err != nil {
			return "", fmt.Errorf("pci: %s: driver: %w", addr, err)
		}
		if (want == "" && now != "") || (want != "" && now == want) || !time.Now().Before(deadline) {
			return now, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// write performs one sysfs attribute write and turns a refusal into
// ErrPermission.
func (b *Bus) write(path, value string) error {
	w := b.WriteAttr
	if w == nil {
		w = writeAttr
	}
	err := w(path, value)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w: %w; run as root (binding changes drivers for the whole machine)", ErrPermission, err)
	}
	return err
}

// writeAttr writes value to a sysfs attribute in one write(2); the kernel
// parses each write on its own. O_TRUNC is ignored by sysfs and keeps a
// plain file (a test fixture) from keeping a longer old value's tail.
func writeAttr(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(value))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func driverName(d string) string {
	if d == "" {
		return "no driver"
	}
	return d
}
