package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/hostdriver"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ipc"
	"github.com/ycq-dev/ycq/ring"
)

// statJSON runs ycq stat in this process (under -race when the test is)
// and returns its JSON objects.
func statJSON(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"stat", "-json"}, args...), &out, &errb)
	require.Equal(t, 0, code, "ycq stat %q: %s", args, errb.String())
	var objs []map[string]any
	dec := json.NewDecoder(&out)
	for dec.More() {
		var o map[string]any
		require.NoError(t, dec.Decode(&o))
		objs = append(objs, o)
	}
	return objs
}

func num(t *testing.T, o map[string]any, keys ...string) float64 {
	t.Helper()
	var v any = o
	for _, k := range keys {
		m, ok := v.(map[string]any)
		require.True(t, ok, "%v in %v", keys, o)
		v, ok = m[k]
		require.True(t, ok, "%v in %v", keys, o)
	}
	f, ok := v.(float64)
	require.True(t, ok, "%v in %v is %T", keys, o, v)
	return f
}

// TestStatIPC: a real ycq ipc serve, with traffic from a real ycq ipc
// connect; ycq stat reads both queues of the session by socket and by
// /dev/shm name (removed by then, so found through the processes that
// hold it), sees every counter that traffic moves non-zero, and sees them
// move between two refreshes. No descriptor is left open.
func TestStatIPC(t *testing.T) {
	exe := buildYCQ(t)
	sock := filepath.Join(t.TempDir(), "s.sock")
	shm := fmt.Sprintf("ycq-stat-test-%d", os.Getpid())
	serve := exec.Command(exe, "ipc", "serve", "-socket", sock, "-shm", shm, "-block")
	var logs testenv.Buffer
	serve.Stderr = &logs
	require.NoError(t, serve.Start())
	defer func() {
		serve.Process.Signal(os.Interrupt)
		serve.Wait()
	}()
	testenv.WaitFor(t, "the server's socket", func() bool { _, err := os.Stat(sock); return err == nil })

	require.Equal(t, []map[string]any(nil), statJSON(t, "-socket", sock), "no session yet: no queue")

	// Far more records than the test needs: the client runs until killed.
	connect := exec.Command(exe, "ipc", "connect", "-socket", sock, "-role", "both", "-count", "1000000000000", "-payload", "64", "-slots", "256")
	var cout testenv.Buffer
	connect.Stdout, connect.Stderr = &cout, &cout
	require.NoError(t, connect.Start())
	defer func() {
		connect.Process.Kill()
		connect.Wait()
	}()
	before := testenv.OpenFDs(t)
	testenv.WaitFor(t, "records through both queues", func() bool {
		objs := statJSON(t, "-socket", sock)
		return len(objs) == 2 && num(t, objs[0], "stats", "Released") > 0 && num(t, objs[1], "stats", "Released") > 0
	})

	check := func(objs []map[string]any, what string) {
		t.Helper()
		require.Len(t, objs, 4, "%s: two queues, two refreshes", what)
		for i, o := range objs[:2] {
			next := objs[2+i]
			require.Equal(t, "ok", o["check"], what)
			require.Equal(t, 256.0, num(t, o, "header", "slots"), what)
			require.Equal(t, "0x31514359", o["header"].(map[string]any)["magic"])
			for _, c := range []string{"ProducerCursor", "ConsumerCursor", "Reserved", "Published", "Consumed", "Released"} {
				require.NotZero(t, num(t, o, "stats", c), "%s: %s", what, c)
				require.Greater(t, num(t, next, "stats", c), num(t, o, "stats", c), "%s: %s moves between refreshes", what, c)
				require.Greater(t, num(t, next, "rates", c), 0.0, "%s: %s has a rate", what, c)
			}
			require.NotContains(t, o, "rates", "the first refresh has no rate")
			require.Greater(t, num(t, next, "interval_s"), 0.0)
			fill := num(t, o, "fill")
			require.True(t, fill >= 0 && fill <= 1, "%s: fill %v", what, fill)
			require.LessOrEqual(t, num(t, o, "ready"), 256.0)
		}
	}
	objs := statJSON(t, "-socket", sock, "-watch", "20ms", "-count", "2")
	check(objs, "by socket")
	for i, q := range []string{"up", "down"} {
		require.Equal(t, "socket", objs[i]["source"])
		require.Equal(t, 1.0, num(t, objs[i], "session"))
		require.Equal(t, q, objs[i]["queue"])
		require.Equal(t, "both", objs[i]["role"])
		require.Equal(t, shm+".1."+q+".meta", objs[i]["name"])
	}

	objs = statJSON(t, "-shm", shm+".1", "-watch", "20ms", "-count", "2")
	check(objs, "by shm name")
	for i, q := range []string{"down", "up"} { // sorted by name
		require.Equal(t, "shm", objs[i]["source"])
		require.Equal(t, shm+".1."+q+".meta", objs[i]["path"])
		require.NotZero(t, num(t, objs[i], "holder_pid"), "the server removed the names: found through a holder")
	}
	require.Len(t, statJSON(t, "-shm", shm), 2, "the server's base name finds every session's queues")

	// The table shows every counter, with rates on the second refresh.
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"stat", "-socket", sock, "-watch", "20ms", "-count", "2"}, &out, &errb), errb.String())
	for _, s := range []string{"session 1 up", "session 1 down", "in flight", "fill", "per second", "check      ok"} {
		require.Contains(t, out.String(), s)
	}
	for _, c := range counters(ring.Stats{}) {
		require.Equal(t, 4, strings.Count(out.String(), "\n"+c.name+" "), "counter %s in every table", c.name)
	}
	require.Equal(t, before, testenv.OpenFDs(t), "no descriptor leaked")
	require.False(t, strings.Contains(logs.String(), "connection refused"), "the server took every stat request: %s", logs.String())
}

