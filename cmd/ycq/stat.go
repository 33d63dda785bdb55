package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/hostdriver"
	"github.com/ycq-dev/ycq/ipc"
	"github.com/ycq-dev/ycq/ring"
)

// ycq stat reads the metadata region of live queues without joining them:
// each region is mapped PROT_READ (a descriptor opened read-only, so the
// kernel refuses any write), read, and unmapped again within one refresh.

const statHelp = `usage: ycq stat [-json] [-watch D [-count N]] SOURCE...

Reads live queues without joining them (a read-only mapping; nothing is
written) and prints, for each queue, its header, both cursors, the records
in flight (ready, as the stamps say, of the positions reserved: Ready/Len),
the fill level, the sleepers on its wake lines, Queue.Check, and every
counter, with the rate of each between refreshes under -watch.

Sources (each may be given more than once, and mixed):
  -socket PATH  a running "ycq ipc serve": asks it over its socket for the
                queues of the session it serves, and gets a read-only
                descriptor of each metadata region
  -shm NAME     a /dev/shm region: NAME itself, NAME.up.meta and
                NAME.down.meta, or NAME.N.{up,down}.meta for every session N
                of "ycq ipc serve -shm NAME". That server removes the names
                once a client has joined; a removed name is found through
                the processes that still hold it open (/proc/PID/fd, same
                user or root)
  -file PATH    a file or descriptor path (/proc/PID/fd/N, /dev/fd/N) that
                holds a metadata region at -offset; with -scan, every queue
                found at a page boundary in it
  -pid PID      every queue in the memory files of a process that are named
                ycq-* (memfds: the host driver's ycq-hostdriver, a device
                model's ycq-bar2, ycq ipc serve's ycq-ipc.*), as -scan finds
                them (same user or root), and a resizable host driver's
                resize counters (its memfd ycq-resizes: each pair's resizes
                started, completed, rolled back and failed, and the time
                spent draining)

"ycq device serve" is no source of its own, and has no stat request (its
socket speaks vfio-user). The device model keeps no queues: they live in
the host driver's DMA memory, which it maps and does not keep a descriptor
of. Read them from the process that drives the device: ycq stat -pid PID of
"ycq run" (its memfd ycq-hostdriver). With "ycq run -bar2" the metadata
lives in the device's BAR2 instead, the memfd ycq-bar2 of the device
model's process: ycq stat -pid PID of "ycq device serve".

Flags:
`

// statQueue is one queue as one refresh read it.
type statQueue struct {
	key     string // the queue's identity across refreshes, for rates
	label   string // what the table calls it
	source  string // "socket", "shm" or "file"
	path    string // the socket, file or region name
	offset  int64
	served  *ipc.ServedQueue // what the server said, for -socket
	holder  int              // the pid whose descriptor reached a removed name
	header  statHeader
	stats   ring.Stats
	len     int
	ready   int
	check   error
	waiters struct{ items, space uint32 }
	sealed  bool     // a resizable queue's generation that a resize sealed
	link    statLink // a resizable queue's link line
	at      time.Time
}

// statLink is a resizable queue's link line as read.
type statLink struct {
	Next  uint32 `json:"next"`  // the next generation, 0 until named
	Slots uint32 `json:"slots"` // its slot count
	Left  uint32 `json:"left"`  // the consumers' word: next, once they moved on
}

// statHeader is the header line as read.
type statHeader struct {
	Magic          string `json:"magic"`
	Version        uint32 `json:"version"`
	Features       uint32 `json:"features"`
	SingleProducer bool   `json:"single_producer"`
	SingleConsumer bool   `json:"single_consumer"`
	Resizable      bool   `json:"resizable"`
	DescOffset     uint32 `json:"desc_offset"`
	Slots          int    `json:"slots"`
	SlotSize       int    `json:"slot_size"`
	MetaSize       uint64 `json:"meta_size"`
	DataSize       uint64 `json:"data_size"`
	DescSize       uint32 `json:"desc_size"`
	Generation     uint32 `json:"generation"`
}

