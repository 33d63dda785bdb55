package user

// The Client's DMA: DMA_MAP and DMA_UNMAP of the host's memory, and the
// answers to the server's DMA_READ and DMA_WRITE from the mapped bytes.

import (
	"fmt"
	"slices"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/vfio"
)

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
