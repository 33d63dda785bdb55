package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/internal/ringbench"
	"github.com/ycq-dev/ycq/ipc"
	"github.com/ycq-dev/ycq/ring"
)

// benchIPC measures the ring between two processes against a UNIX stream
// socket between the same two processes: this process produces, a child
// (this binary again) consumes.
func benchIPC(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq bench ipc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	small := fs.Int("count-small", 2_000_000, "records per run of 64-byte records")
	large := fs.Int("count-large", 200_000, "records per run of 4 KiB records")
	rounds := fs.Int("rounds", 3, "runs of each; the median is reported")
	idle := fs.Duration("idle", 5*time.Second, "how long the idle consumers wait, for their CPU time")
	asJSON := fs.Bool("json", false, "print one JSON object per result instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *small < 1 || *large < 1 || *rounds < 1 {
		return usagef("counts and rounds must be positive")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ycq-bench-ipc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	type scenario struct {
		system  string
		payload int
		batch   int
	}
	var scenarios []scenario
	for _, payload := range []int{64, 4096} {
		for _, batch := range []int{1, 32} {
			for _, sys := range []string{"ring", "socket", "ring-local"} {
				scenarios = append(scenarios, scenario{sys, payload, batch})
			}
		}
	}
	// The same transfer with the other two ways of waiting: sleep at once,
	// or never sleep.
	for _, payload := range []int{64, 4096} {
		scenarios = append(scenarios, scenario{"ring-block", payload, 32}, scenario{"ring-spin", payload, 32})
	}
	modes := map[string]ipc.Mode{"ring": {}, "ring-block": {Block: true}, "ring-spin": {Spin: true}}
	// The echo shape: records go to the other process and come back, each
	// checked on return; ring and socket with the same batch and window.
	for _, payload := range []int{64, 4096} {
		scenarios = append(scenarios, scenario{"ring-echo", payload, 32}, scenario{"ring-block-echo", payload, 32},
			scenario{"socket-echo", payload, 32})
	}
	results := map[scenario][]float64{}
	// The placement of the two vCPUs, probed before every round and at the
	// end: compare only runs whose probes agree.
	var probes []time.Duration
	for round := range *rounds {
		probes = append(probes, ringbench.PingPong(20*time.Millisecond))
		for _, sc := range scenarios {
			count := *small
			if sc.payload > 64 {
				count = *large
			}
			sock := filepath.Join(dir, fmt.Sprintf("r%d.sock", round))
			var rate float64
			switch sc.system {
			case "socket":
				rate, err = runSocketBench(exe, sock, count, sc.payload, sc.batch)
			case "ring-echo":
				rate, err = runRingEcho(exe, sock, count, sc.payload, sc.batch, ipc.Mode{})
			case "ring-block-echo":
				rate, err = runRingEcho(exe, sock, count, sc.payload, sc.batch, ipc.Mode{Block: true})
			case "socket-echo":
				rate, err = runSocketEcho(exe, sock, sc.payload, sc.batch)
			case "ring-local":
				rate, err = runRingLocal(count, sc.payload, sc.batch)
			default:
				rate, err = runRingBench(exe, sock, count, sc.payload, sc.batch, modes[sc.system])
			}
			os.Remove(sock)
			if err != nil {
				return fmt.Errorf("%s, %d-byte records, batch %d: %w", sc.system, sc.payload, sc.batch, err)
			}
			results[sc] = append(results[sc], rate)
		}
	}
	probes = append(probes, ringbench.PingPong(20*time.Millisecond))
	slices.Sort(probes)
	probe := probes[len(probes)/2]
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.SortFunc(s, cmp.Compare)
		return s[len(s)/2]
	}
	idleDefault, err := idleCPU(exe, *idle, ipc.Mode{})
	if err != nil {
		return fmt.Errorf("idle consumer: %w", err)
	}
	idleSpin, err := idleCPU(exe, min(*idle, time.Second), ipc.Mode{Spin: true})
	if err != nil {
		return fmt.Errorf("idle spinning consumer: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, sc := range scenarios {
			system, shape := sc.system, "ipc"
			if cut, ok := strings.CutSuffix(system, "-echo"); ok {
				system, shape = cut, "ipc-echo"
			}
			enc.Encode(map[string]any{"system": system, "scenario": shape, "batch": sc.batch, "producers": 1,
				"consumers": 1, "payload": sc.payload, "items_per_sec": median(results[sc]),
				"pingpong_round_trip_ns": int64(probe)})
		}
		enc.Encode(map[string]any{"system": "ring", "scenario": "ipc-idle", "idle_seconds": idle.Seconds(),
			"cpu_seconds": idleDefault.Seconds()})
		enc.Encode(map[string]any{"system": "ring-spin", "scenario": "ipc-idle", "idle_seconds": min(*idle, time.Second).Seconds(),
			"cpu_seconds": idleSpin.Seconds()})
		return nil
	}
	fmt.Fprintf(stdout, "cache-line round trip between the two CPUs (ping-pong): %v median, %v to %v over the run\n",
		probe.Round(time.Nanosecond), probes[0].Round(time.Nanosecond), probes[len(probes)-1].Round(time.Nanosecond))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "payload\tbatch\tring items/s\tsocket items/s\tring/socket\tring MB/s\tin one process\tring/one process\t\n")
	for _, sc := range scenarios {
		if sc.system != "ring" {
			continue
		}
		r := median(results[sc])
		s := median(results[scenario{"socket", sc.payload, sc.batch}])
		l := median(results[scenario{"ring-local", sc.payload, sc.batch}])
		fmt.Fprintf(tw, "%d\t%d\t%.2fM\t%.2fM\t%.1fx\t%.0f\t%.2fM\t%.2fx\t\n", sc.payload, sc.batch, r/1e6, s/1e6, r/s, r*float64(sc.payload)/1e6, l/1e6, r/l)
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "payload\tbatch\tspin-then-sleep items/s\tblock items/s\tspin items/s\t\n")
	for _, p := range []int{64, 4096} {
		d := median(results[scenario{"ring", p, 32}])
		bl, sp := median(results[scenario{"ring-block", p, 32}]), median(results[scenario{"ring-spin", p, 32}])
		fmt.Fprintf(tw, "%d\t32\t%.2fM\t%.2fM\t%.2fM\t\n", p, d/1e6, bl/1e6, sp/1e6)
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "echo payload\tbatch\tring items/s\tsocket items/s\tring/socket\tring -block items/s\tring/-block\t\n")
	for _, p := range []int{64, 4096} {
		r, so := median(results[scenario{"ring-echo", p, 32}]), median(results[scenario{"socket-echo", p, 32}])
		bl := median(results[scenario{"ring-block-echo", p, 32}])
		fmt.Fprintf(tw, "%d\t32\t%.2fM\t%.2fM\t%.1fx\t%.2fM\t%.2fx\t\n", p, r/1e6, so/1e6, r/so, bl/1e6, r/bl)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\nidle consumer CPU time: spin-then-sleep (the default) %v in %v; spin %v in %v\n",
		idleDefault.Round(time.Microsecond), *idle, idleSpin.Round(time.Millisecond), min(*idle, time.Second))
	fmt.Fprintf(stdout, "two processes, one producing and one consuming; median of %d runs; queues of 1024 slots\n", *rounds)
	fmt.Fprintf(stdout, "in one process: the same session code and shared-memory pair, both sides as goroutines of this process\n")
	return nil
}

