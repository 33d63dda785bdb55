package dma

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"
)

// IOVA allocation errors; the errors returned wrap them with detail.
var (
	// ErrIOVAExhausted: no free range is large enough at the alignment
	// asked for.
	ErrIOVAExhausted = errors.New("dma: IOVA space exhausted")
	// ErrIOVAInUse: a range to reserve overlaps one already allocated or
	// reserved.
	ErrIOVAInUse = errors.New("dma: IOVA range in use")
	// ErrIOVANotAllocated: Free of an address that starts no allocation
	// (never allocated, or freed already).
	ErrIOVANotAllocated = errors.New("dma: IOVA not allocated")
)

// IOVAAllocator hands out ranges of an IO virtual address window
// [base, limit): the addresses a device is given for memory mapped into
// its IOMMU. Every range is aligned to the allocator's alignment (a page,
// usually) and its size rounded up to a multiple of it; AllocAligned
// asks for more (2 MiB for a huge-page buffer). Allocation is first fit
// from the bottom; Free returns a range and merges it with free
// neighbours, so the free list stays as short as the holes are few.
//
// It only does arithmetic: mapping the memory (vfio.Device.MapDMA) is the
// caller's job. The window comes from the IOMMU (the kernel backend's
// IOVARanges); holes in it, such as the x86 MSI window, are taken out
// with Reserve. Its methods are safe for concurrent use.
type IOVAAllocator struct {
	base, limit uint64
	align       uint64

	mu sync.Mutex
	// free holds the free spans sorted by start, none empty and no two
	// touching (they would have been merged).
	free []iovaSpan
	// used maps the start of each allocated or reserved range to its size.
	used      map[uint64]uint64
	freeBytes uint64
}

// iovaSpan is [start, end).
type iovaSpan struct{ start, end uint64 }

// NewIOVAAllocator manages [base, limit). align must be a power of two
// (0 means PageSize), and base and limit multiples of it.
func NewIOVAAllocator(base, limit, align uint64) (*IOVAAllocator, error) {
	if align == 0 {
		align = PageSize
	}
	if bits.OnesCount64(align) != 1 {
		return nil, fmt.Errorf("%w: IOVA alignment %#x is not a power of two", ErrInvalid, align)
	}
	if base%align != 0 || limit%align != 0 || base >= limit {
		return nil, fmt.Errorf("%w: IOVA window [%#x, %#x) is empty or not aligned to %#x", ErrInvalid, base, limit, align)
	}
	return &IOVAAllocator{
		base:      base,
		limit:     limit,
		align:     align,
		free:      []iovaSpan{{base, limit}},
		used:      map[uint64]uint64{},
		freeBytes: limit - base,
	}, nil
}

// Base and Limit bound the window: [Base, Limit).
func (a *IOVAAllocator) Base() uint64 { return a.base }

// Limit is the end of the window, exclusive.
func (a *IOVAAllocator) Limit() uint64 { return a.limit }

// Align is the alignment of every range, and the unit sizes round up to.
func (a *IOVAAllocator) Align() uint64 { return a.align }

// roundSize rounds size up to the allocator's alignment.
func (a *IOVAAllocator) roundSize(size uint64) (uint64, error) {
	if size == 0 {
		return 0, fmt.Errorf("%w: IOVA size 0", ErrInvalid)
	}
	r := (size + a.align - 1) &^ (a.align - 1)
	if r < size || r > a.limit-a.base {
		return 0, fmt.Errorf("%w: %#x bytes do not fit the %#x-byte IOVA window", ErrIOVAExhausted, size, a.limit-a.base)
	}
	return r, nil
}

// Alloc takes a free range of size bytes (rounded up to Align) and
// returns its start.
func (a *IOVAAllocator) Alloc(size uint64) (uint64, error) { return a.AllocAligned(size, a.align) }

