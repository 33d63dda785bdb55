package ring_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ring"
)

// The tests of ring/c, the C reference of the single-agent side, share what
// is in this file: building the C "device" (ring/c/conformance, a hosted
// driver around the freestanding ycq_ring.c) with Debian's gcc, queues in
// memfds it inherits, and reading what it says on stdout. Each test builds
// what it runs into its own temporary directory (about a second of gcc).

// cHangGuard bounds every wait for the device or for Go agents talking to
// it. It is no timing assertion: the scenarios take a second or two, and
// reaching it means a lost wakeup or a hang, reported as such.
const cHangGuard = time.Minute

// deviceVariants are the builds of the device: what a port ships (-O2),
// the same with 64-bit words split in two 32-bit accesses (as on a 32-bit
// microcontroller), and the sanitizer build for the hostile run.
var deviceVariants = map[string][]string{
	"plain":   {"-O2"},
	"split64": {"-O2", "-DYCQ_PORT_SPLIT64=1"},
	"asan":    {"-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"},
}

// crefCFlagsEnv adds compiler flags to every build of the device: a port
// whose macros also build on a Linux host runs the conformance tests with
// YCQ_CREF_CFLAGS='-DYCQ_PORT_HEADER="ports/myport.h"' (ring/c/README.md).
const crefCFlagsEnv = "YCQ_CREF_CFLAGS"

// buildDevice compiles ycq_ring.c and the conformance driver with gcc.
func buildDevice(t *testing.T, variant string) string {
	t.Helper()
	gcc := needCC(t, "gcc")
	flags, ok := deviceVariants[variant]
	require.True(t, ok, "variant %q", variant)
	flags = append(append([]string{}, flags...), strings.Fields(os.Getenv(crefCFlagsEnv))...)
	srcs, err := filepath.Glob(filepath.Join(cDir, "conformance", "*.c"))
	require.NoError(t, err)
	require.NotEmpty(t, srcs)
	bin := filepath.Join(t.TempDir(), "device-"+variant)
	args := append([]string{"-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I.", "-I" + cDir, "-o", bin,
		filepath.Join(cDir, "ycq_ring.c")}, append(srcs, flags...)...)
	out, err := exec.Command(gcc, args...).CombinedOutput()
	require.NoError(t, err, "gcc %s:\n%s", strings.Join(args, " "), out)
	return bin
}

// cQueue is a queue in a memfd for the device: the metadata at the end of
// its own pages and the data region at the end of the pages after them, so
// that each region ends where the device's mapping of it does (device.c
// maps each between inaccessible pages).
type cQueue struct {
	q                  *ring.Queue
	cfg                ring.Config
	file               *os.File
	meta, data         []byte
	metaOff, dataOff   int
	metaSize, dataSize int
}

func newCQueue(t *testing.T, cfg ring.Config, start uint64) *cQueue {
	t.Helper()
	ps := os.Getpagesize()
	up := func(n int) int { return (n + ps - 1) &^ (ps - 1) }
	metaPages, dataPages := up(cfg.MetaSize()), up(cfg.DataSize())
	fd, err := unix.MemfdCreate("ycq-cref", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	file := os.NewFile(uintptr(fd), "ycq-cref")
	t.Cleanup(func() { file.Close() })
	require.NoError(t, unix.Ftruncate(fd, int64(metaPages+dataPages)))
	m := mapShared(t, fd, metaPages+dataPages)
	c := &cQueue{cfg: cfg, file: file,
		metaOff: metaPages - cfg.MetaSize(), metaSize: cfg.MetaSize(),
		dataOff: metaPages + dataPages - cfg.DataSize(), dataSize: cfg.DataSize()}
	c.meta = m[c.metaOff:metaPages:metaPages]
	c.data = m[c.dataOff:]
	c.q, err = ring.Format(c.meta, c.data, cfg)
	require.NoError(t, err)
	startAt(c.meta, cfg.Slots, start)
	return c
}

// spec says where the regions are for the device, which gets the memfd as
// descriptor fd.
func (c *cQueue) spec(fd int) string {
	return fmt.Sprintf("%d:%d:%d:%d:%d", fd, c.metaOff, c.metaSize, c.dataOff, c.dataSize)
}

// startAt makes a freshly formatted queue look as if start records had gone
// through it, none aborted: both cursors at start, each slot's stamp the
// first position at or after start that lives in it (free for it), and the
// published and released counters at start, so the identities between
// the counters (LAYOUT.md) hold from the first operation on. It is how the
// tests start near 2^32, where the 32-bit stamps wrap, without 2^32
// operations: package ring has no call for it, and these are exactly the
// words a queue that had carried start records would hold. Call it before
// any agent attaches.
func startAt(meta []byte, slots int, start uint64) {
	if start == 0 {
		return
	}
	n := uint64(slots)
	for i := range n {
		p := start + (i-start%n+n)%n // the first p >= start with p mod N == i
		word32(meta, ring.OffDescs+ring.DescSize*int(i)+ring.DescOffSeq).Store(uint32(p))
	}
	word64(meta, ring.OffProdCursor).Store(start)
	word64(meta, ring.OffConsCursor).Store(start)
}

// device is the C driver running as a child process.
type device struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string    // stdout, a line at a time; closed at EOF
	out    testenv.Buffer // all of stdout and stderr, for failure messages
	done   chan struct{}  // closed when the process has exited
	err    error          // Wait's, once done is closed
	closed atomic.Bool
}

