package wirebuf

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGrow(t *testing.T) {
	b := append(make([]byte, 0, 8), 1, 2, 0xff)
	b = b[:2] // a stale byte past the length must come back zeroed
	b, n := Grow(b, 3)
	require.Equal(t, []byte{1, 2, 0, 0, 0}, b)
	require.Len(t, n, 3)
	n[0] = 9
	require.Equal(t, byte(9), b[2], "the new bytes are b's")
	require.Nil(t, NilIfEmpty([]byte{}))
	require.Equal(t, []byte{1}, NilIfEmpty([]byte{1}))
}
