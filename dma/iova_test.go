package dma

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newIOVA(t *testing.T, base, limit, align uint64) *IOVAAllocator {
	t.Helper()
	a, err := NewIOVAAllocator(base, limit, align)
	require.NoError(t, err)
	return a
}

func checked(t *testing.T, a *IOVAAllocator) {
	t.Helper()
	require.NoError(t, a.check())
}

func TestNewIOVAAllocator(t *testing.T) {
	a := newIOVA(t, 0x100000, 0x200000, 0)
	assert.Equal(t, uint64(PageSize), a.Align())
	assert.Equal(t, uint64(0x100000), a.FreeBytes())
	assert.Equal(t, uint64(0x100000), a.Base())
	assert.Equal(t, uint64(0x200000), a.Limit())
	for _, c := range []struct{ base, limit, align uint64 }{
		{0, 0, PageSize},                     // empty
		{0x2000, 0x1000, PageSize},           // reversed
		{0x800, 0x10000, PageSize},           // unaligned base
		{0, 0x10800, PageSize},               // unaligned limit
		{0, 0x10000, 3000},                   // alignment not a power of two
		{0, math.MaxUint64, PageSize},        // limit not aligned
		{0x1000, 0x1000 + PageSize, 1 << 63}, // unaligned to a huge alignment
	} {
		_, err := NewIOVAAllocator(c.base, c.limit, c.align)
		assert.ErrorIs(t, err, ErrInvalid, "%#x %#x %#x", c.base, c.limit, c.align)
	}
}

func TestIOVAAlloc(t *testing.T) {
	a := newIOVA(t, 0x1000, 0x10000000, PageSize)
	x, err := a.Alloc(1)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x1000), x, "first fit from the bottom")
	n, ok := a.Size(x)
	assert.True(t, ok)
	assert.Equal(t, uint64(PageSize), n, "sizes round up to the alignment")

	y, err := a.Alloc(0x3000)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x2000), y)

	h, err := a.AllocAligned(HugePageSize, HugePageSize)
	require.NoError(t, err)
	assert.Equal(t, uint64(HugePageSize), h, "the first 2 MiB boundary above what is taken")
	z, err := a.Alloc(PageSize)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x5000), z, "the hole left below the huge page is used")
	checked(t, a)

	low, err := a.AllocAligned(PageSize, 16)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x6000), low, "an alignment below the allocator's is raised")
	assert.Equal(t, 5, a.Allocated())
	assert.Equal(t, uint64(0x10000000-0x1000-6*PageSize-HugePageSize), a.FreeBytes())

	_, err = a.Alloc(0)
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = a.AllocAligned(PageSize, 3*PageSize)
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = a.AllocAligned(PageSize, 0)
	assert.ErrorIs(t, err, ErrInvalid)
	_, err = a.Alloc(math.MaxUint64)
	assert.ErrorIs(t, err, ErrIOVAExhausted, "rounding up would wrap")
	_, err = a.Alloc(0x10000000)
	assert.ErrorIs(t, err, ErrIOVAExhausted, "larger than the window")
	checked(t, a)
}

func TestIOVAExhaustion(t *testing.T) {
	a := newIOVA(t, 0, 4*PageSize, PageSize)
	var got []uint64
	for i := 0; i < 4; i++ {
		x, err := a.Alloc(PageSize)
		require.NoError(t, err)
		got = append(got, x)
	}
	assert.Equal(t, []uint64{0, 0x1000, 0x2000, 0x3000}, got)
	_, err := a.Alloc(PageSize)
	assert.ErrorIs(t, err, ErrIOVAExhausted)
	assert.Contains(t, err.Error(), "0x0 bytes free")

	// Fragmented: two free pages, not adjacent; two pages do not fit.
	require.NoError(t, a.Free(0))
	require.NoError(t, a.Free(0x2000))
	_, err = a.Alloc(2 * PageSize)
	assert.ErrorIs(t, err, ErrIOVAExhausted)
	assert.Contains(t, err.Error(), "0x2000 bytes free, the largest run 0x1000")
	checked(t, a)

	// Freeing the page between merges all three.
	require.NoError(t, a.Free(0x1000))
	assert.Equal(t, []iovaSpan{{0, 0x3000}}, a.free)
	x, err := a.Alloc(3 * PageSize)
	require.NoError(t, err)
	assert.Equal(t, uint64(0), x)
	checked(t, a)
}

func TestIOVAFreeCoalesces(t *testing.T) {
	a := newIOVA(t, 0, 0x10000, PageSize)
	var xs []uint64
	for i := 0; i < 5; i++ {
		x, err := a.Alloc(PageSize)
		require.NoError(t, err)
		xs = append(xs, x)
	}
	require.NoError(t, a.Free(xs[1]))
	require.NoError(t, a.Free(xs[3]))
	assert.Equal(t, []iovaSpan{{0x1000, 0x2000}, {0x3000, 0x4000}, {0x5000, 0x10000}}, a.free)
	require.NoError(t, a.Free(xs[4]), "joins the next span")
	assert.Equal(t, []iovaSpan{{0x1000, 0x2000}, {0x3000, 0x10000}}, a.free)
	require.NoError(t, a.Free(xs[2]), "joins both")
	assert.Equal(t, []iovaSpan{{0x1000, 0x10000}}, a.free)
	require.NoError(t, a.Free(xs[0]), "joins the previous span")
	assert.Equal(t, []iovaSpan{{0, 0x10000}}, a.free)
	assert.Equal(t, uint64(0x10000), a.FreeBytes())

	assert.ErrorIs(t, a.Free(xs[0]), ErrIOVANotAllocated, "double free")
	assert.ErrorIs(t, a.Free(0x800), ErrIOVANotAllocated)
	checked(t, a)
}

