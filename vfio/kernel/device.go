package kernel

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/pci"
)

// Bounds on what device info may announce; vfio-pci has 9 regions (plus a
// few device-specific ones) and 5 interrupt types.
const (
	maxRegions = 256
	maxIRQs    = 64
	// defaultPageSize is the IOMMU page size assumed when the kernel
	// reports none.
	defaultPageSize = 4096
)

// Device is a PCI device opened through kernel VFIO. It implements
// vfio.Device.
type Device struct {
	addr    string
	backend Backend
	group   int

	// mu guards the descriptors against Close: every method that uses one
	// holds mu for reading, so Close (which holds it for writing) cannot
	// close a descriptor whose number another goroutine is about to use.
	mu          sync.RWMutex
	closed      bool
	devFD       int
	groupFD     int
	containerFD int
	iommuFD     int
	ioas        uint32

	// Set by Open, read-only afterwards.
	info    vfio.DeviceInfo
	regions []regionSlot
	irqs    []irqSlot
	ranges  []IOVARange
	pgsizes uint64

	// dmaMu guards dma, the live DMA mappings (IOVA to size). Taken
	// after mu.
	dmaMu sync.Mutex
	dma   map[vfio.IOVA]uint64

	// mapMu guards mappings, the live region mappings.
	mapMu    sync.Mutex
	mappings map[*mapping]struct{}
}

type regionSlot struct {
	desc regionDesc
	err  error // the region could not be queried
}

type irqSlot struct {
	info vfio.IRQInfo
	err  error
}

var _ vfio.Device = (*Device)(nil)

func newDevice(addr string) *Device {
	return &Device{
		addr:        addr,
		group:       -1,
		devFD:       -1,
		groupFD:     -1,
		containerFD: -1,
		iommuFD:     -1,
		dma:         map[vfio.IOVA]uint64{},
		mappings:    map[*mapping]struct{}{},
	}
}

// Open opens the PCI device at addr (such as "0000:03:00.0"), which must
// be bound to vfio-pci (package pci, or `ycq host bind`). Before it opens
// anything it checks, from sysfs, that there is an IOMMU, that the device
// is on vfio-pci and that its IOMMU group holds no device on another
// driver; each failure says what to do.
//
// On the container path it opens the container, checks the API version
// and the type1 IOMMU, opens the group, checks that the kernel finds it
// viable, attaches it to the container, sets the IOMMU and takes the
// device's descriptor. On the iommufd path it allocates an IO address
// space, opens the device's character device, binds it to iommufd and
// attaches it to the address space. Either way it then reads the device's
// regions and interrupts once; they do not change while it is open.
//
// A group can be open once at a time, system-wide: open each device of a
// group from one Device at most, and not while QEMU or another program
// holds the group.
func Open(addr string, opts Options) (*Device, error) {
	p, err := resolve(addr, opts)
	if err != nil {
		return nil, err
	}
	d := newDevice(p.addr)
	d.backend = p.backend
	d.group = p.dev.IOMMUGroup
	switch p.backend {
	case Container:
		err = d.openContainer(p)
	case IOMMUFD:
		err = d.openIOMMUFD(p)
	}
	if err == nil {
		err = d.load()
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("vfio: open %s: %w", p.addr, err), d.closeFDs())
	}
	return d, nil
}

// openContainer takes the group/container path.
func (d *Device) openContainer(p *plan) error {
	var err error
	if d.containerFD, err = openNode(p.containerPath); err != nil {
		return err
	}
	v, err := getAPIVersion(d.containerFD)
	if err != nil {
		return fmt.Errorf("container %s: %w", p.containerPath, err)
	}
	if v != VFIO_API_VERSION {
		return fmt.Errorf("%w: container API version %d, want %d", ErrUnsupported, v, VFIO_API_VERSION)
	}
	typ := uintptr(VFIO_TYPE1v2_IOMMU)
	ok, err := checkExtension(d.containerFD, typ)
	if err != nil {
		return err
	}
	if !ok {
		typ = VFIO_TYPE1_IOMMU
		if ok, err = checkExtension(d.containerFD, typ); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: the container offers no type1 IOMMU; run: modprobe vfio_iommu_type1", ErrUnsupported)
		}
	}
	if d.groupFD, err = openNode(p.groupPath); err != nil {
		return err
	}
	st, err := groupGetStatus(d.groupFD)
	if err != nil {
		return err
	}
	if st.flags&VFIO_GROUP_FLAGS_VIABLE == 0 {
		return fmt.Errorf("%w: the kernel says IOMMU group %d is not viable (members besides %s: %s); bind them all to vfio-pci",
			ErrGroupNotViable, d.group, p.addr, peerList(p.dev.GroupPeers))
	}
	if err := groupSetContainer(d.groupFD, d.containerFD); err != nil {
		return err
	}
	if err := setIOMMU(d.containerFD, typ); err != nil {
		return err
	}
	info, err := queryInfo(func(argsz uint32) ([]byte, error) { return iommuGetInfo(d.containerFD, argsz) },
		sizeof[vfioIommuType1Info](), parseIOMMUInfo)
	if err != nil {
		return err
	}
	d.pgsizes, d.ranges = info.pgsizes, info.ranges
	d.devFD, err = groupGetDeviceFD(d.groupFD, p.addr)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	return err
}

