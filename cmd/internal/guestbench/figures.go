package guestbench

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// The two paths `ycq bench usb` compares.
const (
	PathUSB  = "usb"  // usbhost over the emulated xHCI, usb-redir to usbdev
	PathPCIe = "pcie" // hostdriver on kernel VFIO, vfio-user-pci to devicemodel
)

// Round is one measured run of a path at a record size: every pair sent
// Records/pairs records and checked every echo.
type Round struct {
	Path       string  `json:"path"`
	RecordSize int     `json:"record_size"`
	Round      int     `json:"round"`
	Records    int64   `json:"records"` // checked, all pairs
	Seconds    float64 `json:"seconds"` // from the first reserve to the last response checked
	PerSecond  float64 `json:"records_per_s"`
	MBps       float64 `json:"mb_per_s"` // request bytes a second, 1e6 bytes a MB
	// USB: bulk transfers completed (OUT and IN) and those whose buffer
	// was not slot memory (a copy). PCIe: none (the device reaches the
	// slots by DMA); its notifications instead.
	Transfers  uint64 `json:"transfers,omitempty"`
	Copies     uint64 `json:"copies"`
	Doorbells  uint64 `json:"doorbells,omitempty"`
	Interrupts uint64 `json:"interrupts,omitempty"`
	ProbeNs    int64  `json:"probe_ns"` // the guest's ping-pong round trip just before the round
}

// NewRound is the round of path at size that checked records in seconds.
func NewRound(path string, size, round int, records int64, seconds float64) Round {
	r := Round{Path: path, RecordSize: size, Round: round, Records: records, Seconds: seconds}
	if seconds > 0 {
		r.PerSecond = float64(records) / seconds
		r.MBps = r.PerSecond * float64(size) / 1e6
	}
	return r
}

// Cell is a path at a record size over its rounds.
type Cell struct {
	Path       string  `json:"path"`
	RecordSize int     `json:"record_size"`
	Rounds     int     `json:"rounds"`
	PerSecond  float64 `json:"records_per_s"` // median of the rounds
	MinPerS    float64 `json:"min_records_per_s"`
	MaxPerS    float64 `json:"max_records_per_s"`
	MBps       float64 `json:"mb_per_s"` // median of the rounds
	Transfers  uint64  `json:"transfers,omitempty"`
	Copies     uint64  `json:"copies"`
	// ProbeNs is the median of the guest's ping-pong probes before the
	// rounds: where it is far above the others, the vCPUs were not both
	// running (a busy host), and the cell's figures say less.
	ProbeNs int64 `json:"probe_ns"`
}

// Ratio is USB over PCIe at a record size: the median and the spread of
// the rounds' ratios, each USB round over the PCIe round it ran beside.
type Ratio struct {
	RecordSize int     `json:"record_size"`
	Median     float64 `json:"usb_over_pcie"`
	Min        float64 `json:"min"`
	Max        float64 `json:"max"`
	Rounds     int     `json:"rounds"`
}

// Summarize gives the cells, by record size (in the order the rounds
// first name them) then USB before PCIe, and a ratio for every record size
// that has rounds of both paths with the same round numbers.
func Summarize(rounds []Round) ([]Cell, []Ratio) {
	var sizes []int
	for _, r := range rounds {
		if !slices.Contains(sizes, r.RecordSize) {
			sizes = append(sizes, r.RecordSize)
		}
	}
	var cells []Cell
	var ratios []Ratio
	for _, size := range sizes {
		byPath := map[string]map[int]Round{}
		for _, path := range []string{PathUSB, PathPCIe} {
			var rps, mbps, probes []float64
			c := Cell{Path: path, RecordSize: size}
			byPath[path] = map[int]Round{}
			for _, r := range rounds {
				if r.Path != path || r.RecordSize != size {
					continue
				}
				byPath[path][r.Round] = r
				rps = append(rps, r.PerSecond)
				mbps = append(mbps, r.MBps)
				probes = append(probes, float64(r.ProbeNs))
				c.Transfers += r.Transfers
				c.Copies += r.Copies
			}
			if len(rps) == 0 {
				continue
			}
			c.Rounds = len(rps)
			c.PerSecond, c.MinPerS, c.MaxPerS = Spread(rps)
			c.MBps, _, _ = Spread(mbps)
			probe, _, _ := Spread(probes)
			c.ProbeNs = int64(probe)
			cells = append(cells, c)
		}
		var q []float64
		for n, u := range byPath[PathUSB] {
			if p, ok := byPath[PathPCIe][n]; ok && p.PerSecond > 0 {
				q = append(q, u.PerSecond/p.PerSecond)
			}
		}
		if len(q) > 0 {
			r := Ratio{RecordSize: size, Rounds: len(q)}
			r.Median, r.Min, r.Max = Spread(q)
			ratios = append(ratios, r)
		}
	}
	return cells, ratios
}

// Spread is the median, minimum and maximum of xs (the mean of the middle
// two for an even count); zeros for none.
func Spread(xs []float64) (median, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Sorted(slices.Values(xs))
	median = s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return median, s[0], s[len(s)-1]
}

// Table prints the cells and ratios, one line a path and record size.
func Table(w io.Writer, cells []Cell, ratios []Ratio) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "record\tpath\trecords/s\tmin-max\tMB/s\tusb/pcie (min-max)\trounds\tcopies\tprobe ns\t\n")
	for _, c := range cells {
		ratio := ""
		if c.Path == PathUSB {
			for _, r := range ratios {
				if r.RecordSize == c.RecordSize {
					ratio = fmt.Sprintf("%.3f (%.3f-%.3f)", r.Median, r.Min, r.Max)
				}
			}
		}
		copies := "-"
		if c.Path == PathUSB {
			copies = fmt.Sprintf("%d of %d transfers", c.Copies, c.Transfers)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f-%.0f\t%.2f\t%s\t%d\t%s\t%d\t\n", sizeName(c.RecordSize), c.Path,
			c.PerSecond, c.MinPerS, c.MaxPerS, c.MBps, ratio, c.Rounds, copies, c.ProbeNs)
	}
	return tw.Flush()
}

// sizeName writes a record size as 64 B or 16 KiB.
func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