func TestIOVAReserve(t *testing.T) {
	// A window with the x86 MSI range taken out.
	a := newIOVA(t, 0, 1<<32, PageSize)
	require.NoError(t, a.Reserve(0xfee00000, 0x100000))
	checked(t, a)
	assert.ErrorIs(t, a.Reserve(0xfee80000, 0x1000), ErrIOVAInUse, "inside the reserved range")
	assert.ErrorIs(t, a.Reserve(0xfed00000, 0x200000), ErrIOVAInUse, "across its start")
	assert.NoError(t, a.Reserve(0xfe000000, 0x1000))
	assert.ErrorIs(t, a.Reserve(0xfe000800, 0x1000), ErrInvalid, "unaligned")
	assert.ErrorIs(t, a.Reserve(1<<32, 0x1000), ErrInvalid, "outside")
	assert.ErrorIs(t, a.Reserve(1<<32-0x1000, 0x2000), ErrInvalid, "past the end")
	assert.ErrorIs(t, a.Reserve(0, 0), ErrInvalid)

	// Allocations flow around the hole.
	b := newIOVA(t, 0xfed00000, 0xff000000, PageSize)
	require.NoError(t, b.Reserve(0xfee00000, 0x100000))
	x, err := b.Alloc(0x100000)
	require.NoError(t, err)
	assert.Equal(t, uint64(0xfed00000), x)
	y, err := b.Alloc(0x100000)
	require.NoError(t, err)
	assert.Equal(t, uint64(0xfef00000), y, "skips the reserved range")
	require.NoError(t, b.Free(0xfee00000), "a reservation is freed like an allocation")
	z, err := b.Alloc(0x100000)
	require.NoError(t, err)
	assert.Equal(t, uint64(0xfee00000), z)
	checked(t, b)
}

func TestIOVATopOfTheSpace(t *testing.T) {
	const limit = math.MaxUint64 &^ (HugePageSize - 1)
	a := newIOVA(t, 1<<63, limit, PageSize)
	x, err := a.AllocAligned(HugePageSize, 1<<62)
	require.NoError(t, err)
	assert.Equal(t, uint64(1<<63), x)
	y, err := a.AllocAligned(HugePageSize, 1<<62)
	require.NoError(t, err, "the next 1<<62 boundary is 0xc000...")
	assert.Equal(t, uint64(0xc000000000000000), y)
	_, err = a.AllocAligned(HugePageSize, 1<<63)
	assert.ErrorIs(t, err, ErrIOVAExhausted, "the next 1<<63 boundary wraps")
	size := uint64(limit - 0xc000000000000000 - HugePageSize)
	last, err := a.Alloc(size)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x8000000000200000), last, "first fit: the gap between the first two holds it")
	assert.Equal(t, uint64(limit-1<<63-2*HugePageSize-size), a.FreeBytes())
	require.NoError(t, a.Reserve(limit-PageSize, PageSize), "the top page of the space")
	assert.ErrorIs(t, a.Reserve(limit-PageSize, PageSize), ErrIOVAInUse)
	require.NoError(t, a.Free(limit-PageSize))
	checked(t, a)
}

// TestIOVAConcurrent allocates and frees from several goroutines; the
// ranges they hold at once never overlap, and everything comes back.
func TestIOVAConcurrent(t *testing.T) {
	a := newIOVA(t, 0, 1<<30, PageSize)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		held = map[uint64]uint64{}
	)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				size := uint64(1+(g*31+i)%7) * PageSize
				x, err := a.Alloc(size)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				for s, n := range held {
					if x < s+n && s < x+size {
						t.Errorf("[%#x, +%#x) overlaps [%#x, +%#x)", x, size, s, n)
					}
				}
				held[x] = size
				mu.Unlock()
				mu.Lock()
				delete(held, x)
				mu.Unlock()
				assert.NoError(t, a.Free(x))
			}
		}(g)
	}
	wg.Wait()
	checked(t, a)
	assert.Equal(t, uint64(1<<30), a.FreeBytes())
	assert.Equal(t, []iovaSpan{{0, 1 << 30}}, a.free)
}

