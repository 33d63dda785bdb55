package vfio

import (
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// MapArea maps size bytes at off of a region into this process, for a
// backend's Device.MapRegion. fd is the descriptor the region's bytes are
// read from, starting at file offset base (the kernel's region offset on
// the device fd, or the offset a vfio-user server gave with the region's
// fd); info is the region as the backend checked it. [off, off+size) must
// lie inside one of info.Mappable(). The pages that hold it are mapped
// shared, readable and writable as info.Flags allow; base need not be page
// aligned, nor off.
//
// It returns mem, the whole mapping (page aligned), for the caller to
// release with unix.Munmap, and part, the size bytes asked for, with
// capacity size so its holder cannot reach past them. It fails with an
// error wrapping ErrNoRegion if the region has nothing to map, ErrInvalid
// if the range is empty, not inside one area, or beyond the largest file
// offset, or else the mmap error.
func MapArea(fd int, base uint64, info RegionInfo, off, size uint64) (mem, part []byte, err error) {
	areas := info.Mappable()
	if len(areas) == 0 {
		return nil, nil, fmt.Errorf("%w: %v cannot be mapped", ErrNoRegion, info.Index)
	}
	inside := false
	for _, a := range areas {
		if off >= a.Offset && size <= a.Size && off-a.Offset <= a.Size-size {
			inside = true
			break
		}
	}
	if size == 0 || !inside {
		return nil, nil, fmt.Errorf("%w: %#x bytes at %#x of %v are not inside one mappable area %v", ErrInvalid, size, off, info.Index, areas)
	}
	const maxOff = math.MaxInt64 // mmap's file offset is an off_t
	if base > maxOff || off > maxOff-base || size > maxOff-(base+off) {
		return nil, nil, fmt.Errorf("%w: %#x bytes at %#x of %v, which starts at file offset %#x, run past 2^63", ErrInvalid, size, off, info.Index, base)
	}
	page := uint64(os.Getpagesize())
	at := base + off
	start := at &^ (page - 1)
	length := (at + size - start + page - 1) &^ (page - 1)
	if length > math.MaxInt || start > maxOff-length {
		return nil, nil, fmt.Errorf("%w: mapping of %#x bytes at %#x of %v is too large", ErrInvalid, size, off, info.Index)
	}
	prot := 0
	if info.Flags&RegionRead != 0 {
		prot |= unix.PROT_READ
	}
	if info.Flags&RegionWrite != 0 {
		prot |= unix.PROT_WRITE
	}
	mem, err = unix.Mmap(fd, int64(start), int(length), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("map %#x bytes at %#x of %v: %w", size, off, info.Index, err)
	}
	return mem, mem[at-start:][:size:size], nil
}
