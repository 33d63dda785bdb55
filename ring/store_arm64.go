//go:build arm64 && !race

package ring

import "sync/atomic"

// StoreRelease64 writes v to w with release ordering (STLR): every earlier
// load and store is visible to an agent that reads v with an acquire load.
// See store_amd64_unsafe.go for why the ring wants exactly this.
func StoreRelease64(w *atomic.Uint64, v uint64) { storeRelease64(w, v) }

// StoreRelease32 is StoreRelease64 for a 32-bit word (STLRW).
func StoreRelease32(w *atomic.Uint32, v uint32) { storeRelease32(w, v) }

// Implemented in store_arm64.s.
//
//go:noescape
func storeRelease64(addr *atomic.Uint64, v uint64)

//go:noescape
func storeRelease32(addr *atomic.Uint32, v uint32)