// formattedQueue formats a queue in a memfd and moves records through it,
// so its counters are not zero.
func formattedQueue(t *testing.T, cfg ring.Config) *dma.Region {
	t.Helper()
	meta, err := dma.Memfd("stat-test.meta", cfg.MetaSize(), dma.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { meta.Close() })
	q, err := ring.Format(meta.Bytes(), make([]byte, cfg.DataSize()), cfg)
	require.NoError(t, err)
	for range 3 {
		w, err := q.Producer().Reserve(5)
		require.NoError(t, err)
		require.NoError(t, w.PublishAll(8))
	}
	r, err := q.Consumer().ReserveUpTo(7)
	require.NoError(t, err)
	require.NoError(t, r.ReleaseAll())
	_, err = q.Consumer().ReserveUpTo(cfg.Slots)
	require.NoError(t, err)
	return meta
}

// TestStatReadOnly: ycq stat of a file and of a descriptor path leaves
// every byte of the region as it was, and every descriptor closed.
func TestStatReadOnly(t *testing.T) {
	cfg := ring.Config{Slots: 16, SlotSize: 64, SingleProducer: true}
	meta := formattedQueue(t, cfg)
	file := filepath.Join(t.TempDir(), "meta")
	require.NoError(t, os.WriteFile(file, meta.Bytes(), 0o600))
	before := testenv.OpenFDs(t)
	want := bytes.Clone(meta.Bytes())
	fdPath := fmt.Sprintf("/proc/self/fd/%d", meta.FD())
	for _, args := range [][]string{
		{"-file", fdPath},
		{"-file", fdPath, "-json", "-watch", "1ms", "-count", "3"},
		{"-file", file, "-file", fdPath, "-json"},
		{"-file", fdPath, "-scan"},
	} {
		var out, errb bytes.Buffer
		require.Equal(t, 0, run(append([]string{"stat"}, args...), &out, &errb), "%q: %s", args, errb.String())
		require.Equal(t, want, meta.Bytes(), "%q wrote to the region", args)
	}
	fileBytes, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, want, fileBytes)
	require.Equal(t, before, testenv.OpenFDs(t), "no descriptor leaked")

	o := statJSON(t, "-file", fdPath)[0]
	require.Equal(t, "file", o["source"])
	require.Equal(t, 15.0, num(t, o, "stats", "Published"))
	require.Equal(t, 15.0, num(t, o, "stats", "ConsumerCursor"))
	require.Equal(t, 7.0, num(t, o, "stats", "Released"))
	require.Equal(t, 0.0, num(t, o, "len"), "every published record taken")
	require.Equal(t, 0.0, num(t, o, "ready"))
	require.Equal(t, true, o["header"].(map[string]any)["single_producer"])
	require.Equal(t, false, o["header"].(map[string]any)["single_consumer"])
}

