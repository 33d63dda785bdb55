package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/ipc"
)

func ipcServe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq ipc serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "/tmp/ycq-ipc.sock", "UNIX socket to listen on")
	shm := fs.String("shm", "", "also create each session's regions as /dev/shm files NAME.N.*, for clients that join by name")
	block := fs.Bool("block", false, "when idle, sleep on the futexes at once (default: spin briefly, then sleep)")
	spin := fs.Bool("spin", false, "when idle, never sleep: poll (only with a CPU for every spinning side)")
	resizeEvery := fs.Duration("resize-every", 0, "resize both queues of every resizable session in turn this often (0: only when asked, by ycq ipc resize)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	mode, err := waitMode(*block, *spin)
	if err != nil {
		return err
	}
	if *resizeEvery < 0 {
		return usagef("-resize-every %v: want a duration of 0 or more", *resizeEvery)
	}
	if *shm != "" {
		if err := dma.CheckName(*shm); err != nil {
			return usagef("-shm: %v", err)
		}
	}
	l, err := listenUnix(*socket)
	if err != nil {
		return err
	}
	defer os.Remove(*socket)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	log.Info("serving", "socket", *socket, "shm", *shm, "mode", mode)
	return ipc.Serve(ctx, l, ipc.ServerOptions{Mode: mode, ShmName: *shm, Log: log, ResizeEvery: *resizeEvery})
}

func ipcResize(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq ipc resize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "/tmp/ycq-ipc.sock", "the server's UNIX socket")
	session := fs.Int("session", 1, "the session, as ycq stat numbers them")
	queue := fs.String("queue", ipc.QueueUp, "the queue: up (client to server) or down")
	slots := fs.Int("slots", 0, "the new slot count, a power of two")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *slots <= 0 {
		return usagef("-slots: give the new slot count")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	gen, err := ipc.Resize(ctx, *socket, *session, *queue, *slots)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "session %d %s queue: %d slots, generation %d\n", *session, *queue, *slots, gen)
	return nil
}

// listenUnix listens on path, replacing a stale socket file that nothing
// listens on, but never a live one or another kind of file. The file
// appears only once the socket listens.
func listenUnix(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another server is listening there", path)
		}
		os.Remove(path)
	}
	// Bind and listen under a temporary name, then rename: the socket
	// appears at path only once it listens, so a peer that waits for the
	// file (as startDeviceModel does) is never refused.
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	os.Remove(tmp)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	if err := os.Rename(tmp, path); err != nil {
		l.Close()
		os.Remove(tmp)
		return nil, err
	}
	return l, nil
}

func ipcConnect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq ipc connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "/tmp/ycq-ipc.sock", "the server's UNIX socket")
	byName := fs.Bool("by-name", false, "open the regions by /dev/shm name instead of receiving descriptors")
	role := fs.String("role", ipc.RoleBoth, "producer, consumer, or both (the server echoes)")
	count := fs.Uint64("count", 1_000_000, "records")
	payload := fs.Int("payload", 64, "bytes a record")
	batch := fs.Int("batch", 32, "records a reserve asks for")
	slots := fs.Int("slots", 1024, "slots in each queue")
	block := fs.Bool("block", false, "when idle, sleep on the futexes at once (default: spin briefly, then sleep)")
	spin := fs.Bool("spin", false, "when idle, never sleep: poll (only with a CPU for every spinning side)")
	noSum := fs.Bool("no-checksum", false, "skip the per-record CRC-32C")
	resizable := fs.Bool("resizable", false, "ask for resizable queues, which the server may grow and shrink while records flow")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	mode, err := waitMode(*block, *spin)
	if err != nil {
		return err
	}
	slotSize := (*payload + 7) &^ 7
	h := ipc.Hello{Role: *role, Count: *count, Payload: *payload, Batch: *batch, ByName: *byName,
		Geometry: ipc.Geometry{Slots: *slots, SlotSize: slotSize, Resizable: *resizable}, Checksum: !*noSum}
	h.Version = ipc.ProtocolVersion
	if err := h.Validate(); err != nil {
		return usageError{err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := ipc.Dial(ctx, *socket, h, mode, dma.Options{})
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan struct{})
	if isTerminal(stderr) {
		go showProgress(stderr, *count, c.Progress, done)
	}
	res, err := c.Run()
	close(done)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{
			"role": res.Role, "records": res.Records, "payload": res.Payload,
			"seconds": res.Elapsed.Seconds(), "items_per_sec": res.ItemsPerSec(), "bytes_per_sec": res.BytesPerSec(),
			"p50_ns": res.P50.Nanoseconds(), "p99_ns": res.P99.Nanoseconds(), "max_ns": res.Max.Nanoseconds(),
			"generations_taken": res.Resizes.Added, "generations_given_back": res.Resizes.Retired,
		})
	}
	fmt.Fprintf(stdout, "%s: %d records of %d bytes in %v\n", res.Role, res.Records, res.Payload, res.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(stdout, "  %.2f M items/s, %.1f MB/s\n", res.ItemsPerSec()/1e6, res.BytesPerSec()/1e6)
	if res.Role != ipc.RoleProducer {
		what := "one-way"
		if res.Role == ipc.RoleBoth {
			what = "round-trip"
		}
		fmt.Fprintf(stdout, "  %s latency p50 %v, p99 %v, max %v\n", what, res.P50, res.P99, res.Max)
	}
	if *resizable {
		fmt.Fprintf(stdout, "  resizes: %d generations taken, %d given back\n", res.Resizes.Added, res.Resizes.Retired)
	}
	return nil
}

// isTerminal reports whether w is a terminal, for live progress lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// showProgress redraws one line with the count done and the rate, until
// done closes.
func showProgress(w io.Writer, total uint64, done func() uint64, stop <-chan struct{}) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	start, last, lastT := time.Now(), uint64(0), time.Now()
	for {
		select {
		case <-stop:
			fmt.Fprint(w, "\r\033[K")
			return
		case now := <-tick.C:
			n := done()
			rate := float64(n-last) / now.Sub(lastT).Seconds()
			last, lastT = n, now
			fmt.Fprintf(w, "\r\033[K%d/%d records (%.0f%%), %.2f M/s, %v", n, total,
				100*float64(n)/float64(max(total, 1)), rate/1e6, now.Sub(start).Round(time.Second))
		}
	}
}

// waitMode is the -block and -spin flags as an ipc.Mode: at most one.
func waitMode(block, spin bool) (ipc.Mode, error) {
	if block && spin {
		return ipc.Mode{}, usagef("-block and -spin exclude each other")
	}
	return ipc.Mode{Block: block, Spin: spin}, nil
}