// openIOMMUFD takes the iommufd/cdev path.
func (d *Device) openIOMMUFD(p *plan) error {
	var err error
	if d.iommuFD, err = openNode(p.iommuPath); err != nil {
		return err
	}
	if d.ioas, err = ioasAlloc(d.iommuFD); err != nil {
		return fmt.Errorf("%s: %w", p.iommuPath, err)
	}
	if d.devFD, err = openNode(p.cdevPath); err != nil {
		return err
	}
	if _, err := deviceBindIommufd(d.devFD, d.iommuFD); err != nil {
		return err
	}
	if _, err := deviceAttachIommufdPt(d.devFD, d.ioas); err != nil {
		return err
	}
	var rs []iommuIovaRange
	for try := 0; ; try++ {
		n, align, err := ioasIovaRanges(d.iommuFD, d.ioas, rs)
		if errors.Is(err, unix.EMSGSIZE) && try < 3 && n > uint32(len(rs)) && n <= maxCaps*16 {
			rs = make([]iommuIovaRange, n)
			continue
		}
		if err != nil {
			return err
		}
		if n > uint32(len(rs)) {
			return badInfo("IOAS IOVA ranges", "%d ranges after %d tries", n, try+1)
		}
		if d.ranges, err = iommufdRanges(rs[:n]); err != nil {
			return err
		}
		if align != 0 && align&(align-1) == 0 {
			d.pgsizes = ^(align - 1) // every power of two from the alignment up
		}
		return nil
	}
}

// queryInfo calls an info ioctl, growing the buffer when the kernel asks
// for more (up to maxInfoSize, a few times), and parses the reply.
func queryInfo[T any](call func(argsz uint32) ([]byte, error), argsz uint32, parse func([]byte) (T, uint32, error)) (T, error) {
	var zero T
	for try := 0; try < 4; try++ {
		buf, err := call(argsz)
		if err != nil {
			return zero, err
		}
		v, need, err := parse(buf)
		if err != nil || need == 0 {
			return v, err
		}
		if need <= argsz || need > maxInfoSize {
			return zero, badInfo("info", "kernel asks for %d bytes after %d", need, argsz)
		}
		argsz = need
	}
	return zero, badInfo("info", "argsz still growing after 4 calls")
}

// load reads the device, region and interrupt info.
func (d *Device) load() error {
	di, err := deviceGetInfo(d.devFD)
	if err != nil {
		return err
	}
	if di.num_regions > maxRegions || di.num_irqs > maxIRQs {
		return badInfo("device info", "%d regions and %d interrupt types (at most %d and %d)", di.num_regions, di.num_irqs, maxRegions, maxIRQs)
	}
	d.info = vfio.DeviceInfo{
		Reset:      di.flags&VFIO_DEVICE_FLAGS_RESET != 0,
		PCI:        di.flags&VFIO_DEVICE_FLAGS_PCI != 0,
		NumRegions: di.num_regions,
		NumIRQs:    di.num_irqs,
	}
	d.regions = make([]regionSlot, di.num_regions)
	for i := range d.regions {
		idx := uint32(i)
		desc, err := queryInfo(func(argsz uint32) ([]byte, error) { return deviceGetRegionInfo(d.devFD, idx, argsz) },
			sizeof[vfioRegionInfo](), parseRegionInfo)
		if err == nil && desc.info.Index != vfio.RegionIndex(idx) {
			err = badInfo("region info", "asked for region %d, got %d", idx, desc.info.Index)
		}
		if err != nil {
			desc = regionDesc{info: vfio.RegionInfo{Index: vfio.RegionIndex(idx)}}
		}
		d.regions[i] = regionSlot{desc: desc, err: err}
	}
	d.irqs = make([]irqSlot, di.num_irqs)
	for i := range d.irqs {
		ii, err := deviceGetIrqInfo(d.devFD, uint32(i))
		if err == nil && ii.index != uint32(i) {
			err = badInfo("irq info", "asked for index %d, got %d", i, ii.index)
		}
		s := irqSlot{info: vfio.IRQInfo{Index: vfio.IRQIndex(i)}, err: err}
		if err == nil {
			s.info.Count = ii.count
			s.info.Flags = vfio.IRQFlags(ii.flags) & (vfio.IRQEventfd | vfio.IRQMaskable | vfio.IRQAutomasked | vfio.IRQNoResize)
		}
		d.irqs[i] = s
	}
	return nil
}

