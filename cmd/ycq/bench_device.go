package main

import (
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

	"github.com/ycq-dev/ycq/hostdriver"
	"github.com/ycq-dev/ycq/internal/record"
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
// each. A record is one request and its response, of the same size; both
// systems let a stream run ahead by the same window of in-flight records
// and move the same batches.
func benchDevice(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq bench device", flag.ContinueOnError)
	fs.SetOutput(stderr)
	payloads := fs.String("payload", "64,4KiB,64KiB", "record sizes, comma-separated (suffixes KiB, MiB)")
	count := fs.Int("count", 500_000, "most records a run")
	size := fs.String("size", "1GiB", "most bytes of requests a run (caps the records of large sizes)")
	rounds := fs.Int("rounds", 3, "runs of each system and size; the median is reported")
	pairs := fs.Int("pairs", 2, "queue pairs (socket: connections)")
	slots := fs.Int("slots", 256, "slots in each queue")
	batch := fs.Int("batch", 32, "most records a reserve, receive, socket write or socket read")
	window := fs.Int("window", 0, "most records a stream has in flight; 0: what its two queues hold, 2 x slots")
	bar2 := fs.Bool("bar2", false, "ycq: keep the queues' metadata in the device's BAR2")
	asJSON := fs.Bool("json", false, "print one JSON object per result instead of a table")
	verbose := fs.Bool("v", false, "print every run")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	maxBytes, err := parseSize(*size)
	if err != nil {
		return usagef("-size: %v", err)
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
	if *count < 1 || *rounds < 1 || *pairs < 1 || *batch < 1 || *window < 1 {
		return usagef("-count, -rounds, -pairs, -batch and -window must be positive")
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
	devSock, stopDevice, err := startDeviceModel(*pairs, "echo", stderr)
	if err != nil {
		return err
	}
	defer stopDevice()

	type key struct {
		system  string
		payload int
	}
	systems := []string{"ycq", "socket"}
	runs := map[key][]deviceResult{}
	// Interleave systems and sizes round by round, alternating which
	// system goes first, so drift in the machine hits both alike.
	for round := range *rounds {
		for i, payload := range sizes {
			o := deviceRun{records: int(min(int64(*count), max(1, maxBytes/int64(payload)))), payload: payload,
				pairs: *pairs, slots: *slots, batch: *batch, window: *window, bar2: *bar2}
			order := slices.Clone(systems)
			if (round+i)%2 == 1 {
				slices.Reverse(order)
			}
			for _, sys := range order {
				var r deviceResult
				var err error
				switch sys {
				case "ycq":
					r, err = runDeviceYCQ(devSock, o)
				default:
					r, err = runDeviceSocket(exe, filepath.Join(dir, fmt.Sprintf("r%d.sock", round)), o)
				}
				if err != nil {
					return fmt.Errorf("%s, %d-byte records: %w", sys, payload, err)
				}
				if *verbose {
					fmt.Fprintf(stderr, "round %d: %-6s %7d B %9.0f items/s, %d records", round, sys, payload, r.itemsPerSec, o.records)
					if sys == "ycq" {
						fmt.Fprintf(stderr, ", %.4f doorbells and %.4f interrupts a record", r.perRecord(r.doorbells), r.perRecord(r.interrupts))
					}
					fmt.Fprintln(stderr)
				}
				runs[key{sys, payload}] = append(runs[key{sys, payload}], r)
			}
		}
	}
	median := func(rs []deviceResult) deviceResult {
		s := slices.Clone(rs)
		slices.SortFunc(s, func(a, b deviceResult) int { return cmp.Compare(a.itemsPerSec, b.itemsPerSec) })
		return s[len(s)/2]
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, payload := range sizes {
			for _, sys := range systems {
				r := median(runs[key{sys, payload}])
				line := map[string]any{"system": sys, "scenario": "device", "batch": *batch, "producers": *pairs,
					"consumers": *pairs, "payload": payload, "items_per_sec": r.itemsPerSec}
				if sys == "ycq" {
					line["doorbells_per_record"] = r.perRecord(r.doorbells)
					line["interrupts_per_record"] = r.perRecord(r.interrupts)
				}
				if err := enc.Encode(line); err != nil {
					return err
				}
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "payload\tycq items/s\tsocket items/s\tycq/socket\tycq MB/s\tsocket MB/s\tdoorbells/rec\tinterrupts/rec\tnotify/rec\t\n")
	for _, payload := range sizes {
		y, s := median(runs[key{"ycq", payload}]), median(runs[key{"socket", payload}])
		mb := func(r deviceResult) float64 { return r.itemsPerSec * float64(payload) / 1e6 }
		fmt.Fprintf(tw, "%d\t%.3fM\t%.3fM\t%.2fx\t%.0f\t%.0f\t%.4f\t%.4f\t%.4f\t\n", payload, y.itemsPerSec/1e6, s.itemsPerSec/1e6,
			y.itemsPerSec/s.itemsPerSec, mb(y), mb(s), y.perRecord(y.doorbells), y.perRecord(y.interrupts),
			y.perRecord(y.doorbells+y.interrupts))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "a record is a request and its echo, checked byte for byte; MB/s counts its payload once; median of %d runs\n", *rounds)
	where := "host memory"
	if *bar2 {
		where = "the device's BAR2"
	}
	fmt.Fprintf(stdout, "ycq: host driver here, device model (echo) in a child over vfio-user; %d queue pairs of %d slots, metadata in %s\n",
		*pairs, *slots, where)
	fmt.Fprintf(stdout, "socket: %d UNIX stream connections to a child that echoes, buffers of the queues' size (at most net.core.wmem_max)\n", *pairs)
	fmt.Fprintf(stdout, "both: batches of up to %d records, at most %d records in flight a stream\n", *batch, *window)
	return nil
}

// minDeviceRecord is the smallest record: its header.
const minDeviceRecord = record.PlainSize

// deviceRun is one run's shape.
type deviceRun struct {
	records, payload    int // records in all, bytes each
	pairs, slots, batch int
	window              int  // records a stream may have in flight
	bar2                bool // ycq: queue metadata in BAR2
}

// streamRecords is how many of the run's records stream i carries.
func (o deviceRun) streamRecords(i int) int {
	n := o.records / o.pairs
	if i < o.records%o.pairs {
		n++
	}
	return n
}

// socketBuffer is the socket buffer size that matches one queue: its
// slots of one record each.
func (o deviceRun) socketBuffer() int { return min(o.slots*o.payload, 1<<30) }

// deviceResult is what one run measured; the counts are summed over pairs.
type deviceResult struct {
	itemsPerSec           float64
	records               int
	doorbells, interrupts uint64
}

func (r deviceResult) perRecord(n uint64) float64 { return float64(n) / float64(max(r.records, 1)) }

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

// window bounds the records a stream has in flight: sent, their responses
// not yet checked. The sender takes credit before it sends; the receiver
// gives it back after it checked.
type window struct {
	mu     sync.Mutex
	more   sync.Cond
	free   int
	closed bool
}

func newWindow(n int) *window {
	w := &window{free: n}
	w.more.L = &w.mu
	return w
}

// take waits for credit and takes 1 to n records' worth; 0 once closed.
func (w *window) take(n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.free == 0 && !w.closed {
		w.more.Wait()
	}
	if w.closed {
		return 0
	}
	n = min(n, w.free)
	w.free -= n
	return n
}

func (w *window) give(n int) {
	w.mu.Lock()
	w.free += n
	w.mu.Unlock()
	w.more.Signal() // one sender a window
}

// close wakes the sender for good: the receiver stopped.
func (w *window) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.more.Broadcast()
}

// runDeviceYCQ brings the device model at sock up with the host driver and
// streams o's records through its queue pairs.
func runDeviceYCQ(sock string, o deviceRun) (deviceResult, error) {
	dev, err := user.Dial(sock, nil)
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make([]error, o.pairs)
	var wg sync.WaitGroup
	start := time.Now()
	for i, p := range drv.Pairs() {
		wg.Go(func() {
			errs[i] = streamYCQ(ctx, cancel, p, recs, o.streamRecords(i), o)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := firstCause(errs); err != nil {
		return deviceResult{}, err
	}
	res := deviceResult{itemsPerSec: float64(o.records) / elapsed.Seconds(), records: o.records}
	for _, p := range drv.Pairs() {
		st := p.Stats()
		res.doorbells += st.Doorbells
		res.interrupts += st.Interrupts
	}
	return res, drv.Close()
}

// streamYCQ sends n requests through p, from a second goroutine, and
// checks each response in place. A failure on either side cancels ctx, so
// that the other side, and the other pairs, stop waiting.
func streamYCQ(ctx context.Context, cancel func(), p *hostdriver.Pair, recs records, n int, o deviceRun) error {
	win := newWindow(o.window)
	var sendErr error
	var sender sync.WaitGroup
	sender.Go(func() {
		for k := 0; k < n; {
			m := win.take(min(o.batch, n-k))
			if m == 0 {
				return
			}
			r, err := p.ReserveUpTo(ctx, m)
			if err != nil {
				sendErr = fmt.Errorf("pair %d: reserve after %d requests: %w", p.Index(), k, err)
				cancel()
				return
			}
			for i := range r.Len() {
				recs.fill(r.Slot(i)[:o.payload], p.Index(), uint64(k+i))
			}
			if err := r.PublishAll(o.payload); err != nil {
				sendErr = fmt.Errorf("pair %d: publish after %d requests: %w", p.Index(), k, err)
				cancel()
				return
			}
			win.give(m - r.Len())
			k += r.Len()
		}
	})
	err := func() error {
		for got := 0; got < n; {
			r, err := p.Receive(ctx, o.batch)
			if err != nil {
				return fmt.Errorf("pair %d: after %d of %d responses: %w", p.Index(), got, n, err)
			}
			for i := range r.Len() {
				b, err := r.Slot(i)
				if err == nil {
					err = recs.check(b, p.Index(), uint64(got+i))
				}
				if err != nil {
					r.ReleaseAll()
					return err
				}
			}
			if err := r.ReleaseAll(); err != nil {
				return fmt.Errorf("pair %d: release: %w", p.Index(), err)
			}
			got += r.Len()
			win.give(r.Len())
		}
		return nil
	}()
	win.close()
	if err != nil {
		cancel() // the sender may wait for room that will not come
	}
	sender.Wait()
	return errors.Join(err, sendErr)
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
// connects o.pairs times to sock and echoes, and streams o's records
// through the connections.
func runDeviceSocket(exe, sock string, o deviceRun) (deviceResult, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return deviceResult{}, err
	}
	defer l.Close()
	cmd := child(exe, "bench", "device-socket-peer", "-socket", sock, "-conns", strconv.Itoa(o.pairs),
		"-payload", strconv.Itoa(o.payload), "-batch", strconv.Itoa(o.batch), "-buffer", strconv.Itoa(o.socketBuffer()))
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
	var elapsed time.Duration
	if err == nil {
		recs := newRecords(o.payload)
		errs := make([]error, o.pairs)
		var wg sync.WaitGroup
		start := time.Now()
		for i, c := range conns {
			wg.Go(func() {
				if errs[i] = streamSocket(c, recs, i, o.streamRecords(i), o); errs[i] != nil {
					for _, c := range conns {
						c.Close() // the other streams stop too
					}
				}
			})
		}
		wg.Wait()
		elapsed = time.Since(start)
		err = firstCause(errs)
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
	return deviceResult{itemsPerSec: float64(o.records) / elapsed.Seconds(), records: o.records}, nil
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

// streamSocket sends n requests on c, batch records to a write, from a
// second goroutine, and checks each echoed response, reading up to batch
// records at a time.
func streamSocket(c *net.UnixConn, recs records, s, n int, o deviceRun) error {
	win := newWindow(o.window)
	var sendErr error
	var sender sync.WaitGroup
	sender.Go(func() {
		buf := make([]byte, o.batch*o.payload)
		for k := 0; k < n; {
			m := win.take(min(o.batch, n-k))
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
			k += m
		}
	})
	err := func() error {
		buf := make([]byte, o.batch*o.payload)
		for got := 0; got < n; {
			m, err := readRecords(c, buf[:min(o.batch, n-got)*o.payload], o.payload)
			if err != nil {
				return fmt.Errorf("connection %d: after %d of %d responses: %w", s, got, n, err)
			}
			for i := range m {
				if err := recs.check(buf[i*o.payload:][:o.payload], s, uint64(got+i)); err != nil {
					return err
				}
			}
			got += m
			win.give(m)
		}
		return nil
	}()
	win.close()
	if err != nil {
		c.Close() // a blocked write returns
	}
	sender.Wait()
	return errors.Join(err, sendErr)
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
	if err := parseFlags(fs, args); err != nil {
		return err
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
