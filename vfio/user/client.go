package user

// Client: a vfio-user client that implements vfio.Device, so the host
// driver can drive a vfio-user server (the Go device model, or any other)
// exactly as it drives a device bound to vfio-pci.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/fdpass"
	"github.com/ycq-dev/ycq/vfio"
)

var _ vfio.Device = (*Client)(nil)

// DefaultClientTimeout bounds each request unless ClientOptions.Timeout
// says otherwise; QEMU waits 5 s (x-msg-timeout) too.
const DefaultClientTimeout = 5 * time.Second

// Limits the client holds a server to; QEMU's client has the same ones.
const (
	maxServerRegions = 100     // num_regions
	maxServerIRQs    = 50      // num_irqs
	maxRegionInfo    = 1 << 16 // argsz of a region info reply with capabilities
)

// ClientOptions tune a Client. The zero value is usable.
type ClientOptions struct {
	// MaxDataXferSize is the largest data count this client accepts in
	// one message (a REGION_READ reply, a DMA_WRITE request), advertised
	// as max_data_xfer_size. DefaultMaxDataXferSize if 0.
	MaxDataXferSize uint32
	// MaxMsgFDs is the most descriptors this client accepts with one
	// message, advertised as max_msg_fds. DefaultMaxRecvFDs if 0.
	MaxMsgFDs int
	// Timeout bounds every request. DefaultClientTimeout if 0.
	Timeout time.Duration
	// DMAWire is the layout of the server's DMA_READ and DMA_WRITE
	// messages: DMAWireSpec (the zero value) or DMAWireQEMU, to stand in
	// for QEMU in tests of a server.
	DMAWire DMAWire
}

// Client is a vfio-user client: one connection to a server, seen as a
// vfio.Device. It treats the server as untrusted: every size, count,
// offset and descriptor count it sends is checked, garbage gives an error
// wrapping ErrMalformed (or a *RemoteError for an error reply), and once
// the server goes away every call fails promptly with an error wrapping
// vfio.ErrClosed.
//
// Methods are safe for concurrent use. The client answers the server's
// DMA_READ and DMA_WRITE for every range mapped with MapDMA from the
// region's bytes (that is the only way a server reaches an anonymous
// region, which has no descriptor to pass), so a dma.Region must stay open
// until it is unmapped or the client closed.
type Client struct {
	conn    *Conn
	timeout time.Duration
	wire    DMAWire
	ourXfer uint32 // max_data_xfer_size we advertised

	// From negotiation, fixed afterwards.
	info      vfio.DeviceInfo
	srvMaxFDs int
	srvXfer   uint32
	srvMaxDMA uint64

	readerDone chan struct{}

	mu       sync.Mutex
	closed   bool
	regions  map[vfio.RegionIndex]*clientRegion
	irqs     map[vfio.IRQIndex]vfio.IRQInfo
	mappings map[*regionMapping]struct{}

	dmaMu sync.RWMutex
	dmas  []clientDMA // sorted by iova, not overlapping
}

// clientRegion is what a region info reply said, checked.
type clientRegion struct {
	info       vfio.RegionInfo
	fd         int    // the region's descriptor for mmap, or -1
	mmapOffset uint64 // where the region starts in fd
}

// clientDMA is one MapDMA: the bytes the server may reach at iova.
type clientDMA struct {
	iova uint64
	mem  []byte
	perm vfio.Perm
}

func (d *clientDMA) end() uint64 { return d.iova + uint64(len(d.mem)) }

// Dial connects to the vfio-user server listening at path and negotiates
// (NewClient).
func Dial(path string, opts *ClientOptions) (*Client, error) {
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("vfio-user: dial %s: %w", path, err)
	}
	return NewClient(uc, opts)
}

// NewClient takes over a connected socket (closing it if negotiation
// fails), negotiates the protocol version and capabilities with VERSION,
// and reads the device info.
func NewClient(uc *net.UnixConn, opts *ClientOptions) (*Client, error) {
	var o ClientOptions
	if opts != nil {
		o = *opts
	}
	if o.MaxDataXferSize == 0 {
		o.MaxDataXferSize = DefaultMaxDataXferSize
	}
	if o.MaxMsgFDs <= 0 {
		o.MaxMsgFDs = DefaultMaxRecvFDs
	}
	o.MaxMsgFDs = min(o.MaxMsgFDs, fdpass.MaxFDs)
	if o.Timeout <= 0 {
		o.Timeout = DefaultClientTimeout
	}
	if o.DMAWire != DMAWireSpec && o.DMAWire != DMAWireQEMU {
		uc.Close()
		return nil, invalidf("unknown DMA wire layout %d", o.DMAWire)
	}
	c := &Client{
		conn:       NewConn(uc),
		timeout:    o.Timeout,
		wire:       o.DMAWire,
		ourXfer:    o.MaxDataXferSize,
		readerDone: make(chan struct{}),
		regions:    make(map[vfio.RegionIndex]*clientRegion),
		irqs:       make(map[vfio.IRQIndex]vfio.IRQInfo),
		mappings:   make(map[*regionMapping]struct{}),
	}
	c.conn.SetRecvLimits(MaxMessageSize(o.MaxDataXferSize), o.MaxMsgFDs)
	go func() {
		defer close(c.readerDone)
		c.conn.Run(c.handle)
	}()
	if err := c.negotiate(o); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

func (c *Client) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}