func peerList(ps []pci.Peer) string {
	if len(ps) == 0 {
		return "none that sysfs shows"
	}
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.Addr + " on " + driverName(p.Driver)
	}
	return s
}

// Addr is the device's PCI address in the kernel's spelling
// (pci.ParseAddr), whatever form Open was given, for a caller's messages.
func (d *Device) Addr() string { return d.addr }

// Backend is the path Open took: Container or IOMMUFD.
func (d *Device) Backend() Backend { return d.backend }

// IOMMUGroup is the device's IOMMU group number.
func (d *Device) IOMMUGroup() int { return d.group }

// IOVARanges returns the IOVA windows the IOMMU accepts, as the kernel
// reported them (nil if it did not). MapDMA refuses IOVAs outside them. The
// host driver sees only vfio.Device and does not call it; it is the window
// a caller sizes a dma.IOVAAllocator from.
func (d *Device) IOVARanges() []IOVARange { return slices.Clone(d.ranges) }

// PageSize is the smallest IOMMU page size: IOVAs, offsets and sizes of
// DMA mappings are multiples of it.
func (d *Device) PageSize() uint64 {
	if d.pgsizes == 0 {
		return defaultPageSize
	}
	return d.pgsizes & -d.pgsizes
}

// RegionType returns the type capability of a device-specific region, or
// nil. vfio.RegionInfo does not carry region types and the ycq driver uses
// only the PCI regions; this is how a driver of another device finds its
// device-specific regions (index >= vfio.NumPCIRegions).
func (d *Device) RegionType(idx vfio.RegionIndex) *RegionType {
	if int(idx) >= len(d.regions) || d.regions[idx].desc.typ == nil {
		return nil
	}
	t := *d.regions[idx].desc.typ
	return &t
}

// Info returns what the kernel said about the device at Open.
func (d *Device) Info() vfio.DeviceInfo { return d.info }

// RegionInfo describes a region; a region that does not exist has Size 0.
func (d *Device) RegionInfo(idx vfio.RegionIndex) (vfio.RegionInfo, error) {
	r, err := d.region(idx)
	if err != nil {
		return vfio.RegionInfo{}, err
	}
	info := r.info
	info.Areas = slices.Clone(info.Areas)
	return info, nil
}

func (d *Device) region(idx vfio.RegionIndex) (*regionDesc, error) {
	if int(idx) >= len(d.regions) {
		return nil, fmt.Errorf("%w: %v of %s (the device has %d regions)", vfio.ErrNoRegion, idx, d.addr, len(d.regions))
	}
	s := &d.regions[idx]
	if s.err != nil {
		return nil, fmt.Errorf("%w: %v of %s: %w", vfio.ErrNoRegion, idx, d.addr, s.err)
	}
	return &s.desc, nil
}

// checkAccess checks an access of n bytes at off of a region with the
// given flag.
func (d *Device) checkAccess(r *regionDesc, flag vfio.RegionFlags, off uint64, n int) error {
	if r.info.Flags&flag == 0 {
		what := "read"
		if flag == vfio.RegionWrite {
			what = "written"
		}
		return fmt.Errorf("%w: %v of %s cannot be %s", vfio.ErrNoRegion, r.info.Index, d.addr, what)
	}
	if off > r.info.Size || uint64(n) > r.info.Size-off || r.offset+off > math.MaxInt64-uint64(n) {
		return fmt.Errorf("%w: %d bytes at %#x are outside %v of %s (%#x bytes)", vfio.ErrInvalid, n, off, r.info.Index, d.addr, r.info.Size)
	}
	return nil
}

