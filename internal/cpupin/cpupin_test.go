package cpupin_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/cpupin"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
	}{{"", nil}, {" ", nil}, {"1", []int{1}}, {"0,2-3", []int{0, 2, 3}}, {"3, 1-2,2", []int{3, 1, 2}}} {
		got, err := cpupin.Parse(c.in)
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, got, c.in)
	}
	for _, bad := range []string{"x", "-1", "1-", "3-1", "0,,1", "1024", "0-5000", "1.5"} {
		_, err := cpupin.Parse(bad)
		require.ErrorIs(t, err, cpupin.ErrCPU, bad)
	}
}

// TestThread: the thread runs on the CPU given while pinned and gets its
// old set back after; a list naming no usable CPU is refused and changes
// nothing.
func TestThread(t *testing.T) {
	before, err := cpupin.Allowed()
	require.NoError(t, err)
	require.NotEmpty(t, before)
	last := before[len(before)-1]

	release, err := cpupin.Thread([]int{last})
	require.NoError(t, err)
	now, err := cpupin.Allowed()
	require.NoError(t, err)
	require.Equal(t, []int{last}, now)
	release()

	release, err = cpupin.Thread([]int{1023})
	if err == nil {
		release()
		t.Skip("this machine has a CPU 1023")
	}
	require.ErrorIs(t, err, cpupin.ErrCPU)
	_, err = cpupin.Thread([]int{-1})
	require.ErrorIs(t, err, cpupin.ErrCPU)

	release, err = cpupin.Thread(nil)
	require.NoError(t, err)
	release()
	after, err := cpupin.Allowed()
	require.NoError(t, err)
	require.Equal(t, before, after)
}