// call sends a request and returns the reply (its descriptors the
// caller's), or an error with context.
func (c *Client) call(cmd Command, payload []byte, fds []int) (*Message, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	m, err := c.conn.Call(ctx, cmd, payload, fds)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// noFDs refuses descriptors on a reply that should carry none.
func noFDs(m *Message) error {
	if n := len(m.FDs); n > 0 {
		m.CloseFDs()
		return malformed(m.Header.Command, "SCM_RIGHTS", "%d unexpected descriptors in the reply", n)
	}
	return nil
}

func (c *Client) negotiate(o ClientOptions) error {
	fds, xfer, pg, maps := uint64(o.MaxMsgFDs), uint64(o.MaxDataXferSize), uint64(DefaultPgSizes), uint64(DefaultMaxDMAMaps)
	req := Version{Major: 0, Minor: 0, Caps: &Capabilities{MaxMsgFDs: &fds, MaxDataXferSize: &xfer, PgSizes: &pg, MaxDMAMaps: &maps}}
	m, err := c.call(CmdVersion, req.Encode(nil), nil)
	if err != nil {
		return fmt.Errorf("vfio-user: negotiate version: %w", err)
	}
	if err := noFDs(m); err != nil {
		return err
	}
	v, err := DecodeVersion(m.Payload)
	if err != nil {
		return fmt.Errorf("vfio-user: negotiate version: %w", err)
	}
	if v.Major != req.Major || v.Minor > req.Minor {
		return malformed(CmdVersion, "major/minor", "server answered version %d.%d to %d.%d", v.Major, v.Minor, req.Major, req.Minor)
	}
	c.srvMaxFDs, c.srvXfer, c.srvMaxDMA = DefaultMaxMsgFDs, DefaultMaxDataXferSize, DefaultMaxDMAMaps
	if caps := v.Caps; caps != nil {
		if p := caps.MaxMsgFDs; p != nil {
			if *p < 1 || *p > fdpass.MaxFDs {
				return malformed(CmdVersion, "max_msg_fds", "%d is outside 1 to %d", *p, fdpass.MaxFDs)
			}
			c.srvMaxFDs = int(*p)
		}
		if p := caps.MaxDataXferSize; p != nil {
			if *p < 1 || *p > math.MaxUint32 {
				return malformed(CmdVersion, "max_data_xfer_size", "%d is outside 1 to %d", *p, uint64(math.MaxUint32))
			}
			c.srvXfer = uint32(*p)
		}
		if p := caps.PgSizes; p != nil && (*p == 0 || *p&(DefaultPgSizes-1) != 0) {
			return malformed(CmdVersion, "pgsizes", "%#x has page sizes below 4 KiB, or none", *p)
		}
		if p := caps.MaxDMAMaps; p != nil {
			c.srvMaxDMA = *p
		}
	}

	m, err = c.call(CmdDeviceGetInfo, DeviceInfo{}.Encode(nil), nil)
	if err != nil {
		return fmt.Errorf("vfio-user: device info: %w", err)
	}
	if err := noFDs(m); err != nil {
		return err
	}
	di, err := DecodeDeviceInfo(m.Payload)
	if err != nil {
		return fmt.Errorf("vfio-user: device info: %w", err)
	}
	if di.NumRegions > maxServerRegions || di.NumIRQs > maxServerIRQs {
		return malformed(CmdDeviceGetInfo, "num_regions/num_irqs", "%d regions and %d interrupt types, at most %d and %d", di.NumRegions, di.NumIRQs, maxServerRegions, maxServerIRQs)
	}
	c.info = vfio.DeviceInfo{
		Reset:      di.Flags&DeviceFlagReset != 0,
		PCI:        di.Flags&DeviceFlagPCI != 0,
		NumRegions: di.NumRegions,
		NumIRQs:    di.NumIRQs,
	}
	return nil
}

// live returns an error wrapping vfio.ErrClosed once the client is closed
// or the connection has gone.
func (c *Client) live() error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("vfio-user: client closed: %w", ErrClosed)
	}
	return c.conn.Err()
}

