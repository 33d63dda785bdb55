package devicemodel_test

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// occupyAfter maps one inaccessible anonymous page at the address right
// after b, which must end on a page boundary, so that a mapping ending
// there cannot grow in place; the test's cleanup unmaps it.
func occupyAfter(t *testing.T, b []byte) {
	t.Helper()
	end := unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), len(b))
	p, err := unix.MmapPtr(-1, 0, end, page, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE)
	require.NoError(t, err, "the page after the view is taken already")
	require.Equal(t, end, p)
	t.Cleanup(func() { unix.MunmapPtr(p, page) })
}
