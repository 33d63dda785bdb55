package ring_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

// Golden vectors: scripts in testdata/golden of operations on one queue,
// each with the result it must give, and snapshots of the whole metadata
// region between them. TestGolden replays each script through package ring;
// TestGoldenC replays it through the C reference (ring/c, as the device
// driver's "golden" scenario), which checks the same results and bytes
// itself, and then holds its final metadata to the last snapshot. The
// scripts' own header says their grammar.
//
// go test ./ring -run TestGolden -update-golden rewrites the snapshots from
// what package ring does; the results are written by hand and never
// rewritten.

var updateGolden = flag.Bool("update-golden", false, "rewrite the snapshots in testdata/golden from package ring")

func goldenScripts(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.txt"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return files
}

// goldenQueue is a script's "queue" line.
type goldenQueue struct {
	cfg   ring.Config
	start uint64
}

func parseGoldenQueue(t *testing.T, path string) goldenQueue {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		f := goldenFields(line)
		if len(f) == 0 || f[0] != "queue" {
			continue
		}
		var g goldenQueue
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 0, 64)
			require.NoError(t, err, "%s: %s", path, kv)
			switch k {
			case "slots":
				g.cfg.Slots = int(n)
			case "slot_size":
				g.cfg.SlotSize = int(n)
			case "features":
				g.cfg.SingleProducer = n&ring.FeatureSingleProducer != 0
				g.cfg.SingleConsumer = n&ring.FeatureSingleConsumer != 0
			case "start":
				g.start = n
			default:
				t.Fatalf("%s: queue: unknown %s", path, k)
			}
		}
		return g
	}
	t.Fatalf("%s: no queue line", path)
	return goldenQueue{}
}

// goldenFields splits a script line into words, without its comment.
func goldenFields(line string) []string {
	line, _, _ = strings.Cut(line, "#")
	return strings.Fields(line)
}

func TestGolden(t *testing.T) {
	for _, path := range goldenScripts(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			g := parseGoldenQueue(t, path)
			meta := ring.AlignedBytes(g.cfg.MetaSize())
			q, err := ring.Format(meta, make([]byte, g.cfg.DataSize()), g.cfg)
			require.NoError(t, err)
			startAt(meta, g.cfg.Slots, g.start)
			out := replayGolden(t, path, q, meta)
			if *updateGolden {
				require.NoError(t, os.WriteFile(path, out, 0o644))
			}
		})
	}
}

// replayGolden runs the script at path on q, whose metadata is meta,
// checking each result and, unless -update-golden, each snapshot. It
// returns the script with the snapshots package ring produced.
func replayGolden(t *testing.T, path string, q *ring.Queue, meta []byte) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out bytes.Buffer
	ws, rs := map[string]*ring.WriteRun{}, map[string]*ring.ReadRun{}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		at := fmt.Sprintf("%s:%d", path, i+1)
		fmt.Fprintln(&out, line)
		f := goldenFields(line)
		if len(f) == 0 || f[0] == "queue" {
			continue
		}
		if f[0] == "snapshot" {
			require.Len(t, f, 2, at)
			var want [][]string
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], " ") {
				i++
				if w := strings.Fields(lines[i]); len(w) > 0 && w[0] != "end" {
					want = append(want, w)
				}
				if strings.TrimSpace(lines[i]) == "end" {
					break
				}
			}
			dump := goldenDump(meta)
			out.WriteString(dump)
			if !*updateGolden {
				require.Equal(t, joinDump(t, want), dump, "%s: snapshot %s (go test ./ring -run TestGolden -update-golden rewrites it)", at, f[1])
			}
			continue
		}
		if f[0] == "poke" {
			require.Len(t, f, 3, at)
			off, err := strconv.ParseUint(f[1], 0, 32)
			require.NoError(t, err, at)
			v, err := strconv.ParseUint(f[2], 0, 32)
			require.NoError(t, err, at)
			require.Zero(t, off%4, at)
			word32(meta, int(off)).Store(uint32(v))
			continue
		}
		eq := -1
		for k, w := range f {
			if w == "=" {
				eq = k
			}
		}
		require.Positive(t, eq, "%s: no = result", at)
		got := goldenOp(t, at, q, ws, rs, f[:eq])
		require.Equal(t, strings.Join(f[eq+1:], " "), got, "%s: %s", at, strings.Join(f[:eq], " "))
	}
	return out.Bytes()
}