// Info returns what DEVICE_GET_INFO said when the client connected.
func (c *Client) Info() vfio.DeviceInfo { return c.info }

// ---------------------------------------------------------------------------
// Regions

// RegionInfo asks for region idx the way QEMU does (argsz 32, then again
// with room for the capabilities) and caches the answer.
func (c *Client) RegionInfo(idx vfio.RegionIndex) (vfio.RegionInfo, error) {
	r, err := c.region(idx)
	if err != nil {
		return vfio.RegionInfo{}, err
	}
	info := r.info
	info.Areas = slices.Clone(info.Areas)
	return info, nil
}

func (c *Client) region(idx vfio.RegionIndex) (*clientRegion, error) {
	if err := c.live(); err != nil {
		return nil, err
	}
	if uint32(idx) >= c.info.NumRegions {
		return nil, fmt.Errorf("%w: %v: the device has %d regions", vfio.ErrNoRegion, idx, c.info.NumRegions)
	}
	c.mu.Lock()
	r := c.regions[idx]
	c.mu.Unlock()
	if r != nil {
		return r, nil
	}
	r, err := c.fetchRegion(idx)
	if err != nil {
		return nil, fmt.Errorf("vfio-user: region info of %v: %w", idx, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		closeFD(r.fd)
		return nil, fmt.Errorf("vfio-user: client closed: %w", ErrClosed)
	}
	if old := c.regions[idx]; old != nil { // another goroutine was faster
		closeFD(r.fd)
		return old, nil
	}
	c.regions[idx] = r
	return r, nil
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

func (c *Client) fetchRegion(idx vfio.RegionIndex) (*clientRegion, error) {
	argsz := uint32(sizeofRegionInfo)
	for attempt := 0; ; attempt++ {
		req, err := RegionInfo{ArgSz: argsz, Index: RegionIndex(idx)}.Encode(nil)
		if err != nil {
			return nil, err
		}
		m, err := c.call(CmdDeviceGetRegionInfo, req, nil)
		if err != nil {
			return nil, err
		}
		ri, err := DecodeRegionInfoReply(m.Payload)
		if err != nil {
			m.CloseFDs()
			return nil, err
		}
		if ri.Index != RegionIndex(idx) {
			m.CloseFDs()
			return nil, malformed(CmdDeviceGetRegionInfo, "index", "asked for %d, got %d", idx, ri.Index)
		}
		if ri.ArgSz > argsz {
			// "Retry with a bigger buffer": no capabilities here,
			// and no descriptor is used from this reply.
			m.CloseFDs()
			if attempt > 0 {
				return nil, malformed(CmdDeviceGetRegionInfo, "argsz", "still %d after offering it", ri.ArgSz)
			}
			if ri.ArgSz > maxRegionInfo {
				return nil, malformed(CmdDeviceGetRegionInfo, "argsz", "%d exceeds the %d this client takes", ri.ArgSz, maxRegionInfo)
			}
			argsz = ri.ArgSz
			continue
		}
		return checkRegion(idx, ri, m)
	}
}

// checkRegion turns a complete region info reply into a clientRegion,
// taking its descriptor.
func checkRegion(idx vfio.RegionIndex, ri RegionInfo, m *Message) (*clientRegion, error) {
	if len(m.FDs) > 1 {
		n := len(m.FDs)
		m.CloseFDs()
		return nil, malformed(CmdDeviceGetRegionInfo, "SCM_RIGHTS", "%d descriptors, a region has one", n)
	}
	fd := m.TakeFD(0)
	m.CloseFDs()
	r := &clientRegion{fd: fd, mmapOffset: ri.Offset, info: vfio.RegionInfo{Index: idx, Size: ri.Size}}
	if ri.Flags&RegionFlagRead != 0 {
		r.info.Flags |= vfio.RegionRead
	}
	if ri.Flags&RegionFlagWrite != 0 {
		r.info.Flags |= vfio.RegionWrite
	}
	fail := func(field, format string, args ...any) (*clientRegion, error) {
		closeFD(fd)
		return nil, malformed(CmdDeviceGetRegionInfo, field, format, args...)
	}
	if ri.Size == 0 {
		closeFD(fd)
		r.fd, r.info.Flags = -1, 0
		return r, nil
	}
	if ri.Flags&RegionFlagMmap == 0 || fd < 0 {
		// Not mappable (or mappable with nothing to map).
		closeFD(fd)
		r.fd = -1
		return r, nil
	}
	if ri.Offset > math.MaxInt64 || ri.Size > math.MaxInt64-ri.Offset {
		return fail("offset", "region of %d bytes at mmap offset %#x runs past 2^63", ri.Size, ri.Offset)
	}
	if sp, ok := ri.SparseMmap(); ok {
		for i, a := range sp.Areas {
			if a.Size == 0 || a.Offset > ri.Size || a.Size > ri.Size-a.Offset {
				return fail("sparse mmap", "area %d [%#x, +%#x) is empty or outside the %#x-byte region", i, a.Offset, a.Size, ri.Size)
			}
			r.info.Areas = append(r.info.Areas, vfio.Area{Offset: a.Offset, Size: a.Size})
		}
		if len(r.info.Areas) == 0 {
			closeFD(fd)
			r.fd = -1
			return r, nil
		}
	}
	r.info.Flags |= vfio.RegionMmap
	return r, nil
}

// accessible checks [off, off+n) of region idx for access with flag.
func (c *Client) accessible(idx vfio.RegionIndex, off uint64, n int, flag vfio.RegionFlags) error {
	r, err := c.region(idx)
	if err != nil {
		return err
	}
	if r.info.Size == 0 || r.info.Flags&flag == 0 {
		return fmt.Errorf("%w: %v (size %d, flags %#x)", vfio.ErrNoRegion, idx, r.info.Size, r.info.Flags)
	}
	if off > r.info.Size || uint64(n) > r.info.Size-off {
		return fmt.Errorf("%w: %d bytes at %#x of %v (%#x bytes)", vfio.ErrInvalid, n, off, idx, r.info.Size)
	}
	return nil
}

// chunk is the most data one REGION_READ/WRITE may carry either way.
func (c *Client) chunk() int { return int(min(c.srvXfer, c.ourXfer)) }

// ReadRegion reads len(b) bytes of region idx at off with REGION_READ,
// in pieces no larger than both ends' max_data_xfer_size.
func (c *Client) ReadRegion(idx vfio.RegionIndex, off uint64, b []byte) error {
	if err := c.accessible(idx, off, len(b), vfio.RegionRead); err != nil {
		return err
	}
	for done := 0; done < len(b); {
		n := min(len(b)-done, c.chunk())
		at := off + uint64(done)
		req := RegionAccess{Offset: at, Region: RegionIndex(idx), Count: uint32(n)}
		m, err := c.call(CmdRegionRead, req.Encode(nil), nil)
		if err != nil {
			return fmt.Errorf("vfio-user: read %d bytes of %v at %#x: %w", n, idx, at, err)
		}
		if err := noFDs(m); err != nil {
			return err
		}
		d, err := DecodeRegionReadReply(m.Payload)
		if err != nil {
			return fmt.Errorf("vfio-user: read %v at %#x: %w", idx, at, err)
		}
		if d.Offset != at || d.Region != req.Region || len(d.Data) != n {
			return malformed(CmdRegionRead, "offset/region/count", "asked for %d bytes of %d at %#x, got %d bytes of %d at %#x", n, idx, at, len(d.Data), d.Region, d.Offset)
		}
		copy(b[done:], d.Data)
		done += n
	}
	return nil
}

// WriteRegion writes b to region idx at off with REGION_WRITE (waiting
// for each reply), in pieces no larger than both ends' max_data_xfer_size.
func (c *Client) WriteRegion(idx vfio.RegionIndex, off uint64, b []byte) error {
	if err := c.accessible(idx, off, len(b), vfio.RegionWrite); err != nil {
		return err
	}
	for done := 0; done < len(b); {
		n := min(len(b)-done, c.chunk())
		at := off + uint64(done)
		p, err := RegionData{Offset: at, Region: RegionIndex(idx), Data: b[done : done+n]}.Encode(nil)
		if err != nil {
			return err
		}
		m, err := c.call(CmdRegionWrite, p, nil)
		if err != nil {
			return fmt.Errorf("vfio-user: write %d bytes of %v at %#x: %w", n, idx, at, err)
		}
		if err := noFDs(m); err != nil {
			return err
		}
		a, err := DecodeRegionWriteReply(m.Payload)
		if err != nil {
			return fmt.Errorf("vfio-user: write %v at %#x: %w", idx, at, err)
		}
		if a.Offset != at || a.Region != RegionIndex(idx) || a.Count != uint32(n) {
			return malformed(CmdRegionWrite, "offset/region/count", "wrote %d bytes of %d at %#x, reply says %d bytes of %d at %#x", n, idx, at, a.Count, a.Region, a.Offset)
		}
		done += n
	}
	return nil
}

// regionMapping is one MapRegion.
type regionMapping struct {
	c   *Client
	mem []byte // what mmap returned
	b   []byte // the part asked for
}

func (m *regionMapping) Bytes() []byte { return m.b }

// Close unmaps; a second Close, or one after the client's Close, returns
// nil.
func (m *regionMapping) Close() error {
	m.c.mu.Lock()
	_, ok := m.c.mappings[m]
	delete(m.c.mappings, m)
	m.c.mu.Unlock()
	if !ok {
		return nil
	}
	return m.unmap()
}

func (m *regionMapping) unmap() error {
	if err := unix.Munmap(m.mem); err != nil {
		return fmt.Errorf("vfio-user: unmap region mapping: %w", err)
	}
	return nil
}

// MapRegion maps size bytes at off of region idx, which must lie inside
// one mappable area, from the descriptor the server sent: mmap(fd,
// region offset + off) shared, readable and writable as the region is.
// The server could shrink the file behind the mapping; touching such a
// mapping then faults (SIGBUS), as it would with a kernel device.
func (c *Client) MapRegion(idx vfio.RegionIndex, off, size uint64) (vfio.Mapping, error) {
	r, err := c.region(idx)
	if err != nil {
		return nil, err
	}
	if r.fd < 0 || r.info.Flags&vfio.RegionMmap == 0 {
		return nil, fmt.Errorf("%w: %v is not mappable", vfio.ErrNoRegion, idx)
	}
	inside := false
	for _, a := range r.info.Mappable() {
		if size > 0 && off >= a.Offset && off-a.Offset <= a.Size && size <= a.Size-(off-a.Offset) {
			inside = true
			break
		}
	}
	if !inside {
		return nil, fmt.Errorf("%w: %d bytes at %#x of %v are not inside one mappable area %v", vfio.ErrInvalid, size, off, idx, r.info.Mappable())
	}
	fileOff := r.mmapOffset + off // no overflow: checkRegion bounded offset+size
	page := uint64(os.Getpagesize())
	delta := fileOff % page
	var st unix.Stat_t
	if err := unix.Fstat(r.fd, &st); err != nil {
		return nil, fmt.Errorf("vfio-user: stat the descriptor of %v: %w", idx, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && (st.Size < 0 || uint64(st.Size) < fileOff+size) {
		return nil, malformed(CmdDeviceGetRegionInfo, "offset/size", "%v: the server's file holds %d bytes, the mapping needs %d", idx, st.Size, fileOff+size)
	}
	prot := 0
	if r.info.Flags&vfio.RegionRead != 0 {
		prot |= unix.PROT_READ
	}
	if r.info.Flags&vfio.RegionWrite != 0 {
		prot |= unix.PROT_WRITE
	}
	mem, err := unix.Mmap(r.fd, int64(fileOff-delta), int(size+delta), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("vfio-user: map %d bytes of %v at %#x: %w", size, idx, off, err)
	}
	m := &regionMapping{c: c, mem: mem, b: mem[delta : delta+size : delta+size]}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		unix.Munmap(mem)
		return nil, fmt.Errorf("vfio-user: client closed: %w", ErrClosed)
	}
	c.mappings[m] = struct{}{}
	c.mu.Unlock()
	return m, nil
}

// ---------------------------------------------------------------------------
// Interrupts

// IRQInfo asks for interrupt type idx and caches the answer.
func (c *Client) IRQInfo(idx vfio.IRQIndex) (vfio.IRQInfo, error) {
	if err := c.live(); err != nil {
		return vfio.IRQInfo{}, err
	}
	if uint32(idx) >= c.info.NumIRQs {
		return vfio.IRQInfo{}, fmt.Errorf("%w: %v: the device has %d interrupt types", vfio.ErrNoIRQ, idx, c.info.NumIRQs)
	}
	c.mu.Lock()
	q, ok := c.irqs[idx]
	c.mu.Unlock()
	if ok {
		return q, nil
	}
	m, err := c.call(CmdDeviceGetIRQInfo, IRQInfo{Index: IRQIndex(idx)}.Encode(nil), nil)
	if err != nil {
		return vfio.IRQInfo{}, fmt.Errorf("vfio-user: interrupt info of %v: %w", idx, err)
	}
	if err := noFDs(m); err != nil {
		return vfio.IRQInfo{}, err
	}
	ri, err := DecodeIRQInfo(m.Payload)
	if err != nil {
		return vfio.IRQInfo{}, fmt.Errorf("vfio-user: interrupt info of %v: %w", idx, err)
	}
	if ri.Index != IRQIndex(idx) {
		return vfio.IRQInfo{}, malformed(CmdDeviceGetIRQInfo, "index", "asked for %d, got %d", idx, ri.Index)
	}
	q = vfio.IRQInfo{Index: idx, Flags: vfio.IRQFlags(ri.Flags) & (vfio.IRQEventfd | vfio.IRQMaskable | vfio.IRQAutomasked | vfio.IRQNoResize), Count: ri.Count}
	c.mu.Lock()
	c.irqs[idx] = q
	c.mu.Unlock()
	return q, nil
}

// SetIRQs routes interrupts start, start+1, ... of idx to eventfds (a
// negative entry de-assigns that vector), with DATA_EVENTFD|TRIGGER
// messages of at most the server's max_msg_fds descriptors each, as QEMU
// splits them. No eventfds disables every interrupt of idx (DATA_NONE|
// TRIGGER, count 0).
func (c *Client) SetIRQs(idx vfio.IRQIndex, start uint32, eventfds []int) error {
	q, err := c.IRQInfo(idx)
	if err != nil {
		return err
	}
	if q.Count == 0 {
		return fmt.Errorf("%w: %v is not implemented", vfio.ErrNoIRQ, idx)
	}
	send := func(s IRQSet, fds []int) error {
		p, err := s.Encode(nil)
		if err != nil {
			return err
		}
		m, err := c.call(CmdDeviceSetIRQs, p, fds)
		if err != nil {
			return fmt.Errorf("vfio-user: set %v vectors %d..%d: %w", idx, s.Start, int64(s.Start)+int64(s.Count)-1, err)
		}
		return noFDs(m)
	}
	if len(eventfds) == 0 {
		return send(IRQSet{Flags: IRQSetDataNone | IRQSetActionTrigger, Index: IRQIndex(idx)}, nil)
	}
	if uint64(start)+uint64(len(eventfds)) > uint64(q.Count) {
		return fmt.Errorf("%w: %v vectors %d..%d: the device has %d", vfio.ErrNoIRQ, idx, start, uint64(start)+uint64(len(eventfds))-1, q.Count)
	}
	for i := 0; i < len(eventfds); {
		j := i + 1
		if eventfds[i] < 0 {
			for j < len(eventfds) && eventfds[j] < 0 {
				j++
			}
			err = send(IRQSet{Flags: IRQSetDataEventFD | IRQSetActionTrigger, Index: IRQIndex(idx), Start: start + uint32(i), Count: uint32(j - i)}, nil)
		} else {
			for j < len(eventfds) && eventfds[j] >= 0 && j-i < c.srvMaxFDs {
				j++
			}
			err = send(IRQSet{Flags: IRQSetDataEventFD | IRQSetActionTrigger, Index: IRQIndex(idx), Start: start + uint32(i), Count: uint32(j - i)}, eventfds[i:j])
		}
		if err != nil {
			return err
		}
		i = j
	}
	return nil
}

// ---------------------------------------------------------------------------
// DMA

// MapDMA lets the device reach size bytes of r from offset on at iova:
// DMA_MAP with r's descriptor and offset, or without a descriptor for an
// anonymous region, which the server then reaches with DMA_READ and
// DMA_WRITE that this client answers from r's bytes.
func (c *Client) MapDMA(iova vfio.IOVA, r *dma.Region, offset, size uint64, perm vfio.Perm) error {
	if err := c.live(); err != nil {
		return err
	}
	if r == nil || size == 0 || offset > uint64(r.Size()) || size > uint64(r.Size())-offset {
		return fmt.Errorf("%w: map %d bytes at offset %d of a region of %d bytes", vfio.ErrInvalid, size, offset, regionSize(r))
	}
	if uint64(iova)+size < uint64(iova) || perm == 0 || perm&^(vfio.DMARead|vfio.DMAWrite) != 0 {
		return fmt.Errorf("%w: map %d bytes at IOVA %#x with permissions %#x", vfio.ErrInvalid, size, iova, perm)
	}
	d := clientDMA{iova: uint64(iova), mem: r.Bytes()[offset : offset+size : offset+size], perm: perm}
	// Recorded before DMA_MAP goes out: the server may use the range as
	// soon as it has answered, before this goroutine runs again.
	c.dmaMu.Lock()
	i, ok := c.dmaSlot(d.iova, d.end())
	switch {
	case !ok:
		c.dmaMu.Unlock()
		return fmt.Errorf("%w: IOVA [%#x, %#x) overlaps a mapping: %w", vfio.ErrInvalid, d.iova, d.end(), syscall.EEXIST)
	case uint64(len(c.dmas)) >= c.srvMaxDMA:
		c.dmaMu.Unlock()
		return fmt.Errorf("%w: the server takes at most %d DMA mappings", vfio.ErrInvalid, c.srvMaxDMA)
	}
	c.dmas = slices.Insert(c.dmas, i, d)
	c.dmaMu.Unlock()

	var flags DMAMapFlags
	if perm&vfio.DMARead != 0 {
		flags |= DMAMapRead
	}
	if perm&vfio.DMAWrite != 0 {
		flags |= DMAMapWrite
	}
	req := DMAMap{Flags: flags, Address: uint64(iova), Size: size}
	var fds []int
	if fd := r.FD(); fd >= 0 {
		req.Offset, fds = offset, []int{fd}
	}
	m, err := c.call(CmdDMAMap, req.Encode(nil), fds)
	if err == nil {
		err = noFDs(m)
	}
	if err != nil {
		c.dmaRemove(d.iova, size)
		return fmt.Errorf("vfio-user: map DMA [%#x, %#x): %w", d.iova, d.end(), err)
	}
	return nil
}

func regionSize(r *dma.Region) int {
	if r == nil {
		return 0
	}
	return r.Size()
}

// dmaSlot returns where [lo, hi) goes in c.dmas, and false if it overlaps
// a mapping. c.dmaMu held.
func (c *Client) dmaSlot(lo, hi uint64) (int, bool) {
	i, _ := slices.BinarySearchFunc(c.dmas, lo, func(d clientDMA, a uint64) int {
		switch {
		case d.iova < a:
			return -1
		case d.iova > a:
			return 1
		}
		return 0
	})
	if i < len(c.dmas) && c.dmas[i].iova < hi {
		return i, false
	}
	if i > 0 && c.dmas[i-1].end() > lo {
		return i, false
	}
	return i, true
}

// dmaRemove drops the mapping at exactly [iova, iova+size); false if there
// is none.
func (c *Client) dmaRemove(iova, size uint64) bool {
	c.dmaMu.Lock()
	defer c.dmaMu.Unlock()
	i := c.dmaFind(iova)
	if i < 0 || c.dmas[i].iova != iova || uint64(len(c.dmas[i].mem)) != size {
		return false
	}
	c.dmas = slices.Delete(c.dmas, i, i+1)
	return true
}

// dmaFind returns the index of the mapping holding addr, or -1. c.dmaMu
// held (either way).
func (c *Client) dmaFind(addr uint64) int {
	i := sort.Search(len(c.dmas), func(i int) bool { return c.dmas[i].end() > addr })
	if i < len(c.dmas) && c.dmas[i].iova <= addr {
		return i
	}
	return -1
}

// UnmapDMA takes back the mapping made at exactly iova with size (DMA_UNMAP).
func (c *Client) UnmapDMA(iova vfio.IOVA, size uint64) error {
	if err := c.live(); err != nil {
		return err
	}
	c.dmaMu.RLock()
	i := c.dmaFind(uint64(iova))
	known := i >= 0 && c.dmas[i].iova == uint64(iova) && uint64(len(c.dmas[i].mem)) == size
	c.dmaMu.RUnlock()
	if !known {
		return fmt.Errorf("%w: no DMA mapping of exactly %d bytes at IOVA %#x", vfio.ErrInvalid, size, iova)
	}
	m, err := c.call(CmdDMAUnmap, DMAUnmap{Address: uint64(iova), Size: size}.Encode(nil), nil)
	if err != nil {
		return fmt.Errorf("vfio-user: unmap DMA [%#x, +%#x): %w", iova, size, err)
	}
	if err := noFDs(m); err != nil {
		return err
	}
	if len(m.Payload) > 0 { // the echo is optional (QEMU sends a bare header)
		u, err := DecodeDMAUnmap(m.Payload)
		if err != nil {
			return fmt.Errorf("vfio-user: unmap DMA [%#x, +%#x): %w", iova, size, err)
		}
		if u.Address != uint64(iova) || u.Size != size {
			return malformed(CmdDMAUnmap, "address/size", "unmapped [%#x, +%#x), reply echoes [%#x, +%#x)", iova, size, u.Address, u.Size)
		}
	}
	// The server has stopped using the range; later DMA messages for it
	// are refused.
	c.dmaRemove(uint64(iova), size)
	return nil
}

// dmaAccess copies between b and the mapped bytes at addr, for a server's
// DMA_READ (write false: the device reads host memory) or DMA_WRITE. The
// whole range must be mapped, possibly by adjacent mappings, with the
// permission; otherwise nothing is copied.
func (c *Client) dmaAccess(addr uint64, b []byte, write bool) syscall.Errno {
	if addr+uint64(len(b)) < addr {
		return unix.EINVAL
	}
	need := vfio.DMARead
	if write {
		need = vfio.DMAWrite
	}
	c.dmaMu.RLock()
	defer c.dmaMu.RUnlock()
	i := c.dmaFind(addr)
	if i < 0 {
		return unix.EFAULT
	}
	end := addr + uint64(len(b))
	// Check first: mapping i holds addr, each next one must start where
	// the previous ends, until end is covered.
	for j, at := i, addr; at < end; j++ {
		if j >= len(c.dmas) || (j > i && c.dmas[j].iova != at) || c.dmas[j].perm&need == 0 {
			return unix.EFAULT
		}
		at = c.dmas[j].end()
	}
	for j, at := i, addr; at < end; j++ {
		d := &c.dmas[j]
		mem := d.mem[at-d.iova:]
		n := uint64(len(mem))
		if end-at < n {
			n = end - at
		}
		if write {
			copy(mem[:n], b[at-addr:])
		} else {
			copy(b[at-addr:], mem[:n])
		}
		at += n
	}
	return 0
}

// handle serves the server's commands, on the reader goroutine.
func (c *Client) handle(m *Message) {
	defer m.CloseFDs()
	h := m.Header
	fail := func(errno syscall.Errno) {
		if !h.NoReply() {
			c.conn.ReplyError(h, errno)
		}
	}
	if m.Err != nil || len(m.FDs) > 0 {
		fail(unix.EINVAL)
		return
	}
	switch h.Command {
	case CmdDMARead:
		req, err := DecodeDMAReadRequest(m.Payload, c.wire)
		if err != nil {
			fail(unix.EINVAL)
			return
		}
		if req.Count > uint64(c.ourXfer) {
			fail(unix.E2BIG)
			return
		}
		data := make([]byte, req.Count)
		if errno := c.dmaAccess(req.Address, data, false); errno != 0 {
			fail(errno)
			return
		}
		if h.NoReply() {
			return
		}
		p, err := DMAReadReply{Address: req.Address, Data: data}.Encode(nil, c.wire)
		if err != nil {
			fail(unix.EINVAL)
			return
		}
		c.conn.Reply(h, p, nil)
	case CmdDMAWrite:
		req, err := DecodeDMAWriteRequest(m.Payload, c.wire)
		if err != nil {
			fail(unix.EINVAL)
			return
		}
		if uint64(len(req.Data)) > uint64(c.ourXfer) {
			fail(unix.E2BIG)
			return
		}
		if errno := c.dmaAccess(req.Address, req.Data, true); errno != 0 {
			fail(errno)
			return
		}
		if h.NoReply() {
			return
		}
		p, err := DMAWriteReply{Address: req.Address, Count: uint64(len(req.Data))}.Encode(nil, c.wire)
		if err != nil {
			fail(unix.EINVAL)
			return
		}
		c.conn.Reply(h, p, nil)
	default:
		fail(unix.ENOSYS)
	}
}

// ---------------------------------------------------------------------------

// Reset resets the device (DEVICE_RESET).
func (c *Client) Reset() error {
	if err := c.live(); err != nil {
		return err
	}
	m, err := c.call(CmdDeviceReset, nil, nil)
	if err != nil {
		return fmt.Errorf("vfio-user: reset: %w", err)
	}
	return noFDs(m)
}

// Close ends the connection, waits for the reader, unmaps every region
// mapping and closes every region descriptor. DMA mappings end with the
// connection (the server drops them when the client goes). A second Close
// returns nil.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	maps, regions := c.mappings, c.regions
	c.mappings, c.regions = nil, nil
	c.mu.Unlock()

	var errs []error
	if err := c.conn.Close(); err != nil {
		errs = append(errs, err)
	}
	<-c.readerDone
	for m := range maps {
		if err := m.unmap(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, r := range regions {
		if r.fd >= 0 {
			if err := unix.Close(r.fd); err != nil {
				errs = append(errs, fmt.Errorf("vfio-user: close the descriptor of %v: %w", r.info.Index, err))
			}
		}
	}
	c.dmaMu.Lock()
	c.dmas = nil
	c.dmaMu.Unlock()
	return errors.Join(errs...)
}
