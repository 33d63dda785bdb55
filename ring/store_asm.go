//go:build !race && (amd64 || arm64)

package ring

import "sync/atomic"

// storeRelease writes v to w with release ordering only: every load and
// store before it in program order is visible to an agent that reads v with
// an acquire load (atomic Load). That is what publishing a slot needs, and
// on amd64 it costs a plain MOV instead of the locked exchange that
// atomic.Store compiles to. Used only for words this agent alone writes at
// that moment: a held slot's descriptor, a single agent's cursor or counter.
func storeRelease(w *atomic.Uint64, v uint64) { storeRelease64(w, v) }

// Implemented in store_$GOARCH.s.
//
//go:noescape
func storeRelease64(addr *atomic.Uint64, v uint64)