// runRingLocal runs the session runRingBench asks of its child, with both
// sides in this process (ipc.RunLocal): the same roles, records and
// memory, without the process boundary.
func runRingLocal(count, payload, batch int) (float64, error) {
	h := ipc.Hello{Role: ipc.RoleConsumer, Count: uint64(count), Payload: payload, Batch: batch,
		Geometry: ipc.Geometry{Slots: 1024, SlotSize: (payload + 7) &^ 7}}
	res, err := ipc.RunLocal(context.Background(), h, ipc.Mode{}, dma.Options{})
	if err != nil {
		return 0, err
	}
	if res.Records != uint64(count) {
		return 0, fmt.Errorf("in one process: finished %d of %d records", res.Records, count)
	}
	return res.ItemsPerSec(), nil
}

// runRingBench serves one session in this process (the source) to a child
// `ycq ipc connect` (the consumer) and returns the child's rate.
func runRingBench(exe, sock string, count, payload, batch int, mode ipc.Mode) (float64, error) {
	return runRingSession(exe, sock, ipc.RoleConsumer, count, payload, batch, mode)
}

// runRingSession serves one session in this process, in mode, to a child
// `ycq ipc connect -role role` and returns the rate the child reports for
// count records.
func runRingSession(exe, sock, role string, count, payload, batch int, mode ipc.Mode) (float64, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ipc.Serve(ctx, l, ipc.ServerOptions{Mode: mode}) }()
	args := []string{"ipc", "connect", "-socket", sock, "-role", role, "-count", strconv.Itoa(count),
		"-payload", strconv.Itoa(payload), "-batch", strconv.Itoa(batch), "-slots", "1024", "-no-checksum", "-json"}
	switch {
	case mode.Block:
		args = append(args, "-block")
	case mode.Spin:
		args = append(args, "-spin")
	}
	out, err := runChild(exe, args...)
	cancel()
	if serr := <-served; err == nil {
		err = serr
	}
	if err != nil {
		return 0, err
	}
	var res struct {
		Records     uint64  `json:"records"`
		ItemsPerSec float64 `json:"items_per_sec"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("child output %q: %w", out, err)
	}
	if res.Records != uint64(count) {
		return 0, fmt.Errorf("child (%s) finished %d of %d records", role, res.Records, count)
	}
	return res.ItemsPerSec, nil
}

// runRingEcho serves one session here, which echoes, to a child `ycq ipc
// connect -role both` that sends the records, checks each echo and reports
// its rate; both wait in mode.
func runRingEcho(exe, sock string, count, payload, batch int, mode ipc.Mode) (float64, error) {
	return runRingSession(exe, sock, ipc.RoleBoth, count, payload, batch, mode)
}

// runSocketEcho is the echo shape over a UNIX stream socket: bench
// device's socket system with one connection, the queues' window (1024
// records each way) and the same batch; the child echoes, this process
// sends and checks every echo, for about a second.
func runSocketEcho(exe, sock string, payload, batch int) (float64, error) {
	r, err := runDeviceSocket(exe, sock, deviceRun{minTime: time.Second, payload: payload, pairs: 1, slots: 1024,
		batch: batch, window: 2 * 1024})
	if err != nil {
		return 0, err
	}
	return r.itemsPerSec(), nil
}

func runChild(exe string, args ...string) ([]byte, error) {
	cmd := child(exe, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", args[0], err, errb.String())
	}
	return out.Bytes(), nil
}

// socketRecord is the records' format: the ring's, as `ycq ipc` writes
// them with -no-checksum.
var socketRecord = record.Format{Timed: true}

// runSocketBench sends the same records over a UNIX stream socket to a
// child `ycq bench ipc-socket-peer`, batch records to a write.
func runSocketBench(exe, sock string, count, payload, batch int) (float64, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return 0, err
	}
	defer l.Close()
	type result struct {
		out []byte
		err error
	}
	child := make(chan result, 1)
	go func() {
		out, err := runChild(exe, "bench", "ipc-socket-peer", "-socket", sock, "-count", strconv.Itoa(count),
			"-payload", strconv.Itoa(payload), "-batch", strconv.Itoa(batch))
		child <- result{out, err}
	}()
	l.SetDeadline(time.Now().Add(time.Minute))
	conn, err := l.AcceptUnix()
	if err != nil {
		return 0, err
	}
	buf := make([]byte, batch*payload)
	for seq := 0; seq < count; seq += batch {
		n := min(batch, count-seq)
		now := uint64(time.Now().UnixNano())
		for i := range n {
			socketRecord.Fill(buf[i*payload:(i+1)*payload], record.Header{Seq: uint64(seq + i), Producer: 1, SentNs: now})
		}
		if _, err := conn.Write(buf[:n*payload]); err != nil {
			conn.Close()
			return 0, err
		}
	}
	conn.Close()
	r := <-child
	if r.err != nil {
		return 0, r.err
	}
	var res struct {
		Records     int     `json:"records"`
		ItemsPerSec float64 `json:"items_per_sec"`
	}
	if err := json.Unmarshal(r.out, &res); err != nil {
		return 0, fmt.Errorf("child output %q: %w", r.out, err)
	}
	if res.Records != count {
		return 0, fmt.Errorf("child received %d of %d records", res.Records, count)
	}
	return res.ItemsPerSec, nil
}

