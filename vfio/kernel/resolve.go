package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/ycq-dev/ycq/vfio/pci"
)

// Backend chooses how Open reaches the device.
type Backend int

const (
	// Auto uses the group/container path when its device nodes exist,
	// and the iommufd/cdev path otherwise.
	Auto Backend = iota
	// Container: /dev/vfio/vfio and /dev/vfio/<group>, with the type1
	// IOMMU. Every kernel with VFIO has it unless built without
	// CONFIG_VFIO_GROUP.
	Container
	// IOMMUFD: /dev/iommu and /dev/vfio/devices/vfio<N> (Linux 6.6 or
	// newer with CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV).
	IOMMUFD
)

func (b Backend) String() string {
	switch b {
	case Auto:
		return "auto"
	case Container:
		return "container"
	case IOMMUFD:
		return "iommufd"
	}
	return "backend(" + strconv.Itoa(int(b)) + ")"
}

// Options tune Open.
type Options struct {
	// SysRoot is where sysfs is mounted; "/sys" when empty.
	SysRoot string
	// DevRoot is where device nodes live; "/dev" when empty.
	DevRoot string
	// Backend picks the group/container or iommufd path; Auto by default.
	Backend Backend
}

func (o Options) sysRoot() string {
	if o.SysRoot == "" {
		return pci.DefaultSysRoot
	}
	return o.SysRoot
}

func (o Options) devRoot() string {
	if o.DevRoot == "" {
		return "/dev"
	}
	return o.DevRoot
}

// plan is everything Open learns from sysfs and /dev before it opens a
// node or issues an ioctl.
type plan struct {
	addr    string
	dev     pci.Device
	backend Backend // Container or IOMMUFD
	// Container path.
	containerPath string
	groupPath     string
	// IOMMUFD path.
	iommuPath string
	cdevPath  string
}

var cdevName = regexp.MustCompile(`^vfio[0-9]+$`)

// resolve finds the device, checks what sysfs can tell about it (IOMMU,
// driver, group viability) and picks the backend and its device nodes.
// Its errors say what to do.
func resolve(addr string, opts Options) (*plan, error) {
	bus := &pci.Bus{Root: opts.sysRoot()}
	d, err := bus.Lookup(addr)
	if err != nil {
		return nil, err
	}
	a := d.Addr
	if d.IOMMUGroup < 0 {
		if !bus.IOMMUEnabled() {
			return nil, fmt.Errorf("%w: %w: %s: %s has no groups; enable VT-d/AMD-Vi in firmware and boot with intel_iommu=on (or amd_iommu=on)",
				ErrNoIOMMU, ErrNoIOMMUGroup, a, filepath.Join(opts.sysRoot(), "kernel", "iommu_groups"))
		}
		return nil, fmt.Errorf("%w: %s has no iommu_group link; the IOMMU does not cover it", ErrNoIOMMUGroup, a)
	}
	if !isVFIODriver(d.Driver) {
		switch {
		case !bus.VFIOLoaded():
			return nil, fmt.Errorf("%w: %s is on %s; run: modprobe vfio-pci && ycq host bind %s",
				ErrVFIONotLoaded, a, driverName(d.Driver), a)
		case d.Driver == "":
			return nil, fmt.Errorf("%w: %s has no driver; run: ycq host bind %s", ErrNotVFIO, a, a)
		default:
			return nil, fmt.Errorf("%w: %s is bound to %s; run: ycq host bind %s", ErrNotVFIO, a, d.Driver, a)
		}
	}
	if bl := d.GroupBlockers(); len(bl) > 0 {
		return nil, groupNotViable(&d, bl)
	}

	p := &plan{addr: a, dev: d}
	dev := opts.devRoot()
	group := strconv.Itoa(d.IOMMUGroup)
	p.containerPath = filepath.Join(dev, "vfio", "vfio")
	p.groupPath = filepath.Join(dev, "vfio", group)
	containerErr := checkNodes(p.containerPath, p.groupPath)
	if containerErr != nil && exists(filepath.Join(dev, "vfio", "noiommu-"+group)) {
		containerErr = fmt.Errorf("%w: group %s of %s is a no-IOMMU group (/dev/vfio/noiommu-%s); ycq needs a real IOMMU: boot with intel_iommu=on (or amd_iommu=on) and reload vfio without enable_unsafe_noiommu_mode",
			ErrUnsupported, group, a, group)
	}

	cdevErr := func() error {
		ents, err := os.ReadDir(filepath.Join(bus.DeviceDir(a), "vfio-dev"))
		if err != nil {
			return fmt.Errorf("%w: %s has no vfio-dev entry in sysfs (a kernel without CONFIG_VFIO_DEVICE_CDEV): %w", ErrUnsupported, a, err)
		}
		if len(ents) != 1 || !cdevName.MatchString(ents[0].Name()) {
			return fmt.Errorf("%w: %s/vfio-dev should hold one vfioN entry, has %d", ErrBadInfo, a, len(ents))
		}
		p.iommuPath = filepath.Join(dev, "iommu")
		p.cdevPath = filepath.Join(dev, "vfio", "devices", ents[0].Name())
		if !exists(p.iommuPath) {
			return fmt.Errorf("%w: no %s (a kernel without CONFIG_IOMMUFD, or the iommufd module not loaded: modprobe iommufd)", ErrUnsupported, p.iommuPath)
		}
		return checkNodes(p.cdevPath)
	}

	switch opts.Backend {
	case Auto:
		if containerErr == nil {
			p.backend = Container
			return p, nil
		}
		if cerr := cdevErr(); cerr == nil {
			p.backend = IOMMUFD
			return p, nil
		}
		return nil, containerErr
	case Container:
		if containerErr != nil {
			return nil, containerErr
		}
		p.backend = Container
		return p, nil
	case IOMMUFD:
		if err := cdevErr(); err != nil {
			return nil, err
		}
		p.backend = IOMMUFD
		return p, nil
	}
	return nil, fmt.Errorf("vfio: unknown backend %v", opts.Backend)
}

