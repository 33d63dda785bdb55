package devicemodel

// The DMA table: the server's record of the client's DMA_MAP messages and
// the device's way into the memory they describe.
//
// QEMU behind an emulated IOMMU maps guest memory one 4 KiB page per
// DMA_MAP message, each with the guest-memory fd and an offset, so the
// table must hold tens of thousands of entries and still translate an
// IOVA quickly. It keeps two sorted slices:
//
//   - entries: one per accepted DMA_MAP, for the exact-match DMA_UNMAP the
//     protocol requires and the overlap check (EEXIST);
//   - spans: the lookup index. A span is a run of entries that are
//     contiguous in IOVA, contiguous in the same file (same device and
//     inode, offsets following on), with the same permissions and whole
//     pages each; it is ONE mapping of that file, so an access inside a
//     span is a single copy however many entries made it. An entry without
//     an fd is a span of its own, reached with DMA_READ/DMA_WRITE.
//
// Lookups are binary searches over spans: O(log n). Mapping an entry that
// extends a span grows its mapping (mremap, moving it if it must, a
// pinned span's only in place) when it is the span's right neighbour, or
// maps the union afresh from the new fd and unmaps the old pieces
// otherwise (never a pinned span's); a sequential 4096-page map ends as
// one span. Unmapping an entry inside a span unmaps just its pages (munmap of
// the sub-range) and splits the span in two.
//
// Concurrency: one RWMutex. Device accesses hold it shared while they
// touch mapped memory; DMA_MAP and DMA_UNMAP hold it exclusively, so an
// unmap cannot complete (and the server does not reply) while an access to
// any mapped range is in flight, and after it the pages are gone. An
// unmap of pinned memory unlocks while the pins' holders let go (their
// release takes the lock); a second mutex, taken first, runs Map, Unmap,
// UnmapAll and Close one at a time, so what an unmap validated before it
// revoked a pin still holds when it goes on.
// Accesses to fd-less ranges release the lock before they send their
// DMA_READ/DMA_WRITE, so a slow client cannot stall DMA_UNMAP; the client
// refuses a DMA message for a range it has unmapped meanwhile.
//
// Memory the client truncates behind a mapping would fault (SIGBUS) on
// access; every access runs with debug.SetPanicOnFault and such a fault
// becomes a DMA fault instead of a crash.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/vfio"
)

// DMAMessenger moves bytes to and from client memory that was mapped
// without an fd, with DMA_READ and DMA_WRITE messages. The server
// provides it; it must be safe for concurrent use.
type DMAMessenger interface {
	ReadDMA(iova uint64, b []byte) error
	WriteDMA(iova uint64, b []byte) error
}

// DMAFaultError is a device access the table refused: an address not
// mapped, mapped without the permission, misaligned for a word access, or
// memory that faulted. It unwraps to ErrDMAFault.
type DMAFaultError struct {
	IOVA   uint64
	Len    int
	Write  bool
	Reason string
	Err    error // a cause, such as a DMA message's error; may be nil
}

func (e *DMAFaultError) Error() string {
	op := "read"
	if e.Write {
		op = "write"
	}
	s := fmt.Sprintf("devicemodel: DMA fault: %s of %d bytes at IOVA %#x: %s", op, e.Len, e.IOVA, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrDMAFault and the cause.
func (e *DMAFaultError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrDMAFault}
	}
	return []error{ErrDMAFault, e.Err}
}

// DMAStats describe a table. Tests and the QEMU tier assert on them.
type DMAStats struct {
	Maps         uint64 // DMA_MAP requests accepted
	MapErrors    uint64 // DMA_MAP requests refused
	Unmaps       uint64 // entries removed by DMA_UNMAP (UNMAP_ALL counts each)
	UnmapErrors  uint64 // DMA_UNMAP requests refused (bad range, no entry, an entry cut)
	Merges       uint64 // entries that joined a neighbouring span
	Entries      int    // entries held: accepted DMA_MAPs not yet unmapped
	Spans        int    // lookup spans after coalescing
	MessageSpans int    // spans without memory, reached with DMA messages
	MappedBytes  uint64 // bytes covered by entries
	Accesses     uint64 // device accesses served
	MessageDMA   uint64 // accesses (or parts) that went through DMA messages
	Faults       uint64 // device accesses refused
	Pins         uint64 // direct views handed out (Pin)
	Revokes      uint64 // pins an unmap took back from their holders
}

