package ring

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// TestLayoutBytes pins the version 1 layout byte for byte: a 4-slot queue
// of 16-byte slots with a single producer, as Format writes it and as one
// publish, release and abort leave it.
func TestLayoutBytes(t *testing.T) {
	cfg := Config{Slots: 4, SlotSize: 16, SingleProducer: true}
	meta := AlignedBytes(cfg.MetaSize())
	data := make([]byte, cfg.DataSize())
	q, err := Format(meta, data, cfg)
	require.NoError(t, err)

	header := []byte{
		0x59, 0x43, 0x51, 0x31, // magic "YCQ1"
		0x01, 0x00, 0x00, 0x00, // version 1
		0x01, 0x00, 0x00, 0x00, // features: single producer
		0x80, 0x01, 0x00, 0x00, // desc_offset 384
		0x04, 0x00, 0x00, 0x00, // slots 4
		0x10, 0x00, 0x00, 0x00, // slot_size 16
		0xa0, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // meta_size 416 = 384 + 4*8
		0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // data_size 64 = 4*16
		0x08, 0x00, 0x00, 0x00, // desc_size 8
		0x00, 0x00, 0x00, 0x00, // generation 0
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
	}
	descs := []byte{
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // slot 0: stamp 0 (free for position 0), info 0
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // slot 1: stamp 1
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // slot 2: stamp 2
		0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // slot 3: stamp 3
	}
	want := append(append(append([]byte{}, header...), make([]byte, OffDescs-lineSize)...), descs...)
	require.Equal(t, want, meta, "freshly formatted metadata")
	require.Len(t, meta, 416)

	// Publish 5 bytes at position 0.
	w, err := q.Producer().Reserve(1)
	require.NoError(t, err)
	require.NoError(t, w.Publish(0, 5))
	require.Equal(t, []byte{
		0x01, 0x00, 0x00, 0x00, // stamp 1 = position 0 + 1: published
		0x05, 0x00, 0x00, 0x00, // info: length 5, flags 0
	}, meta[OffDescs:][:8], "slot 0 after publish")
	require.Equal(t, le64(1), meta[OffProdCursor:][:8], "producer cursor")
	require.Equal(t, le64(0), meta[OffProdRolledBack:][:8], "producer rolled back")
	require.Equal(t, le64(0), meta[OffProdSpare:][:8], "the spare word: no counter per record")
	require.Equal(t, uint64(1), q.Stats().Published, "published, from the cursor and the stamp")

	// Consume and release it.
	r, err := q.Consumer().Reserve(1)
	require.NoError(t, err)
	require.NoError(t, r.Release(0))
	require.Equal(t, []byte{
		0x04, 0x00, 0x00, 0x00, // stamp 4 = position 0 + N: free for position 4
		0x00, 0x00, 0x00, 0x00, // info cleared
	}, meta[OffDescs:][:8], "slot 0 after release")
	require.Equal(t, le64(1), meta[OffConsCursor:][:8], "consumer cursor")
	require.Equal(t, le64(0), meta[OffConsReturned:][:8], "consumer returned")
	require.Equal(t, le64(0), meta[OffConsSpare:][:8], "the spare word")
	require.Equal(t, uint64(1), q.Stats().Released, "released, from the cursor and the stamp")

	// Abort position 1: a hole.
	w, err = q.Producer().Reserve(1)
	require.NoError(t, err)
	require.NoError(t, w.Abort(0))
	require.Equal(t, []byte{
		0x02, 0x00, 0x00, 0x00, // stamp 2 = position 1 + 1
		0x00, 0x00, 0x00, 0x01, // info: length 0, flags FlagAborted (bit 24)
	}, meta[OffDescs+8:][:8], "slot 1 after abort")
	require.Equal(t, le64(1), meta[OffProdAborted:][:8], "producer aborted")

	// A consumer passes the hole and counts it.
	_, err = q.Consumer().ReserveUpTo(1)
	require.ErrorIs(t, err, ErrEmpty)
	require.Equal(t, le64(1), meta[OffConsSkipped:][:8], "consumer skipped")
	require.Equal(t, le64(1), meta[OffConsEmpty:][:8], "consumer empty")
	require.Equal(t, le64(2), meta[OffConsCursor:][:8], "consumer cursor past the hole")
	require.Equal(t, []byte{0x05, 0, 0, 0, 0, 0, 0, 0}, meta[OffDescs+8:][:8], "slot 1 released: stamp 5")
}

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// TestLayoutOffsets pins every named offset, so a change to layout.go shows
// up here and in LAYOUT.md together.
func TestLayoutOffsets(t *testing.T) {
	offsets := []struct {
		name string
		got  int
		want int
	}{
		{"magic", OffMagic, 0}, {"version", OffVersion, 4}, {"features", OffFeatures, 8},
		{"desc_offset", OffDescOffset, 12}, {"slots", OffSlots, 16}, {"slot_size", OffSlotSize, 20},
		{"meta_size", OffMetaSize, 24}, {"data_size", OffDataSize, 32}, {"desc_size", OffDescSize, 40},
		{"generation", OffGeneration, 44},
		{"prod_cursor", OffProdCursor, 64}, {"prod_rolled_back", OffProdRolledBack, 72},
		{"prod_spare", OffProdSpare, 80}, {"prod_aborted", OffProdAborted, 88},
		{"prod_full", OffProdFull, 96}, {"prod_corrupt", OffProdCorrupt, 104},
		{"prod_wake_sent", OffProdWakeSent, 112}, {"prod_wake_suppressed", OffProdWakeSuppressed, 120},
		{"cons_cursor", OffConsCursor, 128}, {"cons_returned", OffConsReturned, 136},
		{"cons_spare", OffConsSpare, 144}, {"cons_skipped", OffConsSkipped, 152},
		{"cons_empty", OffConsEmpty, 160}, {"cons_corrupt", OffConsCorrupt, 168},
		{"cons_wake_sent", OffConsWakeSent, 176}, {"cons_wake_suppressed", OffConsWakeSuppressed, 184},
		{"items_futex", OffItemsFutex, 192}, {"items_waiters", OffItemsWaiters, 196},
		{"space_futex", OffSpaceFutex, 256}, {"space_waiters", OffSpaceWaiters, 260},
		{"link", OffLink, 320}, {"descs", OffDescs, 384}, {"sizeof_desc", DescSize, 8},
		{"desc_seq", DescOffSeq, 0}, {"desc_info", DescOffInfo, 4},
	}
	for _, o := range offsets {
		require.Equal(t, o.want, o.got, o.name)
	}
	require.Equal(t, uint32(0x31514359), uint32(Magic))
	require.Equal(t, []byte("YCQ1"), le64(Magic)[:4])
	require.Equal(t, 1, FeatureSingleProducer)
	require.Equal(t, 2, FeatureSingleConsumer)
	require.Equal(t, 1, FlagAborted)
	require.Equal(t, 384+8*1024, MetaSize(1024))
}

