package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/ycq-dev/ycq/internal/ringbench"
)

func benchRing(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq bench ring", flag.ContinueOnError)
	fs.SetOutput(stderr)
	items := fs.Int("items", 5_000_000, "records per run")
	rounds := fs.Int("rounds", 5, "runs of each system and scenario; the median is reported")
	asJSON := fs.Bool("json", false, "print one JSON object per result instead of a table")
	verbose := fs.Bool("v", false, "print every run")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *items < 64 || *rounds < 1 {
		return usagef("-items must be at least 64 and -rounds at least 1")
	}
	type key struct {
		system string
		sc     int
	}
	runs := map[key][]ringbench.Result{}
	// Interleave systems and scenarios round by round, alternating which
	// system goes first, so drift in the machine hits both alike.
	for round := range *rounds {
		for i, sc := range ringbench.Scenarios {
			systems := slices.Clone(ringbench.Systems)
			if (round+i)%2 == 1 {
				slices.Reverse(systems)
			}
			for _, sys := range systems {
				r, err := ringbench.Run(sys, sc, *items)
				if err != nil {
					return err
				}
				if *verbose {
					fmt.Fprintf(stderr, "round %d: %-4s %-4s batch %-2d %6.2f M items/s\n",
						round, r.System, r.Scenario, r.Batch, r.ItemsPerSec/1e6)
				}
				runs[key{sys, i}] = append(runs[key{sys, i}], r)
			}
		}
	}
	median := func(rs []ringbench.Result) ringbench.Result {
		s := slices.Clone(rs)
		slices.SortFunc(s, func(a, b ringbench.Result) int { return cmp.Compare(a.ItemsPerSec, b.ItemsPerSec) })
		return s[len(s)/2]
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for i := range ringbench.Scenarios {
			for _, sys := range ringbench.Systems {
				if err := enc.Encode(median(runs[key{sys, i}])); err != nil {
					return err
				}
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "scenario\tbatch\tproducers\tconsumers\tring items/s\tchan items/s\tring/chan\t\n")
	for i, sc := range ringbench.Scenarios {
		r, c := median(runs[key{ringbench.SystemRing, i}]), median(runs[key{ringbench.SystemChan, i}])
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.2fM\t%.2fM\t%.2fx\t\n", sc.Name, sc.Batch, sc.Producers, sc.Consumers,
			r.ItemsPerSec/1e6, c.ItemsPerSec/1e6, r.ItemsPerSec/c.ItemsPerSec)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d-byte records, capacity %d, median of %d runs of %d records each; the channel batches [%d][%d]byte\n",
		ringbench.Payload, ringbench.Capacity, *rounds, *items, ringbench.ChanBatch, ringbench.Payload)
	return nil
}
