package ringbench

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHistogramBuckets: every duration falls in a bucket whose bounds hold
// it, within 1/8 of it, and buckets follow one another without gaps.
func TestHistogramBuckets(t *testing.T) {
	for _, d := range []int64{0, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 4095, 4096, 1e9, 1<<62 + 12345} {
		i := histBucket(d)
		lower := int64(0)
		if i > 0 {
			lower = histUpper(i-1) + 1
		}
		require.LessOrEqual(t, lower, d, "duration %d, bucket %d", d, i)
		require.GreaterOrEqual(t, histUpper(i), d, "duration %d, bucket %d", d, i)
		require.LessOrEqual(t, histUpper(i)-d, d/8, "duration %d, bucket %d: too wide", d, i)
	}
	for i := 1; i < len(histogram{}.n); i++ {
		require.Equal(t, i, histBucket(histUpper(i-1)+1), "bucket %d starts right after %d", i, i-1)
		if histUpper(i) >= 1<<62 {
			break
		}
	}
}

// TestHistogramQuantile: the 99th percentile of 1..1000 is bucketed near
// 990, the maximum exact, and nothing counted reads 0.
func TestHistogramQuantile(t *testing.T) {
	var h histogram
	require.Zero(t, h.quantile(0.99))
	for d := int64(1); d <= 1000; d++ {
		h.add(d)
	}
	p99 := h.quantile(0.99)
	require.GreaterOrEqual(t, p99, int64(990))
	require.LessOrEqual(t, p99, int64(990+990/8))
	require.Equal(t, int64(1000), h.max)
	require.Equal(t, uint64(1000), h.count)
	require.Equal(t, int64(1000), h.quantile(1))
}

// TestMeasureStalls: both systems of every stall scenario move their
// records (the sums are checked) and count their waits.
func TestMeasureStalls(t *testing.T) {
	for _, sc := range StallScenarios {
		for _, sys := range sc.Systems {
			st, err := MeasureStalls(sys, sc, 20_000)
			require.NoError(t, err, "%s %s", sys, sc.Name)
			require.Equal(t, sys, st.System)
			require.Equal(t, 20_000, st.Items)
			require.LessOrEqual(t, st.P99, st.Max)
		}
	}
	_, err := MeasureStalls(SystemChan, StallScenarios[0], 1000)
	require.Error(t, err)
}
