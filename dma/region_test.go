package dma

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// noLeak fails the test if it ends with more descriptors open than it
// started with.
func noLeak(t *testing.T) {
	before := openFDs(t)
	t.Cleanup(func() {
		if after := openFDs(t); after != before {
			t.Errorf("descriptors leaked: %d open before, %d after", before, after)
		}
	})
}

func TestSizes(t *testing.T) {
	noLeak(t)
	for _, size := range []int{0, -1, MaxSize + 1} {
		_, err := Anonymous(size, Options{})
		require.ErrorIs(t, err, ErrInvalid, "size %d", size)
		_, err = Memfd("x", size, Options{})
		require.ErrorIs(t, err, ErrInvalid, "size %d", size)
		_, err = CreateShm("x", size, Options{ShmDir: t.TempDir()})
		require.ErrorIs(t, err, ErrInvalid, "size %d", size)
	}
	r, err := Anonymous(1, Options{})
	require.NoError(t, err)
	require.Equal(t, 1, r.Size(), "exactly as asked; huge pages round up")
	require.Equal(t, -1, r.FD())
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "second close is harmless")
}

func TestMemfdSharedWithAnotherMapping(t *testing.T) {
	noLeak(t)
	r, err := Memfd("ycq-test", 3*PageSize, Options{})
	require.NoError(t, err)
	defer r.Close()
	require.Equal(t, 3*PageSize, r.Size())
	require.GreaterOrEqual(t, r.FD(), 0)

	dup, err := unix.Dup(r.FD())
	require.NoError(t, err)
	other, err := Map(dup, 3*PageSize)
	require.NoError(t, err)
	r.Bytes()[100] = 42
	require.Equal(t, byte(42), other.Bytes()[100], "same memory through a second mapping")
	require.NoError(t, other.Close())
	require.Contains(t, r.String(), "memfd")
}

// TestFiles: a region's File is its own descriptor for the same memory;
// closing it leaves the region's descriptor alone.
func TestFiles(t *testing.T) {
	noLeak(t)
	a, err := Memfd("a", PageSize, Options{})
	require.NoError(t, err)
	defer a.Close()
	b, err := Memfd("b", PageSize, Options{})
	require.NoError(t, err)
	defer b.Close()
	files, err := Files(a, b)
	require.NoError(t, err)
	require.Len(t, files, 2)
	require.NotEqual(t, a.FD(), int(files[0].Fd()))
	a.Bytes()[7] = 9
	var got [8]byte
	_, err = files[0].ReadAt(got[:], 0)
	require.NoError(t, err)
	require.Equal(t, byte(9), got[7], "same memory")
	for _, f := range files {
		require.NoError(t, f.Close())
	}
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(a.FD(), &st), "the region's descriptor is still open")

	anon, err := Anonymous(PageSize, Options{})
	require.NoError(t, err)
	defer anon.Close()
	_, err = Files(a, anon)
	require.ErrorIs(t, err, ErrInvalid)
}

func TestMapRefuses(t *testing.T) {
	noLeak(t)
	// Not a memory file: a pipe.
	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_CLOEXEC))
	defer unix.Close(p[1])
	_, err := Map(p[0], PageSize)
	require.ErrorIs(t, err, ErrInvalid)
	// Map took the descriptor and closed it on failure.
	_, err = unix.FcntlInt(uintptr(p[0]), unix.F_GETFD, 0)
	require.ErrorIs(t, err, unix.EBADF)

	// Smaller than promised.
	r, err := Memfd("small", PageSize, Options{})
	require.NoError(t, err)
	defer r.Close()
	dup, err := unix.Dup(r.FD())
	require.NoError(t, err)
	_, err = Map(dup, 2*PageSize)
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), "holds 4096 bytes")

	_, err = Map(-1, PageSize)
	require.ErrorIs(t, err, ErrInvalid)
	dup, err = unix.Dup(r.FD())
	require.NoError(t, err)
	_, err = Map(dup, 0)
	require.ErrorIs(t, err, ErrInvalid)
}

func TestShm(t *testing.T) {
	noLeak(t)
	opt := Options{ShmDir: t.TempDir()}
	r, err := CreateShm("ycq-test.meta", 5000, opt)
	require.NoError(t, err)
	defer r.Close()
	require.Equal(t, "ycq-test.meta", r.Name())
	_, err = CreateShm("ycq-test.meta", 5000, opt)
	require.Error(t, err, "exists already")

	o, err := OpenShm("ycq-test.meta", opt)
	require.NoError(t, err)
	require.Equal(t, 5000, o.Size())
	r.Bytes()[4999] = 7
	require.Equal(t, byte(7), o.Bytes()[4999])
	require.NoError(t, o.Close())

	require.NoError(t, RemoveShm("ycq-test.meta", opt))
	_, err = OpenShm("ycq-test.meta", opt)
	require.Error(t, err)
	require.Equal(t, byte(7), r.Bytes()[4999], "the mapping outlives the name")

	// A symlink planted under the name is not followed.
	target := filepath.Join(opt.ShmDir, "target")
	require.NoError(t, os.WriteFile(target, make([]byte, 100), 0o600))
	require.NoError(t, os.Symlink(target, filepath.Join(opt.ShmDir, "link")))
	_, err = OpenShm("link", opt)
	require.Error(t, err)
	_, err = CreateShm("link", 100, opt)
	require.Error(t, err)
}