// benchIPCSocketPeer is the consuming child of runSocketBench: it reads
// records in batches into one buffer and checks each in place, as the ring
// consumer does.
func benchIPCSocketPeer(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq bench ipc-socket-peer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("socket", "", "socket to connect to")
	count := fs.Int("count", 0, "records")
	payload := fs.Int("payload", 64, "bytes a record")
	batch := fs.Int("batch", 1, "records a read")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *payload < socketRecord.HeaderSize() || *batch < 1 || *count < 1 {
		return usagef("bad -payload, -batch or -count")
	}
	c, err := net.Dial("unix", *sock)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, *batch**payload)
	var start time.Time
	next := 0
	for next < *count {
		n := min(*batch, *count-next)
		if _, err := io.ReadFull(c, buf[:n**payload]); err != nil {
			return fmt.Errorf("after %d records: %w", next, err)
		}
		if next == 0 {
			start = time.Now()
		}
		for i := range n {
			h, err := socketRecord.Check(buf[i**payload:][:*payload])
			if err != nil {
				return fmt.Errorf("record %d: %w", next, err)
			}
			if h.Seq != uint64(next) {
				return fmt.Errorf("record %d where %d was due", h.Seq, next)
			}
			next++
		}
	}
	elapsed := time.Since(start)
	return json.NewEncoder(stdout).Encode(map[string]any{"records": next, "items_per_sec": float64(next) / elapsed.Seconds()})
}

