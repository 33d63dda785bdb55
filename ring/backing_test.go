package ring_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/ring"
)

// memfdRegions makes one memfd holding both regions (metadata first, data
// page-aligned after it) and maps it.
func memfdRegions(t *testing.T, cfg ring.Config) (fd int, metaLen int, mapping []byte) {
	t.Helper()
	fd, err := unix.MemfdCreate("ycq-ring-test", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	metaLen = (cfg.MetaSize() + 4095) &^ 4095
	size := metaLen + cfg.DataSize()
	require.NoError(t, unix.Ftruncate(fd, int64(size)))
	return fd, metaLen, mapShared(t, fd, size)
}

func mapShared(t *testing.T, fd, size int) []byte {
	t.Helper()
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(m) })
	return m
}

// TestTwoMappings: a queue formatted through one mapping of a memfd and
// attached through another, at a different address, as two processes see it.
func TestTwoMappings(t *testing.T) {
	cfg := ring.Config{Slots: 16, SlotSize: 8}
	fd, metaLen, a := memfdRegions(t, cfg)
	b := mapShared(t, fd, len(a))
	require.False(t, &a[0] == &b[0], "two distinct mappings")
	qa, err := ring.Format(a[:metaLen], a[metaLen:], cfg)
	require.NoError(t, err)
	qb, err := ring.Attach(b[:metaLen], b[metaLen:])
	require.NoError(t, err)
	for v := uint64(0); v < 100; v += 4 {
		produce(t, qa, v, v+1, v+2, v+3)
		require.Equal(t, []uint64{v, v + 1, v + 2, v + 3}, consume(t, qb, 8))
	}
	require.Equal(t, qa.Stats(), qb.Stats())
}

// TestAnonymousMmap: regions from anonymous mmap.
func TestAnonymousMmap(t *testing.T) {
	cfg := ring.Config{Slots: 8, SlotSize: 16}
	m, err := unix.Mmap(-1, 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	require.NoError(t, err)
	defer unix.Munmap(m)
	q, err := ring.Format(m[:4096], m[4096:], cfg)
	require.NoError(t, err)
	produce(t, q, 7)
	require.Equal(t, []uint64{7}, consume(t, q, 1))
}

const childEnv = "YCQ_RING_TEST_CHILD"

// TestCrossProcess: a child process attaches to a queue in a memfd it
// inherited and consumes what this process produces.
func TestCrossProcess(t *testing.T) {
	const records = 20000
	cfg := ring.Config{Slots: 64, SlotSize: 64, SingleProducer: true, SingleConsumer: true}
	fd, metaLen, m := memfdRegions(t, cfg)
	q, err := ring.Format(m[:metaLen], m[metaLen:], cfg)
	require.NoError(t, err)

	f := os.NewFile(uintptr(fd), "memfd")
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildConsumer$")
	cmd.Env = append(os.Environ(), childEnv+"="+fmt.Sprintf("%d,%d,%d", metaLen, len(m), records))
	cmd.ExtraFiles = []*os.File{f}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())

	p := q.Producer()
	for seq := uint64(0); seq < records; {
		w, err := p.ReserveUpTo(8)
		if errors.Is(err, ring.ErrFull) {
			runtime.Gosched()
			continue
		}
		require.NoError(t, err)
		for i := range w.Len() {
			writeRecord(w.Slot(i), 7, seq, 64)
			seq++
		}
		require.NoError(t, w.PublishAll(64))
	}
	require.NoError(t, cmd.Wait(), "child: %s", out.String())
	require.Contains(t, out.String(), "child consumed "+strconv.Itoa(records)+" records")
	require.Equal(t, uint64(records), q.Stats().Released)
}

// TestChildConsumer is the child side of TestCrossProcess; it does nothing
// in a normal run.
func TestChildConsumer(t *testing.T) {
	env := os.Getenv(childEnv)
	if env == "" {
		t.Skip("runs only as the child of TestCrossProcess")
	}
	var metaLen, size, records int
	_, err := fmt.Sscanf(env, "%d,%d,%d", &metaLen, &size, &records)
	require.NoError(t, err)
	m := mapShared(t, 3, size)
	q, err := ring.Attach(m[:metaLen], m[metaLen:])
	require.NoError(t, err)
	want := uint64(0)
	consumeRecords(t, q, records, 16, func(producer uint32, seq uint64) {
		require.Equal(t, uint32(7), producer)
		require.Equal(t, want, seq)
		want++
	})
	fmt.Printf("child consumed %d records\n", records)
}
