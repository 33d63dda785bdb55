package devicemodel

// Regions: DEVICE_GET_REGION_INFO (with the sparse mmap capability and the
// region's descriptor), REGION_READ, REGION_WRITE and REGION_WRITE_MULTI.

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// sizeofSparseReply is the region info reply with a sparse mmap capability
// of n areas: the 32-byte struct, the 16-byte capability head, 16 bytes
// per area. Encoding the reply gives the same number; this tells the
// short reply how much room to ask for.
func sizeofSparseReply(n int) (uint32, error) {
	b, err := user.RegionInfo{Caps: []user.RegionCap{user.SparseMmapCap{Areas: make([]user.SparseArea, n)}}}.Encode(nil)
	return uint32(len(b)), err
}

func (ss *session) regionInfo(m *user.Message) ([]byte, []int, *reqError) {
	req, err := user.DecodeRegionInfoRequest(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	di := ss.srv.dev.Info()
	if uint32(req.Index) >= di.NumRegions {
		return nil, nil, failf(unix.EINVAL, "region %d of %d", req.Index, di.NumRegions)
	}
	r := ss.srv.dev.Region(req.Index)
	ri := user.RegionInfo{Index: req.Index, Size: r.Info.Size}
	if r.Info.Size == 0 {
		b, _ := ri.Encode(nil) // cannot fail without capabilities
		return b, nil, nil
	}
	if r.Info.Flags&vfio.RegionRead != 0 {
		ri.Flags |= user.RegionFlagRead
	}
	if r.Info.Flags&vfio.RegionWrite != 0 {
		ri.Flags |= user.RegionFlagWrite
	}
	areas := r.Info.Mappable()
	if r.FD < 0 || len(areas) == 0 {
		b, _ := ri.Encode(nil)
		return b, nil, nil
	}
	ri.Flags |= user.RegionFlagMmap
	ri.Offset = r.MmapOffset
	need, err := sizeofSparseReply(len(areas))
	if err != nil {
		return nil, nil, &reqError{unix.EIO, err}
	}
	if req.ArgSz < need {
		// Too small for the capability: the 32-byte struct alone,
		// argsz saying how much to ask for, no descriptor.
		ri.ArgSz = need
		b, _ := ri.Encode(nil)
		return b, nil, nil
	}
	sp := user.SparseMmapCap{Areas: make([]user.SparseArea, len(areas))}
	for i, a := range areas {
		sp.Areas[i] = user.SparseArea{Offset: a.Offset, Size: a.Size}
	}
	ri.Caps = []user.RegionCap{sp}
	b, err := ri.Encode(nil)
	if err != nil {
		return nil, nil, &reqError{unix.EIO, err}
	}
	return b, []int{r.FD}, nil // the device keeps its fd; SCM_RIGHTS sends a copy
}

// regionCheck validates an access of count bytes at off of region idx
// against the region and the negotiated transfer size.
func (ss *session) regionCheck(idx vfio.RegionIndex, off uint64, count int, flag vfio.RegionFlags) *reqError {
	di := ss.srv.dev.Info()
	if uint32(idx) >= di.NumRegions {
		return failf(unix.EINVAL, "region %d of %d", idx, di.NumRegions)
	}
	info := ss.srv.dev.Region(idx).Info
	switch {
	case info.Size == 0:
		return failf(unix.EINVAL, "region %d does not exist", idx)
	case info.Flags&flag == 0:
		return failf(unix.EINVAL, "region %d does not allow that access (flags %#x)", idx, info.Flags)
	case count == 0:
		return failf(unix.EINVAL, "empty access to region %d", idx)
	case count > int(ss.srv.opts.MaxDataXferSize):
		return failf(unix.EINVAL, "%d bytes exceed max_data_xfer_size %d", count, ss.srv.opts.MaxDataXferSize)
	case off > info.Size || uint64(count) > info.Size-off:
		return failf(unix.EINVAL, "%d bytes at %#x are outside region %d (%#x bytes)", count, off, idx, info.Size)
	}
	return nil
}

func (ss *session) regionRead(m *user.Message) ([]byte, []int, *reqError) {
	a, err := user.DecodeRegionReadRequest(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	if rerr := ss.regionCheck(a.Region, a.Offset, int(a.Count), vfio.RegionRead); rerr != nil {
		return nil, nil, rerr
	}
	// One buffer: the reply head, then the data the device fills in.
	b := user.RegionAccess{Offset: a.Offset, Region: a.Region, Count: a.Count}.Encode(make([]byte, 0, 16+int(a.Count)))
	head := len(b)
	b = b[:head+int(a.Count)]
	if err := ss.srv.dev.ReadRegion(a.Region, a.Offset, b[head:]); err != nil {
		return nil, nil, &reqError{errnoOf(err, unix.EIO), fmt.Errorf("device read of %d bytes of region %d at %#x: %w", a.Count, a.Region, a.Offset, err)}
	}
	return b, nil, nil
}

func (ss *session) regionWrite(m *user.Message) ([]byte, []int, *reqError) {
	d, err := user.DecodeRegionWriteRequest(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	if rerr := ss.regionCheck(d.Region, d.Offset, len(d.Data), vfio.RegionWrite); rerr != nil {
		return nil, nil, rerr
	}
	if err := ss.srv.dev.WriteRegion(d.Region, d.Offset, d.Data); err != nil {
		return nil, nil, &reqError{errnoOf(err, unix.EIO), fmt.Errorf("device write of %d bytes to region %d at %#x: %w", len(d.Data), d.Region, d.Offset, err)}
	}
	return user.RegionAccess{Offset: d.Offset, Region: d.Region, Count: uint32(len(d.Data))}.Encode(nil), nil, nil
}

func (ss *session) regionWriteMulti(m *user.Message) ([]byte, []int, *reqError) {
	wm, err := user.DecodeRegionWriteMulti(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	for i := range wm.Writes {
		w := &wm.Writes[i]
		if rerr := ss.regionCheck(w.Region, w.Offset, int(w.Count), vfio.RegionWrite); rerr != nil {
			rerr.err = fmt.Errorf("write %d of %d: %w", i, len(wm.Writes), rerr.err)
			return nil, nil, rerr
		}
		if err := ss.srv.dev.WriteRegion(w.Region, w.Offset, w.Bytes()); err != nil {
			return nil, nil, &reqError{errnoOf(err, unix.EIO), fmt.Errorf("write %d of %d: device write to region %d at %#x: %w", i, len(wm.Writes), w.Region, w.Offset, err)}
		}
	}
	return user.RegionWriteMultiReply{Count: uint64(len(wm.Writes))}.Encode(nil), nil, nil
}
