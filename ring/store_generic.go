//go:build race || !(amd64 || arm64)

package ring

import "sync/atomic"

// StoreRelease64 falls back to a sequentially consistent store where there
// is no release-store routine, and under the race detector, which sees
// synchronisation only through sync/atomic.
func StoreRelease64(w *atomic.Uint64, v uint64) { w.Store(v) }

// StoreRelease32 is StoreRelease64 for a 32-bit word.
func StoreRelease32(w *atomic.Uint32, v uint32) { w.Store(v) }
