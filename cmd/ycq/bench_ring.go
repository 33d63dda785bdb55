package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ycq-dev/ycq/internal/ringbench"
)

func benchRing(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq bench ring", flag.ContinueOnError)
	fs.SetOutput(stderr)
	items := fs.Int("items", 5_000_000, "records per run")
	rounds := fs.Int("rounds", 5, "runs of each system and scenario; the median is reported")
	latRate := fs.Float64("latency-rate", 1e6, "offered records/s of the latency runs (0: none)")
	latRecords := fs.Int("latency-records", 200_000, "records of each latency run")
	stallRuns := fs.Bool("stalls", true, "also time the producers' waits for room, ring against ring-resize")
	asJSON := fs.Bool("json", false, "print one JSON object per result instead of a table")
	verbose := fs.Bool("v", false, "print every run")
	dpdk := fs.String("dpdk", "", "also run this build of bench/dpdk (make bench-dpdk builds bin/dpdk-ring-bench) once a round, as system "+systemDPDK)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *items < 1024 || *rounds < 1 || *latRate < 0 || (*latRate > 0 && *latRecords < 100) {
		return usagef("-items must be at least 1024, -rounds at least 1, -latency-records at least 100")
	}
	type key struct {
		system string
		sc     int
	}
	runs := map[key][]ringbench.Result{}
	systemsOf := func(i int) []string {
		if *dpdk != "" {
			return append(slices.Clone(ringbench.Scenarios[i].Systems), systemDPDK)
		}
		return ringbench.Scenarios[i].Systems
	}
	var probes []time.Duration
	// Interleave systems and scenarios round by round, rotating which
	// system goes first, so drift in the machine hits all alike.
	for round := range *rounds {
		probes = append(probes, ringbench.PingPong(20*time.Millisecond))
		for i, sc := range ringbench.Scenarios {
			systems := slices.Clone(sc.Systems)
			k := (round + i) % len(systems)
			systems = append(systems[k:], systems[:k]...)
			for _, sys := range systems {
				r, err := ringbench.Run(sys, sc, *items)
				if err != nil {
					return err
				}
				if *verbose {
					fmt.Fprintf(stderr, "round %d: %-10s %s %dx%d batch %-2d %7.2f M items/s\n",
						round, r.System, r.Scenario, r.Producers, r.Consumers, r.Batch, r.ItemsPerSec/1e6)
				}
				runs[key{sys, i}] = append(runs[key{sys, i}], r)
			}
		}
		if *dpdk != "" {
			rs, err := runDPDK(*dpdk, *items)
			if err != nil {
				return err
			}
			for i, sc := range ringbench.Scenarios {
				r, ok := rs[[3]int{sc.Producers, sc.Consumers, sc.Batch}]
				if !ok {
					return fmt.Errorf("%s: no result for %s %dx%d batch %d", *dpdk, sc.Name, sc.Producers, sc.Consumers, sc.Batch)
				}
				runs[key{systemDPDK, i}] = append(runs[key{systemDPDK, i}], r)
			}
		}
	}
	lats := map[string][]ringbench.Latency{}
	if *latRate > 0 {
		for round := range *rounds {
			systems := slices.Clone(ringbench.LatencySystems)
			if round%2 == 1 {
				slices.Reverse(systems)
			}
			for _, sys := range systems {
				l, err := ringbench.MeasureLatency(sys, *latRate, *latRecords)
				if err != nil {
					return err
				}
				lats[sys] = append(lats[sys], l)
			}
		}
	}
	// stalls[i][sys] are the stall runs of ringbench.StallScenarios[i].
	stalls := make([]map[string][]ringbench.Stalls, len(ringbench.StallScenarios))
	if *stallRuns {
		for i := range stalls {
			stalls[i] = map[string][]ringbench.Stalls{}
		}
		for round := range *rounds {
			for i, sc := range ringbench.StallScenarios {
				systems := slices.Clone(sc.Systems)
				if round%2 == 1 {
					slices.Reverse(systems)
				}
				for _, sys := range systems {
					st, err := ringbench.MeasureStalls(sys, sc, *items)
					if err != nil {
						return err
					}
					stalls[i][sys] = append(stalls[i][sys], st)
				}
			}
		}
	}
	probes = append(probes, ringbench.PingPong(20*time.Millisecond))
	slices.Sort(probes)

	median := func(rs []ringbench.Result) ringbench.Result {
		s := slices.Clone(rs)
		slices.SortFunc(s, func(a, b ringbench.Result) int { return cmp.Compare(a.ItemsPerSec, b.ItemsPerSec) })
		return s[len(s)/2]
	}
	spread := func(rs []ringbench.Result) (lo, hi float64) {
		lo, hi = rs[0].ItemsPerSec, rs[0].ItemsPerSec
		for _, r := range rs {
			lo, hi = min(lo, r.ItemsPerSec), max(hi, r.ItemsPerSec)
		}
		return lo, hi
	}
	// ratioSpread is the range of the round-by-round ratios of a to b.
	ratioSpread := func(a, b []ringbench.Result) (lo, hi float64) {
		for i := range a {
			r := a[i].ItemsPerSec / b[i].ItemsPerSec
			if i == 0 {
				lo, hi = r, r
			}
			lo, hi = min(lo, r), max(hi, r)
		}
		return lo, hi
	}
	medianLat := func(ls []ringbench.Latency) ringbench.Latency {
		s := slices.Clone(ls)
		slices.SortFunc(s, func(a, b ringbench.Latency) int { return cmp.Compare(a.P99, b.P99) })
		m := s[len(s)/2]
		slices.SortFunc(s, func(a, b ringbench.Latency) int { return cmp.Compare(a.P50, b.P50) })
		m.P50 = s[len(s)/2].P50
		return m
	}
	// medianStalls is the median p99 of a system's stall runs, with the
	// longest wait of them all.
	medianStalls := func(ss []ringbench.Stalls) ringbench.Stalls {
		s := slices.Clone(ss)
		slices.SortFunc(s, func(a, b ringbench.Stalls) int { return cmp.Compare(a.P99, b.P99) })
		m := s[len(s)/2]
		for _, st := range ss {
			m.Max = max(m.Max, st.Max)
		}
		return m
	}
	probe := probes[len(probes)/2]

	if *asJSON {
		type row struct {
			ringbench.Result
			Min     float64 `json:"min_items_per_sec"`
			Max     float64 `json:"max_items_per_sec"`
			Rounds  int     `json:"rounds"`
			ProbeNs int64   `json:"pingpong_round_trip_ns"`
		}
		enc := json.NewEncoder(stdout)
		for i := range ringbench.Scenarios {
			for _, sys := range systemsOf(i) {
				rs := runs[key{sys, i}]
				lo, hi := spread(rs)
				if err := enc.Encode(row{median(rs), lo, hi, len(rs), int64(probe)}); err != nil {
					return err
				}
			}
		}
		for _, sys := range ringbench.LatencySystems {
			if ls := lats[sys]; len(ls) > 0 {
				type latRow struct {
					ringbench.Latency
					Kind    string `json:"kind"`
					Rounds  int    `json:"rounds"`
					ProbeNs int64  `json:"pingpong_round_trip_ns"`
				}
				if err := enc.Encode(latRow{medianLat(ls), "latency", len(ls), int64(probe)}); err != nil {
					return err
				}
			}
		}
		for i := range stalls {
			for _, sys := range ringbench.StallScenarios[i].Systems {
				if ss := stalls[i][sys]; len(ss) > 0 {
					type stallRow struct {
						ringbench.Stalls
						Kind    string `json:"kind"`
						Rounds  int    `json:"rounds"`
						ProbeNs int64  `json:"pingpong_round_trip_ns"`
					}
					if err := enc.Encode(stallRow{medianStalls(ss), "stall", len(ss), int64(probe)}); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}

	fmt.Fprintf(stdout, "cache-line round trip between the two CPUs (ping-pong): %v median, %v to %v over the run\n",
		probe.Round(time.Nanosecond), probes[0].Round(time.Nanosecond), probes[len(probes)-1].Round(time.Nanosecond))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\tbatch\tsystem\titems/s\tspread\tring/system\tround ratios\t\n")
	for i, sc := range ringbench.Scenarios {
		ring := runs[key{ringbench.SystemRing, i}]
		for _, sys := range systemsOf(i) {
			rs := runs[key{sys, i}]
			m := median(rs)
			lo, hi := spread(rs)
			ratio, rounds := "", ""
			if sys != ringbench.SystemRing {
				rlo, rhi := ratioSpread(ring, rs)
				ratio = fmt.Sprintf("%.2fx", median(ring).ItemsPerSec/m.ItemsPerSec)
				rounds = fmt.Sprintf("%.2f-%.2fx", rlo, rhi)
			}
			fmt.Fprintf(tw, "%s %dx%d\t%d\t%s\t%.2fM\t%.1f-%.1fM\t%s\t%s\t\n", sc.Name, sc.Producers, sc.Consumers, sc.Batch,
				sys, m.ItemsPerSec/1e6, lo/1e6, hi/1e6, ratio, rounds)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if *latRate > 0 {
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "latency\tsystem\tp50\tp99\tp99 spread\tmax\t\n")
		for _, sys := range ringbench.LatencySystems {
			ls := lats[sys]
			m := medianLat(ls)
			lo, hi, longest := ls[0].P99, ls[0].P99, ls[0].Max
			for _, l := range ls {
				lo, hi, longest = min(lo, l.P99), max(hi, l.P99), max(longest, l.Max)
			}
			fmt.Fprintf(tw, "spsc 1x1 batch 1 at %.2gM/s\t%s\t%v\t%v\t%v-%v\t%v\t\n", *latRate/1e6, sys,
				m.P50.Round(10*time.Nanosecond), m.P99.Round(10*time.Nanosecond),
				lo.Round(10*time.Nanosecond), hi.Round(10*time.Nanosecond), longest.Round(10*time.Nanosecond))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	// The ring's cached sides, a policy of the package's own, against the
	// channel, the one system the goals name, in each scenario with both.
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "ring-cached\tbatch\tring-cached/chan\tround ratios\tring-cached/ring\t\n")
	for i, sc := range ringbench.Scenarios {
		cached, chans := runs[key{ringbench.SystemCached, i}], runs[key{ringbench.SystemChan, i}]
		if len(cached) == 0 || len(chans) == 0 {
			continue
		}
		lo, hi := ratioSpread(cached, chans)
		fmt.Fprintf(tw, "%s %dx%d\t%d\t%.2fx\t%.2f-%.2fx\t%.2fx\t\n", sc.Name, sc.Producers, sc.Consumers, sc.Batch,
			median(cached).ItemsPerSec/median(chans).ItemsPerSec, lo, hi,
			median(cached).ItemsPerSec/median(runs[key{ringbench.SystemRing, i}]).ItemsPerSec)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// What resizing costs: ring-resize's throughput against the ring's in
	// each scenario that has both, and both systems' waits for room.
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "resized every %v\tbatch\tring-resize/ring\tround ratios\tsystem\tproducer waits\twait p99\tlongest\t\n", ringbench.ResizeEvery)
	for i, sc := range ringbench.Scenarios {
		if !slices.Contains(sc.Systems, ringbench.SystemResize) {
			continue
		}
		ring, resized := runs[key{ringbench.SystemRing, i}], runs[key{ringbench.SystemResize, i}]
		lo, hi := ratioSpread(resized, ring)
		ratio := fmt.Sprintf("%.2fx", median(resized).ItemsPerSec/median(ring).ItemsPerSec)
		rounds := fmt.Sprintf("%.2f-%.2fx", lo, hi)
		var ss map[string][]ringbench.Stalls
		for j, st := range ringbench.StallScenarios {
			if st.Name == sc.Name && st.Producers == sc.Producers && st.Consumers == sc.Consumers && st.Batch == sc.Batch {
				ss = stalls[j]
			}
		}
		if len(ss) == 0 {
			fmt.Fprintf(tw, "%s %dx%d\t%d\t%s\t%s\t\t\t\t\t\n", sc.Name, sc.Producers, sc.Consumers, sc.Batch, ratio, rounds)
			continue
		}
		for k, sys := range []string{ringbench.SystemRing, ringbench.SystemResize} {
			m := medianStalls(ss[sys])
			name := ""
			if k == 0 {
				name = fmt.Sprintf("%s %dx%d\t%d\t%s\t%s", sc.Name, sc.Producers, sc.Consumers, sc.Batch, ratio, rounds)
			} else {
				name = "\t\t\t"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%v\t\n", name, sys, m.Waits, threeDigits(m.P99), threeDigits(m.Max))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d-byte records written and read in full, capacity %d, median of %d runs of %d records each\n",
		ringbench.Payload, ringbench.Capacity, *rounds, *items)
	fmt.Fprintln(stdout, strings.Join([]string{
		"ring: ycq ring, public API; a waiting side spins 1, 2, 4 ... 32 PAUSE steps, then yields",
		fmt.Sprintf("ring-resize: the ring as a ring.Resizable, resized between %d and %d slots every %v", ringbench.Capacity, ringbench.Capacity/2, ringbench.ResizeEvery),
		fmt.Sprintf("ring-cached: the ring through ring.CachedProducer/CachedConsumer: records one at a time, from runs of up to %d reserved at once", ringbench.CacheRun),
		"chan: chan [64]byte; pool: pooled *[64]byte through a free-list and a data channel;",
		fmt.Sprintf("chan-batch: pooled *[%d][64]byte the same way; channels wait in the Go runtime", ringbench.ChanBatch),
		"latency: from just before publish (send) to just after the consumer read the record; max: the longest of all rounds",
		"  (for ring-resize, what a record waits across the resizes every 10 ms: the stall a switch costs)",
		"producer waits: each from a reserve refused as full to the next that succeeded (median of the rounds' p99s, within 1/8; longest of all rounds)",
	}, "\n"))
	if *dpdk != "" {
		fmt.Fprintln(stdout, systemDPDK+": DPDK rte_ring, zero-copy burst API (SP/SC for 1x1, HTS otherwise), the same records and wait; bench/dpdk")
	}
	return nil
}

// threeDigits rounds d to about three significant digits, for a column
// whose values span nanoseconds to seconds.
func threeDigits(d time.Duration) time.Duration {
	unit := time.Duration(1)
	for d/unit >= 1000 {
		unit *= 10
	}
	return d.Round(unit)
}

// systemDPDK names the rte_ring harness's results.
const systemDPDK = "dpdk-zc"

// runDPDK runs one round of the rte_ring harness at exe and returns its
// results by (producers, consumers, batch).
func runDPDK(exe string, items int) (map[[3]int]ringbench.Result, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(exe, "-rounds", "1", "-items", strconv.Itoa(items), "-json")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", exe, err, strings.TrimSpace(errb.String()))
	}
	rs := map[[3]int]ringbench.Result{}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r ringbench.Result
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("%s: output: %w", exe, err)
		}
		if r.System != systemDPDK || r.ItemsPerSec <= 0 || r.Payload != ringbench.Payload {
			return nil, fmt.Errorf("%s: unexpected row %+v", exe, r)
		}
		rs[[3]int{r.Producers, r.Consumers, r.Batch}] = r
	}
	return rs, nil
}
