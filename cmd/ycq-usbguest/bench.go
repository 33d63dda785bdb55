//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ycq-dev/ycq/cmd/internal/guestbench"
	"github.com/ycq-dev/ycq/hostdriver"
	"github.com/ycq-dev/ycq/hostdriver/usbhost"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/internal/ringbench"
	"github.com/ycq-dev/ycq/qemu/guest"
	"github.com/ycq-dev/ycq/vfio/kernel"
	"github.com/ycq-dev/ycq/vfio/pci"
	"github.com/ycq-dev/ycq/ycqdev"
)

// benchResult is what bench mode adds to the YCQ-RESULT line.
type benchResult struct {
	PCIDevice string             `json:"pci_device"`
	Rounds    []guestbench.Round `json:"rounds"`
	Cells     []guestbench.Cell  `json:"cells"`
	Ratios    []guestbench.Ratio `json:"ratios"`
	CopyShare float64            `json:"copy_share"` // USB transfers that needed a copy, of all USB transfers
	Memory    []string           `json:"usb_memory"` // where the USB queues were, a record size each
	Slots     []int              `json:"slots"`      // every queue's slots, a record size each
	Batch     int                `json:"batch"`
	// AppOnly is the application's own work alone at each record size:
	// records filled and checked in one buffer, no transport, a ceiling
	// for both paths.
	AppOnly []guestbench.Round `json:"app_only"`
}

// benchShape is bench mode's work, from the kernel command line.
type benchShape struct {
	sizes   []int   // ycq.sizes, bytes a record
	records []int64 // ycq.brecords, records a pair a round, one a size
	rounds  int     // ycq.rounds
	pairs   int     // ycq.pairs
	batch   int     // ycq.batch: most records a reserve or a receive
	devmem  bool    // ycq.devmem: the USB queues in usbfs memory
}

func benchParams() (benchShape, error) {
	s := benchShape{rounds: paramInt("ycq.rounds", 5), pairs: paramInt("ycq.pairs", 1), batch: paramInt("ycq.batch", 64),
		devmem: guest.Param("ycq.devmem", "1") == "1"}
	for _, f := range strings.Split(guest.Param("ycq.sizes", "64,16384"), ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < guestbench.Records.HeaderSize() || n%8 != 0 {
			return s, fmt.Errorf("bad ycq.sizes %q", f)
		}
		s.sizes = append(s.sizes, n)
	}
	for _, f := range strings.Split(guest.Param("ycq.brecords", "100000,10000"), ",") {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil || n < 1 {
			return s, fmt.Errorf("bad ycq.brecords %q", f)
		}
		s.records = append(s.records, n)
	}
	for len(s.records) < len(s.sizes) {
		s.records = append(s.records, s.records[len(s.records)-1])
	}
	return s, nil
}

// benchSlots is every queue's slot count at record size r, the same on
// both paths: up to 1024, and 2 MiB of data a queue at most, which usbfs
// can map (Config.DeviceMemory).
func benchSlots(r int) int {
	slots := 1024
	for slots > 8 && slots*r > 2<<20 {
		slots /= 2
	}
	return slots
}

