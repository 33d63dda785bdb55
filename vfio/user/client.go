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
	"sync"
	"time"

	"golang.org/x/sys/unix"

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
