package user

// The Client's regions: region info (with the sparse mmap capability),
// REGION_READ and REGION_WRITE, and mappings of mappable areas.

import (
	"fmt"
	"math"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/vfio"
)

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
		req, err := RegionInfo{ArgSz: argsz, Index: idx}.Encode(nil)
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
		if ri.Index != idx {
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
		req := RegionAccess{Offset: at, Region: idx, Count: uint32(n)}
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
		p, err := RegionData{Offset: at, Region: idx, Data: b[done : done+n]}.Encode(nil)
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
		if a.Offset != at || a.Region != idx || a.Count != uint32(n) {
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
// region offset + off) shared, readable and writable as the region is
// (vfio.MapArea; checkRegion kept the descriptor exactly when the region
// is mappable). The server could shrink the file behind the mapping;
// touching such a mapping then faults (SIGBUS), as it would with a kernel
// device.
func (c *Client) MapRegion(idx vfio.RegionIndex, off, size uint64) (vfio.Mapping, error) {
	r, err := c.region(idx)
	if err != nil {
		return nil, err
	}
	mem, b, err := vfio.MapArea(r.fd, r.mmapOffset, r.info, off, size)
	if err != nil {
		return nil, fmt.Errorf("vfio-user: %w", err)
	}
	// A file that already ends before the mapping does is the server's
	// mistake: refuse it rather than hand out pages that fault.
	fileOff := r.mmapOffset + off // no overflow: checkRegion bounded offset+size
	var st unix.Stat_t
	if err := unix.Fstat(r.fd, &st); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("vfio-user: stat the descriptor of %v: %w", idx, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && (st.Size < 0 || uint64(st.Size) < fileOff+size) {
		unix.Munmap(mem)
		return nil, malformed(CmdDeviceGetRegionInfo, "offset/size", "%v: the server's file holds %d bytes, the mapping needs %d", idx, st.Size, fileOff+size)
	}
	m := &regionMapping{c: c, mem: mem, b: b}
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