// TestStatScan: -scan finds each queue at a page boundary of a memory
// file laid out as the host driver lays out its DMA memory, and passes
// over payload that only looks like a header.
func TestStatScan(t *testing.T) {
	cfg := ring.Config{Slots: 1024, SlotSize: 64}
	metaLen := (cfg.MetaSize() + dma.PageSize - 1) &^ (dma.PageSize - 1)
	stride := 2*metaLen + 2*cfg.DataSize()
	mem, err := dma.Memfd("stat-scan", 2*stride, dma.Options{})
	require.NoError(t, err)
	defer mem.Close()
	b := mem.Bytes()
	var want []float64
	for i := range 2 {
		for _, off := range []int{i * stride, i*stride + metaLen} {
			_, err := ring.Format(b[off:][:cfg.MetaSize()], make([]byte, cfg.DataSize()), cfg)
			require.NoError(t, err)
			want = append(want, float64(off))
		}
	}
	copy(b[2*metaLen:], "YCQ1 is only payload here") // a page of data that starts with the magic
	objs := statJSON(t, "-file", fmt.Sprintf("/proc/self/fd/%d", mem.FD()), "-scan")
	var got []float64
	for _, o := range objs {
		got = append(got, num(t, o, "offset"))
	}
	require.Equal(t, want, got)
	o := statJSON(t, "-file", fmt.Sprintf("/proc/self/fd/%d", mem.FD()), "-offset", fmt.Sprint(stride+metaLen))
	require.Len(t, o, 1)
	require.Equal(t, 1024.0, num(t, o[0], "header", "slots"))
}

// TestStatPid: -pid finds the queues in a process's ycq-* memory files,
// and passes over those that hold none.
func TestStatPid(t *testing.T) {
	cfg := ring.Config{Slots: 8, SlotSize: 64}
	mem, err := dma.Memfd("ycq-stat-test", 4*dma.PageSize, dma.Options{})
	require.NoError(t, err)
	defer mem.Close()
	for _, off := range []int{0, 2 * dma.PageSize} {
		_, err := ring.Format(mem.Bytes()[off:][:cfg.MetaSize()], make([]byte, cfg.DataSize()), cfg)
		require.NoError(t, err)
	}
	data, err := dma.Memfd("ycq-stat-test.data", dma.PageSize, dma.Options{})
	require.NoError(t, err)
	defer data.Close()
	var offs []float64
	for _, o := range statJSON(t, "-pid", fmt.Sprint(os.Getpid())) {
		require.NotEqual(t, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), data.FD()), o["path"])
		if o["path"] == fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), mem.FD()) {
			offs = append(offs, num(t, o, "offset"))
		}
	}
	require.Equal(t, []float64{0, 2 * dma.PageSize}, offs)
	var out, errb bytes.Buffer
	require.Equal(t, 1, run([]string{"stat", "-pid", "2147483647"}, &out, &errb))
	require.Contains(t, errb.String(), "pid 2147483647")
	require.Equal(t, 2, run([]string{"stat", "-pid", "x"}, &out, &errb))
}

// TestStatPidResizes: a host driver's resize page (its memfd
// ycq-resizes) is read with the process's queues, in JSON and in the
// table, and one that is not a page this version reads is a typed error.
func TestStatPidResizes(t *testing.T) {
	page, err := dma.Memfd(hostdriver.ResizePageName, dma.PageSize, dma.Options{})
	require.NoError(t, err)
	defer page.Close()
	require.NoError(t, hostdriver.FormatResizePage(page.Bytes(), 2))
	hostdriver.PutPairResizes(page.Bytes(), hostdriver.PairResizes{Pair: 1, Generation: 5, Slots: 256, Started: 6,
		Completed: 4, RolledBack: 1, Failed: 1, Draining: 1500 * time.Microsecond})
	pid := fmt.Sprint(os.Getpid())
	var pages int
	for _, o := range statJSON(t, "-pid", pid) {
		if o["kind"] != "resizes" || o["path"] != fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), page.FD()) {
			continue
		}
		pages++
		pairs := o["pairs"].([]any)
		require.Len(t, pairs, 2)
		p1 := pairs[1].(map[string]any)
		require.Equal(t, 6.0, p1["started"])
		require.Equal(t, 4.0, p1["completed"])
		require.Equal(t, 1.0, p1["rolled_back"])
		require.Equal(t, 1.5e6, p1["draining_ns"])
	}
	require.Equal(t, 1, pages)
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"stat", "-pid", pid}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "pair 1     generation 5 (256 slots): 4 completed of 6 started, 1 rolled back, 1 failed; draining 1.5ms in all")

	copy(page.Bytes(), "junk")
	out.Reset()
	errb.Reset()
	require.Equal(t, 1, run([]string{"stat", "-pid", pid}, &out, &errb))
	require.Contains(t, errb.String(), "not a resize page")
}