func isVFIODriver(name string) bool {
	return name == pci.VFIODriver || strings.HasSuffix(name, "vfio_pci") || strings.HasSuffix(name, "vfio-pci")
}

func driverName(d string) string {
	if d == "" {
		return "no driver"
	}
	return d
}

// groupNotViable explains which group members keep VFIO from taking the
// group.
func groupNotViable(d *pci.Device, blockers []pci.Peer) error {
	var who []string
	for _, p := range blockers {
		who = append(who, fmt.Sprintf("%s (on %s)", p.Addr, driverName(p.Driver)))
	}
	var all []string
	for _, p := range d.GroupPeers {
		all = append(all, p.Addr)
	}
	return fmt.Errorf("%w: IOMMU group %d of %s also holds %s; every device of a group must be on vfio-pci or unbound: run ycq host bind for %s",
		ErrGroupNotViable, d.IOMMUGroup, d.Addr, strings.Join(who, ", "), strings.Join(all, " "))
}

// checkNodes says what is wrong with device nodes that should exist.
func checkNodes(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) && filepath.Base(p) == "vfio" && filepath.Base(filepath.Dir(p)) == "vfio" {
				return fmt.Errorf("%w: no %s; run: modprobe vfio-pci", ErrVFIONotLoaded, p)
			}
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("vfio: no device node %s although the device is on vfio-pci; is devtmpfs mounted on /dev? %w", p, err)
			}
			return fmt.Errorf("vfio: %w", err)
		}
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// openNode opens a VFIO or iommufd device node read-write and explains
// the usual refusals.
func openNode(path string) (int, error) {
	fd, err := openFile(path)
	if err != nil {
		return -1, nodeError(path, err)
	}
	return fd, nil
}

func nodeError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w: open %s: %w; run as root, or give your user the node (chown $USER %s) and enough locked memory (ulimit -l)",
			ErrPermission, path, err, path)
	case errors.Is(err, syscall.EBUSY):
		return fmt.Errorf("%w: open %s: %w; another process (QEMU, another ycq) holds it", ErrBusy, path, err)
	}
	return fmt.Errorf("vfio: open %s: %w", path, err)
}
