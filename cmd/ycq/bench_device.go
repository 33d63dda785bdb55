package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/hostdriver"
	"github.com/ycq-dev/ycq/internal/cpupin"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/internal/ringbench"
	"github.com/ycq-dev/ycq/vfio/user"
	"github.com/ycq-dev/ycq/ycqdev"
)

// benchDevice measures request/response through the ycq device against a
// UNIX stream socket. Both systems have the same two process roles: this
// process is the host and checks every response byte for byte; a child is
// the "device" and echoes every request. System ycq: the child is `ycq
// device serve` with the echo engine, reached through the vfio-user client
// and driven by the host driver, one sender and one receiver goroutine per
// queue pair. System socket: the child is `ycq bench device-socket-peer`,
// one connection per queue pair, with a sender and a receiver goroutine
// each. With -dpdk-vhost, system dpdk-vhost is DPDK's software device
// path beside them: bench/dpdk/vhost_bench.c as a virtio-user driver
// process against itself as a vhost-user device process, one polling
// thread each. A record is one request and its response, of the same size;
// every system lets a stream run ahead by the same window of in-flight
// records and moves the same batches.
//
// A run sends for -min-time, then stops sending and drains: it counts
// every response it checked, and its time runs from the first send to the
// last response. Each cell (a system at a record size) runs -rounds times;
// a round runs every cell, the systems side by side, so drift in the
// machine hits them alike. Around every run a ping-pong probe measures the
// cache-line round trip between two CPUs, so that a figure taken with the
// threads placed far apart is seen as such, and the CPU time of both
// processes gives records per CPU-second.
func benchDevice(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq bench device", flag.ContinueOnError)
	fs.SetOutput(stderr)
	payloads := fs.String("payload", "64,4KiB,64KiB", "record sizes, comma-separated (suffixes KiB, MiB)")
	minTime := fs.Duration("min-time", 2*time.Second, "how long a run sends; it then drains what is in flight")
	rounds := fs.Int("rounds", 5, "runs of each system and size; the median and the spread are reported")
	pairs := fs.Int("pairs", 2, "queue pairs (socket: connections)")
	slots := fs.Int("slots", 256, "slots in each queue")
	batch := fs.Int("batch", 32, "most records a reserve, receive, socket write or socket read")
	window := fs.Int("window", 0, "most records a stream has in flight; 0: what its two queues hold, 2 x slots")
	bar2 := fs.Bool("bar2", false, "ycq: keep the queues' metadata in the device's BAR2")
	asJSON := fs.Bool("json", false, "print one JSON object per system and size instead of a table")
	verbose := fs.Bool("v", false, "print every run")
	cpus := fs.String("cpus", "", "A,B: pin each system's busy threads, the host (driver) side's to CPU A and the device side's to CPU B, as DPDK pins lcores; empty: unpinned, where the schedulers put them")
	dpdkVhost := fs.String("dpdk-vhost", "", "also run this build of bench/dpdk/vhost_bench.c (make bench-dpdk builds bin/dpdk-vhost-bench), as system "+systemDPDKVhost)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var sizes []int
	for _, s := range strings.Split(*payloads, ",") {
		n, err := parseSize(strings.TrimSpace(s))
		if err != nil || n < minDeviceRecord || n > 8<<20 {
			return usagef("-payload %q: want sizes of %d bytes to 8 MiB", s, minDeviceRecord)
		}
		sizes = append(sizes, int(n))
	}
	if *window == 0 {
		*window = 2 * *slots
	}
	if *minTime <= 0 || *rounds < 1 || *pairs < 1 || *batch < 1 || *window < 1 {
		return usagef("-min-time, -rounds, -pairs, -batch and -window must be positive")
	}
	var hostCPU, devCPU []int
	if *cpus != "" {
		list, err := cpupin.Parse(*cpus)
		if err != nil || len(list) != 2 || list[0] == list[1] {
			return usagef("-cpus %q: want two different CPUs, A,B", *cpus)
		}
		allowed, err := cpupin.Allowed()
		if err != nil {
			return err
		}
		for _, c := range list {
			if !slices.Contains(allowed, c) {
				return usagef("-cpus: CPU %d is not one this process may run on (%v)", c, allowed)
			}
		}
		hostCPU, devCPU = list[:1], list[1:]
	}
	if *dpdkVhost != "" {
		if err := checkDPDKVhost(*dpdkVhost, sizes, *pairs, *slots, *batch); err != nil {
			return err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ycq-bench-device-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var devArgs []string
	if devCPU != nil {
		devArgs = []string{"-cpus", strconv.Itoa(devCPU[0])}
	}
	devSock, stopDevice, err := startDeviceModel(*pairs, "echo", stderr, devArgs...)
	if err != nil {
		return err
	}
	defer stopDevice()

	type key struct {
		system  string
		payload int
	}
	systems := []string{"ycq", "socket"}
	if *dpdkVhost != "" {
		systems = append(systems, systemDPDKVhost)
	}
	runs := map[key][]deviceResult{}
	for round := range *rounds {
		for i, payload := range sizes {
			o := deviceRun{minTime: *minTime, payload: payload, pairs: *pairs, slots: *slots, batch: *batch,
				window: *window, bar2: *bar2, hostCPU: hostCPU, devCPU: devCPU}
			// Rotate which system goes first (with two: alternate).
			k := (round + i) % len(systems)
			order := append(slices.Clone(systems[k:]), systems[:k]...)
			for _, sys := range order {
				before := ringbench.PingPong(probeTime)
				var r deviceResult
				var err error
				switch sys {
				case "ycq":
					r, err = runDeviceYCQ(devSock, o)
				case systemDPDKVhost:
					r, err = runDeviceDPDKVhost(*dpdkVhost, filepath.Join(dir, fmt.Sprintf("vhost-r%d-%d.sock", round, payload)), o)
				default:
					r, err = runDeviceSocket(exe, filepath.Join(dir, fmt.Sprintf("r%d.sock", round)), o)
				}
				if err != nil {
					return fmt.Errorf("%s, %d-byte records: %w", sys, payload, err)
				}
				r.probeBefore, r.probeAfter = before, ringbench.PingPong(probeTime)
				if *verbose {
					fmt.Fprintf(stderr, "round %d: %-10s %7d B %9.0f items/s, %d records in %v, CPU %v host + %v device"+
						", %.0f records/CPU-s, probe %d/%d ns", round, sys, payload, r.itemsPerSec(), r.records,
						r.elapsed.Round(time.Millisecond), r.selfCPU.Round(time.Millisecond),
						r.peerCPU.Round(time.Millisecond), r.perCPUSecond(), r.probeBefore.Nanoseconds(),
						r.probeAfter.Nanoseconds())
					if sys == "ycq" {
						fmt.Fprintf(stderr, ", %.4f doorbells and %.4f interrupts a record", r.perRecord(r.doorbells), r.perRecord(r.interrupts))
					}
					fmt.Fprintln(stderr)
				}
				runs[key{sys, payload}] = append(runs[key{sys, payload}], r)
			}
		}
	}

	cells := map[key]deviceCell{}
	var probes []time.Duration
	for k, rs := range runs {
		cells[k] = summarize(rs)
		for _, r := range rs {
			probes = append(probes, r.probeBefore, r.probeAfter)
		}
	}
	// ratios are ycq's items/s over another system's, round by round.
	ratios := func(other string, payload int) []float64 {
		y, s := runs[key{"ycq", payload}], runs[key{other, payload}]
		r := make([]float64, len(y))
		for i := range y {
			r[i] = y[i].itemsPerSec() / s[i].itemsPerSec()
		}
		return r
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, payload := range sizes {
			for _, sys := range systems {
				c := cells[key{sys, payload}]
				line := map[string]any{"system": sys, "scenario": "device", "batch": *batch, "producers": *pairs,
					"consumers": *pairs, "payload": payload, "rounds": *rounds,
					"items_per_sec": c.items, "min_items_per_sec": c.minItems, "max_items_per_sec": c.maxItems,
					"seconds": c.seconds, "cpu_seconds": c.cpuSeconds, "records_per_cpu_second": c.perCPUSecond,
					"cpus_busy": c.cpusBusy, "pingpong_before_ns": c.probeBefore.Nanoseconds(),
					"pingpong_after_ns": c.probeAfter.Nanoseconds()}
				if hostCPU != nil {
					line["host_cpu"], line["device_cpu"] = hostCPU[0], devCPU[0]
				}
				if sys == "ycq" {
					line["doorbells_per_record"] = c.doorbells
					line["interrupts_per_record"] = c.interrupts
					rs := ratios("socket", payload)
					line["ratio_vs_socket"] = medianOf(rs)
					line["min_ratio_vs_socket"], line["max_ratio_vs_socket"] = rangeOf(rs)
					if *dpdkVhost != "" {
						rs := ratios(systemDPDKVhost, payload)
						line["ratio_vs_dpdk_vhost"] = medianOf(rs)
						line["min_ratio_vs_dpdk_vhost"], line["max_ratio_vs_dpdk_vhost"] = rangeOf(rs)
					}
				}
				if err := enc.Encode(line); err != nil {
					return err
				}
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	others := systems[1:] // ycq's ratio to each
	fmt.Fprintf(tw, "payload\tsystem\titems/s\tspread\t")
	for _, o := range others {
		fmt.Fprintf(tw, "ycq/%s\tround ratios\t", o)
	}
	fmt.Fprintf(tw, "MB/s\trecords/CPU-s\tCPUs\tprobe ns\tdoorbells/rec\tinterrupts/rec\t\n")
	for _, payload := range sizes {
		for _, sys := range systems {
			c := cells[key{sys, payload}]
			fmt.Fprintf(tw, "%d\t%s\t%.3fM\t%.3f-%.3fM\t", payload, sys, c.items/1e6, c.minItems/1e6, c.maxItems/1e6)
			doorbells, interrupts := "", ""
			for _, o := range others {
				ratio, rounds := "", ""
				if sys == "ycq" {
					rs := ratios(o, payload)
					lo, hi := rangeOf(rs)
					ratio, rounds = fmt.Sprintf("%.2fx", medianOf(rs)), fmt.Sprintf("%.2f-%.2fx", lo, hi)
				}
				fmt.Fprintf(tw, "%s\t%s\t", ratio, rounds)
			}
			if sys == "ycq" {
				doorbells, interrupts = fmt.Sprintf("%.4f", c.doorbells), fmt.Sprintf("%.4f", c.interrupts)
			}
			fmt.Fprintf(tw, "%.0f\t%.3fM\t%.2f\t%d/%d\t%s\t%s\t\n", c.items*float64(payload)/1e6,
				c.perCPUSecond/1e6, c.cpusBusy, c.probeBefore.Nanoseconds(), c.probeAfter.Nanoseconds(),
				doorbells, interrupts)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "a record is a request and its echo, checked byte for byte; MB/s counts its payload once\n")
	fmt.Fprintf(stdout, "median and min-max of %d runs a cell, each sending for %v and then draining; ycq/%s: median of the rounds' ratios\n",
		*rounds, *minTime, strings.Join(others, ", ycq/"))
	fmt.Fprintf(stdout, "records/CPU-s: records over the user+system CPU time of the host and the device process during the run\n"+
		"  (ycq, socket: this process and the child; %s: the driver and the device process); CPUs: that CPU time over the run's wall time\n",
		systemDPDKVhost)
	lo, hi := rangeOf(probes)
	fmt.Fprintf(stdout, "probe: cache-line round trip between two threads (%v ping-pong) before/after each run, median over the runs;\n"+
		"  %d-%d ns over all runs", probeTime, lo.Nanoseconds(), hi.Nanoseconds())
	if float64(hi) > 1.5*float64(lo) {
		fmt.Fprintf(stdout, ",\n  they disagree (threads placed far apart, or other work on the CPUs): compare only figures whose probes agree")
	}
	fmt.Fprintln(stdout)
	where := "host memory"
	if *bar2 {
		where = "the device's BAR2"
	}
	fmt.Fprintf(stdout, "ycq: host driver here, device model (echo) in a child over vfio-user; %d queue pairs of %d slots, metadata in %s\n",
		*pairs, *slots, where)
	fmt.Fprintf(stdout, "socket: %d UNIX stream connections to a child that echoes, buffers of the queues' size (at most net.core.wmem_max)\n", *pairs)
	if *dpdkVhost != "" {
		fmt.Fprintf(stdout, "%s: DPDK's virtio-user PMD in a driver process, vhost-user (rte_vhost) echoing in a device process, one polling thread each;\n"+
			"  %d queue pairs of %d descriptors, mergeable Rx buffers, records over 16 KiB in 16 KiB segments; bench/dpdk\n",
			systemDPDKVhost, *pairs, *slots)
	}
	fmt.Fprintf(stdout, "%s: batches of up to %d records, at most %d records in flight a stream\n",
		map[bool]string{false: "both", true: "all"}[len(systems) > 2], *batch, *window)
	if hostCPU != nil {
		fmt.Fprintf(stdout, "pinned (-cpus): each system's host-side busy threads on CPU %d, its device side's on CPU %d"+
			" (the socket's goroutines, DPDK's lcores)\n", hostCPU[0], devCPU[0])
	} else {
		fmt.Fprintf(stdout, "unpinned: every thread where the Go runtime and the kernel put it (-cpus A,B pins each side's busy threads)\n")
	}
	return nil
}

// probeTime is how long each ping-pong probe runs.
const probeTime = 20 * time.Millisecond

// minDeviceRecord is the smallest record: its header.
const minDeviceRecord = record.PlainSize

// deviceRun is one run's shape.
type deviceRun struct {
	minTime             time.Duration // how long the run sends
	payload             int           // bytes a record
	pairs, slots, batch int
	window              int  // records a stream may have in flight
	bar2                bool // ycq: queue metadata in BAR2
	// hostCPU and devCPU, when set (-cpus), are the CPU each side's busy
	// threads are pinned to: the host driver's loop or the socket
	// client's goroutines or DPDK's driver lcore; the device model's loop
	// or the socket peer's goroutines or DPDK's vhost lcore.
	hostCPU, devCPU []int
}

// cpuArgs are the flags that pin a child's busy threads to cpu, if set.
func cpuArgs(flag string, cpu []int) []string {
	if cpu == nil {
		return nil
	}
	return []string{flag, strconv.Itoa(cpu[0])}
}

// socketBuffer is the socket buffer size that matches one queue: its
// slots of one record each.
func (o deviceRun) socketBuffer() int { return min(o.slots*o.payload, 1<<30) }

// deviceResult is what one run measured; the counts are summed over pairs.
type deviceResult struct {
	records               int
	elapsed               time.Duration
	selfCPU, peerCPU      time.Duration // user+system time of the host side (this process; dpdk-vhost: the driver process) and of the device process, during the run
	probeBefore           time.Duration // ping-pong round trip just before the run
	probeAfter            time.Duration // and just after
	doorbells, interrupts uint64
}

func (r deviceResult) itemsPerSec() float64 { return float64(r.records) / r.elapsed.Seconds() }

func (r deviceResult) cpu() time.Duration { return r.selfCPU + r.peerCPU }

func (r deviceResult) perCPUSecond() float64 {
	return float64(r.records) / max(r.cpu().Seconds(), 1e-9)
}

func (r deviceResult) perRecord(n uint64) float64 { return float64(n) / float64(max(r.records, 1)) }

// deviceCell is a cell's runs summed up: medians over the runs, and the
// spread of items/s.
type deviceCell struct {
	items, minItems, maxItems float64
	seconds, cpuSeconds       float64
	perCPUSecond, cpusBusy    float64
	probeBefore, probeAfter   time.Duration
	doorbells, interrupts     float64 // a record
}

func summarize(rs []deviceResult) deviceCell {
	of := func(f func(deviceResult) float64) []float64 { return eachRun(rs, f) }
	probe := func(f func(deviceResult) time.Duration) time.Duration { return medianOf(eachRun(rs, f)) }
	items := of(deviceResult.itemsPerSec)
	c := deviceCell{
		items:        medianOf(items),
		seconds:      medianOf(of(func(r deviceResult) float64 { return r.elapsed.Seconds() })),
		cpuSeconds:   medianOf(of(func(r deviceResult) float64 { return r.cpu().Seconds() })),
		perCPUSecond: medianOf(of(deviceResult.perCPUSecond)),
		cpusBusy:     medianOf(of(func(r deviceResult) float64 { return r.cpu().Seconds() / r.elapsed.Seconds() })),
		probeBefore:  probe(func(r deviceResult) time.Duration { return r.probeBefore }),
		probeAfter:   probe(func(r deviceResult) time.Duration { return r.probeAfter }),
		doorbells:    medianOf(of(func(r deviceResult) float64 { return r.perRecord(r.doorbells) })),
		interrupts:   medianOf(of(func(r deviceResult) float64 { return r.perRecord(r.interrupts) })),
	}
	c.minItems, c.maxItems = rangeOf(items)
	return c
}

// eachRun is f of each of rs.
func eachRun[T any](rs []deviceResult, f func(deviceResult) T) []T {
	xs := make([]T, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return xs
}

// medianOf is the middle of xs, or the mean of the two middle values.
func medianOf[T float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// rangeOf is the smallest and the largest of xs.
func rangeOf[T cmp.Ordered](xs []T) (lo, hi T) { return slices.Min(xs), slices.Max(xs) }

// cpuClock is the CPU time, user and system together, that process pid has
// used so far, from the kernel's per-process CPU-time clock: the clock
// clock_getcpuclockid(3) names, read with clock_gettime(2). It sums the
// time of all the process's threads on a CPU, in nanoseconds; getrusage's
// ru_utime + ru_stime and /proc/PID/stat's utime + stime are the same sum,
// split and in coarser units. It reads the clock of any living process; once
// pid has exited, it fails.
func cpuClock(pid int) (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(processCPUClock(pid), &ts); err != nil {
		return 0, fmt.Errorf("CPU clock of process %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// CPUCLOCK_SCHED is the clock of CPU time in all (user and system) of a
// CPU-time clock id, from linux/posix-timers_types.h.
const CPUCLOCK_SCHED = 2

// processCPUClock is the clock id of process pid's CPU time:
// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) in linux/posix-timers_types.h,
// ((int)~(unsigned)(pid) << 3) | clock, what glibc's clock_getcpuclockid
// returns.
func processCPUClock(pid int) int32 { return int32(^uint32(pid)<<3 | CPUCLOCK_SCHED) }

// runCPU reads the CPU clocks of this process and of its peer: call it at
// the start of a run, and the function it returns at the end, for the CPU
// time each used in between.
func runCPU(peer int) (func() (self, other time.Duration, err error), error) {
	self0, err := cpuClock(os.Getpid())
	if err != nil {
		return nil, err
	}
	peer0, err := cpuClock(peer)
	if err != nil {
		return nil, err
	}
	return func() (time.Duration, time.Duration, error) {
		self1, err := cpuClock(os.Getpid())
		if err != nil {
			return 0, 0, err
		}
		peer1, err := cpuClock(peer)
		if err != nil {
			return 0, 0, err
		}
		return self1 - self0, peer1 - peer0, nil
	}, nil
}

// peerPID is the process at the other end of c, by the kernel's
// credentials of the socket (SO_PEERCRED): for a connection we dialed, the
// process that listens.
func peerPID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return int(cred.Pid), nil
}

// patternShift is how many different offsets into the pattern records use.
const patternShift = 4093

// records makes and checks the benchmark's records. Record k of stream s
// is internal/record's Plain header without a checksum (k, s), then a run
// of a random pattern starting at an offset that moves with k, so that a
// response to the wrong record, from the wrong stream, cut short or garbled
// fails the check. The pattern is made once, so that filling and checking
// a record is a copy and a compare.
type records struct {
	size    int
	pattern []byte
}

// deviceRecord is the records' header format.
var deviceRecord = record.Format{}

func newRecords(size int) records {
	r := records{size: size, pattern: make([]byte, size+patternShift)}
	rng := rand.NewChaCha8([32]byte{'y', 'c', 'q'})
	rng.Read(r.pattern)
	return r
}

func (r records) body(k uint64) []byte {
	off := int(k % patternShift)
	return r.pattern[off : off+r.size-minDeviceRecord]
}

// fill writes record k of stream s into b, which is r.size bytes.
func (r records) fill(b []byte, s int, k uint64) {
	deviceRecord.PutHeader(b, record.Header{Seq: k, Producer: uint32(s)})
	copy(b[minDeviceRecord:], r.body(k))
}

// check compares b with record k of stream s, byte for byte.
func (r records) check(b []byte, s int, k uint64) error {
	if len(b) != r.size {
		return fmt.Errorf("stream %d: response %d has %d bytes, not %d", s, k, len(b), r.size)
	}
	var want [minDeviceRecord]byte
	deviceRecord.PutHeader(want[:], record.Header{Seq: k, Producer: uint32(s)})
	if !bytes.Equal(b[:minDeviceRecord], want[:]) {
		got, _ := deviceRecord.Check(b)
		return fmt.Errorf("stream %d: response %d is record %d of stream %d", s, k, got.Seq, got.Producer)
	}
	if !bytes.Equal(b[minDeviceRecord:], r.body(k)) {
		return fmt.Errorf("stream %d: response %d does not echo its request", s, k)
	}
	return nil
}

// window bounds the records a stream has in flight, sent but their
// responses not yet checked, and tells the receiver what to wait for. The
// sender takes credit before it sends and reports what it sent; the
// receiver gives credit back after it checked, and waits for a response
// only while one is owed, so that once the sender is done the receiver
// stops at the last response with nothing left in flight.
type window struct {
	mu     sync.Mutex
	room   sync.Cond // the sender waits for credit
	sends  sync.Cond // the receiver waits for a send
	free   int       // credit left
	sent   int       // records sent
	done   bool      // the sender sends no more
	closed bool      // the receiver stopped
}

func newWindow(n int) *window {
	w := &window{free: n}
	w.room.L = &w.mu
	w.sends.L = &w.mu
	return w
}

// take waits for credit and takes 1 to n records' worth; 0 once closed.
func (w *window) take(n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.free == 0 && !w.closed {
		w.room.Wait()
	}
	if w.closed {
		return 0
	}
	n = min(n, w.free)
	w.free -= n
	return n
}

// send counts n records sent of the took the sender took credit for, and
// gives the rest back.
func (w *window) send(took, n int) {
	w.mu.Lock()
	w.free += took - n
	w.sent += n
	w.mu.Unlock()
	w.sends.Signal()
}

// finish says the sender sends no more.
func (w *window) finish() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	w.sends.Broadcast()
}

// give gives back n records' credit, their responses checked, and waits
// until more than got records were sent: true then, false if the sender
// finished after got.
func (w *window) give(n, got int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n > 0 {
		w.free += n
		w.room.Signal() // one sender a window
	}
	for w.sent <= got && !w.done {
		w.sends.Wait()
	}
	return w.sent > got
}

// close wakes the sender for good: the receiver stopped.
func (w *window) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.room.Broadcast()
}

// runDeviceYCQ brings the device model at sock up with the host driver and
// streams records through its queue pairs for o.minTime.
func runDeviceYCQ(sock string, o deviceRun) (deviceResult, error) {
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return deviceResult{}, fmt.Errorf("connect to the device model: %w", err)
	}
	pid, err := peerPID(uc)
	if err != nil {
		uc.Close()
		return deviceResult{}, fmt.Errorf("the device model's process: %w", err)
	}
	dev, err := user.NewClient(uc, nil)
	if err != nil {
		return deviceResult{}, fmt.Errorf("connect to the device model: %w", err)
	}
	defer dev.Close()
	drv, err := hostdriver.Open(dev, hostdriver.Config{Queues: o.pairs, Slots: o.slots, SlotSize: (o.payload + 7) &^ 7,
		Engine: ycqdev.EngineEcho, MetaInBAR2: o.bar2})
	if err != nil {
		return deviceResult{}, err
	}
	defer drv.Close()
	recs := newRecords(o.payload)
	sent := make([]int, o.pairs)
	counts := make([]int, o.pairs)
	cpu, err := runCPU(pid)
	if err != nil {
		return deviceResult{}, err
	}
	start := time.Now()
	deadline, late := start.Add(o.minTime), false
	// One goroutine drives every pair, run to completion (hostdriver.Stream),
	// as the device model serves them all from one loop: two busy threads.
	loop := hostdriver.Stream{
		Window: o.window,
		Batch:  o.batch,
		CPUs:   o.hostCPU,
		Request: func(p *hostdriver.Pair, b []byte) (int, bool) {
			i := p.Index()
			if sent[i]%64 == 0 && !late {
				late = !time.Now().Before(deadline) // the clock, once in 64 requests
			}
			if late {
				return 0, false
			}
			recs.fill(b[:o.payload], i, uint64(sent[i]))
			sent[i]++
			return o.payload, true
		},
		Response: func(p *hostdriver.Pair, b []byte) error {
			i := p.Index()
			if err := recs.check(b, i, uint64(counts[i])); err != nil {
				return err
			}
			counts[i]++
			return nil
		},
	}
	runErr := loop.Run(context.Background(), drv.Pairs())
	res := deviceResult{elapsed: time.Since(start)}
	res.selfCPU, res.peerCPU, err = cpu()
	if err := errors.Join(runErr, err); err != nil {
		return deviceResult{}, err
	}
	for i, p := range drv.Pairs() {
		st := p.Stats()
		res.records += counts[i]
		res.doorbells += st.Doorbells
		res.interrupts += st.Interrupts
	}
	return res, drv.Close()
}

// systemDPDKVhost names DPDK's software device path in the results.
const systemDPDKVhost = "dpdk-vhost"

// dpdkVhostMaxRecord is the largest record bench/dpdk/vhost_bench.c takes
// with its default segments: 32 of 16 KiB.
const dpdkVhostMaxRecord = 32 * 16384

// checkDPDKVhost checks, before any run, that path is a program to run and
// that the run's shape is one bench/dpdk/vhost_bench.c takes: records of
// at most dpdkVhostMaxRecord, at most 8 queue pairs (virtio-user's limit),
// bursts of at most 512, and a split virtqueue's size, a power of two.
func checkDPDKVhost(path string, sizes []int, pairs, slots, batch int) error {
	fi, err := os.Stat(path)
	if err != nil {
		return usagef("-dpdk-vhost: %v (make bench-dpdk builds bin/dpdk-vhost-bench)", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return usagef("-dpdk-vhost %s: not an executable file (make bench-dpdk builds bin/dpdk-vhost-bench)", path)
	}
	for _, n := range sizes {
		if n > dpdkVhostMaxRecord {
			return usagef("-dpdk-vhost: records of %d bytes: %s takes at most %d", n, systemDPDKVhost, dpdkVhostMaxRecord)
		}
	}
	if pairs > 8 || batch > 512 || slots > 32768 || slots&(slots-1) != 0 {
		return usagef("-dpdk-vhost: %s takes at most 8 -pairs, -batch up to 512 and -slots a power of two up to 32768", systemDPDKVhost)
	}
	return nil
}

// dpdkVhostReport is the line bench/dpdk/vhost_bench.c's driver prints
// when its run ends.
type dpdkVhostReport struct {
	System     string  `json:"system"`
	Payload    int     `json:"payload"`
	Pairs      int     `json:"pairs"`
	Records    int     `json:"records"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

// runDeviceDPDKVhost runs DPDK's software device path once: bin as the
// vhost-user device listening on sock, then bin as the virtio-user driver,
// which streams records through o.pairs queue pairs for o.minTime, checks
// every echo and reports. The driver's CPU time is its own report; the
// device's is read from its CPU clock when the driver says its timed run
// starts ("start") and when it reports, at the end of that run.
func runDeviceDPDKVhost(bin, sock string, o deviceRun) (deviceResult, error) {
	shape := []string{"-sock", sock, "-payload", strconv.Itoa(o.payload), "-pairs", strconv.Itoa(o.pairs),
		"-slots", strconv.Itoa(o.slots), "-batch", strconv.Itoa(o.batch), "-window", strconv.Itoa(o.window)}
	dev := child(bin, slices.Concat([]string{"-role", "device"}, shape, cpuArgs("-lcore", o.devCPU))...)
	var devErr bytes.Buffer
	dev.Stderr = &devErr
	if err := dev.Start(); err != nil {
		return deviceResult{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- dev.Wait() }()
	running := true
	defer func() {
		if running {
			dev.Process.Kill()
			<-exited
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		select {
		case err := <-exited:
			running = false
			return deviceResult{}, fmt.Errorf("vhost device exited before it listened: %v: %s", err, bytes.TrimSpace(devErr.Bytes()))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return deviceResult{}, fmt.Errorf("vhost device: no socket %s after 30s", sock)
		}
	}

	drv := child(bin, slices.Concat([]string{"-role", "driver", "-seconds", strconv.FormatFloat(o.minTime.Seconds(), 'f', -1, 64)},
		shape, cpuArgs("-lcore", o.hostCPU))...)
	var drvErr bytes.Buffer
	drv.Stderr = &drvErr
	out, err := drv.StdoutPipe()
	if err != nil {
		return deviceResult{}, err
	}
	if err := drv.Start(); err != nil {
		return deviceResult{}, err
	}
	var devCPU [2]time.Duration
	var report []byte
	var cpuErr error
	started := false
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		switch l := lines.Bytes(); {
		case !started && string(l) == "start":
			started = true
			devCPU[0], cpuErr = cpuClock(dev.Process.Pid)
		case started && report == nil && len(l) > 0 && l[0] == '{':
			report = slices.Clone(l)
			var err error
			devCPU[1], err = cpuClock(dev.Process.Pid)
			cpuErr = errors.Join(cpuErr, err)
		}
	}
	if err := drv.Wait(); err != nil {
		return deviceResult{}, fmt.Errorf("virtio-user driver: %w: %s", err, bytes.TrimSpace(drvErr.Bytes()))
	}
	if report == nil {
		return deviceResult{}, fmt.Errorf("virtio-user driver: no report: %s", bytes.TrimSpace(drvErr.Bytes()))
	}
	if cpuErr != nil {
		return deviceResult{}, fmt.Errorf("vhost device: %w", cpuErr)
	}
	var r dpdkVhostReport
	if err := json.Unmarshal(report, &r); err != nil {
		return deviceResult{}, fmt.Errorf("virtio-user driver: report %q: %w", report, err)
	}
	if r.System != systemDPDKVhost || r.Payload != o.payload || r.Pairs != o.pairs || r.Records <= 0 || r.Seconds <= 0 {
		return deviceResult{}, fmt.Errorf("virtio-user driver: unexpected report %s", report)
	}
	// The device serves one driver and exits once it has gone.
	select {
	case err := <-exited:
		running = false
		if err != nil {
			return deviceResult{}, fmt.Errorf("vhost device: %w: %s", err, bytes.TrimSpace(devErr.Bytes()))
		}
	case <-time.After(10 * time.Second):
		return deviceResult{}, errors.New("vhost device: still running 10s after its driver exited")
	}
	return deviceResult{
		records: r.Records,
		elapsed: time.Duration(r.Seconds * float64(time.Second)),
		selfCPU: time.Duration(r.CPUSeconds * float64(time.Second)),
		peerCPU: devCPU[1] - devCPU[0],
	}, nil
}

// firstCause joins the errors that are not merely the cancellation another
// stream's failure caused, or all of them if that is all there is.
func firstCause(errs []error) error {
	var causes []error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			causes = append(causes, err)
		}
	}
	if len(causes) == 0 {
		return errors.Join(errs...)
	}
	return errors.Join(causes...)
}

// runDeviceSocket starts a child `ycq bench device-socket-peer` that
// connects o.pairs times to sock and echoes, and streams records through
// the connections for o.minTime.
func runDeviceSocket(exe, sock string, o deviceRun) (deviceResult, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return deviceResult{}, err
	}
	defer l.Close()
	cmd := child(exe, slices.Concat([]string{"bench", "device-socket-peer", "-socket", sock, "-conns", strconv.Itoa(o.pairs),
		"-payload", strconv.Itoa(o.payload), "-batch", strconv.Itoa(o.batch), "-buffer", strconv.Itoa(o.socketBuffer())},
		cpuArgs("-cpus", o.devCPU))...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return deviceResult{}, err
	}
	var conns []*net.UnixConn
	err = func() error {
		l.SetDeadline(time.Now().Add(time.Minute))
		for range o.pairs {
			c, err := l.AcceptUnix()
			if err != nil {
				return err
			}
			conns = append(conns, c)
			if err := setSocketBuffers(c, o.socketBuffer()); err != nil {
				return err
			}
		}
		return nil
	}()
	var res deviceResult
	if err == nil {
		err = func() error {
			recs := newRecords(o.payload)
			errs := make([]error, o.pairs)
			counts := make([]int, o.pairs)
			var wg sync.WaitGroup
			cpu, err := runCPU(cmd.Process.Pid)
			if err != nil {
				return err
			}
			start := time.Now()
			for i, c := range conns {
				wg.Go(func() {
					if counts[i], errs[i] = streamSocket(c, recs, i, start.Add(o.minTime), o); errs[i] != nil {
						for _, c := range conns {
							c.Close() // the other streams stop too
						}
					}
				})
			}
			wg.Wait()
			res.elapsed = time.Since(start)
			res.selfCPU, res.peerCPU, err = cpu() // the peer lives until its connections close
			for _, n := range counts {
				res.records += n
			}
			return errors.Join(firstCause(errs), err)
		}()
	}
	for _, c := range conns {
		c.Close() // the peer sees the end and exits
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return deviceResult{}, err
	}
	if err := cmd.Wait(); err != nil {
		return deviceResult{}, fmt.Errorf("socket peer: %w: %s", err, errb.String())
	}
	return res, nil
}

// streamSocket sends requests on c until deadline, batch records to a
// write, from a second goroutine, checks each echoed response, reading up
// to batch records at a time, and returns how many it checked: all that
// were sent.
func streamSocket(c *net.UnixConn, recs records, s int, deadline time.Time, o deviceRun) (int, error) {
	win := newWindow(o.window)
	var sendErr error
	var sender sync.WaitGroup
	var pinErr error
	sender.Go(func() {
		defer win.finish()
		unpin, err := cpupin.Thread(o.hostCPU)
		if err != nil {
			pinErr = err
			return
		}
		defer unpin()
		buf := make([]byte, o.batch*o.payload)
		for k := 0; time.Now().Before(deadline); {
			m := win.take(o.batch)
			if m == 0 {
				return
			}
			for i := range m {
				recs.fill(buf[i*o.payload:][:o.payload], s, uint64(k+i))
			}
			if _, err := c.Write(buf[:m*o.payload]); err != nil {
				sendErr = fmt.Errorf("connection %d: write after %d requests: %w", s, k, err)
				c.Close() // the receiver stops waiting
				return
			}
			win.send(m, m)
			k += m
		}
	})
	got := 0
	err := func() error {
		unpin, err := cpupin.Thread(o.hostCPU)
		if err != nil {
			return err
		}
		defer unpin()
		buf := make([]byte, o.batch*o.payload)
		for n := 0; win.give(n, got); {
			m, err := readRecords(c, buf, o.payload)
			if err != nil {
				return fmt.Errorf("connection %d: after %d responses: %w", s, got, err)
			}
			for i := range m {
				if err := recs.check(buf[i*o.payload:][:o.payload], s, uint64(got+i)); err != nil {
					return err
				}
			}
			n = m
			got += n
		}
		return nil
	}()
	win.close()
	if err != nil {
		c.Close() // a blocked write returns
	}
	sender.Wait()
	return got, errors.Join(err, sendErr, pinErr)
}

// setSocketBuffers sizes both of c's kernel buffers like a queue; the
// kernel caps them at net.core.wmem_max and rmem_max.
func setSocketBuffers(c *net.UnixConn, n int) error {
	if n <= 0 {
		return nil
	}
	if err := c.SetWriteBuffer(n); err != nil {
		return err
	}
	return c.SetReadBuffer(n)
}

// readRecords reads at least one whole record of size bytes into buf and
// as many more as have arrived and fit, and returns how many it read.
func readRecords(r io.Reader, buf []byte, size int) (int, error) {
	n, err := io.ReadAtLeast(r, buf, size)
	if err != nil {
		return 0, err
	}
	if part := n % size; part != 0 {
		if _, err := io.ReadFull(r, buf[n:n+size-part]); err != nil {
			return 0, err
		}
		n += size - part
	}
	return n / size, nil
}

// benchDeviceSocketPeer is the "device" of bench device's socket system:
// it connects -conns times and, on each connection, reads up to -batch
// whole requests at a time and writes them back, until the host closes.
func benchDeviceSocketPeer(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq bench device-socket-peer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("socket", "", "socket to connect to")
	conns := fs.Int("conns", 1, "connections")
	payload := fs.Int("payload", 64, "bytes a record")
	batch := fs.Int("batch", 32, "most records a read")
	buffer := fs.Int("buffer", 0, "kernel socket buffer bytes; the kernel's default if 0")
	cpus := fs.String("cpus", "", "pin each connection's goroutine to these CPUs; empty: unpinned")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pinned, err := cpupin.Parse(*cpus)
	if err != nil {
		return usagef("-cpus: %v", err)
	}
	if *payload < 1 || *batch < 1 || *conns < 1 || *buffer < 0 {
		return usagef("bad -payload, -batch, -conns or -buffer")
	}
	errs := make([]error, *conns)
	var wg sync.WaitGroup
	for i := range *conns {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: *sock, Net: "unix"})
		if err != nil {
			return err
		}
		defer c.Close()
		if err := setSocketBuffers(c, *buffer); err != nil {
			return err
		}
		wg.Go(func() {
			unpin, err := cpupin.Thread(pinned)
			if err != nil {
				errs[i] = err
				return
			}
			defer unpin()
			buf := make([]byte, *batch**payload)
			for {
				m, err := readRecords(c, buf, *payload)
				if err == io.EOF {
					return
				}
				if err == nil {
					_, err = c.Write(buf[:m**payload])
				}
				if err != nil {
					errs[i] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
