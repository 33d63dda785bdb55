//go:build linux

// Command ycq-usbguest is the QEMU guest's /init for the USB tier: it
// loads the xHCI modules, waits for the USB devices to show in usbfs, and,
// depending on ycq.mode on the kernel command line:
//
//	probe  list the USB devices libusb enumerates (the xHCI root hubs, and
//	       the usbredir device if one is attached)
//	test   open the ycq USB device with the gousb host driver
//	       (hostdriver/usbhost) and stream checked records through every
//	       queue pair with the echo engine: a device reset a third of the
//	       way, and at two thirds a request to be unplugged and replugged
//	       ("YCQ-USB-UNPLUG" on the console: the host side's device model
//	       does it), recovering; then stream 256-byte records through the
//	       crc32c engine, checking each CRC; then measure 64-byte and
//	       16 KiB records
//	demo   the main job over USB: ycq.size bytes (64 MiB) of ycq.payload-
//	       byte requests (4096) through ycq.queues pairs (2) with
//	       ycq.engine (crc32c, or echo), every response checked, and the
//	       PCIe guest's result table between YCQ-TABLE-BEGIN and -END;
//	       ycq.devmem=1 puts the queues in usbfs memory
//	bench  `ycq bench usb`: in a guest that also has the ycq device on
//	       vfio-user-pci (qemu.RunBothVM), the USB path and the PCIe path
//	       (hostdriver on kernel VFIO) side by side, the same echo work on
//	       both: ycq.sizes (64,16384) bytes a record, ycq.brecords
//	       (100000,10000) records a pair a round, ycq.rounds (5) rounds of
//	       each, alternating, through ycq.pairs (1) pairs; the table and
//	       every round in the result line (see bench.go)
//
// Every mode ends with one machine-readable line, "YCQ-RESULT {json}", and
// powers off. It is built with cgo (hostdriver/usbhost: gousb, libusb):
// qemu.GoBuildCgo puts the shared libraries it needs into the initramfs.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ycq-dev/ycq/cmd/internal/demo"
	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/hostdriver/usbhost"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/qemu/guest"
	"github.com/ycq-dev/ycq/ycqdev"
)

// result is the YCQ-RESULT line.
type result struct {
	Mode       string   `json:"mode"`
	Modules    int      `json:"modules"`
	Devices    []string `json:"devices,omitempty"`
	Pairs      int      `json:"pairs,omitempty"`
	Records    int64    `json:"records"` // checked records of every stream, all pairs
	CRCRecords int64    `json:"crc_records"`
	PerPair    []int64  `json:"per_pair,omitempty"`
	Errors     int      `json:"errors"`
	Resets     uint64   `json:"resets"`
	Recoveries uint64   `json:"recoveries"`
	Unplugs    int      `json:"unplugs"`
	Resent     uint64   `json:"resent"`
	Copies     uint64   `json:"copies"`
	Transfers  uint64   `json:"transfers"`
	Bench      []bench  `json:"bench,omitempty"`
	// BenchUSB is bench mode's figures.
	BenchUSB *benchResult `json:"bench_usb,omitempty"`
	Error    string       `json:"error,omitempty"`
}

// bench is one measured stream.
type bench struct {
	RecordSize int     `json:"record_size"`
	Records    int64   `json:"records"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"records_per_s"`
	MBps       float64 `json:"mb_per_s"` // request bytes a second (the echoes double it on the bus)
	Copies     uint64  `json:"copies"`
	Memory     string  `json:"memory"` // the queues' data: "anonymous memory" or "device memory" (usbfs)
}

func main() {
	guest.Main(func() error {
		res := result{Mode: guest.Param("ycq.mode", "probe")}
		err := run(&res)
		if err != nil {
			res.Error = err.Error()
		}
		guest.PrintResult(res)
		return err
	})
}

