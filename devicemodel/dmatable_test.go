package devicemodel_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/vfio"
)

const page = 4096

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// memfd returns a memfd region of size bytes filled with a pattern.
func memfd(t testing.TB, size int) *dma.Region {
	t.Helper()
	r, err := dma.Memfd("dmatable-test", size, dma.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	for i := range r.Bytes() {
		r.Bytes()[i] = byte(i*7 + i/page)
	}
	return r
}

// dup gives the table its own copy of r's fd, as a received one would be.
func dup(t testing.TB, r *dma.Region) int {
	t.Helper()
	fd, err := unix.FcntlInt(uintptr(r.FD()), unix.F_DUPFD_CLOEXEC, 0)
	require.NoError(t, err)
	return fd
}

func mapPages(t testing.TB, tab *devicemodel.DMATable, r *dma.Region, iova uint64, order []int) {
	t.Helper()
	for _, p := range order {
		off := uint64(p) * page
		require.NoError(t, tab.Map(vfio.IOVA(iova+off), page, vfio.DMARead|vfio.DMAWrite, dup(t, r), off))
	}
}

func TestDMATableCoalescesSequentialPages(t *testing.T) {
	const pages = 4096
	before := openFDs(t)
	r := memfd(t, pages*page)
	tab := devicemodel.NewDMATable(nil, 0)
	order := make([]int, pages)
	for i := range order {
		order[i] = i
	}
	const base = 0x1_0000_0000
	start := time.Now()
	mapPages(t, tab, r, base, order)
	t.Logf("4096 single-page maps: %v", time.Since(start))
	s := tab.Stats()
	require.Equal(t, pages, s.Entries)
	require.Equal(t, 1, s.Spans, "contiguous pages of one file must end as one span")
	require.Equal(t, uint64(pages), s.Maps)
	require.Equal(t, uint64(pages-1), s.Merges)

	// Reads and writes across former page boundaries.
	got := make([]byte, 3*page)
	require.NoError(t, tab.Read(base+page-100, got))
	require.Equal(t, r.Bytes()[page-100:4*page-100], got)
	require.NoError(t, tab.Write(base+10*page-5, []byte("across a page boundary")))
	require.Equal(t, "across a page boundary", string(r.Bytes()[10*page-5:10*page-5+22]))
	require.NoError(t, tab.Store64(base+8, 0x1122334455667788))
	require.Equal(t, uint64(0x1122334455667788), binary.LittleEndian.Uint64(r.Bytes()[8:]))
	v, err := tab.Load32(base + pages*page - 4)
	require.NoError(t, err)
	require.Equal(t, binary.LittleEndian.Uint32(r.Bytes()[pages*page-4:]), v)

	require.NoError(t, tab.Close())
	r.Close()
	require.Equal(t, before, openFDs(t), "fds leaked")
}

func TestDMATableCoalescesAnyOrder(t *testing.T) {
	const pages = 256
	for _, name := range []string{"reverse", "shuffled", "odd-then-even"} {
		t.Run(name, func(t *testing.T) {
			r := memfd(t, pages*page)
			tab := devicemodel.NewDMATable(nil, 0)
			defer tab.Close()
			order := make([]int, pages)
			for i := range order {
				order[i] = i
			}
			switch name {
			case "reverse":
				for i := range order {
					order[i] = pages - 1 - i
				}
			case "shuffled":
				rand.New(rand.NewPCG(1, 2)).Shuffle(pages, func(i, j int) { order[i], order[j] = order[j], order[i] })
			case "odd-then-even":
				order = order[:0]
				for i := 1; i < pages; i += 2 {
					order = append(order, i)
				}
				for i := 0; i < pages; i += 2 {
					order = append(order, i)
				}
			}
			mapPages(t, tab, r, 0x10000, order)
			require.Equal(t, 1, tab.Stats().Spans)
			got := make([]byte, pages*page)
			require.NoError(t, tab.Read(0x10000, got))
			require.True(t, bytes.Equal(r.Bytes(), got))
		})
	}
}

func TestDMATableDoesNotCoalesceStrangers(t *testing.T) {
	a, b := memfd(t, 4*page), memfd(t, 4*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	rw := vfio.DMARead | vfio.DMAWrite
	require.NoError(t, tab.Map(0, page, rw, dup(t, a), 0))
	require.NoError(t, tab.Map(page, page, rw, dup(t, b), page))          // another file
	require.NoError(t, tab.Map(2*page, page, rw, dup(t, b), 3*page))      // not contiguous in the file
	require.NoError(t, tab.Map(3*page, page, vfio.DMARead, dup(t, b), 0)) // other permissions
	require.NoError(t, tab.Map(4*page, 100, rw, dup(t, b), page))         // not whole pages
	require.Equal(t, 5, tab.Stats().Spans)
	got := make([]byte, 2*page)
	require.NoError(t, tab.Read(page/2, got))
	require.Equal(t, a.Bytes()[page/2:page], got[:page/2])
	require.Equal(t, b.Bytes()[page:2*page], got[page/2:3*page/2])
	require.Equal(t, b.Bytes()[3*page:3*page+page/2], got[3*page/2:])
}

// TestDMATableUnmapMany: QEMU behind an IOMMU unmaps in one message what it
// mapped a page at a time; a range of whole entries goes in one unmap.
func TestDMATableUnmapMany(t *testing.T) {
	r := memfd(t, 16*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	mapPages(t, tab, r, 0x100000, []int{0, 1, 2, 3, 4, 5, 6, 7})
	require.Equal(t, 1, tab.Stats().Spans)
	require.NoError(t, tab.Unmap(0x100000+2*page, 4*page))
	s := tab.Stats()
	require.Equal(t, 4, s.Entries)
	require.Equal(t, 2, s.Spans)
	var b [8]byte
	require.ErrorIs(t, tab.Read(0x100000+3*page, b[:]), devicemodel.ErrDMAFault)
	require.NoError(t, tab.Read(0x100000+page, b[:]))
	require.NoError(t, tab.Read(0x100000+6*page, b[:]))
	// A range over a hole and whole entries on both sides is fine too,
	// and one that runs to the top of the address space.
	require.NoError(t, tab.Unmap(0x100000, 4*page))
	top := uint64(0x100000 + 4*page)
	require.NoError(t, tab.Unmap(vfio.IOVA(top), -top))
	require.Zero(t, tab.Stats().Entries)
	// And mapping the same addresses again works.
	mapPages(t, tab, r, 0x100000, []int{8, 9})
	require.Equal(t, 2, tab.Stats().Entries)
}

func TestDMATableOverlapAndUnmap(t *testing.T) {
	before := openFDs(t)
	r := memfd(t, 16*page)
	tab := devicemodel.NewDMATable(nil, 0)
	rw := vfio.DMARead | vfio.DMAWrite
	mapPages(t, tab, r, 0x100000, []int{0, 1, 2, 3, 4, 5, 6, 7})
	err := tab.Map(0x100000+3*page, 2*page, rw, dup(t, r), 0)
	require.ErrorIs(t, err, syscall.EEXIST)
	require.ErrorIs(t, tab.Map(0x100000-page, 2*page, rw, -1, 0), syscall.EEXIST)
	require.ErrorIs(t, tab.Unmap(0x100000+page/2, page), syscall.EINVAL, "an unmap may not cut an entry")
	require.ErrorIs(t, tab.Unmap(0x100000, page+page/2), syscall.EINVAL, "nor end inside one")
	require.ErrorIs(t, tab.Unmap(0x900000, page), syscall.ENOENT, "nothing mapped there")

	// Unmap a page in the middle: the span splits, that page faults.
	require.NoError(t, tab.Unmap(0x100000+3*page, page))
	s := tab.Stats()
	require.Equal(t, 7, s.Entries)
	require.Equal(t, 2, s.Spans)
	var b [8]byte
	err = tab.Read(0x100000+3*page+8, b[:])
	require.ErrorIs(t, err, devicemodel.ErrDMAFault)
	var fe *devicemodel.DMAFaultError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, uint64(0x100000+3*page+8), fe.IOVA)
	require.ErrorIs(t, tab.Read(0x100000+3*page-4, b[:]), devicemodel.ErrDMAFault, "an access running into the hole faults")
	require.NoError(t, tab.Read(0x100000+2*page, b[:]))
	require.Equal(t, r.Bytes()[2*page:2*page+8], b[:])
	require.NoError(t, tab.Read(0x100000+4*page, b[:]))
	require.Equal(t, r.Bytes()[4*page:4*page+8], b[:])

	// Remap the hole: the three pieces join again.
	mapPages(t, tab, r, 0x100000, []int{3})
	require.Equal(t, 1, tab.Stats().Spans)

	// Unmap the edges, then everything one by one.
	for _, p := range []int{0, 7, 1, 6, 2, 5, 3, 4} {
		require.NoError(t, tab.Unmap(vfio.IOVA(0x100000+p*page), page))
	}
	s = tab.Stats()
	require.Zero(t, s.Entries)
	require.Zero(t, s.Spans)
	require.Zero(t, s.MappedBytes)
	require.NoError(t, tab.Close())
	r.Close()
	require.Equal(t, before, openFDs(t))
}

func TestDMATableRefusesBadMaps(t *testing.T) {
	before := openFDs(t)
	r := memfd(t, 2*page)
	tab := devicemodel.NewDMATable(nil, 3)
	defer tab.Close()
	rw := vfio.DMARead | vfio.DMAWrite
	require.ErrorIs(t, tab.Map(0, 0, rw, -1, 0), syscall.EINVAL, "empty")
	require.ErrorIs(t, tab.Map(^vfio.IOVA(0)-10, 100, rw, -1, 0), syscall.EINVAL, "wraps")
	require.ErrorIs(t, tab.Map(0, page, 0, -1, 0), syscall.EINVAL, "no permission")
	require.ErrorIs(t, tab.Map(0, page, 8, -1, 0), syscall.EINVAL, "unknown permission")
	require.ErrorIs(t, tab.Map(0, 3*page, rw, dup(t, r), 0), syscall.EINVAL, "past the end of the file")
	require.ErrorIs(t, tab.Map(0, page, rw, dup(t, r), ^uint64(0)-10), syscall.EINVAL, "offset wraps")
	p := make([]int, 2)
	require.NoError(t, unix.Pipe2(p, unix.O_CLOEXEC))
	unix.Close(p[1])
	require.ErrorIs(t, tab.Map(0, page, rw, p[0], 0), syscall.EINVAL, "not a memory file")
	ro, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", r.FD()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	require.ErrorIs(t, tab.Map(0, page, rw, ro, 0), syscall.EACCES, "read-only fd, writable mapping")
	for i := range 3 {
		require.NoError(t, tab.Map(vfio.IOVA(i*page), page, vfio.DMARead, -1, 0))
	}
	require.ErrorIs(t, tab.Map(10*page, page, rw, -1, 0), syscall.ENOSPC)
	require.Equal(t, uint64(9), tab.Stats().MapErrors)
	r.Close()
	require.Equal(t, before, openFDs(t), "every refused fd must be closed")
}

func TestDMATablePermissionsAndAlignment(t *testing.T) {
	r := memfd(t, 2*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	require.NoError(t, tab.Map(0, page, vfio.DMARead, dup(t, r), 0))
	require.NoError(t, tab.Map(page, page, vfio.DMAWrite, dup(t, r), page))
	require.ErrorIs(t, tab.Write(8, []byte{1}), devicemodel.ErrDMAFault)
	require.ErrorIs(t, tab.Store32(8, 1), devicemodel.ErrDMAFault)
	_, err := tab.Load64(page + 8)
	require.ErrorIs(t, err, devicemodel.ErrDMAFault)
	require.NoError(t, tab.Store32(page+8, 0xabcdef01))
	require.Equal(t, uint32(0xabcdef01), binary.LittleEndian.Uint32(r.Bytes()[page+8:]))
	_, err = tab.Load32(2)
	require.ErrorIs(t, err, devicemodel.ErrDMAFault, "misaligned")
	require.ErrorIs(t, tab.Store64(page+4, 1), devicemodel.ErrDMAFault, "misaligned")
	// A read spanning both entries needs read permission on both: nothing
	// is copied.
	buf := bytes.Repeat([]byte{0xee}, 16)
	require.ErrorIs(t, tab.Read(page-8, buf), devicemodel.ErrDMAFault)
	require.Equal(t, bytes.Repeat([]byte{0xee}, 16), buf)
	require.Equal(t, uint64(6), tab.Stats().Faults)
}

// fakeMessenger serves fd-less ranges from a byte slice at base.
type fakeMessenger struct {
	base  uint64
	mem   []byte
	calls atomic.Int64
}

func (f *fakeMessenger) ReadDMA(iova uint64, b []byte) error {
	f.calls.Add(1)
	copy(b, f.mem[iova-f.base:])
	return nil
}

func (f *fakeMessenger) WriteDMA(iova uint64, b []byte) error {
	f.calls.Add(1)
	copy(f.mem[iova-f.base:], b)
	return nil
}

func TestDMATableMessageRanges(t *testing.T) {
	r := memfd(t, page)
	fm := &fakeMessenger{base: 0x2000, mem: make([]byte, page)}
	tab := devicemodel.NewDMATable(fm, 0)
	defer tab.Close()
	require.NoError(t, tab.Map(0x1000, page, vfio.DMARead|vfio.DMAWrite, dup(t, r), 0))
	require.NoError(t, tab.Map(0x2000, page, vfio.DMARead|vfio.DMAWrite, -1, 0))
	// One write across the memory-backed and the message range.
	msg := []byte("0123456789abcdef")
	require.NoError(t, tab.Write(0x2000-8, msg))
	require.Equal(t, msg[:8], r.Bytes()[page-8:])
	require.Equal(t, msg[8:], fm.mem[:8])
	require.NoError(t, tab.Store64(0x2008, 42))
	v, err := tab.Load64(0x2008)
	require.NoError(t, err)
	require.Equal(t, uint64(42), v)
	require.Equal(t, int64(3), fm.calls.Load())
	require.Equal(t, 1, tab.Stats().MessageSpans)

	noMsg := devicemodel.NewDMATable(nil, 0)
	defer noMsg.Close()
	require.NoError(t, noMsg.Map(0, page, vfio.DMARead, -1, 0))
	require.ErrorIs(t, noMsg.Read(0, make([]byte, 4)), devicemodel.ErrDMAFault)
}

// A client that truncates the file behind a mapping makes accesses fault
// (SIGBUS), which the table turns into DMA faults.
func TestDMATableTruncatedFile(t *testing.T) {
	r := memfd(t, 4*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	mapPages(t, tab, r, 0, []int{0, 1, 2, 3})
	require.NoError(t, unix.Ftruncate(r.FD(), page))
	require.NoError(t, tab.Read(0, make([]byte, 8)))
	require.ErrorIs(t, tab.Read(2*page, make([]byte, 8)), devicemodel.ErrDMAFault)
	_, err := tab.Load64(3 * page)
	require.ErrorIs(t, err, devicemodel.ErrDMAFault)
	require.ErrorIs(t, tab.Store32(3*page, 1), devicemodel.ErrDMAFault)
	require.NoError(t, unix.Ftruncate(r.FD(), 4*page)) // so r.Close's own view is sane
}

// Unmap waits for accesses in flight and, once it returns, the range
// faults: readers hammer a span while it is unmapped and remapped.
func TestDMATableUnmapWhileAccessing(t *testing.T) {
	r := memfd(t, 8*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	var mapped atomic.Bool // true while page 5 is certainly mapped
	mapPages(t, tab, r, 0, []int{0, 1, 2, 3, 4, 5, 6, 7})
	mapped.Store(true)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, faults atomic.Int64
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2*page)
			for {
				select {
				case <-stop:
					return
				default:
				}
				was := mapped.Load()
				err := tab.Read(vfio.IOVA(4*page+g*100), buf)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, devicemodel.ErrDMAFault):
					require.False(t, was && mapped.Load(), "fault while mapped")
					faults.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 300 || ok.Load()+faults.Load() < 2000; i++ {
		mapped.Store(false)
		require.NoError(t, tab.Unmap(5*page, page))
		mapPages(t, tab, r, 0, []int{5})
		mapped.Store(true)
	}
	close(stop)
	wg.Wait()
	require.Equal(t, 1, tab.Stats().Spans)
	t.Logf("%d reads, %d faults", ok.Load(), faults.Load())
}

// BenchmarkDMATableLookup measures an 8-byte read among 10k spans that do
// not coalesce (every other page mapped).
func BenchmarkDMATableLookup(b *testing.B) {
	const spans = 10000
	r := memfd(b, 2*spans*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	for i := range spans {
		off := uint64(2*i) * page
		require.NoError(b, tab.Map(vfio.IOVA(off), page, vfio.DMARead|vfio.DMAWrite, dup(b, r), off))
	}
	require.Equal(b, spans, tab.Stats().Spans)
	addrs := make([]vfio.IOVA, 4096)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range addrs {
		addrs[i] = vfio.IOVA(uint64(rng.IntN(spans))*2*page + uint64(rng.IntN(page/8))*8)
	}
	var buf [8]byte
	for _, a := range addrs { // fault the pages in first
		require.NoError(b, tab.Read(a, buf[:]))
	}
	b.SetBytes(8)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := tab.Read(addrs[i%len(addrs)], buf[:]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkDMATableLoad64 is the same with an atomic word load.
func BenchmarkDMATableLoad64(b *testing.B) {
	const spans = 10000
	r := memfd(b, 2*spans*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	for i := range spans {
		off := uint64(2*i) * page
		require.NoError(b, tab.Map(vfio.IOVA(off), page, vfio.DMARead|vfio.DMAWrite, dup(b, r), off))
	}
	addrs := make([]vfio.IOVA, 4096)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range addrs {
		addrs[i] = vfio.IOVA(uint64(rng.IntN(spans))*2*page + uint64(rng.IntN(page/8))*8)
	}
	for _, a := range addrs {
		_, err := tab.Load64(a)
		require.NoError(b, err)
	}
	b.SetBytes(8)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := tab.Load64(addrs[i%len(addrs)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkDMATableMap4096 maps 4096 consecutive single pages (what QEMU
// sends for a 16 MiB buffer behind a vIOMMU) and unmaps them.
func BenchmarkDMATableMap4096(b *testing.B) {
	const pages = 4096
	r := memfd(b, pages*page)
	fds := make([]int, pages)
	b.SetBytes(pages * page)
	for b.Loop() {
		b.StopTimer()
		for i := range fds {
			fds[i] = dup(b, r)
		}
		tab := devicemodel.NewDMATable(nil, 0)
		b.StartTimer()
		for i := range pages {
			off := uint64(i) * page
			if err := tab.Map(vfio.IOVA(off), page, vfio.DMARead|vfio.DMAWrite, fds[i], off); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if tab.Stats().Spans != 1 {
			b.Fatal("did not coalesce")
		}
		tab.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*pages)/b.Elapsed().Seconds(), "maps/s")
}

// TestDMATablePin: a pinned view is the mapped memory itself; mapping a
// neighbour does not move it; an unmap of other pages of its span leaves
// it alone; an unmap of pinned pages asks the holder to let go and waits.
func TestDMATablePin(t *testing.T) {
	r := memfd(t, 16*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	rw := vfio.DMARead | vfio.DMAWrite
	mapPages(t, tab, r, 0x100000, []int{0, 1, 2, 3})
	revoked := make(chan struct{}, 1)
	var release func()
	b, release, err := tab.Pin(0x100000+page, 2*page, rw, func() { revoked <- struct{}{} })
	require.NoError(t, err)
	require.Len(t, b, 2*page)
	b[0] = 0x5a
	require.Equal(t, byte(0x5a), r.Bytes()[page], "the view is the client's memory")

	// Neighbours still join, in place; the view stays valid.
	mapPages(t, tab, r, 0x100000+4*page, []int{4, 5})
	b[1] = 0x5b
	require.Equal(t, byte(0x5b), r.Bytes()[page+1])

	// Refusals: unmapped, beyond the span, without the permission.
	_, _, err = tab.Pin(0x900000, page, rw, nil)
	require.ErrorIs(t, err, devicemodel.ErrDMAFault)
	_, _, err = tab.Pin(0x100000, 7*page, rw, nil)
	require.ErrorIs(t, err, devicemodel.ErrDMAFault)

	// An unmap of other pages of the span leaves the pin alone.
	require.NoError(t, tab.Unmap(0x100000+3*page, page))
	b[2] = 0x5c
	require.Equal(t, byte(0x5c), r.Bytes()[page+2])
	require.Zero(t, tab.Stats().Revokes)

	// An unmap of pinned pages revokes the pin and waits for it.
	done := make(chan error, 1)
	go func() { done <- tab.Unmap(0x100000+2*page, page) }()
	select {
	case <-revoked:
	case <-time.After(time.Minute):
		t.Fatal("the unmap never asked the holder to let go")
	}
	select {
	case err := <-done:
		t.Fatalf("the unmap did not wait for the pin: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	release()
	require.NoError(t, <-done)
	require.Equal(t, uint64(1), tab.Stats().Revokes)
	release() // a second release is harmless
}

// TestDMATableUnmapBesidePin: unmapping pages of a coalesced span that a
// pin does not view splits the span without revoking the pin (the host
// gives back an old resize generation that QEMU's page-by-page maps
// coalesced with the live one); the pin goes with the part that holds it,
// its view stays the client's memory, and its release lets the pages go
// without a revoke.
func TestDMATableUnmapBesidePin(t *testing.T) {
	r := memfd(t, 6*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	mapPages(t, tab, r, 0x100000, []int{0, 1, 2, 3, 4, 5})
	require.Equal(t, 1, tab.Stats().Spans)
	var release func()
	b, release, err := tab.Pin(0x100000+4*page, page, vfio.DMARead|vfio.DMAWrite, func() {
		t.Error("the pinned page was not unmapped, yet the pin was revoked")
		go release()
	})
	require.NoError(t, err)
	for i, p := range []int{1, 2, 5} {
		require.NoError(t, tab.Unmap(vfio.IOVA(0x100000+p*page), page), "unmap page %d", p)
		b[i] = byte(0x70 + i)
		require.Equal(t, byte(0x70+i), r.Bytes()[4*page+i], "after unmapping page %d", p)
	}
	require.Equal(t, 2, tab.Stats().Spans) // [0] and [3, 4]
	release()
	require.NoError(t, tab.Unmap(0x100000+3*page, 2*page))
	require.Zero(t, tab.Stats().Revokes)
	require.Equal(t, 1, tab.Stats().Entries)
}

// TestDMATablePinnedSpanGrowsInPlaceOnly: a map that extends a pinned
// span whose mapping cannot grow in place (the addresses after it are
// taken) leaves the span where it is, so the holder's view stays the
// client's memory; the new page gets a span of its own. (The table used
// to move the mapping: the holder was left with unmapped addresses, and
// the ycq device behind QEMU read zeroed metadata or faulted when the
// host mapped a resize's generation right after its live queues.)
func TestDMATablePinnedSpanGrowsInPlaceOnly(t *testing.T) {
	r := memfd(t, 4*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	rw := vfio.DMARead | vfio.DMAWrite
	mapPages(t, tab, r, 0x100000, []int{0, 1})
	b, release, err := tab.Pin(0x100000, 2*page, rw, func() { t.Error("nothing was unmapped, yet the pin was revoked") })
	require.NoError(t, err)
	defer release()
	occupyAfter(t, b)

	mapPages(t, tab, r, 0x100000, []int{2, 3})
	require.True(t, touch(b, 2*page-1, 0x5a), "the pinned view is no longer mapped")
	require.Equal(t, byte(0x5a), r.Bytes()[2*page-1], "the pinned view is not the client's memory")
	got := make([]byte, 3*page)
	require.NoError(t, tab.Read(0x100000+page, got))
	require.Equal(t, r.Bytes()[page:4*page], got)
	require.Equal(t, 2, tab.Stats().Spans, "the pinned span cannot grow: the new pages are a span of their own")

	// Once let go, the span may move to grow.
	release()
	require.NoError(t, tab.Unmap(0x100000+2*page, 2*page))
	mapPages(t, tab, r, 0x100000, []int{2})
	require.Equal(t, 1, tab.Stats().Spans)
	require.NoError(t, tab.Read(0x100000, got))
	require.Equal(t, r.Bytes()[:3*page], got)
}

// touch writes v at b[i], reporting false if the memory faulted.
func touch(b []byte, i int, v byte) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			ok = false
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	b[i] = v
	return true
}

// pinHolder holds a pinned view the way the ycq device does: asked to let
// go (revoke), it releases from another goroutine, once letGo is closed.
type pinHolder struct {
	b       []byte
	release func()
	asked   atomic.Int32
	askedCh chan struct{} // closed at the first revoke
	letGo   chan struct{} // the holder releases once this is closed
}

func pinFor(t *testing.T, tab *devicemodel.DMATable, iova vfio.IOVA, size uint64, letGo chan struct{}) *pinHolder {
	t.Helper()
	h := &pinHolder{askedCh: make(chan struct{}), letGo: letGo}
	b, release, err := tab.Pin(iova, size, vfio.DMARead|vfio.DMAWrite, func() {
		if h.asked.Add(1) == 1 {
			close(h.askedCh)
		}
		go func() {
			<-h.letGo
			h.release()
		}()
	})
	require.NoError(t, err)
	h.b, h.release = b, release
	t.Cleanup(release)
	return h
}

// TestDMATableRefusedUnmapKeepsPins: an unmap the table refuses changes
// nothing: the error is the one it always was, the holder of a pin on the
// range is not asked to let go, its view stays the client's memory, and
// the table keeps every entry. Only an accepted unmap revokes and waits.
func TestDMATableRefusedUnmapKeepsPins(t *testing.T) {
	const base = 0x100000
	cases := []struct {
		name  string
		iova  uint64
		size  uint64
		errno syscall.Errno
	}{
		{"size 0 inside the pinned span", base + page, 0, unix.EINVAL},
		{"size 0 at 0", 0, 0, unix.EINVAL},
		{"wraps around the address space", base + 2*page, ^uint64(page - 1), unix.EINVAL}, // size 2^64-page: ends at base+page-1
		{"starts inside the pinned entry", base + page + page/2, page, unix.EINVAL},
		{"ends inside the pinned entry", base, page + page/2, unix.EINVAL},
		{"whole entries then a cut of the last", base, 3*page + 1, unix.EINVAL},
		{"nothing mapped there", 0x900000, page, unix.ENOENT},
		{"the hole next to the pinned span", base + 4*page, page, unix.ENOENT},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := memfd(t, 4*page)
			tab := devicemodel.NewDMATable(nil, 0)
			defer tab.Close()
			mapPages(t, tab, r, base, []int{0, 1, 2, 3})
			open := make(chan struct{})
			close(open) // lets go as soon as it is asked, like the ycq device
			h := pinFor(t, tab, base+page, 2*page, open)
			before := tab.Stats()
			require.Equal(t, 4, before.Entries)
			require.Equal(t, 1, before.Spans)

			err := tab.Unmap(vfio.IOVA(c.iova), c.size)
			require.ErrorIs(t, err, c.errno)
			require.ErrorContains(t, err, fmt.Sprintf("devicemodel: unmap DMA [%#x, +%#x): ", c.iova, c.size))

			require.Zero(t, h.asked.Load(), "a refused unmap asked the pin's holder to let go")
			want := before
			want.UnmapErrors++
			require.Equal(t, want, tab.Stats(), "a refused unmap changes no entry, span or counter but UnmapErrors")

			// The view is still the client's memory, both ways.
			h.b[0], h.b[2*page-1] = 0xa5, 0x5a
			require.Equal(t, byte(0xa5), r.Bytes()[page])
			require.Equal(t, byte(0x5a), r.Bytes()[3*page-1])
			r.Bytes()[page+1] = 0x3c
			require.Equal(t, byte(0x3c), h.b[1])
			// And the table still maps all four pages.
			got := make([]byte, 4*page)
			require.NoError(t, tab.Read(base, got))
			require.Equal(t, r.Bytes(), got)
			require.Zero(t, tab.Stats().Revokes)
		})
	}

	t.Run("accepted unmap revokes and waits", func(t *testing.T) {
		r := memfd(t, 4*page)
		tab := devicemodel.NewDMATable(nil, 0)
		defer tab.Close()
		mapPages(t, tab, r, base, []int{0, 1, 2, 3})
		letGo := make(chan struct{})
		h := pinFor(t, tab, base+page, 2*page, letGo)
		done := make(chan error, 1)
		go func() { done <- tab.Unmap(base+2*page, page) }() // the pinned range's last page
		select {
		case <-h.askedCh:
		case <-time.After(time.Minute):
			t.Fatal("the unmap never asked the holder to let go")
		}
		select {
		case err := <-done:
			t.Fatalf("the unmap returned before the pin was released: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		close(letGo)
		require.NoError(t, <-done)
		s := tab.Stats()
		require.Equal(t, int32(1), h.asked.Load())
		require.Equal(t, uint64(1), s.Revokes)
		require.Equal(t, uint64(1), s.Unmaps)
		require.Equal(t, 3, s.Entries)
		require.ErrorIs(t, tab.Read(base+2*page, make([]byte, 8)), devicemodel.ErrDMAFault)
	})
}

// TestDMATableUnmapStaysValidWhileWaiting: while an accepted unmap waits
// for a pin's holder, the table releases its lock; a map that arrives then
// must not change what the unmap validated. Here the unmap takes two
// entries and the hole after them, and the map would put an entry the
// unmap's range cuts into that hole: it waits until the unmap is done,
// so the unmap succeeds and the map lands after it.
func TestDMATableUnmapStaysValidWhileWaiting(t *testing.T) {
	const base = 0x100000
	r := memfd(t, 8*page)
	tab := devicemodel.NewDMATable(nil, 0)
	defer tab.Close()
	mapPages(t, tab, r, base, []int{0, 1})
	letGo := make(chan struct{})
	h := pinFor(t, tab, base, 2*page, letGo)
	unmapped := make(chan error, 1)
	go func() { unmapped <- tab.Unmap(base, 4*page) }()
	select {
	case <-h.askedCh:
	case <-time.After(time.Minute):
		t.Fatal("the unmap never asked the holder to let go")
	}
	mapped := make(chan error, 1)
	go func() {
		mapped <- tab.Map(base+3*page, 2*page, vfio.DMARead|vfio.DMAWrite, dup(t, r), 3*page)
	}()
	time.Sleep(20 * time.Millisecond) // room for the map to slip in, if it could
	close(letGo)
	require.NoError(t, <-unmapped, "the unmap was accepted; the map must not turn it into a refusal")
	require.NoError(t, <-mapped)
	s := tab.Stats()
	require.Equal(t, 1, s.Entries)
	require.Equal(t, uint64(2), s.Unmaps)
	require.Zero(t, s.UnmapErrors)
	require.Equal(t, uint64(1), s.Revokes)
}
