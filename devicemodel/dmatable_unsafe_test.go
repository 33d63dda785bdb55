package devicemodel_test

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// occupyAfter maps one inaccessible anonymous page at the address right
// after b, which must end on a page boundary, so that a mapping ending
// there cannot grow in place; the test's cleanup unmaps it. If something
// is mapped there already (the kernel places mappings next to each other),
// the mapping cannot grow in place either, and nothing is added.
func occupyAfter(t *testing.T, b []byte) {
	t.Helper()
	end := unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), len(b))
	p, err := unix.MmapPtr(-1, 0, end, page, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE)
	if errors.Is(err, unix.EEXIST) {
		return
	}
	require.NoError(t, err, "mapping the page after the view")
	require.Equal(t, end, p)
	t.Cleanup(func() { unix.MunmapPtr(p, page) })
}
