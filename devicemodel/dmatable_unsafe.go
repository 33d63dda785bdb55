package devicemodel

// The raw memory operations of the DMA table: mapping, unmapping and
// growing mappings at addresses unix.Mmap does not track (a span is often
// a piece of an earlier mapping), and single-word atomic accesses to mapped
// guest memory. Every pointer is taken from a bounds-checked reslice, so a
// bad offset panics in Go instead of touching stray memory.

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmapShared maps length bytes of fd from off (page aligned) shared.
func mmapShared(fd int, off int64, length int, prot int) ([]byte, error) {
	p, err := unix.MmapPtr(fd, off, nil, uintptr(length), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), length), nil
}

// munmapBytes unmaps the pages of b, which must start on a page boundary.
func munmapBytes(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.MunmapPtr(unsafe.Pointer(&b[0]), uintptr(len(b)))
}

// mremapGrow grows the mapping b to n bytes; for a shared file mapping the
// new pages map the file's next offsets. With move it may move the mapping
// (the old address is then unmapped); without, it grows in place or fails
// (ENOMEM when the addresses after b are taken).
func mremapGrow(b []byte, n int, move bool) ([]byte, error) {
	flags := 0
	if move {
		flags = unix.MREMAP_MAYMOVE
	}
	p, err := unix.MremapPtr(unsafe.Pointer(&b[0]), uintptr(len(b)), nil, uintptr(n), flags)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), n), nil
}

// aligned reports whether the word of size bytes at b[off] sits at an
// address that is a multiple of size.
func aligned(b []byte, off uint64, size int) bool {
	return uintptr(unsafe.Pointer(&b[off:][:size][0]))%uintptr(size) == 0
}

// The word accesses. Loads are acquire and stores release (Go's atomics
// are sequentially consistent, which is stronger); they pair with the
// host's own atomics on the same shared memory.

func load32(b []byte, off uint64) uint32 {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&b[off:][:4][0])))
}

func store32(b []byte, off uint64, v uint32) {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b[off:][:4][0])), v)
}

func load64(b []byte, off uint64) uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[off:][:8][0])))
}

func store64(b []byte, off uint64, v uint64) {
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&b[off:][:8][0])), v)
}