// DefaultMaxDMAEntries is the most entries a table holds unless told
// otherwise (the protocol's max_dma_maps default).
const DefaultMaxDMAEntries = 65535

type fileKey struct{ dev, ino uint64 }

type dmaEntry struct {
	iova, size uint64
	perm       vfio.Perm
}

func (e *dmaEntry) end() uint64 { return e.iova + e.size }

type dmaSpan struct {
	iova, size uint64
	perm       vfio.Perm
	mem        []byte // the bytes at iova, len size; nil: reached by messages
	vm         []byte // the pages this span unmaps: mem, or mem's page-aligned cover
	file       fileKey
	off        uint64 // file offset of iova
	align      uint64 // page size of the file's mapping; 0: never coalesces
	entries    int
	// pins are the holders of direct views of mem (Pin); while there
	// are any, the span's address must not change, so it is never mapped
	// afresh, and unmapping pages a pin views waits for it to let go.
	pins []*dmaPin
}

// dmaPin is one Pin: the range it views and the span that holds it (the
// part that keeps the range when an unmap elsewhere splits the span), how
// to ask its holder to let go, and a channel closed when it has.
type dmaPin struct {
	iova, size uint64
	span       *dmaSpan // under t.mu
	revoke     func()
	released   chan struct{}
	once       sync.Once
}

func (s *dmaSpan) end() uint64 { return s.iova + s.size }

// DMATable is the set of client memory a device may reach. The zero value
// is not usable; call NewDMATable.
type DMATable struct {
	msg        DMAMessenger
	maxEntries int
	page       uint64

	// change serializes the requests that change entries and spans
	// (Map, Unmap, UnmapAll, Close), held for the whole request, waits for
	// pins included; it is taken before mu. Pin, release and accesses
	// take only mu.
	change sync.Mutex

	mu      sync.RWMutex
	entries []dmaEntry // sorted by iova, disjoint
	spans   []*dmaSpan // sorted by iova, disjoint
	ends    []uint64   // ends[i] == spans[i].end(): the search key, kept flat for the cache
	bytes   uint64
	closed  bool

	maps, mapErrs, unmaps, unmapErrs, merges atomic.Uint64
	accesses, messageDMA, faults             atomic.Uint64
	pins, revokes                            atomic.Uint64
}

// NewDMATable returns an empty table. msg serves fd-less ranges (nil:
// accesses to them fault); maxEntries bounds the entries
// (DefaultMaxDMAEntries if 0 or less).
func NewDMATable(msg DMAMessenger, maxEntries int) *DMATable {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxDMAEntries
	}
	return &DMATable{msg: msg, maxEntries: maxEntries, page: uint64(os.Getpagesize())}
}

// Stats returns the counters and the current shape of the table.
func (t *DMATable) Stats() DMAStats {
	t.mu.RLock()
	s := DMAStats{Entries: len(t.entries), Spans: len(t.spans), MappedBytes: t.bytes}
	for _, sp := range t.spans {
		if sp.mem == nil {
			s.MessageSpans++
		}
	}
	t.mu.RUnlock()
	s.Maps, s.MapErrors = t.maps.Load(), t.mapErrs.Load()
	s.Unmaps, s.UnmapErrors = t.unmaps.Load(), t.unmapErrs.Load()
	s.Merges, s.Accesses = t.merges.Load(), t.accesses.Load()
	s.MessageDMA, s.Faults = t.messageDMA.Load(), t.faults.Load()
	s.Pins, s.Revokes = t.pins.Load(), t.revokes.Load()
	return s
}

// fileInfo is what Map learns about an fd before taking the lock.
type fileInfo struct {
	key   fileKey
	align uint64
}

