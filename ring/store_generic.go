//go:build race || !(amd64 || arm64)

package ring

import "sync/atomic"

// storeRelease falls back to a sequentially consistent store where there
// is no release-store routine, and under the race detector, which sees
// synchronisation only through sync/atomic.
func storeRelease(w *atomic.Uint64, v uint64) { w.Store(v) }
