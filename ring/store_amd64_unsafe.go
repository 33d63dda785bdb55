//go:build amd64 && !race

package ring

import (
	"sync/atomic"
	"unsafe"
)

// StoreRelease64 writes v to w with release ordering: every load and store
// before it in program order is visible to an agent that reads v with an
// acquire load (atomic Load), which is what publishing or releasing a slot
// needs, and no more. atomic.Store would also order later loads, at the cost
// of a locked exchange (about 8 ns here); on amd64 every plain store already
// has release ordering in hardware (x86-TSO), and the compiler keeps stores
// in program order and does not move them across the atomic loads before
// them or into the caller. So a plain 8-byte aligned store is the release
// store. Use it only for a word no other agent writes at that moment: a held
// slot's descriptor, a single agent's cursor or counter; a Memory
// implementation's stores are such words. It does not order later loads: a
// waker calls Fence between its stores and its load of the waiters word.
// Race builds use atomic.Store instead (store_generic.go), so the race
// detector checks the protocol with the same pairing.
func StoreRelease64(w *atomic.Uint64, v uint64) {
	*(*uint64)(unsafe.Pointer(w)) = v
}

// StoreRelease32 is StoreRelease64 for a 32-bit word.
func StoreRelease32(w *atomic.Uint32, v uint32) {
	*(*uint32)(unsafe.Pointer(w)) = v
}
