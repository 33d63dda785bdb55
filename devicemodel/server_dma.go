package devicemodel

// DMA: the client's DMA_MAP and DMA_UNMAP, which fill the session's
// DMATable, and the device's accesses to host memory through the session
// (Host, Pinner), with DMA_READ and DMA_WRITE messages for memory that came
// without a descriptor (DMAMessenger).

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

func (ss *session) dmaMap(m *user.Message) ([]byte, []int, *reqError) {
	d, err := user.DecodeDMAMap(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	if len(m.FDs) > 1 {
		return nil, nil, failf(unix.EINVAL, "DMA_MAP with %d descriptors", len(m.FDs))
	}
	if d.Flags&^(user.DMAMapRead|user.DMAMapWrite) != 0 {
		return nil, nil, failf(unix.EINVAL, "DMA_MAP flags %#x", uint32(d.Flags))
	}
	var perm vfio.Perm
	if d.Flags&user.DMAMapRead != 0 {
		perm |= vfio.DMARead
	}
	if d.Flags&user.DMAMapWrite != 0 {
		perm |= vfio.DMAWrite
	}
	if err := ss.table.Map(vfio.IOVA(d.Address), d.Size, perm, m.TakeFD(0), d.Offset); err != nil {
		return nil, nil, &reqError{errnoOf(err, unix.EINVAL), err}
	}
	return nil, nil, nil
}

func (ss *session) dmaUnmap(m *user.Message) ([]byte, []int, *reqError) {
	d, err := user.DecodeDMAUnmap(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	switch {
	case d.Flags&^user.DMAUnmapAll != 0:
		return nil, nil, failf(unix.EINVAL, "DMA_UNMAP flags %#x (dirty bitmaps are not supported)", uint32(d.Flags))
	case d.Flags&user.DMAUnmapAll != 0:
		if d.Address != 0 || d.Size != 0 {
			return nil, nil, failf(unix.EINVAL, "UNMAP_ALL with address %#x size %#x", d.Address, d.Size)
		}
		if err := ss.table.UnmapAll(); err != nil {
			return nil, nil, &reqError{unix.EIO, err}
		}
	default:
		if err := ss.table.Unmap(vfio.IOVA(d.Address), d.Size); err != nil {
			return nil, nil, &reqError{errnoOf(err, unix.EINVAL), err}
		}
	}
	return user.DMAUnmap{ArgSz: 0, Flags: d.Flags, Address: d.Address, Size: d.Size}.Encode(nil), nil, nil
}

// Read implements Host.
func (ss *session) Read(iova vfio.IOVA, b []byte) error { return ss.table.Read(iova, b) }

// Write implements Host.
func (ss *session) Write(iova vfio.IOVA, b []byte) error { return ss.table.Write(iova, b) }

// Load32 implements Host.
func (ss *session) Load32(iova vfio.IOVA) (uint32, error) { return ss.table.Load32(iova) }

// Store32 implements Host.
func (ss *session) Store32(iova vfio.IOVA, v uint32) error { return ss.table.Store32(iova, v) }

// Load64 implements Host.
func (ss *session) Load64(iova vfio.IOVA) (uint64, error) { return ss.table.Load64(iova) }

// Store64 implements Host.
func (ss *session) Store64(iova vfio.IOVA, v uint64) error { return ss.table.Store64(iova, v) }

// Pin implements Pinner: direct views of memory-backed mappings.
func (ss *session) Pin(iova vfio.IOVA, size uint64, perm vfio.Perm, revoke func()) ([]byte, func(), error) {
	return ss.table.Pin(iova, size, perm, revoke)
}

// ReadDMA implements DMAMessenger: DMA_READ requests to the client, in
// pieces no larger than both ends' max_data_xfer_size.
func (ss *session) ReadDMA(iova uint64, b []byte) error { return ss.dmaMessage(iova, b, false) }

// WriteDMA implements DMAMessenger with DMA_WRITE requests.
func (ss *session) WriteDMA(iova uint64, b []byte) error { return ss.dmaMessage(iova, b, true) }

func (ss *session) dmaMessage(iova uint64, b []byte, write bool) error {
	chunk := int(min(ss.cliXfer, ss.srv.opts.MaxDataXferSize))
	if chunk == 0 {
		return errors.New("the client takes no DMA data (max_data_xfer_size 0)")
	}
	wire := ss.srv.opts.DMAWire
	for done := 0; done < len(b); {
		n := min(len(b)-done, chunk)
		at := iova + uint64(done)
		ss.srv.dmaMsgs.Add(1)
		if err := ss.dmaOne(at, b[done:done+n], write, wire); err != nil {
			ss.srv.dmaMsgErrs.Add(1)
			return err
		}
		done += n
	}
	return nil
}

func (ss *session) dmaOne(at uint64, p []byte, write bool, wire user.DMAWire) error {
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.opts.DMATimeout)
	defer cancel()
	cmd := user.CmdDMARead
	var req []byte
	var err error
	if write {
		cmd = user.CmdDMAWrite
		req, err = user.DMAWriteRequest{Address: at, Data: p}.Encode(nil, wire)
	} else {
		req, err = user.DMAReadRequest{Address: at, Count: uint64(len(p))}.Encode(nil, wire)
	}
	if err != nil {
		return err
	}
	m, err := ss.conn.Call(ctx, cmd, req, nil)
	if err != nil {
		return fmt.Errorf("%s of %d bytes at %#x: %w", cmd, len(p), at, err)
	}
	defer m.CloseFDs()
	if len(m.FDs) > 0 {
		return fmt.Errorf("%s reply carries descriptors", cmd)
	}
	if write {
		r, err := user.DecodeDMAWriteReply(m.Payload, wire)
		if err != nil {
			return err
		}
		if wire == user.DMAWireSpec && (r.Address != at || r.Count != uint64(len(p))) {
			return fmt.Errorf("DMA_WRITE of %d bytes at %#x: reply echoes %d bytes at %#x", len(p), at, r.Count, r.Address)
		}
		return nil
	}
	r, err := user.DecodeDMAReadReply(m.Payload, wire)
	if err != nil {
		return err
	}
	if r.Address != at || len(r.Data) != len(p) {
		return fmt.Errorf("DMA_READ of %d bytes at %#x: reply has %d bytes at %#x", len(p), at, len(r.Data), r.Address)
	}
	copy(p, r.Data)
	return nil
}