func goldenOp(t *testing.T, at string, q *ring.Queue, ws map[string]*ring.WriteRun, rs map[string]*ring.ReadRun, f []string) string {
	t.Helper()
	num := func(k int) int {
		require.Greater(t, len(f), k, "%s: %s: too few arguments", at, f[0])
		n, err := strconv.Atoi(f[k])
		require.NoError(t, err, at)
		return n
	}
	exact := func() bool {
		require.Contains(t, []string{"exact", "upto"}, f[2], at)
		return f[2] == "exact"
	}
	w := func() *ring.WriteRun {
		if ws[f[1]] == nil {
			ws[f[1]] = &ring.WriteRun{}
		}
		return ws[f[1]]
	}
	r := func() *ring.ReadRun {
		if rs[f[1]] == nil {
			rs[f[1]] = &ring.ReadRun{}
		}
		return rs[f[1]]
	}
	line := func() ring.WakeLine {
		require.Contains(t, []string{"items", "space"}, f[1], at)
		if f[1] == "items" {
			return q.ItemsWake()
		}
		return q.SpaceWake()
	}
	var err error
	switch f[0] {
	case "preserve":
		var run ring.WriteRun
		if exact() {
			run, err = q.Producer().Reserve(num(3))
		} else {
			run, err = q.Producer().ReserveUpTo(num(3))
		}
		*w() = run
		if err == nil {
			return fmt.Sprint("ok ", run.Len())
		}
	case "publish":
		err = w().Publish(num(2), num(3))
	case "publish-all":
		err = w().PublishAll(num(2))
	case "abort":
		err = w().Abort(num(2))
	case "abort-all":
		err = w().AbortAll()
	case "creserve":
		var run ring.ReadRun
		if exact() {
			run, err = q.Consumer().Reserve(num(3))
		} else {
			run, err = q.Consumer().ReserveUpTo(num(3))
		}
		*r() = run
		if err == nil {
			return fmt.Sprint("ok ", run.Len())
		}
	case "read":
		i := num(2)
		if i >= r().Len() {
			return "invalid" // Slot panics, as indexing does; the C call refuses
		}
		var b []byte
		if b, err = r().Slot(i); err == nil {
			return fmt.Sprint("ok ", len(b))
		}
	case "release":
		err = r().Release(num(2))
	case "release-all":
		err = r().ReleaseAll()
	case "give-back":
		err = r().AbortFrom(num(2))
	case "pwake", "cwake":
		count := q.CountProducerWake
		if f[0] == "cwake" {
			count = q.CountConsumerWake
		}
		if goWake(line(), count) {
			return "sent"
		}
		return "quiet"
	default:
		t.Fatalf("%s: unknown operation %s", at, f[0])
	}
	return goldenResult(err)
}

// goldenResult is the script's name for what an operation returned.
func goldenResult(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{nil, "ok"}, {ring.ErrFull, "full"}, {ring.ErrEmpty, "empty"}, {ring.ErrCorrupt, "corrupt"},
		{ring.ErrInvalid, "invalid"}, {ring.ErrNotHeld, "notheld"}, {ring.ErrFragmented, "fragmented"},
		{ring.ErrNotLast, "notlast"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return err.Error()
}

// goldenDump renders meta as the scripts hold a snapshot: 16 bytes a line
// with its offset, lines of zeros left out, then "end".
func goldenDump(meta []byte) string {
	var b strings.Builder
	for off := 0; off < len(meta); off += 16 {
		line := meta[off : off+16]
		if bytes.Equal(line, make([]byte, 16)) {
			continue
		}
		fmt.Fprintf(&b, "  %04x  % x  % x\n", off, line[:8], line[8:])
	}
	b.WriteString("  end\n")
	return b.String()
}

func joinDump(t *testing.T, lines [][]string) string {
	t.Helper()
	var b strings.Builder
	for _, w := range lines {
		require.Len(t, w, 17, "a snapshot line is an offset and 16 bytes: %q", w)
		fmt.Fprintf(&b, "  %s  %s  %s\n", w[0], strings.Join(w[1:9], " "), strings.Join(w[9:], " "))
	}
	b.WriteString("  end\n")
	return b.String()
}

// TestGoldenC: the C reference replays every script, on a queue in a memfd
// formatted as the script's queue line says, and must give the same
// results and the same bytes.
func TestGoldenC(t *testing.T) {
	dev := buildDevice(t, "plain")
	for _, path := range goldenScripts(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			g := parseGoldenQueue(t, path)
			c := newCQueue(t, g.cfg, g.start)
			d := startDevice(t, dev, []string{"golden", "q=" + c.spec(3), "script=" + path}, c.file)
			line := d.expect(t, "golden ok")
			select {
			case <-d.done:
			case <-time.After(cHangGuard):
				t.Fatal("device did not exit")
			}
			require.NoError(t, d.err, "device: %s", d.out.String())
			t.Log(line)
			// And by this side's reading: the C agents' last state is the
			// script's last snapshot, which TestGolden holds package ring
			// to as well.
			want := lastSnapshot(t, path)
			require.Equal(t, want, goldenDump(c.meta), "the metadata the C side left")
		})
	}
}

// lastSnapshot is the last snapshot of the script at path, as goldenDump
// renders one.
func lastSnapshot(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	start := -1
	for i, l := range lines {
		if f := goldenFields(l); len(f) > 0 && f[0] == "snapshot" {
			start = i
		}
	}
	require.GreaterOrEqual(t, start, 0, "%s has no snapshot", path)
	var want [][]string
	for _, l := range lines[start+1:] {
		w := strings.Fields(l)
		if len(w) == 0 || w[0] == "end" {
			break
		}
		want = append(want, w)
	}
	return joinDump(t, want)
}
