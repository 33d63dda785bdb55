package vfio_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/vfio"
)

// areaFile returns a file of n bytes, byte i holding i%251, opened with
// flag, for MapArea to map.
func areaFile(t *testing.T, n int, flag int) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "region")
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	require.NoError(t, os.WriteFile(path, b, 0o600))
	f, err := os.OpenFile(path, flag, 0)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func TestMapArea(t *testing.T) {
	page := uint64(os.Getpagesize())
	f := areaFile(t, int(4*page), os.O_RDWR)
	fd := int(f.Fd())
	// A region that starts mid-page in the file (vfio-user servers may say
	// any offset), with one mappable area: its second page.
	base := page + 100
	info := vfio.RegionInfo{Index: vfio.BAR2, Flags: vfio.RegionRead | vfio.RegionWrite | vfio.RegionMmap, Size: 2 * page,
		Areas: []vfio.Area{{Offset: page, Size: page}}}

	off, size := page+0x10, uint64(0x20)
	mem, part, err := vfio.MapArea(fd, base, info, off, size)
	require.NoError(t, err)
	defer unix.Munmap(mem)
	require.Len(t, part, int(size))
	require.Equal(t, int(size), cap(part), "the holder cannot reach past its part")
	require.Zero(t, uint64(len(mem))%page, "the mapping is whole pages")
	at := base + off
	require.Equal(t, byte(at%251), part[0], "part starts at file offset base+off")
	require.Equal(t, byte((at+size-1)%251), part[size-1])
	copy(part, "through the mapping")
	got := make([]byte, 19)
	_, err = f.ReadAt(got, int64(at))
	require.NoError(t, err)
	require.Equal(t, "through the mapping", string(got), "the mapping is shared")

	// The whole area, and a region without areas (all of it mappable).
	mem2, part2, err := vfio.MapArea(fd, base, info, page, page)
	require.NoError(t, err)
	require.Len(t, part2, int(page))
	require.NoError(t, unix.Munmap(mem2))
	whole := info
	whole.Areas = nil
	mem2, part2, err = vfio.MapArea(fd, 0, whole, 0, 2*page)
	require.NoError(t, err)
	require.Len(t, part2, int(2*page))
	require.NoError(t, unix.Munmap(mem2))

	for name, c := range map[string]struct{ off, size uint64 }{
		"outside the area":      {0, 0x10},
		"across the area's end": {2*page - 8, 0x10},
		"zero size":             {page, 0},
		"size wraps":            {page + 1, ^uint64(0)},
		"offset wraps":          {^uint64(0), 1},
	} {
		_, _, err := vfio.MapArea(fd, base, info, c.off, c.size)
		require.ErrorIs(t, err, vfio.ErrInvalid, name)
	}
	huge := whole
	huge.Size = ^uint64(0)
	_, _, err = vfio.MapArea(fd, 1<<63-page, huge, 0, 2*page)
	require.ErrorIs(t, err, vfio.ErrInvalid, "past the largest file offset")

	noMmap := info
	noMmap.Flags &^= vfio.RegionMmap
	_, _, err = vfio.MapArea(fd, base, noMmap, page, page)
	require.ErrorIs(t, err, vfio.ErrNoRegion, "not mappable")

	_, _, err = vfio.MapArea(-1, base, info, page, page)
	require.ErrorIs(t, err, syscall.EBADF, "the mmap error")
	require.NotErrorIs(t, err, vfio.ErrInvalid)
}

// TestMapAreaReadOnly maps a read-only region from a read-only file: the
// protection follows the region's flags, so mmap does not ask for write.
func TestMapAreaReadOnly(t *testing.T) {
	page := uint64(os.Getpagesize())
	f := areaFile(t, int(page), os.O_RDONLY)
	info := vfio.RegionInfo{Index: vfio.ROMRegion, Flags: vfio.RegionRead | vfio.RegionMmap, Size: page}
	mem, part, err := vfio.MapArea(int(f.Fd()), 0, info, 8, 8)
	require.NoError(t, err)
	defer unix.Munmap(mem)
	require.Equal(t, []byte{8, 9, 10, 11, 12, 13, 14, 15}, part)

	info.Flags |= vfio.RegionWrite
	_, _, err = vfio.MapArea(int(f.Fd()), 0, info, 8, 8)
	require.ErrorIs(t, err, syscall.EACCES, "a writable region needs a writable descriptor")
}