// idleCPU starts a child that waits for records on an empty queue for d,
// in the given mode, and returns the CPU time it used.
func idleCPU(exe string, d time.Duration, mode ipc.Mode) (time.Duration, error) {
	cfg := ring.Config{Slots: 64, SlotSize: 64}
	meta, err := dma.Memfd("idle.meta", cfg.MetaSize(), dma.Options{})
	if err != nil {
		return 0, err
	}
	defer meta.Close()
	data, err := dma.Memfd("idle.data", cfg.DataSize(), dma.Options{})
	if err != nil {
		return 0, err
	}
	defer data.Close()
	if _, err := ring.Format(meta.Bytes(), data.Bytes(), cfg); err != nil {
		return 0, err
	}
	cmd := child(exe, "bench", "ipc-idle-peer", "-for", d.String(), "-mode", mode.String(),
		"-slots", strconv.Itoa(cfg.Slots), "-slot-size", strconv.Itoa(cfg.SlotSize))
	files, err := dma.Files(meta, data)
	if err != nil {
		return 0, err
	}
	defer closeAll(files)
	cmd.ExtraFiles = files
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%w: %s", err, errb.String())
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// benchIPCIdlePeer waits on the queue in descriptors 3 and 4 until its time
// is up; nothing ever arrives.
func benchIPCIdlePeer(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq bench ipc-idle-peer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := fs.Duration("for", 5*time.Second, "how long to wait")
	modeName := fs.String("mode", "spin-then-sleep", "how to wait: spin-then-sleep, block or spin")
	slots := fs.Int("slots", 64, "slots")
	slotSize := fs.Int("slot-size", 64, "slot size")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := ring.Config{Slots: *slots, SlotSize: *slotSize}
	meta, err := dma.Map(3, cfg.MetaSize())
	if err != nil {
		return err
	}
	defer meta.Close()
	data, err := dma.Map(4, cfg.DataSize())
	if err != nil {
		return err
	}
	defer data.Close()
	q, err := ring.Attach(meta.Bytes(), data.Bytes())
	if err != nil {
		return err
	}
	mode, err := ipc.ParseMode(*modeName)
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *d)
	defer cancel()
	_, err = mode.Wrap(q).Consumer().ReserveUpTo(ctx, 1)
	if err != context.DeadlineExceeded {
		return fmt.Errorf("waited for nothing and got %v", err)
	}
	return nil
}
