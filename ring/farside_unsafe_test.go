package ring_test

import (
	"sync/atomic"
	"unsafe"
)

// word32 and word64 give the far side of farside_test.go ordered access to
// the metadata by byte offset, as firmware has through a pointer.
func word32(meta []byte, off int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&meta[off:][:4][0]))
}

func word64(meta []byte, off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&meta[off:][:8][0]))
}
