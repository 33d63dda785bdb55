//go:build amd64 && !race

package ring

import (
	"sync/atomic"
	"unsafe"
)

// storeRelease writes v to w with release ordering: every load and store
// before it in program order is visible to an agent that reads v with an
// acquire load (atomic Load), which is what publishing or releasing a slot
// needs, and no more. atomic.Store would also order later loads, at the cost
// of a locked exchange (about 8 ns here); on amd64 every plain store already
// has release ordering in hardware (x86-TSO), and the compiler keeps stores
// in program order and does not move them across the atomic loads before
// them or into the caller. So a plain 8-byte aligned store is the release
// store. It is used only for words this agent alone writes at that moment: a
// held slot's descriptor, a single agent's cursor or counter. Race builds use
// atomic.Store instead (store_generic.go), so the race detector checks the
// protocol with the same pairing.
func storeRelease(w *atomic.Uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(w)) = v
}