// runBench is `ycq bench usb`'s guest: the USB path (usbhost, the emulated
// xHCI, usb-redir to the usbredir device model) and the PCIe path
// (hostdriver on kernel VFIO, vfio-user-pci to the ycq device model) in
// this one guest, doing the same work: for every record size, rounds that
// alternate the paths (which one goes first alternates too), each sending
// the same records through the same number of pairs with the echo engine,
// written in full and every response checked (guestbench.Echo, one loop
// for both). Queues have the same slots and the application the same
// batch on both.
func runBench(res *result) error {
	shape, err := benchParams()
	if err != nil {
		return err
	}
	br := &benchResult{Batch: shape.batch}
	res.BenchUSB = br
	if err := os.WriteFile("/proc/sys/vm/nr_hugepages", []byte("16"), 0o644); err != nil {
		fmt.Printf("YCQ-BENCH no huge pages: %v\n", err)
	}
	if err := waitUSB(30 * time.Second); err != nil {
		return err
	}
	addr, err := guestbench.FindYCQ(pci.DefaultSysRoot, func(string, ...any) {})
	if err != nil {
		return err
	}
	br.PCIDevice = addr
	if _, err := pci.Bind(pci.DefaultSysRoot, addr); err != nil {
		return fmt.Errorf("bind %s to vfio-pci: %w", addr, err)
	}
	dev, err := kernel.Open(addr, kernel.Options{})
	if err != nil {
		return fmt.Errorf("open %s through VFIO: %w", addr, err)
	}
	defer dev.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	for i, size := range shape.sizes {
		if err := benchSize(ctx, dev, shape, size, shape.records[i], br, res); err != nil {
			return fmt.Errorf("%d-byte records: %w", size, err)
		}
	}
	br.Cells, br.Ratios = guestbench.Summarize(br.Rounds)
	if res.Transfers > 0 {
		br.CopyShare = float64(res.Copies) / float64(res.Transfers)
	}
	fmt.Println("YCQ-TABLE-BEGIN")
	if err := guestbench.Table(os.Stdout, br.Cells, br.Ratios); err != nil {
		return err
	}
	fmt.Printf("usb transfers: %d, %d needed a copy (%.1f%%); queues in %s\n", res.Transfers, res.Copies,
		100*br.CopyShare, strings.Join(br.Memory, ", "))
	var probes []float64
	for _, rd := range br.Rounds {
		probes = append(probes, float64(rd.ProbeNs))
	}
	med, lo, hi := guestbench.Spread(probes)
	fmt.Printf("probe ns: the guest's cache-line ping-pong before a cell's rounds, median (all rounds: %.0f ns median, %.0f-%.0f);\n"+
		"  under TCG each vCPU is a host thread: a probe far above the others means a busy host, and figures that say less\n", med, lo, hi)
	var ceil []string
	for _, a := range br.AppOnly {
		ceil = append(ceil, fmt.Sprintf("%.0f records/s at %d B", a.PerSecond, a.RecordSize))
	}
	fmt.Printf("the application alone (fill and check in one buffer, no transport, one thread): %s\n", strings.Join(ceil, ", "))
	fmt.Printf("work: %d pair(s), echo engine, records written in full and every response checked (CRC-32C, pair, sequence);\n"+
		"  queues of %v slots (by record size), batches of up to %d; usb/pcie: median (min-max) of the rounds' ratios\n",
		shape.pairs, br.Slots, shape.batch)
	fmt.Println("YCQ-TABLE-END")
	return nil
}

// benchSize runs shape.rounds rounds of each path at record size r.
func benchSize(ctx context.Context, dev *kernel.Device, shape benchShape, r int, n int64, br *benchResult, res *result) error {
	slots := benchSlots(r)
	batch := min(shape.batch, slots/2)
	br.Slots = append(br.Slots, slots)
	br.AppOnly = append(br.AppOnly, appOnly(r, n))
	openCtx, cancelOpen := context.WithTimeout(ctx, time.Minute)
	usb, err := usbhost.Open(openCtx, usbhost.Config{Engine: ycqdev.EngineEcho, RecordSize: r, Pairs: shape.pairs,
		Slots: slots, DeviceMemory: shape.devmem})
	cancelOpen()
	if err != nil {
		return fmt.Errorf("usb: %w", err)
	}
	defer usb.Close()
	pcie, err := hostdriver.Open(dev, hostdriver.Config{Queues: shape.pairs, Engine: ycqdev.EngineEcho, Slots: slots,
		SlotSize: r, Huge: true})
	if err != nil {
		return fmt.Errorf("pcie: %w", err)
	}
	defer pcie.Close()
	mem := "anonymous memory"
	if st := usb.Stats(); len(st.Pairs) > 0 && st.Pairs[0].DeviceMemory {
		mem = "usbfs memory"
	}
	br.Memory = append(br.Memory, fmt.Sprintf("%s at %d B", mem, r))
	res.Pairs = len(usb.Pairs())
	for round := range shape.rounds {
		paths := []string{guestbench.PathUSB, guestbench.PathPCIe}
		if round%2 == 1 {
			paths[0], paths[1] = paths[1], paths[0]
		}
		for _, path := range paths {
			probe := ringbench.PingPong(20 * time.Millisecond)
			var rd guestbench.Round
			var err error
			if path == guestbench.PathUSB {
				rd, err = usbRound(ctx, usb, r, n, batch, round)
				res.Transfers += rd.Transfers
				res.Copies += rd.Copies
			} else {
				rd, err = pcieRound(ctx, pcie, r, n, batch, round)
			}
			if err != nil {
				res.Errors++
				return fmt.Errorf("%s round %d: %w", path, round, err)
			}
			rd.ProbeNs = probe.Nanoseconds()
			res.Records += rd.Records
			br.Rounds = append(br.Rounds, rd)
			fmt.Printf("YCQ-BENCH round %d %-4s %6d B: %9.0f records/s %8.2f MB/s (%d records, %.2f s, %d transfers, %d copies, guest ping-pong %d ns)\n",
				round, path, r, rd.PerSecond, rd.MBps, rd.Records, rd.Seconds, rd.Transfers, rd.Copies, rd.ProbeNs)
		}
	}
	return errors.Join(usb.Close(), pcie.Close())
}

