package dma

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Sizes.
const (
	PageSize     = 4096
	HugePageSize = 2 << 20
	// MaxSize bounds every region; larger requests are refused.
	MaxSize = 1 << 40
)

// DefaultShmDir is where named regions live unless Options.ShmDir says
// otherwise.
const DefaultShmDir = "/dev/shm"

// ErrInvalid: a size, name or descriptor the package will not map.
var ErrInvalid = errors.New("dma: invalid argument")

// ErrClosed: the region was closed.
var ErrClosed = errors.New("dma: region closed")

// Options tune a new region.
type Options struct {
	// Huge asks for 2 MiB pages (the size is rounded up to a multiple of
	// 2 MiB). Without reserved huge pages the region falls back to normal
	// pages and HugeFallback says why.
	Huge bool
	// ShmDir is the directory of named regions; DefaultShmDir if empty.
	ShmDir string
}

// Region is one mapping of memory a peer can reach.
type Region struct {
	mu       sync.Mutex
	mem      []byte
	fd       int // -1 for anonymous memory
	kind     string
	name     string
	huge     bool
	fallback string
}

// Bytes returns the mapped memory. It must not be used after Close.
func (r *Region) Bytes() []byte { return r.mem }

// Size is the mapped size in bytes.
func (r *Region) Size() int { return len(r.mem) }

// FD is the region's descriptor, or -1 for anonymous memory. The region
// keeps owning it: to hand it to another process, pass it over a socket
// (which duplicates it), or use File; do not close it.
func (r *Region) FD() int { return r.fd }

// File returns a duplicate of the region's descriptor, owned by the caller,
// for handing to a child process (exec.Cmd.ExtraFiles). Wrapping FD in an
// os.File instead would close the region's descriptor when that File is
// collected, whatever the descriptor number then refers to.
func (r *Region) File() (*os.File, error) {
	if r.fd < 0 {
		return nil, fmt.Errorf("%w: anonymous memory has no descriptor", ErrInvalid)
	}
	fd, err := unix.FcntlInt(uintptr(r.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dma: duplicate descriptor %d: %w", r.fd, err)
	}
	return os.NewFile(uintptr(fd), r.name), nil
}

// Files returns File for each region, in order; on an error it closes the
// ones it made.
func Files(rs ...*Region) ([]*os.File, error) {
	files := make([]*os.File, 0, len(rs))
	for _, r := range rs {
		f, err := r.File()
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// Name is the /dev/shm name of a named region, or the memfd's name.
func (r *Region) Name() string { return r.name }

// Huge reports whether the region is backed by 2 MiB pages.
func (r *Region) Huge() bool { return r.huge }

// HugeFallback says why a region that asked for huge pages got normal
// ones; it is empty otherwise.
func (r *Region) HugeFallback() string { return r.fallback }

func (r *Region) String() string {
	s := fmt.Sprintf("%s region %q of %d bytes", r.kind, r.name, len(r.mem))
	switch {
	case r.huge:
		s += " on 2 MiB pages"
	case r.fallback != "":
		s += " on 4 KiB pages (" + r.fallback + ")"
	}
	return s
}

// Close unmaps the region and closes its descriptor. A second Close
// returns nil.
func (r *Region) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	if r.mem != nil {
		if err := unix.Munmap(r.mem); err != nil {
			errs = append(errs, fmt.Errorf("dma: unmap %s: %w", r.name, err))
		}
		r.mem = nil
	}
	if r.fd >= 0 {
		if err := unix.Close(r.fd); err != nil {
			errs = append(errs, fmt.Errorf("dma: close %s: %w", r.name, err))
		}
		r.fd = -1
	}
	return errors.Join(errs...)
}

func checkSize(size int) error {
	if size <= 0 || size > MaxSize {
		return fmt.Errorf("%w: size %d: want 1 to %d bytes", ErrInvalid, size, MaxSize)
	}
	return nil
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }

// Anonymous maps size bytes of zeroed memory private to this process.
func Anonymous(size int, opt Options) (*Region, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	r := &Region{fd: -1, kind: "anonymous", name: "anonymous"}
	if opt.Huge {
		mem, err := unix.Mmap(-1, 0, roundUp(size, HugePageSize), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_HUGETLB|unix.MAP_HUGE_2MB)
		if err == nil {
			r.mem, r.huge = mem, true
			return r, nil
		}
		r.fallback = hugeFallbackReason(err)
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("dma: map %d anonymous bytes: %w", size, err)
	}
	r.mem = mem
	return r, nil
}

// Memfd creates a memory file of size bytes and maps it shared. Its
// descriptor (FD) can be passed to another process, which maps the same
// memory with Map.
func Memfd(name string, size int, opt Options) (*Region, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	if len(name) > 249 || strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("%w: memfd name %q", ErrInvalid, name)
	}
	if opt.Huge {
		r, err := newMemfd(name, roundUp(size, HugePageSize), unix.MFD_HUGETLB|unix.MFD_HUGE_2MB)
		if err == nil {
			r.huge = true
			return r, nil
		}
		r, err2 := newMemfd(name, size, 0)
		if err2 != nil {
			return nil, err2
		}
		r.fallback = hugeFallbackReason(err)
		return r, nil
	}
	return newMemfd(name, size, 0)
}

func newMemfd(name string, size, flags int) (*Region, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|flags)
	if err != nil {
		return nil, fmt.Errorf("dma: memfd_create %q: %w", name, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dma: size memfd %q to %d bytes: %w", name, size, err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dma: map memfd %q: %w", name, err)
	}
	return &Region{mem: mem, fd: fd, kind: "memfd", name: name}, nil
}