// Map records a DMA_MAP: size bytes at iova, with the permissions perm,
// backed by fd from offset on, or by nothing when fd is -1 (the range is
// then reached with DMA messages). Map owns fd from the call on and closes
// it on every path (the mapping keeps the memory). It fails with an error
// wrapping EINVAL (bad range, flags or fd), EEXIST (overlaps an entry),
// EACCES (the fd does not allow perm), ENOSPC (table full) or the mmap
// error.
func (t *DMATable) Map(iova vfio.IOVA, size uint64, perm vfio.Perm, fd int, offset uint64) (err error) {
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil {
			t.mapErrs.Add(1)
			err = fmt.Errorf("devicemodel: map DMA [%#x, +%#x): %w", uint64(iova), size, err)
		} else {
			t.maps.Add(1)
		}
	}()
	a := uint64(iova)
	if size == 0 || a+size < a {
		return fmt.Errorf("empty or wrapping range: %w", unix.EINVAL)
	}
	if perm == 0 || perm&^(vfio.DMARead|vfio.DMAWrite) != 0 {
		return fmt.Errorf("permissions %#x: %w", uint32(perm), unix.EINVAL)
	}
	var fi fileInfo
	if fd >= 0 {
		if fi, err = t.checkFile(fd, offset, size, perm); err != nil {
			return err
		}
	} else if offset != 0 {
		// Harmless, but a client that sends it has lost its fd.
		return fmt.Errorf("file offset %#x without an fd: %w", offset, unix.EINVAL)
	}

	t.change.Lock()
	defer t.change.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("table closed: %w", unix.ESHUTDOWN)
	}
	if len(t.entries) >= t.maxEntries {
		return fmt.Errorf("%d entries held, the most this server takes: %w", len(t.entries), unix.ENOSPC)
	}
	ei := sort.Search(len(t.entries), func(i int) bool { return t.entries[i].end() > a })
	if ei < len(t.entries) && t.entries[ei].iova < a+size {
		o := t.entries[ei]
		return fmt.Errorf("overlaps [%#x, +%#x): %w", o.iova, o.size, unix.EEXIST)
	}
	e := dmaEntry{iova: a, size: size, perm: perm}
	if fd < 0 {
		t.insertSpan(&dmaSpan{iova: a, size: size, perm: perm, entries: 1})
	} else if err := t.mapFile(fd, fi, e, offset); err != nil {
		return err
	}
	t.entries = slices.Insert(t.entries, ei, e)
	t.bytes += size
	return nil
}

