//go:build arm64 && !race

package ring

import "sync/atomic"

// storeRelease writes v to w with release ordering (STLR): every earlier
// load and store is visible to an agent that reads v with an acquire load.
// See store_amd64_unsafe.go for why the ring wants exactly this.
func storeRelease(w *atomic.Uint64, v uint64) { storeRelease64(w, v) }

// Implemented in store_arm64.s.
//
//go:noescape
func storeRelease64(addr *atomic.Uint64, v uint64)