// Map maps the memory file fd, received from another process, shared. The
// region takes ownership of fd (Close closes it, as does a failed Map).
// want is the size the caller expects; the file must hold at least that
// much, and exactly that much is mapped. Descriptors that are not regular
// files or memfds are refused.
func Map(fd int, want int) (*Region, error) {
	if fd < 0 {
		return nil, fmt.Errorf("%w: descriptor %d", ErrInvalid, fd)
	}
	r, err := mapFD(fd, want, "received")
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return r, nil
}

func mapFD(fd, want int, name string) (*Region, error) {
	if err := checkSize(want); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("dma: stat descriptor %d: %w", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%w: descriptor %d is not a memory file (mode %#o)", ErrInvalid, fd, st.Mode)
	}
	if st.Size < int64(want) {
		return nil, fmt.Errorf("%w: descriptor %d holds %d bytes, %d expected", ErrInvalid, fd, st.Size, want)
	}
	mem, err := unix.Mmap(fd, 0, want, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("dma: map descriptor %d (%d bytes): %w", fd, want, err)
	}
	huge := st.Blksize == HugePageSize
	return &Region{mem: mem, fd: fd, kind: "shared", name: name, huge: huge}, nil
}

// CheckName reports whether name is usable as a /dev/shm name: 1 to 200
// characters from letters, digits, '.', '_' and '-', not starting with '.'.
func CheckName(name string) error {
	if name == "" || len(name) > 200 || name[0] == '.' {
		return fmt.Errorf("%w: shared memory name %q", ErrInvalid, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: shared memory name %q: character %q", ErrInvalid, name, c)
		}
	}
	return nil
}

func shmPath(dir, name string) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	if dir == "" {
		dir = DefaultShmDir
	}
	return filepath.Join(dir, name), nil
}

// CreateShm creates the named region (it must not exist yet) of size bytes
// and maps it. Another process opens it with OpenShm; RemoveShm deletes the
// name (mappings stay valid).
func CreateShm(name string, size int, opt Options) (*Region, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	path, err := shmPath(opt.ShmDir, name)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dma: create %s: %w", path, err)
	}
	fail := func(err error) (*Region, error) {
		unix.Close(fd)
		os.Remove(path)
		return nil, err
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail(fmt.Errorf("dma: size %s to %d bytes: %w", path, size, err))
	}
	r, err := mapFD(fd, size, name)
	if err != nil {
		return fail(err)
	}
	r.kind = "shm"
	return r, nil
}

// OpenShm maps an existing named region, all of it.
func OpenShm(name string, opt Options) (*Region, error) {
	path, err := shmPath(opt.ShmDir, name)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("dma: open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("dma: stat %s: %w", path, err)
	}
	if st.Size > MaxSize {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: %s holds %d bytes", ErrInvalid, path, st.Size)
	}
	r, err := mapFD(fd, int(st.Size), name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	r.kind = "shm"
	return r, nil
}

// RemoveShm deletes a named region's name.
func RemoveShm(name string, opt Options) error {
	path, err := shmPath(opt.ShmDir, name)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("dma: %w", err)
	}
	return nil
}