func run(res *result) error {
	mods, err := guest.LoadModules(guest.ModuleList)
	res.Modules = len(mods)
	if err != nil {
		return err
	}
	switch res.Mode {
	case "probe":
		return probe(res)
	case "test":
		return test(res)
	case "demo":
		return runDemo(res)
	case "bench":
		return runBench(res)
	default:
		return fmt.Errorf("unknown ycq.mode %q", res.Mode)
	}
}

// probe lists what libusb enumerates once the root hubs are there.
func probe(res *result) error {
	if err := waitUSB(30 * time.Second); err != nil {
		return err
	}
	devs, err := usbhost.Devices()
	res.Devices = devs
	return err
}

// waitUSB waits until usbfs has a device node under /dev/bus/usb.
func waitUSB(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ents, _ := os.ReadDir("/dev/bus/usb")
		if len(ents) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no /dev/bus/usb after %v: is xhci-pci loaded and devtmpfs mounted?", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// format is the records' layout: (queue, sequence) in the header, a
// CRC-32C over all of it.
var format = record.Format{Sum: true}

// test is the guest tier's run; see the package comment.
func test(res *result) error {
	if err := waitUSB(30 * time.Second); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	n := int64(paramInt("ycq.records", 12000))
	var errs []error
	st, err := streamAll(ctx, ycqdev.EngineEcho, 64, n, true, res)
	if err != nil {
		return err
	}
	res.Resets += st.Resets
	res.Recoveries += st.Recoveries
	// The crc32c engine: 8-byte responses, so IN transfers of another
	// shape than OUT's.
	crc := int64(paramInt("ycq.crcrecords", 6000))
	if _, err := streamAll(ctx, ycqdev.EngineCRC32C, 256, crc, false, res); err != nil {
		return fmt.Errorf("crc32c: %w", err)
	}
	res.CRCRecords = crc * int64(res.Pairs)
	// Each size twice: the queues in anonymous memory (usbfs copies
	// every transfer into a kernel buffer), then in usbfs memory
	// (DeviceMemory: no copy in the kernel either), with queues small
	// enough for usbfs to map (2 MiB each).
	for _, size := range []struct{ r, n int }{{64, paramInt("ycq.bench64", 20000)}, {paramInt("ycq.bigrecord", 16384), paramInt("ycq.bigrecords", 1500)}} {
		for _, devmem := range []bool{false, true} {
			b, err := measure(ctx, size.r, int64(size.n), devmem, res)
			if err != nil {
				errs = append(errs, fmt.Errorf("bench %d B (device memory %v): %w", size.r, devmem, err))
				continue
			}
			res.Bench = append(res.Bench, b)
			fmt.Printf("YCQ-USB bench %6d-byte records, %-16s %8.0f records/s %7.2f MB/s (%d records, %.2f s, %d copies)\n",
				b.RecordSize, b.Memory+":", b.PerSecond, b.MBps, b.Records, b.Seconds, b.Copies)
		}
	}
	return errors.Join(errs...)
}

// measure streams n records of r bytes through every pair, undisturbed.
func measure(ctx context.Context, r int, n int64, devmem bool, res *result) (bench, error) {
	start := time.Now()
	st, err := streamAll(ctx, ycqdev.EngineEcho, r, n, false, res, func(c *usbhost.Config) {
		c.DeviceMemory = devmem
		for c.Slots > 8 && c.Slots*r > 2<<20 {
			c.Slots /= 2
		}
	})
	if err != nil {
		return bench{}, err
	}
	el := time.Since(start).Seconds()
	total := n * int64(len(st.Pairs))
	var copies uint64
	mem := "device memory"
	for _, p := range st.Pairs {
		copies += p.Copies
		if !p.DeviceMemory {
			mem = "anonymous memory"
		}
	}
	return bench{RecordSize: r, Records: total, Seconds: el, PerSecond: float64(total) / el,
		MBps: float64(total) * float64(r) / el / 1e6, Copies: copies, Memory: mem}, nil
}

// streamAll opens the driver for r-byte records and streams n checked records
// through every pair; with disturb, pair 0 resets the device a third of
// the way and asks to be unplugged at two thirds. It adds what it checked
// to res and returns the driver's stats.
func streamAll(ctx context.Context, engine uint32, r int, n int64, disturb bool, res *result, tune ...func(*usbhost.Config)) (usbhost.Stats, error) {
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	// Queues of up to 16 MiB each (and up to ycq.slots slots): the IN
	// transfers in flight hold half the response queue.
	slots := paramInt("ycq.slots", 1024)
	for slots > 8 && slots*r > 16<<20 {
		slots /= 2
	}
	cfg := usbhost.Config{Engine: engine, RecordSize: r, Slots: slots}
	for _, f := range tune {
		f(&cfg)
	}
	drv, err := usbhost.Open(openCtx, cfg)
	cancel()
	if err != nil {
		return usbhost.Stats{}, err
	}
	defer drv.Close()
	pairs := drv.Pairs()
	res.Pairs = len(pairs)
	rec := &recoverer{drv: drv}
	var resetOnce, unplugOnce sync.Once
	hook := func(p *usbhost.Pair, got int64) error {
		if !disturb || p.Index() != 0 {
			return nil
		}
		var err error
		if got >= n/3 {
			resetOnce.Do(func() {
				fmt.Printf("YCQ-USB reset after %d responses on pair 0\n", got)
				err = drv.Reset(ctx)
			})
		}
		if got >= 2*n/3 {
			unplugOnce.Do(func() {
				fmt.Printf("YCQ-USB-UNPLUG after %d responses on pair 0\n", got)
				res.Unplugs++
				// Hold pair 0 here until the driver sees the device go.
				deadline := time.Now().Add(2 * time.Minute)
				for drv.Err() == nil && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				fmt.Printf("YCQ-USB driver stopped: %v\n", drv.Err())
			})
		}
		return err
	}
	counts := make([]int64, len(pairs))
	errs := make([]error, len(pairs))
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Go(func() { counts[i], errs[i] = stream(ctx, p, n, rec, hook) })
	}
	wg.Wait()
	st := drv.Stats()
	for i, p := range st.Pairs {
		res.Records += counts[i]
		res.PerPair = append(res.PerPair, counts[i])
		res.Resent += p.Resent
		res.Copies += p.Copies
		res.Transfers += p.OutTransfers + p.InTransfers
		fmt.Printf("YCQ-USB %d-byte records, pair %d: %d checked; %d OUT and %d IN transfers, %d short IN, %d resent, %d copies\n",
			r, i, counts[i], p.OutTransfers, p.InTransfers, p.ShortIn, p.Resent, p.Copies)
	}
	if err := errors.Join(errs...); err != nil {
		res.Errors++
		return st, err
	}
	return st, drv.Close()
}