// ReadRegion reads len(b) bytes of a region at off with pread on the
// device descriptor. vfio-pci performs a 1, 2, 4 or 8-byte aligned read as
// one access of that width.
func (d *Device) ReadRegion(idx vfio.RegionIndex, off uint64, b []byte) error {
	return d.access(idx, off, b, vfio.RegionRead)
}

// WriteRegion writes b to a region at off with pwrite.
func (d *Device) WriteRegion(idx vfio.RegionIndex, off uint64, b []byte) error {
	return d.access(idx, off, b, vfio.RegionWrite)
}

func (d *Device) access(idx vfio.RegionIndex, off uint64, b []byte, flag vfio.RegionFlags) error {
	r, err := d.region(idx)
	if err != nil {
		return err
	}
	if err := d.checkAccess(r, flag, off, len(b)); err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return vfio.ErrClosed
	}
	pos := int64(r.offset + off)
	for len(b) > 0 {
		var n int
		if flag == vfio.RegionRead {
			n, err = unix.Pread(d.devFD, b, pos)
		} else {
			n, err = unix.Pwrite(d.devFD, b, pos)
		}
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return fmt.Errorf("vfio: %s %v of %s at %#x: %w", accessVerb(flag), idx, d.addr, off, err)
		case n == 0:
			return fmt.Errorf("vfio: %s %v of %s at %#x: %w", accessVerb(flag), idx, d.addr, off, io.ErrUnexpectedEOF)
		}
		b, pos, off = b[n:], pos+int64(n), off+uint64(n)
	}
	return nil
}

func accessVerb(flag vfio.RegionFlags) string {
	if flag == vfio.RegionRead {
		return "read"
	}
	return "write"
}

// mapping is a part of a region mapped into this process.
type mapping struct {
	d    *Device
	full []byte // what mmap returned (page aligned); nil once unmapped
	b    []byte // the part the caller asked for
}

func (m *mapping) Bytes() []byte { return m.b }

// Close unmaps the mapping; a second Close, or one after the Device's,
// returns nil.
func (m *mapping) Close() error {
	m.d.mapMu.Lock()
	defer m.d.mapMu.Unlock()
	if m.full == nil {
		return nil
	}
	delete(m.d.mappings, m)
	return m.unmapLocked()
}

// unmapLocked unmaps m and marks it unmapped. m.d.mapMu held.
func (m *mapping) unmapLocked() error {
	err := unix.Munmap(m.full)
	m.full, m.b = nil, nil
	if err != nil {
		return fmt.Errorf("vfio: unmap region of %s: %w", m.d.addr, err)
	}
	return nil
}

// MapRegion maps size bytes of a region at off, which must lie inside one
// mappable area (vfio.MapArea). The mapping is shared with the device
// (reads and writes reach it directly) and page aligned underneath; off
// need not be.
func (d *Device) MapRegion(idx vfio.RegionIndex, off, size uint64) (vfio.Mapping, error) {
	r, err := d.region(idx)
	if err != nil {
		return nil, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, vfio.ErrClosed
	}
	mem, b, err := vfio.MapArea(d.devFD, r.offset, r.info, off, size)
	if err != nil {
		return nil, fmt.Errorf("vfio: %s: %w", d.addr, err)
	}
	m := &mapping{d: d, full: mem, b: b}
	d.mapMu.Lock()
	d.mappings[m] = struct{}{}
	d.mapMu.Unlock()
	return m, nil
}

// IRQInfo describes an interrupt type; one the device lacks has Count 0.
func (d *Device) IRQInfo(idx vfio.IRQIndex) (vfio.IRQInfo, error) {
	if int(idx) >= len(d.irqs) {
		return vfio.IRQInfo{}, fmt.Errorf("%w: %v of %s (the device has %d interrupt types)", vfio.ErrNoIRQ, idx, d.addr, len(d.irqs))
	}
	s := d.irqs[idx]
	if s.err != nil {
		return vfio.IRQInfo{}, fmt.Errorf("%w: %v of %s: %w", vfio.ErrNoIRQ, idx, d.addr, s.err)
	}
	return s.info, nil
}