// TestStatBadInput: regions that are no queue, or not all of one, and a
// socket that answers nonsense, give a typed error and exit status 1.
func TestStatBadInput(t *testing.T) {
	cfg := ring.Config{Slots: 1024, SlotSize: 64}
	good := formattedQueue(t, cfg).Bytes()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		return p
	}
	garbage := make([]byte, 8192)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	badSlots := bytes.Clone(good)
	binary.LittleEndian.PutUint32(badSlots[ring.OffSlots:], 3)
	before := testenv.OpenFDs(t)
	for _, c := range []struct {
		name, path string
		is         error
		says       string
	}{
		{"empty", write("empty", nil), errTruncated, "truncated: 0 bytes, a queue needs 384"},
		{"shorter than the fixed lines", write("short", good[:100]), errTruncated, "truncated: 100 bytes, a queue needs 384"},
		{"shorter than the header says", write("cut", good[:1000]), errTruncated, "truncated: 1000 bytes, a queue needs 8576"},
		{"garbage", write("garbage", garbage), errNotQueue, "header magic"},
		{"zeros", write("zeros", make([]byte, 8192)), errNotQueue, "not a ycq queue"},
		{"bad slot count", write("slots", badSlots), errNotQueue, "header slots = 0x3"},
		{"a directory", dir, nil, "not a file"},
		{"nothing there", filepath.Join(dir, "nothing"), os.ErrNotExist, "no such file"},
	} {
		for _, args := range [][]string{{"-file", c.path}, {"-file", c.path, "-scan"}} {
			err := stat(args, &bytes.Buffer{}, &bytes.Buffer{})
			require.Error(t, err, c.name)
			var re *regionError
			require.ErrorAs(t, err, &re, c.name)
			if c.is != nil && (len(args) == 2 || c.is == os.ErrNotExist) {
				require.ErrorIs(t, err, c.is, c.name)
			}
			if len(args) == 2 {
				require.ErrorContains(t, err, c.says, c.name)
			}
			var out, errb bytes.Buffer
			require.Equal(t, 1, run(append([]string{"stat"}, args...), &out, &errb), c.name)
			require.Contains(t, errb.String(), "ycq stat: file "+c.path, c.name)
			require.NotContains(t, errb.String(), "panic", c.name)
		}
	}
	var he *ring.HeaderError
	require.ErrorAs(t, stat([]string{"-file", filepath.Join(dir, "garbage")}, &bytes.Buffer{}, &bytes.Buffer{}), &he)
	require.Equal(t, "magic", he.Field)

	// A /dev/shm name nothing has.
	err := stat([]string{"-shm", "ycq-stat-test-nobody", "-shm-dir", dir}, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorIs(t, err, errNotQueue)

	// A socket whose server answers what no ycq ipc server says.
	sock := filepath.Join(dir, "odd.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	require.NoError(t, err)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Read(make([]byte, 256))
			c.Write([]byte("\x0b\x00\x00\x00{\"what\":1}"))
			c.Close()
		}
	}()
	err = stat([]string{"-socket", sock}, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorIs(t, err, ipc.ErrProtocol)
	var out, errb bytes.Buffer
	require.Equal(t, 1, run([]string{"stat", "-socket", sock}, &out, &errb))
	require.Contains(t, errb.String(), "protocol error")
	l.Close()

	// A server that takes the request and never answers.
	mute := filepath.Join(dir, "mute.sock")
	ml, err := net.ListenUnix("unix", &net.UnixAddr{Name: mute, Net: "unix"})
	require.NoError(t, err)
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := ml.Accept(); err == nil {
			held <- c
		}
	}()
	defer func(d time.Duration) { statSocketTimeout = d }(statSocketTimeout)
	statSocketTimeout = 50 * time.Millisecond
	err = stat([]string{"-socket", mute}, &bytes.Buffer{}, &bytes.Buffer{})
	require.ErrorContains(t, err, "no answer within")
	(<-held).Close()
	ml.Close()
	// The fake server's side of the last connection closes on its own time.
	testenv.WaitFor(t, "every descriptor closed", func() bool { return testenv.OpenFDs(t) == before })

	// Mistakes in the command line are usage errors.
	for _, args := range [][]string{
		{}, {"-file", "x", "-offset", "3"}, {"-file", "x", "-count", "2"}, {"-shm", "../x"},
		{"-file", "x", "-scan", "-offset", "8"}, {"-file", "x", "-watch", "-1s"}, {"extra"},
	} {
		require.Equal(t, 2, run(append([]string{"stat"}, args...), &out, &errb), "%q", args)
	}
}