// recoverer brings the driver back once for everyone who saw it stop.
type recoverer struct {
	mu  sync.Mutex
	drv *usbhost.Driver
}

// handle recovers from err if it stopped the driver; it returns an error
// that is not the driver's to recover from. An error a stopped driver does
// not give (a refused argument, say) is returned as it is: retrying it
// would spin.
func (r *recoverer) handle(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, usbhost.ErrClosed) || !driverStopped(err) {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	derr := r.drv.Err()
	if derr == nil {
		return nil // recovered by another goroutine meanwhile
	}
	if !errors.Is(err, derr) && !errors.Is(derr, usbhost.ErrGone) && !errors.Is(derr, usbhost.ErrIO) && !errors.Is(derr, usbhost.ErrStall) && !errors.Is(derr, usbhost.ErrTimeout) {
		return err
	}
	fmt.Printf("YCQ-USB recovering from: %v\n", derr)
	if rerr := r.drv.Recover(ctx); rerr != nil {
		return fmt.Errorf("recover: %w (after %w)", rerr, derr)
	}
	fmt.Println("YCQ-USB recovered")
	return nil
}

// driverStopped reports whether err is what a pair's calls return once the
// driver stopped: the driver's error (an *usbhost.IncompleteError), or a
// transfer's failure wrapping one of its sentinels.
func driverStopped(err error) bool {
	var ie *usbhost.IncompleteError
	return errors.As(err, &ie) || errors.Is(err, usbhost.ErrGone) || errors.Is(err, usbhost.ErrIO) ||
		errors.Is(err, usbhost.ErrStall) || errors.Is(err, usbhost.ErrTimeout) || errors.Is(err, usbhost.ErrProtocol)
}

