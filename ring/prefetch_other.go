//go:build !amd64 && !arm64

package ring

import "unsafe"

// prefetchLines does nothing where there is no prefetch routine: the
// loads it would have started happen when the lines are used.
func prefetchLines(unsafe.Pointer, int, int, bool) {}