// TestStatShrunk: a region whose file shrinks after it was mapped faults
// when read; ycq stat reports errFault instead of crashing.
func TestStatShrunk(t *testing.T) {
	cfg := ring.Config{Slots: 1024, SlotSize: 64}
	meta := formattedQueue(t, cfg)
	f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", meta.FD()))
	require.NoError(t, err)
	defer f.Close()
	m, err := mapMeta(f, 0, int64(cfg.MetaSize()))
	require.NoError(t, err)
	defer m.close()
	q, err := m.read("whole", int64(cfg.MetaSize()))
	require.NoError(t, err)
	require.Equal(t, 1024, q.header.Slots)
	require.NoError(t, unix.Ftruncate(meta.FD(), 0))
	err = guardFault(func() { q, err = m.read("shrunk", int64(cfg.MetaSize())) })
	require.ErrorIs(t, err, errFault)
	require.ErrorContains(t, err, "shrank")
	require.Panics(t, func() { _ = guardFault(func() { panic("not a fault") }) }, "other panics go on")
}

func TestShmMatches(t *testing.T) {
	for file, want := range map[string]bool{
		"q":              true,
		"q.up.meta":      true,
		"q.down.meta":    true,
		"q.1.up.meta":    true,
		"q.12.down.meta": true,
		"q.1.up.data":    false,
		"q.x.up.meta":    false,
		"q..up.meta":     false,
		"qq.1.up.meta":   false,
		"q.1.2.up.meta":  false,
		"other":          false,
	} {
		require.Equal(t, want, shmMatches("q", file), file)
	}
}

// FuzzStatRegion: whatever bytes a metadata region holds, ycq stat reads
// it or says why not, with a *regionError; it never panics, and a queue
// it reads agrees with its header.
func FuzzStatRegion(f *testing.F) {
	cfg := ring.Config{Slots: 4, SlotSize: 16, SingleProducer: true}
	good := ring.AlignedBytes(cfg.MetaSize())
	_, err := ring.Format(good, make([]byte, cfg.DataSize()), cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, int64(0))
	f.Add(good[:200], int64(0))
	f.Add(append(make([]byte, 4096), good...), int64(4096))
	f.Add(make([]byte, 500), int64(8))
	f.Fuzz(func(t *testing.T, b []byte, off int64) {
		if off < 0 || off%8 != 0 || off > 1<<20 {
			return
		}
		mem, err := dma.Memfd("fuzz", max(len(b), 1), dma.Options{})
		require.NoError(t, err)
		defer mem.Close()
		copy(mem.Bytes(), b)
		f, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", mem.FD()))
		require.NoError(t, err)
		defer f.Close()
		q, err := readRegion(f, off, "fuzz")
		if err != nil {
			var re *regionError
			if !errors.As(err, &re) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		h := q.header
		require.Equal(t, uint64(ring.MetaSize(h.Slots)), h.MetaSize)
		require.LessOrEqual(t, int64(h.MetaSize)+off, int64(max(len(b), 1)))
		require.LessOrEqual(t, q.len, h.Slots)
		require.LessOrEqual(t, q.ready, h.Slots)
		require.Equal(t, bytes.Clone(b), mem.Bytes()[:len(b)], "the region is unchanged")
	})
}