// SetIRQs routes vectors start, start+1, ... of idx to the eventfds
// (VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER); an fd of -1
// detaches that vector. The kernel keeps its own references. No fds
// disables every vector of idx (VFIO_IRQ_SET_DATA_NONE, count 0). INTx is
// automasked: it fires once until unmasked, which vfio.Device cannot do
// yet, so use MSI or MSI-X.
func (d *Device) SetIRQs(idx vfio.IRQIndex, start uint32, eventfds []int) error {
	info, err := d.IRQInfo(idx)
	if err != nil {
		return err
	}
	if info.Count == 0 {
		return fmt.Errorf("%w: %s has no %v interrupts", vfio.ErrNoIRQ, d.addr, idx)
	}
	flags := uint32(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER)
	var data []int32
	if len(eventfds) > 0 {
		if info.Flags&vfio.IRQEventfd == 0 {
			return fmt.Errorf("%w: %v of %s cannot signal eventfds", vfio.ErrNoIRQ, idx, d.addr)
		}
		if start >= info.Count || uint64(len(eventfds)) > uint64(info.Count-start) {
			return fmt.Errorf("%w: vectors %d to %d of %v, but %s has %d", vfio.ErrNoIRQ, start, uint64(start)+uint64(len(eventfds))-1, idx, d.addr, info.Count)
		}
		data = make([]int32, len(eventfds))
		for i, fd := range eventfds {
			if fd < -1 || fd > math.MaxInt32 {
				return fmt.Errorf("%w: eventfd %d for vector %d", vfio.ErrInvalid, fd, start+uint32(i))
			}
			data[i] = int32(fd)
		}
		flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER
	} else {
		start = 0
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return vfio.ErrClosed
	}
	if err := deviceSetIrqs(d.devFD, flags, uint32(idx), start, data); err != nil {
		return fmt.Errorf("vfio: set %d %v vectors of %s from %d: %w", len(data), idx, d.addr, start, err)
	}
	return nil
}

// MapDMA lets the device reach size bytes of r from offset on at iova.
// offset, size and iova must be multiples of PageSize, and the range must
// lie inside one of IOVARanges. The kernel pins the pages (they count
// against RLIMIT_MEMLOCK) until UnmapDMA or Close. r must stay mapped
// while the device may use it.
func (d *Device) MapDMA(iova vfio.IOVA, r *dma.Region, offset, size uint64, perm vfio.Perm) error {
	if r == nil {
		return fmt.Errorf("%w: nil DMA region", vfio.ErrInvalid)
	}
	mem := r.Bytes()
	if err := d.checkDMA(iova, size); err != nil {
		return err
	}
	if offset > uint64(len(mem)) || size > uint64(len(mem))-offset {
		return fmt.Errorf("%w: %#x bytes at %#x of a %d-byte DMA region", vfio.ErrInvalid, size, offset, len(mem))
	}
	if offset%d.PageSize() != 0 {
		return fmt.Errorf("%w: DMA region offset %#x is not a multiple of the IOMMU page size %#x", vfio.ErrInvalid, offset, d.PageSize())
	}
	if perm == 0 || perm&^(vfio.DMARead|vfio.DMAWrite) != 0 {
		return fmt.Errorf("%w: DMA permission %#x", vfio.ErrInvalid, uint32(perm))
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return vfio.ErrClosed
	}
	d.dmaMu.Lock()
	defer d.dmaMu.Unlock()
	for at, n := range d.dma {
		if uint64(iova) <= uint64(at)+n-1 && uint64(at) <= uint64(iova)+size-1 {
			return fmt.Errorf("%w: IOVA [%#x, +%#x) overlaps the mapping at %#x (+%#x)", vfio.ErrInvalid, iova, size, at, n)
		}
	}
	part := mem[offset : offset+size]
	var err error
	switch d.backend {
	case IOMMUFD:
		flags := uint32(IOMMU_IOAS_MAP_FIXED_IOVA)
		if perm&vfio.DMARead != 0 {
			flags |= IOMMU_IOAS_MAP_READABLE
		}
		if perm&vfio.DMAWrite != 0 {
			flags |= IOMMU_IOAS_MAP_WRITEABLE
		}
		_, err = ioasMap(d.iommuFD, d.ioas, part, uint64(iova), flags)
	default:
		var flags uint32
		if perm&vfio.DMARead != 0 {
			flags |= VFIO_DMA_MAP_FLAG_READ
		}
		if perm&vfio.DMAWrite != 0 {
			flags |= VFIO_DMA_MAP_FLAG_WRITE
		}
		err = iommuMapDma(d.containerFD, part, uint64(iova), flags)
	}
	if err != nil {
		err = fmt.Errorf("vfio: map %#x bytes at IOVA %#x for %s: %w", size, iova, d.addr, err)
		if errors.Is(err, unix.ENOMEM) {
			err = fmt.Errorf("%w (pinned memory counts against RLIMIT_MEMLOCK: raise ulimit -l or run as root)", err)
		}
		return err
	}
	d.dma[iova] = size
	return nil
}

