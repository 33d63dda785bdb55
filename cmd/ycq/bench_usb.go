package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ycq-dev/ycq/devicemodel/usbdev"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/internal/ringbench"
	"github.com/ycq-dev/ycq/qemu"
)

// usbBench is the work of `ycq bench usb`, checked and ready for the
// guest's command line.
type usbBench struct {
	sizes   []int
	records []int64 // a pair a round, one a size
	rounds  int
	pairs   int
	devmem  bool
}

// params are the guest's ycq.* parameters for bench mode
// (cmd/ycq-usbguest).
func (b usbBench) params() []string {
	sizes := make([]string, len(b.sizes))
	for i, s := range b.sizes {
		sizes[i] = strconv.Itoa(s)
	}
	recs := make([]string, len(b.records))
	for i, n := range b.records {
		recs[i] = strconv.FormatInt(n, 10)
	}
	devmem := "0"
	if b.devmem {
		devmem = "1"
	}
	return []string{"ycq.sizes=" + strings.Join(sizes, ","), "ycq.brecords=" + strings.Join(recs, ","),
		fmt.Sprintf("ycq.rounds=%d", b.rounds), fmt.Sprintf("ycq.pairs=%d", b.pairs), "ycq.devmem=" + devmem}
}

// parseUSBBench checks bench usb's flags: record sizes the USB device
// takes (a multiple of 8, with room for the record header), one record
// count for all sizes or one a size.
func parseUSBBench(payloads, records string, rounds, pairs int, devmem bool) (usbBench, error) {
	b := usbBench{rounds: rounds, pairs: pairs, devmem: devmem}
	for _, s := range strings.Split(payloads, ",") {
		n, err := parseSize(strings.TrimSpace(s))
		if err != nil || n < record.PlainSize || n%8 != 0 || n > usbdev.MaxRecordSize {
			return b, usagef("-payload %q: want sizes of %d bytes to %d KiB, multiples of 8", s, record.PlainSize, usbdev.MaxRecordSize>>10)
		}
		b.sizes = append(b.sizes, int(n))
	}
	for _, s := range strings.Split(records, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n < 1 {
			return b, usagef("-records %q: want positive counts", s)
		}
		b.records = append(b.records, n)
	}
	switch {
	case len(b.records) == 1:
		for len(b.records) < len(b.sizes) {
			b.records = append(b.records, b.records[0])
		}
	case len(b.records) != len(b.sizes):
		return b, usagef("-records: %d counts for %d sizes: give one, or one a size", len(b.records), len(b.sizes))
	}
	if rounds < 1 || rounds > 100 {
		return b, usagef("-rounds %d: want 1 to 100", rounds)
	}
	if pairs < 1 || pairs > usbdev.MaxPairs {
		return b, usagef("-pairs %d: want 1 to %d (the USB device's most)", pairs, usbdev.MaxPairs)
	}
	return b, nil
}

// benchUSB is `ycq bench usb`: in one QEMU guest with both devices, the
// USB path (the gousb host driver over the emulated xHCI, usb-redir to
// the USB device model served here) and the PCIe path (the host driver on
// kernel VFIO, vfio-user-pci to the ycq device model served here), the
// same echo work on both, rounds alternating, with the ratios and their
// spread, and the share of USB transfers that needed a copy.
func benchUSB(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq bench usb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	payloads := fs.String("payload", "64,16KiB", "record sizes, comma-separated (suffixes KiB)")
	records := fs.String("records", "100000,10000", "records a pair a round: one count, or one a record size")
	rounds := fs.Int("rounds", 5, "rounds of each path and size, alternating; the median and the spread are reported")
	pairs := fs.Int("pairs", 1, "queue pairs, the same on both paths")
	devmem := fs.Bool("devmem", true, "USB queues in usbfs memory, which the guest kernel does not copy either")
	console := fs.Bool("console", false, "show the guest's serial console as it runs")
	asJSON := fs.Bool("json", false, "print one JSON object (every round, the host's probes) instead of the table")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	work, err := parseUSBBench(*payloads, *records, *rounds, *pairs, *devmem)
	if err != nil {
		return err
	}
	h, done, err := startGuestHost(*timeout, "ycq-bench-usb-", stderr)
	if err != nil {
		return err
	}
	defer done()
	sock := filepath.Join(h.dir, "device.sock")
	_, stopDevice, err := serveVFIOUser(sock, work.pairs, h.log)
	if err != nil {
		return err
	}
	defer stopDevice()
	um, err := serveUSB(filepath.Join(h.dir, "usbredir.sock"), work.pairs, h.log)
	if err != nil {
		return err
	}
	defer um.Close()

	cfg := qemu.BothVMConfig{Socket: sock, USBSocket: um.Socket, Mode: "bench", Params: work.params()}
	if *console {
		cfg.Console = stderr
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "booting a guest (QEMU %s, kernel %s) with the ycq device on vfio-user-pci and the ycq USB device on qemu-xhci + usb-redir...\n",
			filepath.Base(h.env.QEMU), h.env.KernelVersion)
	}
	before := hostProbe()
	res, err := h.env.RunBothVM(h.ctx, cfg)
	after := hostProbe()
	if err != nil {
		showConsole(stderr, res, err, *console)
		return err
	}
	um.Close()
	ctr, served := um.Counters()
	var bad uint64
	for _, p := range ctr.Pairs {
		bad += p.BadTransfers
	}
	if *asJSON {
		b, err := json.Marshal(map[string]any{
			"host_pingpong_before_ns": before.Nanoseconds(), "host_pingpong_after_ns": after.Nanoseconds(),
			"guest_accel": "tcg", "guest_seconds": res.Duration.Seconds(), "guest": res.Line,
			"usb_bad_transfers": bad, "usb_connections": served,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
		return nil
	}
	fmt.Fprint(stdout, res.Table)
	b, _ := json.Marshal(res.Line)
	fmt.Fprintf(stdout, "guest result: %s\n", b)
	fmt.Fprintf(stdout, "usb: the gousb host driver in the guest, bulk transfers over QEMU's emulated xHCI, usb-redir to the usbredir device model here\n")
	fmt.Fprintf(stdout, "pcie: the host driver in the guest on kernel VFIO, vfio-user-pci to the ycq device model here, which reaches the slots by DMA\n")
	fmt.Fprintf(stdout, "the guest runs under TCG (software emulation, no KVM): its figures are emulated time, slower than hardware by orders of\n"+
		"  magnitude and not comparable with `ycq bench device`; compare the two paths, measured in the same guest in the same run\n")
	fmt.Fprintf(stdout, "host: cache-line round trip between two threads (%v ping-pong, median of 5) %d ns before, %d ns after the guest ran",
		probeTime, before.Nanoseconds(), after.Nanoseconds())
	if max(before, after) > 10*time.Microsecond {
		fmt.Fprintf(stdout, ";\n  that long, the other thread got no CPU for a while: the machine is busy (other guests, other work), and so was the guest")
	}
	fmt.Fprintf(stdout, "\nguest ran %v; USB device model: %d connection(s), %d bad transfers\n",
		res.Duration.Round(time.Millisecond), served, bad)
	return nil
}

// hostProbe is the median of five ping-pong probes of this machine.
func hostProbe() time.Duration {
	var ps []time.Duration
	for range 5 {
		ps = append(ps, ringbench.PingPong(probeTime))
	}
	return medianOf(ps)
}