// startDevice runs bin with args and files as descriptors 3 on. The
// process is killed, if still running, when the test ends.
func startDevice(t *testing.T, bin string, args []string, files ...*os.File) *device {
	t.Helper()
	d := &device{cmd: exec.Command(bin, args...), lines: make(chan string, 1<<16), done: make(chan struct{})}
	d.cmd.ExtraFiles = files
	d.cmd.Stderr = &d.out
	stdout, err := d.cmd.StdoutPipe()
	require.NoError(t, err)
	d.stdin, err = d.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, d.cmd.Start())
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer close(d.lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			fmt.Fprintln(&d.out, s.Text())
			select {
			case d.lines <- s.Text():
			default: // nobody reads that far; d.out keeps it
			}
		}
	}()
	go func() {
		<-scanned // Wait closes stdout: read it all first
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
	})
	return d
}

// send writes a command line to the device's stdin.
func (d *device) send(t *testing.T, line string) {
	t.Helper()
	_, err := io.WriteString(d.stdin, line+"\n")
	require.NoError(t, err, "device: %s", d.out.String())
}

// closeStdin tells the device to finish.
func (d *device) closeStdin() {
	if !d.closed.Swap(true) {
		d.stdin.Close()
	}
}

// expect reads the device's stdout up to a line that starts with prefix
// and returns it. A FAIL line, the end of its output or the hang guard
// fail the test, with everything it said.
func (d *device) expect(t *testing.T, prefix string) string {
	t.Helper()
	guard := time.NewTimer(cHangGuard)
	defer guard.Stop()
	for {
		select {
		case l, ok := <-d.lines:
			if !ok {
				<-d.done
				t.Fatalf("device exited (%v) before it said %q; it said:\n%s", d.err, prefix, d.out.String())
			}
			if strings.HasPrefix(l, "FAIL") {
				t.Fatalf("device: %s; it said:\n%s", l, d.out.String())
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-guard.C:
			t.Fatalf("device did not say %q within %v (a lost wakeup, or a hang); it said:\n%s", prefix, cHangGuard, d.out.String())
		}
	}
}

// finish closes the device's stdin, reads its summary line and waits for it
// to exit successfully.
func (d *device) finish(t *testing.T) map[string]uint64 {
	t.Helper()
	d.closeStdin()
	line := d.expect(t, "summary")
	select {
	case <-d.done:
	case <-time.After(cHangGuard):
		t.Fatalf("device did not exit after its summary; it said:\n%s", d.out.String())
	}
	require.NoError(t, d.err, "device: %s", d.out.String())
	return keyValues(t, line)
}

// keyValues parses the "key=value" words of a summary or progress line.
func keyValues(t *testing.T, line string) map[string]uint64 {
	t.Helper()
	kv := map[string]uint64{}
	for _, f := range strings.Fields(line)[1:] {
		k, v, ok := strings.Cut(f, "=")
		require.True(t, ok, "%q in %q", f, line)
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "%q in %q", f, line)
		kv[k] = n
	}
	return kv
}

// goWake is the waker's half of the wake protocol (LAYOUT.md, "Sleeping
// and waking") for the tests that must know whether a wakeup was sent: a
// fence after the stores that let a sleeper go on, then, if the waiters
// word says someone sleeps, a bump of the futex word and FUTEX_WAKE for all,
// counted by the waking side's counter (count). package ring/wait does the
// same after every publish and release; it does not say whether it woke
// anyone.
func goWake(l ring.WakeLine, count func(sent bool)) bool {
	ring.Fence()
	if l.Waiters().Load() == 0 {
		count(false)
		return false
	}
	l.Futex().Add(1)
	futexWakeAll(l.Futex())
	count(true)
	return true
}