// AllocAligned is Alloc with the start aligned to align, a power of two
// (HugePageSize for a buffer on huge pages, so the IOMMU can map it with
// large pages). An alignment below Align is raised to it.
func (a *IOVAAllocator) AllocAligned(size, align uint64) (uint64, error) {
	if bits.OnesCount64(align) != 1 {
		return 0, fmt.Errorf("%w: IOVA alignment %#x is not a power of two", ErrInvalid, align)
	}
	align = max(align, a.align)
	size, err := a.roundSize(size)
	if err != nil {
		return 0, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, s := range a.free {
		start := (s.start + align - 1) &^ (align - 1)
		if start < s.start || start >= s.end || s.end-start < size {
			continue // alignment wrapped, or the span is too small
		}
		a.take(i, start, start+size)
		return start, nil
	}
	return 0, fmt.Errorf("%w: no free range of %#x bytes aligned to %#x (%#x bytes free, the largest run %#x)",
		ErrIOVAExhausted, size, align, a.freeBytes, a.largestLocked())
}

// Reserve takes [start, start+size) out of the free space, so that Alloc
// never returns it: a window the IOMMU will not map, or a range the
// caller places itself. start must be aligned; size is rounded up. Free
// gives it back like an allocation.
func (a *IOVAAllocator) Reserve(start, size uint64) error {
	rounded := (size + a.align - 1) &^ (a.align - 1)
	if size == 0 || rounded < size {
		return fmt.Errorf("%w: IOVA range of %#x bytes at %#x", ErrInvalid, size, start)
	}
	size = rounded
	if start%a.align != 0 || start < a.base || start > a.limit || size > a.limit-start {
		return fmt.Errorf("%w: IOVA range [%#x, +%#x) is unaligned or outside [%#x, %#x)", ErrInvalid, start, size, a.base, a.limit)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := a.spanOf(start)
	if !ok || a.free[i].end-start < size {
		return fmt.Errorf("%w: [%#x, %#x) overlaps an allocated or reserved range", ErrIOVAInUse, start, start+size)
	}
	a.take(i, start, start+size)
	return nil
}

// Free returns the range that starts at start, which Alloc, AllocAligned
// or Reserve handed out and nothing freed since.
func (a *IOVAAllocator) Free(start uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	size, ok := a.used[start]
	if !ok {
		return fmt.Errorf("%w: %#x", ErrIOVANotAllocated, start)
	}
	delete(a.used, start)
	a.freeBytes += size
	end := start + size
	// The first span after the range; the one before it, if any, is i-1.
	i, _ := slices.BinarySearchFunc(a.free, start, func(s iovaSpan, t uint64) int {
		switch {
		case s.start < t:
			return -1
		case s.start > t:
			return 1
		}
		return 0
	})
	joinPrev := i > 0 && a.free[i-1].end == start
	joinNext := i < len(a.free) && a.free[i].start == end
	switch {
	case joinPrev && joinNext:
		a.free[i-1].end = a.free[i].end
		a.free = slices.Delete(a.free, i, i+1)
	case joinPrev:
		a.free[i-1].end = end
	case joinNext:
		a.free[i].start = start
	default:
		a.free = slices.Insert(a.free, i, iovaSpan{start, end})
	}
	return nil
}

// Size returns the size of the range that starts at start, as rounded
// when it was handed out.
func (a *IOVAAllocator) Size(start uint64) (uint64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, ok := a.used[start]
	return n, ok
}

// FreeBytes is the number of bytes not allocated or reserved.
func (a *IOVAAllocator) FreeBytes() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.freeBytes
}

// Allocated is the number of ranges allocated or reserved.
func (a *IOVAAllocator) Allocated() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.used)
}

// spanOf finds the free span that holds addr.
func (a *IOVAAllocator) spanOf(addr uint64) (int, bool) {
	i, found := slices.BinarySearchFunc(a.free, addr, func(s iovaSpan, t uint64) int {
		switch {
		case s.end <= t:
			return -1
		case s.start > t:
			return 1
		}
		return 0
	})
	return i, found
}

// take removes [start, end), which lies inside free span i, from the free
// list and records it as used.
func (a *IOVAAllocator) take(i int, start, end uint64) {
	s := a.free[i]
	switch {
	case s.start == start && s.end == end:
		a.free = slices.Delete(a.free, i, i+1)
	case s.start == start:
		a.free[i].start = end
	case s.end == end:
		a.free[i].end = start
	default:
		a.free[i].end = start
		a.free = slices.Insert(a.free, i+1, iovaSpan{end, s.end})
	}
	a.used[start] = end - start
	a.freeBytes -= end - start
}

func (a *IOVAAllocator) largestLocked() uint64 {
	var m uint64
	for _, s := range a.free {
		m = max(m, s.end-s.start)
	}
	return m
}

// check verifies the allocator's invariants: free spans sorted, non-empty,
// apart and inside the window; used ranges aligned, inside the window and
// disjoint from each other and from the free spans; free plus used bytes
// fill the window.
func (a *IOVAAllocator) check() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	type span struct {
		iovaSpan
		used bool
	}
	var all []span
	var freeSum uint64
	for i, s := range a.free {
		if s.start >= s.end || s.start < a.base || s.end > a.limit {
			return fmt.Errorf("free span %d [%#x, %#x) is empty or outside [%#x, %#x)", i, s.start, s.end, a.base, a.limit)
		}
		if i > 0 && a.free[i-1].end >= s.start {
			return fmt.Errorf("free spans %d and %d touch or are out of order", i-1, i)
		}
		freeSum += s.end - s.start
		all = append(all, span{s, false})
	}
	if freeSum != a.freeBytes {
		return fmt.Errorf("free spans hold %#x bytes, the count says %#x", freeSum, a.freeBytes)
	}
	usedSum := uint64(0)
	for start, size := range a.used {
		if size == 0 || start%a.align != 0 || size%a.align != 0 || start < a.base || start > a.limit || size > a.limit-start {
			return fmt.Errorf("used range [%#x, +%#x) is empty, unaligned or outside the window", start, size)
		}
		usedSum += size
		all = append(all, span{iovaSpan{start, start + size}, true})
	}
	slices.SortFunc(all, func(x, y span) int {
		switch {
		case x.start < y.start:
			return -1
		case x.start > y.start:
			return 1
		}
		return 0
	})
	for i := 1; i < len(all); i++ {
		if all[i-1].end > all[i].start {
			return fmt.Errorf("[%#x, %#x) overlaps [%#x, %#x)", all[i-1].start, all[i-1].end, all[i].start, all[i].end)
		}
	}
	if freeSum+usedSum != a.limit-a.base {
		return fmt.Errorf("free %#x + used %#x bytes != the window's %#x", freeSum, usedSum, a.limit-a.base)
	}
	return nil
}