// checkDMA checks an IOVA range against the page size and the IOMMU's
// windows.
func (d *Device) checkDMA(iova vfio.IOVA, size uint64) error {
	pg := d.PageSize()
	if size == 0 || size%pg != 0 || uint64(iova)%pg != 0 {
		return fmt.Errorf("%w: IOVA %#x and size %#x must be non-zero multiples of the IOMMU page size %#x", vfio.ErrInvalid, iova, size, pg)
	}
	last := uint64(iova) + size - 1
	if last < uint64(iova) {
		return fmt.Errorf("%w: IOVA %#x + %#x wraps", vfio.ErrInvalid, iova, size)
	}
	if d.ranges == nil {
		return nil
	}
	for _, r := range d.ranges {
		if uint64(r.Start) <= uint64(iova) && last <= uint64(r.Last) {
			return nil
		}
	}
	return fmt.Errorf("%w: IOVA [%#x, %#x] is outside the IOMMU's windows %v", vfio.ErrInvalid, iova, last, d.ranges)
}

// UnmapDMA takes back the mapping MapDMA made at iova; size must be its
// size.
func (d *Device) UnmapDMA(iova vfio.IOVA, size uint64) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return vfio.ErrClosed
	}
	d.dmaMu.Lock()
	defer d.dmaMu.Unlock()
	if n, ok := d.dma[iova]; !ok || n != size {
		return fmt.Errorf("%w: no DMA mapping of %#x bytes at IOVA %#x", vfio.ErrInvalid, size, iova)
	}
	var (
		got uint64
		err error
	)
	switch d.backend {
	case IOMMUFD:
		got, err = ioasUnmap(d.iommuFD, d.ioas, uint64(iova), size)
	default:
		got, err = iommuUnmapDma(d.containerFD, uint64(iova), size)
	}
	if err != nil {
		return fmt.Errorf("vfio: unmap IOVA %#x (+%#x) of %s: %w", iova, size, d.addr, err)
	}
	delete(d.dma, iova)
	if got != size {
		return fmt.Errorf("vfio: unmap IOVA %#x of %s: the kernel unmapped %#x bytes, not %#x", iova, d.addr, got, size)
	}
	return nil
}

// Reset resets the device (VFIO_DEVICE_RESET), if it can be.
func (d *Device) Reset() error {
	if !d.info.Reset {
		return fmt.Errorf("%w: %s offers no reset (no FLR, PM or bus reset)", ErrUnsupported, d.addr)
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return vfio.ErrClosed
	}
	if err := deviceReset(d.devFD); err != nil {
		return fmt.Errorf("vfio: reset %s: %w", d.addr, err)
	}
	return nil
}

// Close unmaps every region mapping, closes the device, group and
// container (or iommufd) descriptors, which also drops every DMA mapping,
// and returns the errors joined. A second Close returns nil.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	d.mapMu.Lock()
	for m := range d.mappings {
		errs = append(errs, m.unmapLocked())
	}
	clear(d.mappings)
	d.mapMu.Unlock()
	d.dmaMu.Lock()
	clear(d.dma)
	d.dmaMu.Unlock()
	errs = append(errs, d.closeFDs())
	return errors.Join(errs...)
}

// closeFDs closes the descriptors held, device first, and forgets them.
func (d *Device) closeFDs() error {
	var errs []error
	for _, c := range []struct {
		fd   *int
		what string
	}{{&d.devFD, "device"}, {&d.groupFD, "group"}, {&d.containerFD, "container"}, {&d.iommuFD, "iommufd"}} {
		if *c.fd < 0 {
			continue
		}
		if err := unix.Close(*c.fd); err != nil {
			errs = append(errs, fmt.Errorf("vfio: close %s of %s: %w", c.what, d.addr, err))
		}
		*c.fd = -1
	}
	return errors.Join(errs...)
}

// openFile opens a device node read-write, close-on-exec.
func openFile(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}