var update = flag.Bool("update", false, "rewrite ycq_ring.h from layout.go")

// TestCHeader checks that the committed C header says what layout.go says,
// and that a C compiler accepts it and agrees with its offsets.
func TestCHeader(t *testing.T) {
	want := cHeader()
	if *update {
		require.NoError(t, os.WriteFile("ycq_ring.h", want, 0o644))
	}
	got, err := os.ReadFile("ycq_ring.h")
	require.NoError(t, err)
	if !bytes.Equal(got, want) {
		t.Fatalf("ycq_ring.h is out of date with layout.go: run go test ./ring -run TestCHeader -update")
	}
	// It compiles as freestanding C99, as C11 and as C++, and its numbers
	// are layout.go's.
	check := fmt.Sprintf(`#include "ycq_ring.h"
YCQ_STATIC_ASSERT(YCQ_INFO_ABORTED == %du, check_info_aborted);
YCQ_STATIC_ASSERT(YCQ_FEATURES_KNOWN == %du, check_features_known);
YCQ_STATIC_ASSERT(YCQ_MIN_SLOT_SIZE == %d, check_min_slot_size);
YCQ_STATIC_ASSERT(YCQ_META_SIZE(1024) == %d, check_meta_size);
int ycq_check(void) { return 0; }
`, FlagAborted<<InfoFlagsShift, featuresKnown&^FeatureResizable, slotAlign, MetaSize(1024))
	dir := t.TempDir()
	for _, c := range []struct {
		tool, file string
		args       []string
	}{
		{"gcc", "check.c", []string{"-std=c99", "-pedantic-errors", "-ffreestanding"}},
		{"gcc", "check.c", []string{"-std=c11", "-pedantic-errors"}},
		{"g++", "check.cc", []string{"-std=c++11", "-pedantic-errors"}},
	} {
		cc, err := exec.LookPath(c.tool)
		if err != nil {
			t.Errorf("no %s to compile ycq_ring.h (apt-get install gcc g++): %v", c.tool, err)
			continue
		}
		src := filepath.Join(dir, c.file)
		require.NoError(t, os.WriteFile(src, []byte(check), 0o644))
		args := append(c.args, "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I.", src)
		out, err := exec.Command(cc, args...).CombinedOutput()
		require.NoError(t, err, "%s %v rejects ycq_ring.h:\n%s", c.tool, c.args, out)
	}
}

// TestRunsFitInRegisters: WriteRun and ReadRun stay at most four words, the
// most the compiler keeps in registers; a bigger ReadRun cost the consumer a
// third of its time at batch 1 (see ReadRun).
func TestRunsFitInRegisters(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(ReadRun{}), 4*unsafe.Sizeof(uintptr(0)))
	require.LessOrEqual(t, unsafe.Sizeof(WriteRun{}), 4*unsafe.Sizeof(uintptr(0)))
	require.Equal(t, 4, reflect.TypeFor[ReadRun]().NumField(), "four fields at most")
}

// TestQueueSize: a Queue is 128 bytes, a size class the Go allocator lays
// out on cache-line boundaries; at 136 bytes (a field more) the ring lost
// 12% at batch 32 in the same runs, its hot read-only fields sharing lines
// with whatever the allocator put next to it.
func TestQueueSize(t *testing.T) {
	require.Equal(t, uintptr(128), unsafe.Sizeof(Queue{}))
}
