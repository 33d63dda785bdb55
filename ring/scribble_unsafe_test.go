package ring_test

import (
	"sync/atomic"
	"unsafe"
)

// scribble writes v over the 8-byte word at off (rounded down to a multiple
// of 8) of meta with an atomic store, as a hostile peer in another process
// would, without upsetting the race detector.
func scribble(meta []byte, off int, v uint64) {
	off &^= 7
	w := (*atomic.Uint64)(unsafe.Pointer(&meta[off:][:8][0]))
	w.Store(v)
}
