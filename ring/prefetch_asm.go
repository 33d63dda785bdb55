//go:build amd64 || arm64

package ring

import "unsafe"

// Implemented in prefetch_amd64.s and prefetch_arm64.s.
//
//go:noescape
func prefetchLines(p unsafe.Pointer, n, stride int, write bool)
