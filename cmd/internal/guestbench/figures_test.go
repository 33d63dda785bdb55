package guestbench

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSpread(t *testing.T) {
	m, lo, hi := Spread([]float64{3, 1, 2})
	require.Equal(t, []float64{2, 1, 3}, []float64{m, lo, hi})
	m, lo, hi = Spread([]float64{4, 1, 2, 3})
	require.Equal(t, []float64{2.5, 1, 4}, []float64{m, lo, hi})
	m, lo, hi = Spread(nil)
	require.Equal(t, []float64{0, 0, 0}, []float64{m, lo, hi})
}

// TestSummarize: cells by size, USB first; each ratio is the median of
// the rounds' own ratios (USB round k over PCIe round k), not the ratio
// of the medians; a size without both paths has no ratio.
func TestSummarize(t *testing.T) {
	rounds := []Round{
		NewRound(PathUSB, 64, 0, 1000, 1), NewRound(PathPCIe, 64, 0, 4000, 1),
		NewRound(PathPCIe, 64, 1, 1000, 1), NewRound(PathUSB, 64, 1, 500, 1),
		NewRound(PathUSB, 64, 2, 3000, 1), NewRound(PathPCIe, 64, 2, 3000, 1),
		NewRound(PathUSB, 16384, 0, 100, 2),
	}
	rounds[0].Transfers, rounds[0].Copies = 10, 1
	rounds[3].Transfers = 5
	rounds[0].ProbeNs, rounds[3].ProbeNs, rounds[4].ProbeNs = 300, 100, 200
	cells, ratios := Summarize(rounds)
	require.Len(t, cells, 3)
	require.Equal(t, Cell{Path: PathUSB, RecordSize: 64, Rounds: 3, PerSecond: 1000, MinPerS: 500, MaxPerS: 3000,
		MBps: 0.064, Transfers: 15, Copies: 1, ProbeNs: 200}, cells[0])
	require.Equal(t, PathPCIe, cells[1].Path)
	require.Equal(t, 3000.0, cells[1].PerSecond)
	require.Equal(t, Cell{Path: PathUSB, RecordSize: 16384, Rounds: 1, PerSecond: 50, MinPerS: 50, MaxPerS: 50, MBps: 50 * 16384 / 1e6}, cells[2])
	require.Equal(t, []Ratio{{RecordSize: 64, Median: 0.5, Min: 0.25, Max: 1, Rounds: 3}}, ratios)

	var b strings.Builder
	require.NoError(t, Table(&b, cells, ratios))
	out := b.String()
	require.Contains(t, out, "usb/pcie")
	require.Contains(t, out, "0.500 (0.250-1.000)")
	require.Contains(t, out, "1 of 15 transfers")
	require.Contains(t, out, "16 KiB")
	require.Contains(t, out, "64 B")
	require.Contains(t, out, "probe ns")
}
