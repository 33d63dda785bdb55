package devicemodel

import (
	"sync/atomic"
	"unsafe"
)

// localWord32 and localWord64 view the start of b, which the caller sliced
// with bounds checks and found aligned, as an atomic word of BAR2 memory.
func localWord32(b []byte) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&b[:4][0])) }

func localWord64(b []byte) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&b[:8][0])) }