// stream sends n records on p and checks every echo, in order.
func stream(ctx context.Context, p *usbhost.Pair, n int64, rec *recoverer, hook func(*usbhost.Pair, int64) error) (int64, error) {
	return streamTimed(ctx, p, n, rec, hook, nil)
}

// latencies, if not nil, gets each record's time from publish to its
// response received, in order (the sender keeps the publish times in sent,
// one a record, handed over through the queue's own ordering).
type latencies struct {
	sent []int64 // ns since start, by sequence
	got  []time.Duration
	t0   time.Time
}

// streamTimed is stream, measuring latencies into lat when it is not nil.
func streamTimed(ctx context.Context, p *usbhost.Pair, n int64, rec *recoverer, hook func(*usbhost.Pair, int64) error, lat *latencies) (int64, error) {
	size := p.SlotSize()
	// A reserve or a receive of more than the queue's slots is refused:
	// the batch is at most the queues (which measure shrinks to 128 slots
	// for 16 KiB records, below the default batch).
	batch := min(paramInt("ycq.batch", 256), p.Slots())
	want := make([]byte, size)
	// A sender that gives up ends the receiver's wait for responses that
	// will not come, and a receiver that gives up the sender's wait for
	// room: either side returning cancels ctx before it waits for the
	// sender.
	ctx, cancel := context.WithCancel(ctx)
	var sendErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := int64(0); seq < n; {
			r, err := p.ReserveUpTo(ctx, int(min(int64(batch), n-seq)))
			if err != nil {
				if err = rec.handle(ctx, err); err != nil {
					sendErr = err
					cancel()
					return
				}
				continue
			}
			for i := range r.Len() {
				format.Fill(r.Slot(i)[:size], record.Header{Seq: uint64(seq) + uint64(i), Producer: uint32(p.Index())})
			}
			if lat != nil {
				now := int64(time.Since(lat.t0))
				for i := range r.Len() {
					lat.sent[seq+int64(i)] = now
				}
			}
			if err := r.PublishAll(size); err != nil {
				sendErr = err
				cancel()
				return
			}
			seq += int64(r.Len())
		}
	})
	stop := func() { cancel(); wg.Wait() }
	defer stop()
	var got int64
	for got < n {
		r, err := p.Receive(ctx, batch)
		if err != nil {
			if err = rec.handle(ctx, err); err != nil {
				stop()
				return got, errors.Join(fmt.Errorf("pair %d after %d: %w", p.Index(), got, err), sendErr)
			}
			continue
		}
		for i := range r.Len() {
			b, err := r.Slot(i)
			if err != nil {
				return got, err
			}
			if err := check(p, got, b, want); err != nil {
				return got, err
			}
			if lat != nil {
				lat.got = append(lat.got, time.Since(lat.t0)-time.Duration(lat.sent[got]))
			}
			got++
		}
		if err := r.ReleaseAll(); err != nil {
			return got, err
		}
		if err := hook(p, got); err != nil {
			return got, err
		}
	}
	stop()
	return got, sendErr
}

