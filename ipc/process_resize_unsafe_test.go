package ipc

import (
	"sync/atomic"
	"unsafe"
)

// word is the control region's 8-byte word i, for atomic access from
// every process that maps it; the bounds-checked reslice panics on an
// index past the region.
func (c rzControl) word(i int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&c.b[8*i:][:8][0]))
}