// Errors of ycq stat, checked with errors.Is and errors.As.
var (
	// errTruncated: a region shorter than a queue's fixed lines, or than
	// its header says.
	errTruncated = errors.New("truncated")
	// errNotQueue: no queue where one was looked for.
	errNotQueue = errors.New("not a ycq queue")
	// errFault: the memory faulted while being read (the file shrank).
	errFault = errors.New("memory fault")
)

// regionError says which region could not be read, and why.
type regionError struct {
	Source string // "file /x", "shm NAME", "socket /s session 1 up"
	Size   int64  // bytes the region holds from its offset, when known
	Need   int64  // bytes it should hold, for errTruncated
	Err    error  // errTruncated, errNotQueue (wrapping the *ring.HeaderError), errFault, or an OS error
}

func (e *regionError) Error() string {
	switch {
	case errors.Is(e.Err, errTruncated):
		return fmt.Sprintf("%s: truncated: %d bytes, a queue needs %d", e.Source, e.Size, e.Need)
	default:
		return fmt.Sprintf("%s: %v", e.Source, e.Err)
	}
}

func (e *regionError) Unwrap() error { return e.Err }

// stringList is a flag that may be given more than once.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

type statOptions struct {
	sockets, shms, files stringList
	pids                 []int
	offset               int64
	scan                 bool
	shmDir               string
}

func stat(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq stat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), statHelp)
		fs.PrintDefaults()
	}
	var o statOptions
	fs.Var(&o.sockets, "socket", "a `PATH` where ycq ipc serve listens")
	fs.Var(&o.shms, "shm", "a /dev/shm region `NAME`, or the base of a server's names")
	fs.Var(&o.files, "file", "a file or descriptor `PATH` holding a metadata region")
	fs.Func("pid", "every queue in the ycq-* memory files of process `PID`", func(v string) error {
		pid, err := strconv.Atoi(v)
		if err != nil || pid <= 0 {
			return fmt.Errorf("want a process id")
		}
		o.pids = append(o.pids, pid)
		return nil
	})
	fs.Int64Var(&o.offset, "offset", 0, "where the metadata region starts in each -file (a multiple of 8)")
	fs.BoolVar(&o.scan, "scan", false, "find every queue at a page boundary in each -file instead")
	fs.StringVar(&o.shmDir, "shm-dir", dma.DefaultShmDir, "the directory of -shm names")
	asJSON := fs.Bool("json", false, "print one JSON object per queue per refresh")
	watch := fs.Duration("watch", 0, "refresh every `D` (1s) and show each counter's rate")
	count := fs.Int("count", 0, "stop after N refreshes (default 1, or endless with -watch)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case len(o.sockets)+len(o.shms)+len(o.files)+len(o.pids) == 0:
		return usagef("no source: give -socket, -shm, -file or -pid (ycq stat -h)")
	case *watch < 0:
		return usagef("-watch %v: want a positive interval", *watch)
	case *count < 0:
		return usagef("-count %d: want 1 or more", *count)
	case *count > 1 && *watch == 0:
		return usagef("-count %d needs -watch", *count)
	case o.offset < 0 || o.offset%8 != 0:
		return usagef("-offset %d: want a multiple of 8, 0 or more", o.offset)
	case o.scan && o.offset != 0:
		return usagef("-scan and -offset: give one")
	}
	for _, n := range o.shms {
		if err := dma.CheckName(n); err != nil {
			return usagef("-shm: %v", err)
		}
	}
	refreshes := *count
	if refreshes == 0 && *watch == 0 {
		refreshes = 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prev := map[string]*statQueue{}
	var tick <-chan time.Time
	if *watch > 0 {
		t := time.NewTicker(*watch)
		defer t.Stop()
		tick = t.C
	}
	for n := 1; refreshes == 0 || n <= refreshes; n++ {
		if n > 1 {
			select {
			case <-tick:
			case <-ctx.Done():
				return nil
			}
		}
		qs, rs, err := o.read(ctx)
		next := map[string]*statQueue{}
		for _, q := range qs {
			next[q.key] = q
		}
		var perr error
		if *asJSON {
			perr = printStatJSON(stdout, qs, rs, prev)
		} else {
			perr = printStatTable(stdout, qs, rs, prev, *watch > 0, n, err == nil)
		}
		if err != nil {
			return err
		}
		if perr != nil {
			return perr
		}
		prev = next
	}
	return nil
}