func TestCheckName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", ".hidden", "a/b", "../x", "a\x00b", "sp ace", strings.Repeat("x", 201), "ü"} {
		require.ErrorIs(t, CheckName(bad), ErrInvalid, "%q", bad)
		_, err := CreateShm(bad, 10, Options{ShmDir: t.TempDir()})
		require.ErrorIs(t, err, ErrInvalid, "%q", bad)
	}
	for _, good := range []string{"a", "ycq-1234.meta", "A_b-c.d", strings.Repeat("x", 200)} {
		require.NoError(t, CheckName(good), "%q", good)
	}
}

func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"ycq.meta", "..", "a/b", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckName(name) != nil {
			return
		}
		if strings.ContainsAny(name, "/\x00") || name == "." || name == ".." || strings.HasPrefix(name, ".") {
			t.Fatalf("accepted %q", name)
		}
		if filepath.Base(name) != name {
			t.Fatalf("accepted %q, not a single path element", name)
		}
	})
}

func TestHugeFallbackReasons(t *testing.T) {
	dir := t.TempDir()
	old := procRoot
	procRoot = dir
	defer func() { procRoot = old }()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sys/vm"), 0o755))
	set := func(nr, free string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "sys/vm/nr_hugepages"), []byte(nr+"\n"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "meminfo"), []byte("MemTotal: 1 kB\nHugePages_Free:    "+free+"\n"), 0o644))
	}
	set("0", "0")
	require.Contains(t, hugeFallbackReason(unix.ENOMEM), "vm.nr_hugepages=0")
	set("4", "1")
	require.Contains(t, hugeFallbackReason(unix.ENOMEM), "HugePages_Free=1")
	require.Contains(t, hugeFallbackReason(unix.EINVAL), "does not offer")
	require.Contains(t, hugeFallbackReason(unix.EPERM), "failed")
}

// TestHugeFallsBack: with no huge pages free, asking for them still gives
// memory, on normal pages, with the reason.
func TestHugeFallsBack(t *testing.T) {
	noLeak(t)
	if meminfo("HugePages_Free") != "0" {
		t.Skip("this machine has free huge pages; TestHugeReal covers it")
	}
	for _, mk := range []func() (*Region, error){
		func() (*Region, error) { return Anonymous(HugePageSize, Options{Huge: true}) },
		func() (*Region, error) { return Memfd("huge", HugePageSize, Options{Huge: true}) },
	} {
		r, err := mk()
		require.NoError(t, err)
		require.False(t, r.Huge())
		require.NotEmpty(t, r.HugeFallback())
		require.Contains(t, r.String(), "4 KiB pages")
		r.Bytes()[HugePageSize-1] = 1
		require.NoError(t, r.Close())
	}
}

// TestHugeReal reserves two huge pages for the length of the test when it
// may (root, and the sysctl is writable), and maps them.
func TestHugeReal(t *testing.T) {
	noLeak(t)
	path := "/proc/sys/vm/nr_hugepages"
	old := readTrim(path)
	n, err := strconv.Atoi(old)
	if err != nil || os.Geteuid() != 0 {
		t.Skipf("cannot reserve huge pages here (need root and %s)", path)
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(n+2)), 0o644); err != nil {
		t.Skipf("cannot reserve huge pages: %v", err)
	}
	defer os.WriteFile(path, []byte(old), 0o644)
	if meminfo("HugePages_Free") == "0" {
		t.Skip("the kernel reserved no huge pages (memory too fragmented)")
	}
	r, err := Memfd("huge", HugePageSize, Options{Huge: true})
	require.NoError(t, err)
	require.True(t, r.Huge(), r.HugeFallback())
	require.Equal(t, HugePageSize, r.Size())
	r.Bytes()[HugePageSize-1] = 1
	dup, err := unix.Dup(r.FD())
	require.NoError(t, err)
	o, err := Map(dup, HugePageSize)
	require.NoError(t, err)
	require.True(t, o.Huge(), "a received huge memfd is recognised")
	require.Equal(t, byte(1), o.Bytes()[HugePageSize-1])
	require.NoError(t, o.Close())
	require.NoError(t, r.Close())

	a, err := Anonymous(100, Options{Huge: true})
	require.NoError(t, err)
	require.True(t, a.Huge(), a.HugeFallback())
	require.NoError(t, a.Close())
}