// appOnly times what Echo does to n records of r bytes besides moving
// them: fill each and check it, in one buffer.
func appOnly(r int, n int64) guestbench.Round {
	b := make([]byte, r)
	start := time.Now()
	for seq := range uint64(n) {
		guestbench.Records.Fill(b, record.Header{Seq: seq})
		if _, err := guestbench.Records.Check(b); err != nil {
			panic(err) // a buffer of our own, written just now
		}
	}
	return guestbench.NewRound("app", r, 0, n, time.Since(start).Seconds())
}

// echoAll runs echo on every pair at once and returns the time from the
// start to the last pair's last response, and the records checked.
func echoAll[P any](pairs []P, echo func(P) (int64, error)) (time.Duration, int64, error) {
	counts := make([]int64, len(pairs))
	errs := make([]error, len(pairs))
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Go(func() { counts[i], errs[i] = echo(p) })
	}
	wg.Wait()
	el := time.Since(start)
	var total int64
	for _, c := range counts {
		total += c
	}
	return el, total, errors.Join(errs...)
}

func usbRound(ctx context.Context, d *usbhost.Driver, r int, n int64, batch, round int) (guestbench.Round, error) {
	before := d.Stats()
	el, total, err := echoAll(d.Pairs(), func(p *usbhost.Pair) (int64, error) {
		return guestbench.Echo[*usbhost.Pair, usbhost.Request, usbhost.Response](ctx, p, n, r, batch)
	})
	if err != nil {
		return guestbench.Round{}, err
	}
	rd := guestbench.NewRound(guestbench.PathUSB, r, round, total, el.Seconds())
	for i, p := range d.Stats().Pairs {
		b := before.Pairs[i]
		rd.Transfers += p.OutTransfers + p.InTransfers - b.OutTransfers - b.InTransfers
		rd.Copies += p.Copies - b.Copies
	}
	return rd, nil
}

func pcieRound(ctx context.Context, d *hostdriver.Driver, r int, n int64, batch, round int) (guestbench.Round, error) {
	before := make([]hostdriver.PairStats, len(d.Pairs()))
	for i, p := range d.Pairs() {
		before[i] = p.Stats()
	}
	el, total, err := echoAll(d.Pairs(), func(p *hostdriver.Pair) (int64, error) {
		return guestbench.Echo[*hostdriver.Pair, hostdriver.Request, hostdriver.Response](ctx, p, n, r, batch)
	})
	if err != nil {
		return guestbench.Round{}, err
	}
	rd := guestbench.NewRound(guestbench.PathPCIe, r, round, total, el.Seconds())
	for i, p := range d.Pairs() {
		st := p.Stats()
		rd.Doorbells += st.Doorbells - before[i].Doorbells
		rd.Interrupts += st.Interrupts - before[i].Interrupts
	}
	return rd, nil
}