// read reads every queue of every source once. It returns the queues it
// read, and the errors of the rest.
func (o *statOptions) read(ctx context.Context) ([]*statQueue, []statResizes, error) {
	var qs []*statQueue
	var rs []statResizes
	var errs []error
	add := func(got []*statQueue, err error) {
		qs = append(qs, got...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range o.sockets {
		add(readSocket(ctx, s))
	}
	for _, n := range o.shms {
		add(readShm(n, o.shmDir))
	}
	for _, p := range o.files {
		add(readFile(p, o.offset, o.scan))
	}
	for _, pid := range o.pids {
		got, pages, err := readPid(pid)
		add(got, err)
		rs = append(rs, pages...)
	}
	return qs, rs, errors.Join(errs...)
}

// statSocketTimeout bounds a stat request, so that ycq stat never hangs
// on a server that does not answer (a variable for the tests).
var statSocketTimeout = 5 * time.Second

// readSocket asks a ycq ipc server for its queues and reads each.
func readSocket(ctx context.Context, path string) ([]*statQueue, error) {
	ctx, cancel := context.WithTimeout(ctx, statSocketTimeout)
	defer cancel()
	served, err := ipc.Stat(ctx, path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("socket %s: no answer within %v (a ycq ipc serve that predates stat requests reads none while a session runs): %w", path, statSocketTimeout, err)
		}
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	defer ipc.CloseStat(served)
	var qs []*statQueue
	var errs []error
	for _, s := range served {
		label := fmt.Sprintf("socket %s session %d %s", path, s.Session, s.Queue)
		q, err := readRegion(s.Meta, 0, label)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		q.key, q.label, q.source, q.path = label, label, "socket", path
		q.served = &s.ServedQueue
		qs = append(qs, q)
	}
	return qs, errors.Join(errs...)
}

// readShm reads the /dev/shm regions that name matches (see shmMatches):
// those in dir, and those removed from it that a process still holds open.
func readShm(name, dir string) ([]*statQueue, error) {
	found, err := findShm(name, dir)
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		return nil, &regionError{Source: "shm " + name, Err: fmt.Errorf("%w: nothing in %s by that name, nor held open by a process under it (removed)", errNotQueue, dir)}
	}
	var qs []*statQueue
	var errs []error
	for _, f := range found {
		label := "shm " + f.name
		if f.pid != 0 {
			label += fmt.Sprintf(" (removed; open in pid %d)", f.pid)
		}
		q, err := readPath(f.path, 0, label)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		q.key, q.label, q.source, q.path, q.holder = fmt.Sprintf("shm %s ino %d", f.name, f.ino), label, "shm", f.name, f.pid
		qs = append(qs, q)
	}
	return qs, errors.Join(errs...)
}

// shmMatches reports whether the region file named file is one that name
// asks for: name itself, name.up.meta or name.down.meta, or
// name.N.up.meta or name.N.down.meta for a session number N.
func shmMatches(name, file string) bool {
	if file == name {
		return true
	}
	rest, ok := strings.CutPrefix(file, name+".")
	if !ok {
		return false
	}
	if n, tail, ok := strings.Cut(rest, "."); ok && n != "" && strings.Trim(n, "0123456789") == "" {
		rest = tail
	}
	return rest == "up.meta" || rest == "down.meta"
}

type shmFound struct {
	name string // the region's name in dir
	path string // what to open: dir/name, or /proc/PID/fd/N for a removed one
	pid  int    // the holder of a removed name, 0 for one still in dir
	ino  uint64
}

// findShm lists the regions name matches, one per file (inode), sorted by
// name: from dir, then from every process's open descriptors that refer to
// a removed file of dir.
func findShm(name, dir string) ([]shmFound, error) {
	var found []shmFound
	seen := map[uint64]bool{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("shm %s: %w", name, err)
	}
	for _, e := range ents {
		if !shmMatches(name, e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		seen[st.Ino] = true
		found = append(found, shmFound{name: e.Name(), path: p, ino: st.Ino})
	}
	// A removed file's descriptor links read "/dev/shm/NAME (deleted)".
	procs, _ := os.ReadDir("/proc")
	for _, pe := range procs {
		pid, err := strconv.Atoi(pe.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", pe.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or another user's
		}
		for _, fe := range fds {
			p := filepath.Join(fdDir, fe.Name())
			target, err := os.Readlink(p)
			if err != nil {
				continue
			}
			removed, ok := strings.CutSuffix(target, " (deleted)")
			if !ok || filepath.Dir(removed) != filepath.Clean(dir) || !shmMatches(name, filepath.Base(removed)) {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || seen[st.Ino] {
				continue
			}
			seen[st.Ino] = true
			found = append(found, shmFound{name: filepath.Base(removed), path: p, pid: pid, ino: st.Ino})
		}
	}
	slices.SortStableFunc(found, func(a, b shmFound) int { return strings.Compare(a.name, b.name) })
	return found, nil
}

// readFile reads the queue at offset in the file at path, or with scan
// every queue at a page boundary.
func readFile(path string, offset int64, scan bool) ([]*statQueue, error) {
	label := func(off int64) string { return fmt.Sprintf("file %s @%#x", path, off) }
	if !scan {
		q, err := readPath(path, offset, label(offset))
		if err != nil {
			return nil, err
		}
		q.key, q.label, q.source, q.path, q.offset = label(offset), label(offset), "file", path, offset
		return []*statQueue{q}, nil
	}
	f, err := openReadOnly(path)
	if err != nil {
		return nil, &regionError{Source: "file " + path, Err: err}
	}
	defer f.Close()
	offs, err := scanQueues(f)
	if err != nil {
		return nil, &regionError{Source: "file " + path, Err: err}
	}
	if len(offs) == 0 {
		return nil, &regionError{Source: "file " + path, Err: fmt.Errorf("%w: no queue header at any page boundary", errNotQueue)}
	}
	var qs []*statQueue
	var errs []error
	for _, off := range offs {
		q, err := readRegion(f, off, label(off))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		q.key, q.label, q.source, q.path, q.offset = label(off), label(off), "file", path, off
		qs = append(qs, q)
	}
	return qs, errors.Join(errs...)
}

// statResizes is a host driver's resize page (hostdriver.ResizePageName)
// as one refresh read it.
type statResizes struct {
	pid   int
	path  string
	at    time.Time
	pairs []hostdriver.PairResizes
}

// readPid scans every memory file of process pid whose name starts with
// ycq- for queues, and reads its resize page if it has one.
func readPid(pid int) ([]*statQueue, []statResizes, error) {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	var qs []*statQueue
	var rs []statResizes
	var errs []error
	for _, fe := range fds {
		p := filepath.Join(fdDir, fe.Name())
		target, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(target, "/memfd:ycq-") {
			continue
		}
		if strings.TrimSuffix(target, " (deleted)") == "/memfd:"+hostdriver.ResizePageName {
			r, err := readResizePage(p)
			if err != nil {
				errs = append(errs, &regionError{Source: fmt.Sprintf("pid %d %s", pid, p), Err: err})
				continue
			}
			r.pid = pid
			rs = append(rs, r)
			continue
		}
		got, err := readFile(p, 0, true)
		if errors.Is(err, errNotQueue) && len(got) == 0 {
			continue // a data region, or one not formatted yet
		}
		for _, q := range got {
			q.label += " (" + strings.TrimSuffix(strings.TrimPrefix(target, "/"), " (deleted)") + ")"
		}
		qs = append(qs, got...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(qs) == 0 && len(rs) == 0 && len(errs) == 0 {
		errs = append(errs, &regionError{Source: fmt.Sprintf("pid %d", pid), Err: fmt.Errorf("%w: no memory file named ycq-* holds one", errNotQueue)})
	}
	return qs, rs, errors.Join(errs...)
}

// maxResizePage bounds what ycq stat reads of a resize page: more than
// the page of the most pairs a driver has.
const maxResizePage = 64 << 10

// readResizePage reads the resize page at path, whatever its writer put
// there: hostdriver.DecodeResizePage checks it.
func readResizePage(path string) (statResizes, error) {
	f, err := openReadOnly(path)
	if err != nil {
		return statResizes{}, err
	}
	defer f.Close()
	b := make([]byte, maxResizePage)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return statResizes{}, err
	}
	pairs, err := hostdriver.DecodeResizePage(b[:n])
	if err != nil {
		return statResizes{}, err
	}
	return statResizes{path: path, at: time.Now(), pairs: pairs}, nil
}

// scanQueues returns the page-aligned offsets in f where a header that
// ring.ReadHeader accepts begins. It reads with pread, so that looking at
// a hole of a memory file does not fill it with pages.
func scanQueues(f *os.File) ([]int64, error) {
	size, err := fileSize(f)
	if err != nil {
		return nil, err
	}
	var offs []int64
	var hdr [ring.OffDescs]byte
	for off := int64(0); off+int64(len(hdr)) <= size; off += dma.PageSize {
		if _, err := f.ReadAt(hdr[:4], off); err != nil {
			return nil, err
		}
		if binary.LittleEndian.Uint32(hdr[ring.OffMagic:]) != ring.Magic {
			continue
		}
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return nil, err
		}
		if _, err := ring.ReadHeader(roMemory(hdr[:]), 0); err == nil {
			offs = append(offs, off)
		}
	}
	return offs, nil
}

// openReadOnly opens path for reading only; non-blocking, so that a FIFO
// given by mistake is refused by fileSize instead of waiting for a writer.
func openReadOnly(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// readPath opens path read-only and reads the queue at offset.
func readPath(path string, offset int64, label string) (*statQueue, error) {
	f, err := openReadOnly(path)
	if err != nil {
		return nil, &regionError{Source: label, Err: err}
	}
	defer f.Close()
	return readRegion(f, offset, label)
}

func fileSize(f *os.File) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, fmt.Errorf("not a file or memory file (mode %#o)", st.Mode)
	}
	return st.Size, nil
}

// readRegion maps the metadata region at offset in f read-only, checks
// its header, and reads the queue. Nothing is written to the region, and
// nothing stays mapped.
func readRegion(f *os.File, offset int64, label string) (q *statQueue, err error) {
	fail := func(size, need int64, err error) (*statQueue, error) {
		return nil, &regionError{Source: label, Size: size, Need: need, Err: err}
	}
	size, err := fileSize(f)
	if err != nil {
		return fail(0, 0, err)
	}
	avail := size - offset
	if avail < ring.OffDescs {
		return fail(max(avail, 0), ring.OffDescs, errTruncated)
	}
	m, err := mapMeta(f, offset, min(avail, int64(ring.MetaSize(ring.MaxSlots))))
	if err != nil {
		return fail(avail, 0, err)
	}
	defer m.close()
	// A file that shrinks under the mapping faults when read; that is an
	// error of this region, not a crash.
	if ferr := guardFault(func() { q, err = m.read(label, avail) }); ferr != nil {
		return fail(avail, 0, ferr)
	}
	return q, err
}

// guardFault runs f, and returns an error wrapping errFault if a memory
// access of f faulted (SIGBUS or SIGSEGV on a mapping), instead of
// crashing. Other panics go on.
func guardFault(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fault, isFault := r.(interface{ Addr() uintptr })
			if !isFault {
				panic(r)
			}
			err = fmt.Errorf("%w at %#x: the region shrank while being read", errFault, fault.Addr())
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	f()
	return nil
}

// read checks the header of the mapped region, which holds avail bytes
// from its start, and reads the queue.
func (m *metaMapping) read(label string, avail int64) (*statQueue, error) {
	fail := func(size, need int64, err error) (*statQueue, error) {
		return nil, &regionError{Source: label, Size: size, Need: need, Err: err}
	}
	cfg, err := ring.ReadHeader(roMemory(m.meta), 0)
	if err != nil {
		return fail(avail, 0, fmt.Errorf("%w: %w", errNotQueue, err))
	}
	if need := int64(cfg.MetaSize()); avail < need {
		return fail(avail, need, errTruncated)
	}
	// The queue needs a data region to attach to; stat never touches
	// payload, so it gets address space that faults on any access.
	if err := m.reserveData(cfg.DataSize()); err != nil {
		return fail(avail, 0, err)
	}
	rq, err := ring.Attach(m.meta[:cfg.MetaSize()], m.data)
	if err != nil {
		return fail(avail, 0, fmt.Errorf("%w: %w", errNotQueue, err))
	}
	q := &statQueue{at: time.Now()}
	q.header = readStatHeader(roMemory(m.meta), cfg)
	q.stats = rq.Stats()
	q.len = rq.Len()
	q.ready = rq.Ready()
	q.check = rq.Check()
	mem := roMemory(m.meta)
	items, _ := mem.Load32(ring.OffItemsWaiters)
	space, _ := mem.Load32(ring.OffSpaceWaiters)
	q.waiters.items, q.waiters.space = items, space
	if cfg.Resizable {
		q.sealed = rq.Sealed()
		next, _ := mem.Load32(ring.OffLinkNext)
		slots, _ := mem.Load32(ring.OffLinkSlots)
		left, _ := mem.Load32(ring.OffLinkLeft)
		q.link = statLink{Next: next, Slots: slots, Left: left}
	}
	return q, nil
}

func readStatHeader(mem roMemory, cfg ring.Config) statHeader {
	w32 := func(off uint64) uint32 { v, _ := mem.Load32(off); return v }
	w64 := func(off uint64) uint64 { v, _ := mem.Load64(off); return v }
	return statHeader{
		Magic: fmt.Sprintf("%#x", w32(ring.OffMagic)), Version: w32(ring.OffVersion),
		Features: w32(ring.OffFeatures), SingleProducer: cfg.SingleProducer, SingleConsumer: cfg.SingleConsumer, Resizable: cfg.Resizable,
		DescOffset: w32(ring.OffDescOffset), Slots: cfg.Slots, SlotSize: cfg.SlotSize,
		MetaSize: w64(ring.OffMetaSize), DataSize: w64(ring.OffDataSize),
		DescSize: w32(ring.OffDescSize), Generation: w32(ring.OffGeneration),
	}
}

// roMemory is a read-only metadata region as a ring.Memory, for
// ring.ReadHeader and the words the Queue API does not read (generation,
// wake-line waiters). Its loads are plain, deliberately racy reads of
// words a peer may be writing: the header is written once before its
// magic, and the waiter counts are shown, never acted on. Each is one
// aligned load on the hosts ycq runs on, so it never tears.
type roMemory []byte

var errReadOnly = errors.New("ycq stat maps the region read-only")

func (m roMemory) Load32(addr uint64) (uint32, error) {
	if addr%4 != 0 || addr > uint64(len(m)) || uint64(len(m))-addr < 4 {
		return 0, fmt.Errorf("%w: word at %#x outside the %d-byte region", errTruncated, addr, len(m))
	}
	return binary.LittleEndian.Uint32(m[addr:]), nil
}

func (m roMemory) Load64(addr uint64) (uint64, error) {
	if addr%8 != 0 || addr > uint64(len(m)) || uint64(len(m))-addr < 8 {
		return 0, fmt.Errorf("%w: word at %#x outside the %d-byte region", errTruncated, addr, len(m))
	}
	return binary.LittleEndian.Uint64(m[addr:]), nil
}

func (roMemory) Store32(uint64, uint32) error { return errReadOnly }
func (roMemory) Store64(uint64, uint64) error { return errReadOnly }

// metaMapping is one read-only mapping of a metadata region, and the
// inaccessible address space that stands in for its data region. The raw
// mmap calls of ycq stat are all here.
type metaMapping struct {
	whole []byte // the mapping, from a page boundary
	meta  []byte // the region, from its offset
	data  []byte // PROT_NONE, for ring.Attach
}

// mapMeta maps length bytes of f from offset with PROT_READ and
// MAP_SHARED: the live bytes, which this process cannot write (f is
// opened read-only, so the kernel would refuse PROT_WRITE anyway).
func mapMeta(f *os.File, offset, length int64) (*metaMapping, error) {
	start := offset &^ (dma.PageSize - 1)
	whole, err := unix.Mmap(int(f.Fd()), start, int(length+offset-start), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes read-only at %#x: %w", length, offset, err)
	}
	return &metaMapping{whole: whole, meta: whole[offset-start:]}, nil
}

// reserveData reserves size bytes of address space that fault on any
// access: ring.Attach wants a data region as large as the header says, and
// nothing ycq stat calls reads payload.
func (m *metaMapping) reserveData(size int) error {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		return fmt.Errorf("reserve %d bytes of address space for the data region: %w", size, err)
	}
	m.data = b
	return nil
}

func (m *metaMapping) close() {
	unix.Munmap(m.whole)
	if m.data != nil {
		unix.Munmap(m.data)
	}
}

// counters lists every ring.Stats field by its name, in declaration order.
func counters(s ring.Stats) []counter {
	v := reflect.ValueOf(s)
	out := make([]counter, v.NumField())
	for i := range out {
		out[i] = counter{v.Type().Field(i).Name, v.Field(i).Uint()}
	}
	return out
}

type counter struct {
	name  string
	value uint64
}

// rate is how fast a counter moved since the previous reading, per second;
// a counter that went back (a reformatted queue, a scribbling peer) has no
// rate.
func rate(cur, prev uint64, d time.Duration) (float64, bool) {
	if cur < prev || d <= 0 {
		return 0, false
	}
	return float64(cur-prev) / d.Seconds(), true
}

func (q *statQueue) fill() float64 { return float64(q.len) / float64(q.header.Slots) }

func (q *statQueue) checkString() string {
	if q.check == nil {
		return "ok"
	}
	return q.check.Error()
}

func printStatJSON(w io.Writer, qs []*statQueue, rs []statResizes, prev map[string]*statQueue) error {
	enc := json.NewEncoder(w)
	for _, q := range qs {
		obj := map[string]any{
			"time": q.at.UTC().Format(time.RFC3339Nano), "source": q.source, "path": q.path,
			"header": q.header, "producer_cursor": q.stats.ProducerCursor, "consumer_cursor": q.stats.ConsumerCursor,
			"len": q.len, "ready": q.ready, "fill": q.fill(), "check": q.checkString(),
			"items_waiters": q.waiters.items, "space_waiters": q.waiters.space, "stats": q.stats,
		}
		if q.header.Resizable {
			obj["sealed"], obj["link"] = q.sealed, q.link
		}
		switch q.source {
		case "socket":
			obj["session"], obj["queue"], obj["role"] = q.served.Session, q.served.Queue, q.served.Role
			if q.served.Name != "" {
				obj["name"] = q.served.Name
			}
			if q.served.Resizes != nil {
				obj["resizes"] = q.served.Resizes
			}
		case "shm":
			if q.holder != 0 {
				obj["holder_pid"] = q.holder
			}
		case "file":
			obj["offset"] = q.offset
		}
		if p := prev[q.key]; p != nil {
			d := q.at.Sub(p.at)
			rates := map[string]float64{}
			pc := counters(p.stats)
			for i, c := range counters(q.stats) {
				if r, ok := rate(c.value, pc[i].value, d); ok {
					rates[c.name] = r
				}
			}
			obj["interval_s"], obj["rates"] = d.Seconds(), rates
		}
		if err := enc.Encode(obj); err != nil {
			return err
		}
	}
	for _, r := range rs {
		obj := map[string]any{"time": r.at.UTC().Format(time.RFC3339Nano), "kind": "resizes", "source": "pid",
			"pid": r.pid, "path": r.path, "pairs": r.pairs}
		if err := enc.Encode(obj); err != nil {
			return err
		}
	}
	return nil
}

func printStatTable(w io.Writer, qs []*statQueue, rs []statResizes, prev map[string]*statQueue, watching bool, n int, ok bool) error {
	if watching {
		fmt.Fprintf(w, "-- refresh %d at %s\n", n, time.Now().Format("15:04:05.000"))
	}
	for _, q := range qs {
		h := q.header
		title := q.label
		if s := q.served; s != nil {
			title += fmt.Sprintf(" (client role %s", s.Role)
			if s.Name != "" {
				title += ", shm " + s.Name
			}
			title += ")"
		}
		fmt.Fprintf(w, "== %s\n", title)
		feat := []string{}
		if h.SingleProducer {
			feat = append(feat, "single producer")
		}
		if h.SingleConsumer {
			feat = append(feat, "single consumer")
		}
		if len(feat) == 0 {
			feat = append(feat, "shared sides")
		}
		if h.Resizable {
			feat = append(feat, "resizable")
		}
		fmt.Fprintf(w, "header     magic %s, version %d, features %#x (%s), generation %d\n", h.Magic, h.Version, h.Features, strings.Join(feat, ", "), h.Generation)
		fmt.Fprintf(w, "geometry   %d slots of %d bytes; metadata %d bytes, data %d bytes\n", h.Slots, h.SlotSize, h.MetaSize, h.DataSize)
		fmt.Fprintf(w, "cursors    producer %d, consumer %d\n", q.stats.ProducerCursor, q.stats.ConsumerCursor)
		fmt.Fprintf(w, "in flight  %d ready of %d reserved (Ready/Len), fill %.1f%%\n", q.ready, q.len, 100*q.fill())
		fmt.Fprintf(w, "sleeping   %d consumers (items), %d producers (space)\n", q.waiters.items, q.waiters.space)
		fmt.Fprintf(w, "check      %s\n", q.checkString())
		if h.Resizable {
			state := "open"
			if q.sealed {
				state = "sealed"
			}
			next := "no next generation named"
			if q.link.Next != 0 {
				next = fmt.Sprintf("next generation %d of %d slots", q.link.Next, q.link.Slots)
				if q.link.Left == q.link.Next {
					next += ", consumers moved on"
				}
			}
			fmt.Fprintf(w, "generation %d, %s; %s\n", h.Generation, state, next)
		}
		if s := q.served; s != nil && s.Resizes != nil {
			r := s.Resizes
			fmt.Fprintf(w, "resizes    %d started, %d completed, %d rolled back, %d deferred; draining %v in all (the session's, as the server saw them)\n",
				r.Started, r.Completed, r.RolledBack, r.Deferred, r.Draining.Round(time.Microsecond))
		}
		p := prev[q.key]
		var pc []counter
		if p != nil {
			pc = counters(p.stats)
			fmt.Fprintf(w, "%-24s %20s %14s\n", "counter", "value", "per second")
		} else {
			fmt.Fprintf(w, "%-24s %20s\n", "counter", "value")
		}
		for i, c := range counters(q.stats) {
			if p == nil {
				fmt.Fprintf(w, "%-24s %20d\n", c.name, c.value)
				continue
			}
			rs := "-"
			if r, ok := rate(c.value, pc[i].value, q.at.Sub(p.at)); ok {
				rs = strconv.FormatFloat(r, 'f', 1, 64)
			}
			fmt.Fprintf(w, "%-24s %20d %14s\n", c.name, c.value, rs)
		}
	}
	for _, r := range rs {
		fmt.Fprintf(w, "== pid %d resizes (%s, the host driver's counters)\n", r.pid, hostdriver.ResizePageName)
		for _, p := range r.pairs {
			fmt.Fprintf(w, "pair %-3d   generation %d (%d slots): %d completed of %d started, %d rolled back, %d failed; draining %v in all\n",
				p.Pair, p.Generation, p.Slots, p.Completed, p.Started, p.RolledBack, p.Failed, p.Draining.Round(time.Microsecond))
		}
	}
	if len(qs) == 0 && ok {
		_, err := fmt.Fprintln(w, "(no queues)")
		return err
	}
	return nil
}