// FuzzIOVAAllocator runs a sequence of operations decoded from the input
// against a window of up to 256 pages and a page bitmap as the model.
// After each one: the invariants hold (check), results agree with the
// model (first fit is the lowest aligned free run, exhaustion only when
// no run fits, Reserve and Free succeed exactly when they should), and the
// free byte count matches.
func FuzzIOVAAllocator(f *testing.F) {
	f.Add([]byte{0, 16, 0, 1, 0, 0, 3, 0, 2, 0, 0})
	f.Add([]byte{1, 64, 1, 2, 3, 0, 5, 1, 3, 10, 2, 2, 0, 0, 2, 1, 0})
	f.Add([]byte{3, 255, 3, 100, 7, 1, 7, 5, 0, 15, 1, 2, 200, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		base := uint64(data[0]%4) * HugePageSize
		pages := int(data[1]) + 1
		limit := base + uint64(pages)*PageSize
		a, err := NewIOVAAllocator(base, limit, PageSize)
		if err != nil {
			t.Fatal(err)
		}
		used := make([]bool, pages)   // the model
		live := map[uint64]int{}      // start -> pages
		fits := func(p, n int) bool { // pages p..p+n-1 free in the model
			if p < 0 || p+n > pages {
				return false
			}
			for i := p; i < p+n; i++ {
				if used[i] {
					return false
				}
			}
			return true
		}
		firstFit := func(n int, align uint64) (uint64, bool) {
			for x := (base + align - 1) &^ (align - 1); x+uint64(n)*PageSize <= limit; x += align {
				if fits(int((x-base)/PageSize), n) {
					return x, true
				}
			}
			return 0, false
		}
		mark := func(x uint64, n int, v bool) {
			for i := 0; i < n; i++ {
				used[int((x-base)/PageSize)+i] = v
			}
		}
		for ops := data[2:]; len(ops) >= 3; ops = ops[3:] {
			op, b1, b2 := ops[0]%4, ops[1], ops[2]
			switch op {
			case 0, 1:
				n := int(b1%16) + 1
				size := uint64(n) * PageSize
				align := uint64(PageSize)
				if op == 1 {
					align = PageSize << (b2 % 10)
				} else if b2%2 == 1 {
					size -= PageSize - 1 // rounds up to n pages
				}
				want, ok := firstFit(n, align)
				x, err := a.AllocAligned(size, align)
				switch {
				case ok && err != nil:
					t.Fatalf("alloc %d pages aligned %#x: %v, but %#x fits", n, align, err, want)
				case !ok && !errors.Is(err, ErrIOVAExhausted):
					t.Fatalf("alloc %d pages aligned %#x: got %#x, %v; nothing fits", n, align, x, err)
				case ok && x != want:
					t.Fatalf("alloc %d pages aligned %#x: got %#x, first fit is %#x", n, align, x, want)
				case ok:
					mark(x, n, true)
					live[x] = n
				}
			case 2:
				var x uint64
				if len(live) > 0 && b2%4 != 0 {
					k := int(b1) % len(live)
					for s := range live {
						if k == 0 {
							x = s
							break
						}
						k--
					}
				} else {
					x = base + uint64(b1)*PageSize
				}
				n, ok := live[x]
				err := a.Free(x)
				if ok != (err == nil) || !ok && !errors.Is(err, ErrIOVANotAllocated) {
					t.Fatalf("free %#x (allocated %v): %v", x, ok, err)
				}
				if ok {
					mark(x, n, false)
					delete(live, x)
				}
			case 3:
				p, n := int(b1)%pages, int(b2%8)+1
				x := base + uint64(p)*PageSize
				err := a.Reserve(x, uint64(n)*PageSize)
				switch {
				case p+n > pages:
					if !errors.Is(err, ErrInvalid) {
						t.Fatalf("reserve past the end [%#x, +%d pages): %v", x, n, err)
					}
				case fits(p, n) != (err == nil):
					t.Fatalf("reserve [%#x, +%d pages): free %v, got %v", x, n, fits(p, n), err)
				case err == nil:
					mark(x, n, true)
					live[x] = n
				case !errors.Is(err, ErrIOVAInUse):
					t.Fatalf("reserve [%#x, +%d pages): %v", x, n, err)
				}
			}
			if err := a.check(); err != nil {
				t.Fatal(err)
			}
			free := 0
			for _, u := range used {
				if !u {
					free++
				}
			}
			if a.FreeBytes() != uint64(free)*PageSize || a.Allocated() != len(live) {
				t.Fatalf("free %#x bytes and %d ranges, the model has %d pages and %d ranges", a.FreeBytes(), a.Allocated(), free, len(live))
			}
		}
	})
}

// An allocator over a 4 GiB window without the x86 MSI range, handing out
// a 2 MiB-aligned range for a huge-page buffer and a page for a doorbell.
func ExampleIOVAAllocator() {
	a, err := NewIOVAAllocator(1<<20, 1<<32, PageSize)
	if err != nil {
		panic(err)
	}
	if err := a.Reserve(0xfee00000, 1<<20); err != nil {
		panic(err)
	}
	buf, _ := a.AllocAligned(HugePageSize, HugePageSize)
	bell, _ := a.Alloc(64)
	n, _ := a.Size(bell)
	fmt.Printf("buffer at %#x, doorbell page at %#x (%d bytes)\n", buf, bell, n)
	fmt.Println(a.Free(buf), a.Free(buf) != nil)
	// Output:
	// buffer at 0x200000, doorbell page at 0x100000 (4096 bytes)
	// <nil> true
}