// checkFile checks that fd is a memory file at least offset+size long
// that allows perm, and finds its identity and page size.
func (t *DMATable) checkFile(fd int, offset, size uint64, perm vfio.Perm) (fileInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileInfo{}, fmt.Errorf("stat fd: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileInfo{}, fmt.Errorf("fd is not a memory file (mode %#o): %w", st.Mode, unix.EINVAL)
	}
	if offset+size < offset || offset+size > math.MaxInt64 || st.Size < 0 || uint64(st.Size) < offset+size {
		return fileInfo{}, fmt.Errorf("file offset %#x + %#x runs past the file's %d bytes: %w", offset, size, st.Size, unix.EINVAL)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return fileInfo{}, fmt.Errorf("fd flags: %w", err)
	}
	switch mode := fl & unix.O_ACCMODE; {
	case mode == unix.O_WRONLY, mode == unix.O_RDONLY && perm&vfio.DMAWrite != 0:
		return fileInfo{}, fmt.Errorf("fd opened with access mode %d does not allow permissions %#x: %w", mode, uint32(perm), unix.EACCES)
	}
	align := t.page
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err == nil && uint32(sfs.Type) == unix.HUGETLBFS_MAGIC && sfs.Bsize > 0 {
		// hugetlbfs maps whole huge pages only.
		align = uint64(sfs.Bsize)
	}
	return fileInfo{key: fileKey{dev: st.Dev, ino: st.Ino}, align: align}, nil
}

func prot(perm vfio.Perm) int {
	p := 0
	if perm&vfio.DMARead != 0 {
		p |= unix.PROT_READ
	}
	if perm&vfio.DMAWrite != 0 {
		p |= unix.PROT_WRITE
	}
	return p
}

// mapFile maps entry e from fd at offset, joining neighbouring spans when
// it can. t.mu held.
func (t *DMATable) mapFile(fd int, fi fileInfo, e dmaEntry, offset uint64) error {
	whole := offset%fi.align == 0 && e.size%fi.align == 0
	si := t.spanAfter(e.iova) // e overlaps nothing: spans[si] is the first after it
	var left, right *dmaSpan
	if whole {
		if si > 0 {
			if l := t.spans[si-1]; l.end() == e.iova && joinable(l, fi, e.perm) && l.off+l.size == offset {
				left = l
			}
		}
		if si < len(t.spans) {
			if r := t.spans[si]; r.iova == e.end() && joinable(r, fi, e.perm) && offset+e.size == r.off {
				right = r
			}
		}
	}
	if left != nil && right == nil {
		// The common case, a sequential map: grow the left span's
		// mapping over the file's next pages. A pinned span grows only
		// in place: its holders keep the address (moving it would leave
		// them a view of unmapped, or later reused, addresses).
		if mem, err := mremapGrow(left.vm, int(left.size+e.size), len(left.pins) == 0); err == nil {
			left.vm, left.mem = mem, mem
			left.size += e.size
			left.entries++
			t.ends[si-1] = left.end()
			t.merges.Add(1)
			return nil
		}
		// Fall back to mapping the union afresh.
	}
	if left != nil && len(left.pins) > 0 || right != nil && len(right.pins) > 0 {
		// Mapping afresh would move a pinned span: keep e on its own.
		left, right = nil, nil
	}
	if left != nil || right != nil {
		lo, loOff, n, entries := e.iova, offset, e.size, 1
		if left != nil {
			lo, loOff, n, entries = left.iova, left.off, n+left.size, entries+left.entries
		}
		if right != nil {
			n, entries = n+right.size, entries+right.entries
		}
		mem, err := mmapShared(fd, int64(loOff), int(n), prot(e.perm))
		if err == nil {
			for _, s := range []*dmaSpan{left, right} {
				if s != nil {
					// munmap of a range we mapped cannot fail
					// short of a bug; if it did, the old pages
					// would stay mapped (leaked), and the new
					// span is consistent either way.
					_ = munmapBytes(s.vm)
				}
			}
			ns := &dmaSpan{iova: lo, size: n, perm: e.perm, mem: mem, vm: mem, file: fi.key, off: loOff, align: fi.align, entries: entries}
			first := si
			if left != nil {
				first = si - 1
			}
			count := 0
			if left != nil {
				count++
			}
			if right != nil {
				count++
			}
			t.replaceSpans(first, count, ns)
			t.merges.Add(1)
			return nil
		}
		// Cannot map the union: keep the entry on its own.
	}
	pageOff := offset % t.page
	if fi.align > t.page {
		pageOff = offset % fi.align
	}
	vmLen := e.size + pageOff
	if r := vmLen % fi.align; r != 0 {
		vmLen += fi.align - r
	}
	if vmLen > math.MaxInt {
		return fmt.Errorf("mapping of %d bytes: %w", vmLen, unix.EINVAL)
	}
	vm, err := mmapShared(fd, int64(offset-pageOff), int(vmLen), prot(e.perm))
	if err != nil {
		return fmt.Errorf("mmap %d bytes of the fd at %#x: %w", vmLen, offset-pageOff, err)
	}
	s := &dmaSpan{iova: e.iova, size: e.size, perm: e.perm, vm: vm, mem: vm[pageOff : pageOff+e.size : pageOff+e.size],
		file: fi.key, off: offset, entries: 1}
	if whole {
		s.align = fi.align
	}
	t.replaceSpans(si, 0, s)
	return nil
}

func joinable(s *dmaSpan, fi fileInfo, perm vfio.Perm) bool {
	return s.mem != nil && s.align != 0 && s.align == fi.align && s.file == fi.key && s.perm == perm
}

func (t *DMATable) insertSpan(s *dmaSpan) {
	t.replaceSpans(t.spanAfter(s.iova), 0, s)
}

// replaceSpans replaces n spans from i with the spans given, in order.
// t.mu held.
func (t *DMATable) replaceSpans(i, n int, with ...*dmaSpan) {
	t.spans = slices.Replace(t.spans, i, i+n, with...)
	ends := make([]uint64, len(with))
	for j, s := range with {
		ends[j] = s.end()
	}
	t.ends = slices.Replace(t.ends, i, i+n, ends...)
}

// Unmap removes the entries mapped at [iova, iova+size), which must take
// whole entries (one or many, with holes between them): their pages are
// unmapped before Unmap returns, after every device access in flight has
// finished and every pin on their spans has been released. A range that
// is empty or wraps, or cuts an entry, is an error wrapping EINVAL; one
// that holds no entry, ENOENT. A refused unmap changes nothing: it is
// validated before any pin is revoked.
func (t *DMATable) Unmap(iova vfio.IOVA, size uint64) error {
	a := uint64(iova)
	t.change.Lock()
	defer t.change.Unlock()
	var ei, ej int
	err := t.lockUnpinned(a, size, func() (err error) {
		ei, ej, err = t.unmapRangeLocked(a, size)
		return err
	})
	defer t.mu.Unlock()
	if err != nil {
		t.unmapErrs.Add(1)
		return fmt.Errorf("devicemodel: unmap DMA [%#x, +%#x): %w", a, size, err)
	}
	var errs []error
	for n := ej - ei; n > 0; n-- {
		if err := t.unmapEntryLocked(ei); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unmapRangeLocked validates an unmap of [a, a+size) and returns the
// entries it takes, entries[ei:ej]. It changes nothing. t.mu held.
func (t *DMATable) unmapRangeLocked(a, size uint64) (ei, ej int, err error) {
	last := a + (size - 1) // inclusive: QEMU unmaps up to the top of the address space
	if size == 0 || last < a {
		return 0, 0, fmt.Errorf("empty or wrapping range: %w", unix.EINVAL)
	}
	// The range must take whole entries, one or many (QEMU behind an
	// IOMMU may unmap in one message what it mapped a page at a time), as
	// the kernel's type1 IOMMU requires: no entry may be cut.
	ei = sort.Search(len(t.entries), func(i int) bool { return t.entries[i].iova+t.entries[i].size > a })
	ej = ei
	for ej < len(t.entries) && t.entries[ej].iova <= last {
		ej++
	}
	switch {
	case ei == ej:
		return 0, 0, fmt.Errorf("nothing is mapped there: %w", unix.ENOENT)
	case t.entries[ei].iova < a || t.entries[ej-1].iova+(t.entries[ej-1].size-1) > last:
		return 0, 0, fmt.Errorf("the range cuts an entry: %w", unix.EINVAL)
	}
	return ei, ej, nil
}

// unmapEntryLocked removes entry ei, unmapping its pages and splitting its
// span if the span has other entries; the span's pins, none of which views
// the entry (lockUnpinned saw to that), go with the part that holds their
// range. t.mu held.
func (t *DMATable) unmapEntryLocked(ei int) error {
	a, size := t.entries[ei].iova, t.entries[ei].size
	si := t.spanAt(a)
	s := t.spans[si]
	var err error
	if s.entries == 1 {
		err = munmapBytes(s.vm)
		t.replaceSpans(si, 1)
	} else {
		// Whole pages of a coalesced span: unmap them and split.
		at := a - s.iova
		err = munmapBytes(s.mem[at : at+size])
		first := sort.Search(len(t.entries), func(i int) bool { return t.entries[i].iova >= s.iova })
		var parts []*dmaSpan
		if at > 0 {
			parts = append(parts, &dmaSpan{iova: s.iova, size: at, perm: s.perm, mem: s.mem[:at:at], vm: s.mem[:at:at],
				file: s.file, off: s.off, align: s.align, entries: ei - first})
		}
		if rest := s.size - at - size; rest > 0 {
			m := s.mem[at+size:]
			parts = append(parts, &dmaSpan{iova: a + size, size: rest, perm: s.perm, mem: m, vm: m,
				file: s.file, off: s.off + at + size, align: s.align, entries: s.entries - 1 - (ei - first)})
		}
		for _, p := range s.pins {
			for _, part := range parts {
				if part.iova <= p.iova && p.iova < part.end() {
					p.span = part
					part.pins = append(part.pins, p)
				}
			}
		}
		t.replaceSpans(si, 1, parts...)
	}
	t.entries = slices.Delete(t.entries, ei, ei+1)
	t.bytes -= size
	t.unmaps.Add(1)
	if err != nil {
		return fmt.Errorf("devicemodel: unmap DMA [%#x, +%#x): munmap: %w", a, size, err)
	}
	return nil
}

// UnmapAll removes every entry (DMA_UNMAP with UNMAP_ALL, and a client
// that goes away).
func (t *DMATable) UnmapAll() error {
	t.change.Lock()
	defer t.change.Unlock()
	_ = t.lockUnpinned(0, 0, nil) // no check: never refused
	defer t.mu.Unlock()
	return t.unmapAllLocked()
}

// unmapAllLocked unmaps every span and forgets every entry. t.mu held.
func (t *DMATable) unmapAllLocked() error {
	var errs []error
	for _, s := range t.spans {
		if err := munmapBytes(s.vm); err != nil {
			errs = append(errs, fmt.Errorf("devicemodel: unmap DMA span [%#x, +%#x): %w", s.iova, s.size, err))
		}
	}
	t.unmaps.Add(uint64(len(t.entries)))
	t.spans, t.ends, t.entries, t.bytes = nil, nil, nil, 0
	return errors.Join(errs...)
}

// Close unmaps everything; later maps are refused and accesses fault.
func (t *DMATable) Close() error {
	t.change.Lock() // a Map waiting for it finds the table closed
	defer t.change.Unlock()
	_ = t.lockUnpinned(0, 0, nil) // no check: never refused
	defer t.mu.Unlock()
	t.closed = true
	return t.unmapAllLocked()
}

// Pin returns host memory [iova, iova+size) as one slice the device can
// use directly, without a table lookup per access, if the range is
// memory-backed, lies in one span, and that span allows perm. The view
// stays valid until the holder calls release: until then the span's
// address does not change, and an unmap of any of the pinned bytes first
// calls revoke (from the unmapping goroutine, at most once), then waits
// for release; an unmap of other pages of the span leaves the view alone
// (the span's remaining pages keep their addresses). revoke must make the holder stop touching the slice and call
// release soon, without calling into the table. Accesses through the
// slice are the holder's to guard against faults (debug.SetPanicOnFault).
func (t *DMATable) Pin(iova vfio.IOVA, size uint64, perm vfio.Perm, revoke func()) (b []byte, release func(), err error) {
	a := uint64(iova)
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.spanAt(a)
	if i < 0 || size == 0 || a+size < a {
		return nil, nil, t.fault(a, int(min(size, math.MaxInt32)), perm&vfio.DMAWrite != 0, nil, "pin: not mapped")
	}
	s := t.spans[i]
	if s.mem == nil || s.end()-a < size || s.perm&perm != perm {
		return nil, nil, fmt.Errorf("%w: pin [%#x, +%#x): not one memory-backed span with permissions %#x",
			ErrDMAFault, a, size, uint32(perm))
	}
	p := &dmaPin{iova: a, size: size, span: s, revoke: revoke, released: make(chan struct{})}
	s.pins = append(s.pins, p)
	t.pins.Add(1)
	release = func() {
		p.once.Do(func() {
			t.mu.Lock()
			p.span.pins = slices.DeleteFunc(p.span.pins, func(q *dmaPin) bool { return q == p })
			t.mu.Unlock()
			close(p.released)
		})
	}
	off := a - s.iova
	return s.mem[off : off+size : off+size], release, nil
}

// lockUnpinned locks t.mu and returns holding it, either with the error
// of check, which refused the request, or with nil once no pin views any
// of [a, a+size) (size 0: no pin is left at all). check (nil: the
// request is never refused) runs with t.mu held and must change nothing;
// it runs before any pin is revoked, so a refused request revokes none.
// While there are such pins lockUnpinned collects them (pinsLocked),
// unlocks, has their holders let go (revoke) and locks again.
//
// While t.mu is unlocked, Pin may add pins and release remove them; so
// every round looks again, and check runs again, so that the request's
// validation and its effect happen under one hold of t.mu. The caller
// holds t.change, so no other request changes entries or spans meanwhile:
// check cannot refuse in a later round what it accepted in the first, and
// no refusal follows a revoke. The caller reads the table only after
// lockUnpinned returns.
func (t *DMATable) lockUnpinned(a, size uint64, check func() error) error {
	t.mu.Lock()
	for {
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		pins := t.pinsLocked(a, size)
		if len(pins) == 0 {
			return nil
		}
		t.mu.Unlock()
		t.revoke(pins)
		t.mu.Lock()
	}
}

// pinsLocked returns the pins that view any of [a, a+size) (size 0:
// every pin). t.mu held.
func (t *DMATable) pinsLocked(a, size uint64) []*dmaPin {
	var pins []*dmaPin
	for _, s := range t.spans {
		if len(s.pins) == 0 || size != 0 && (s.iova > a+(size-1) || a > s.end()-1) {
			continue
		}
		for _, p := range s.pins {
			if size == 0 || p.iova <= a+(size-1) && a <= p.iova+(p.size-1) {
				pins = append(pins, p)
			}
		}
	}
	return pins
}

// revoke asks the holder of each pin to let go and waits until it has
// (its release closed p.released). Not with t.mu held: release takes it.
func (t *DMATable) revoke(pins []*dmaPin) {
	for _, p := range pins {
		if p.revoke != nil {
			p.revoke()
		}
		<-p.released
	}
	t.revokes.Add(uint64(len(pins)))
}

// spanAt returns the index of the span holding addr, or -1. t.mu held.
func (t *DMATable) spanAt(addr uint64) int {
	i := t.spanAfter(addr)
	if i < len(t.spans) && t.spans[i].iova <= addr {
		return i
	}
	return -1
}

// spanAfter returns the index of the first span that ends after addr.
// t.mu held.
func (t *DMATable) spanAfter(addr uint64) int {
	lo, hi := 0, len(t.ends)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.ends[m] > addr {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// ---------------------------------------------------------------------------
// Device accesses

func (t *DMATable) fault(addr uint64, n int, write bool, err error, format string, args ...any) error {
	t.faults.Add(1)
	return &DMAFaultError{IOVA: addr, Len: n, Write: write, Reason: fmt.Sprintf(format, args...), Err: err}
}

// guard runs f, turning a memory fault inside it (a mapping whose file
// the client truncated) into false instead of a crash.
func guard(f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, isFault := r.(interface{ Addr() uintptr }); !isFault {
				panic(r)
			}
			ok = false
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	f()
	return true
}

// segment is a piece of an access that goes through DMA messages.
type segment struct {
	iova uint64
	b    []byte
}

// Read copies host memory at iova into b.
func (t *DMATable) Read(iova vfio.IOVA, b []byte) error { return t.access(uint64(iova), b, false) }

// Write copies b into host memory at iova.
func (t *DMATable) Write(iova vfio.IOVA, b []byte) error { return t.access(uint64(iova), b, true) }

// access checks the whole range [addr, addr+len(b)) first (mapped by
// adjacent spans, each with the permission), copies the memory-backed
// parts under the shared lock, then moves the fd-less parts with DMA
// messages after releasing it. A refused access touches nothing.
func (t *DMATable) access(addr uint64, b []byte, write bool) error {
	if len(b) == 0 {
		return nil
	}
	t.accesses.Add(1)
	end := addr + uint64(len(b))
	if end < addr {
		return t.fault(addr, len(b), write, nil, "range wraps around")
	}
	need := vfio.DMARead
	if write {
		need = vfio.DMAWrite
	}
	t.mu.RLock()
	i := t.spanAt(addr)
	if i < 0 {
		t.mu.RUnlock()
		return t.fault(addr, len(b), write, nil, "not mapped")
	}
	nmsg := 0
	for j, at := i, addr; at < end; j++ {
		if j >= len(t.spans) || (j > i && t.spans[j].iova != at) {
			t.mu.RUnlock()
			return t.fault(addr, len(b), write, nil, "not mapped from %#x", at)
		}
		s := t.spans[j]
		if s.perm&need == 0 {
			t.mu.RUnlock()
			return t.fault(addr, len(b), write, nil, "[%#x, +%#x) is mapped without that permission", s.iova, s.size)
		}
		if s.mem == nil {
			nmsg++
		}
		at = s.end()
	}
	var msgs []segment
	if nmsg > 0 {
		msgs = make([]segment, 0, nmsg)
	}
	ok := guard(func() {
		for j, at := i, addr; at < end; j++ {
			s := t.spans[j]
			n := min(s.end(), end) - at
			p := b[at-addr : at-addr+n]
			switch {
			case s.mem == nil:
				msgs = append(msgs, segment{at, p})
			case write:
				copy(s.mem[at-s.iova:], p)
			default:
				copy(p, s.mem[at-s.iova:])
			}
			at += n
		}
	})
	t.mu.RUnlock()
	if !ok {
		return t.fault(addr, len(b), write, nil, "host memory faulted (file truncated behind the mapping?)")
	}
	for _, m := range msgs {
		if err := t.message(m.iova, m.b, write); err != nil {
			return t.fault(m.iova, len(m.b), write, err, "DMA message failed")
		}
	}
	return nil
}

func (t *DMATable) message(addr uint64, b []byte, write bool) error {
	if t.msg == nil {
		return errors.New("no DMA messenger")
	}
	t.messageDMA.Add(1)
	if write {
		return t.msg.WriteDMA(addr, b)
	}
	return t.msg.ReadDMA(addr, b)
}

// rlockWord takes t.mu shared and finds the span for a naturally aligned
// word access. On success it returns still holding t.mu shared, with
// either s.mem set (access it directly, then unlock) or not (unlock and
// use a message); on failure it does not hold t.mu.
func (t *DMATable) rlockWord(addr uint64, size int, write bool) (*dmaSpan, error) {
	t.accesses.Add(1)
	if addr%uint64(size) != 0 {
		return nil, t.fault(addr, size, write, nil, "%d-byte word access is not naturally aligned", size)
	}
	need := vfio.DMARead
	if write {
		need = vfio.DMAWrite
	}
	t.mu.RLock()
	i := t.spanAt(addr)
	if i < 0 {
		t.mu.RUnlock()
		return nil, t.fault(addr, size, write, nil, "not mapped")
	}
	s := t.spans[i]
	if s.end()-addr < uint64(size) {
		// An aligned word never crosses a page, so never a coalesced
		// span boundary; only an odd-sized entry ends mid-word.
		t.mu.RUnlock()
		return nil, t.fault(addr, size, write, nil, "word runs past the end of [%#x, +%#x)", s.iova, s.size)
	}
	if s.perm&need == 0 {
		t.mu.RUnlock()
		return nil, t.fault(addr, size, write, nil, "[%#x, +%#x) is mapped without that permission", s.iova, s.size)
	}
	if s.mem != nil && !aligned(s.mem, addr-s.iova, size) {
		t.mu.RUnlock()
		return nil, t.fault(addr, size, write, nil, "the client mapped this IOVA at a file offset that misaligns the word")
	}
	return s, nil
}

// Load32 reads the aligned 32-bit word at iova as one atomic load. A
// range without memory is read with a 4-byte DMA_READ (not atomic).
func (t *DMATable) Load32(iova vfio.IOVA) (uint32, error) {
	var b [4]byte
	err := t.wordAccess(uint64(iova), b[:], false, func(mem []byte, off uint64) {
		binary.LittleEndian.PutUint32(b[:], load32(mem, off))
	})
	return binary.LittleEndian.Uint32(b[:]), err
}

// Store32 writes the aligned 32-bit word at iova as one atomic store.
func (t *DMATable) Store32(iova vfio.IOVA, v uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return t.wordAccess(uint64(iova), b[:], true, func(mem []byte, off uint64) { store32(mem, off, v) })
}

// Load64 reads the aligned 64-bit word at iova as one atomic load.
func (t *DMATable) Load64(iova vfio.IOVA) (uint64, error) {
	var b [8]byte
	err := t.wordAccess(uint64(iova), b[:], false, func(mem []byte, off uint64) {
		binary.LittleEndian.PutUint64(b[:], load64(mem, off))
	})
	return binary.LittleEndian.Uint64(b[:]), err
}

// Store64 writes the aligned 64-bit word at iova as one atomic store.
func (t *DMATable) Store64(iova vfio.IOVA, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return t.wordAccess(uint64(iova), b[:], true, func(mem []byte, off uint64) { store64(mem, off, v) })
}

// wordAccess reads or writes the word b at a: through direct, on mapped
// memory at offset off, as one atomic access; or, for a range without
// memory, with a DMA message of len(b) bytes.
func (t *DMATable) wordAccess(a uint64, b []byte, write bool, direct func(mem []byte, off uint64)) error {
	s, err := t.rlockWord(a, len(b), write)
	if err != nil {
		return err
	}
	if s.mem == nil {
		t.mu.RUnlock()
		if err := t.message(a, b, write); err != nil {
			return t.fault(a, len(b), write, err, "DMA message failed")
		}
		return nil
	}
	ok := guard(func() { direct(s.mem, a-s.iova) })
	t.mu.RUnlock()
	if !ok {
		return t.fault(a, len(b), write, nil, "host memory faulted")
	}
	return nil
}