// runDemo is the main job over USB: ycq.size bytes of ycq.payload-byte
// requests through ycq.queues pairs with ycq.engine (echo or crc32c),
// every response checked, and the PCIe guest's result table.
func runDemo(res *result) error {
	if err := waitUSB(30 * time.Second); err != nil {
		return err
	}
	size, _ := strconv.ParseInt(guest.Param("ycq.size", "67108864"), 10, 64)
	queues := paramInt("ycq.queues", 2)
	payload := paramInt("ycq.payload", 4096)
	engine, ok := devicemodel.EngineID(guest.Param("ycq.engine", "crc32c"))
	if !ok || (engine != ycqdev.EngineEcho && engine != ycqdev.EngineCRC32C) {
		return errors.New("bad ycq.engine: echo or crc32c")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	openCtx, cancelOpen := context.WithTimeout(ctx, time.Minute)
	slots := 1024
	for slots > 8 && slots*payload > 16<<20 {
		slots /= 2
	}
	drv, err := usbhost.Open(openCtx, usbhost.Config{Engine: engine, RecordSize: payload, Pairs: queues, Slots: slots,
		DeviceMemory: guest.Param("ycq.devmem", "0") == "1"})
	cancelOpen()
	if err != nil {
		return err
	}
	defer drv.Close()
	pairs := drv.Pairs()
	n := max(1, (size/int64(payload)+int64(len(pairs))-1)/int64(len(pairs)))
	rec := &recoverer{drv: drv}
	lats := make([]*latencies, len(pairs))
	errs := make([]error, len(pairs))
	counts := make([]int64, len(pairs))
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range pairs {
		lats[i] = &latencies{sent: make([]int64, n), got: make([]time.Duration, 0, n), t0: start}
		wg.Go(func() {
			counts[i], errs[i] = streamTimed(ctx, p, n, rec, func(*usbhost.Pair, int64) error { return nil }, lats[i])
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		res.Errors++
		return err
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l.got...)
	}
	slices.Sort(all)
	r := demo.Result{Elapsed: elapsed, Queues: len(pairs), Payload: payload, Engine: engine}
	for _, c := range counts {
		r.Records += c
	}
	r.Bytes = r.Records * int64(payload)
	if len(all) > 0 {
		r.P50, r.P99 = all[len(all)/2], all[len(all)*99/100]
	}
	fmt.Println("YCQ-TABLE-BEGIN")
	r.Table(os.Stdout)
	st := drv.Stats()
	var out, in, copies uint64
	for _, p := range st.Pairs {
		out += p.OutTransfers
		in += p.InTransfers
		copies += p.Copies
	}
	mem := "anonymous"
	if len(st.Pairs) > 0 && st.Pairs[0].DeviceMemory {
		mem = "usbfs device"
	}
	fmt.Printf("usb transfers      %d OUT, %d IN (%.1f records an OUT transfer), %d copies, queues in %s memory\n",
		out, in, float64(r.Records)/float64(max(out, 1)), copies, mem)
	fmt.Println("YCQ-TABLE-END")
	res.Records += r.Records
	res.Pairs = len(pairs)
	res.Copies += copies
	res.Transfers += out + in
	res.Bench = append(res.Bench, bench{RecordSize: payload, Records: r.Records, Seconds: elapsed.Seconds(),
		PerSecond: float64(r.Records) / elapsed.Seconds(), MBps: float64(r.Bytes) / elapsed.Seconds() / 1e6, Copies: copies})
	return drv.Close()
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// check checks response got of pair p: the record itself (echo), or the
// CRC-32C of the whole record and its length (crc32c). want is scratch of
// the record size.
func check(p *usbhost.Pair, got int64, b, want []byte) error {
	if p.ResponseSize() == p.SlotSize() { // echo
		h, err := format.Check(b)
		if err != nil || h.Producer != uint32(p.Index()) || h.Seq != uint64(got) {
			return fmt.Errorf("pair %d: response %d is record (queue %d, seq %d): %v", p.Index(), got, h.Producer, h.Seq, err)
		}
		return nil
	}
	format.Fill(want, record.Header{Seq: uint64(got), Producer: uint32(p.Index())})
	if len(b) != 8 || binary.LittleEndian.Uint32(b) != crc32.Checksum(want, castagnoli) || binary.LittleEndian.Uint32(b[4:]) != uint32(len(want)) {
		return fmt.Errorf("pair %d: response %d is % x, not the CRC-32C and length of record %d", p.Index(), got, b, got)
	}
	return nil
}

func paramInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(guest.Param(name, ""), &v); err != nil || v <= 0 {
		return def
	}
	return v
}
