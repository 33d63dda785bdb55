package qemu

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

func readArchive(t *testing.T, img []byte) []cpio.Record {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(img)))
	require.NoError(t, err)
	return recs
}

func TestBuildInitramfsContents(t *testing.T) {
	src := filepath.Join(t.TempDir(), "payload")
	require.NoError(t, os.WriteFile(src, []byte("from the host"), 0o600))
	files := []File{
		{Path: "/a/b/data", Mode: 0o640, Data: []byte("hello")},
		{Path: "/a/host", Mode: 0o755, Source: src},
		{Path: "/a/link", Mode: fs.ModeSymlink | 0o777, Data: []byte("b/data")},
		Dir("/a", 0o700), // listed after its children: written first, with this mode
		CharDev("/dev/null", 0o666, 1, 3),
	}
	var img bytes.Buffer
	require.NoError(t, BuildInitramfs(&img, files))
	recs := readArchive(t, img.Bytes())

	var names []string
	byName := map[string]cpio.Record{}
	for _, r := range recs {
		names = append(names, r.Name)
		byName[r.Name] = r
		require.Zero(t, r.MTime, r.Name)
		require.Zero(t, r.UID, r.Name)
	}
	require.Equal(t, []string{"a", "a/b", "a/b/data", "a/host", "a/link", "dev", "dev/null"}, names)

	content := func(name string) string {
		r := byName[name]
		b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		require.NoError(t, err)
		return string(b)
	}
	require.Equal(t, "hello", content("a/b/data"))
	require.Equal(t, uint64(cpio.S_IFREG|0o640), byName["a/b/data"].Mode)
	require.Equal(t, "from the host", content("a/host"))
	require.Equal(t, uint64(cpio.S_IFREG|0o755), byName["a/host"].Mode)
	require.Equal(t, "b/data", content("a/link"))
	require.Equal(t, uint64(cpio.S_IFLNK|0o777), byName["a/link"].Mode)
	require.Equal(t, uint64(cpio.S_IFDIR|0o700), byName["a"].Mode)
	require.Equal(t, uint64(cpio.S_IFDIR|0o755), byName["a/b"].Mode)
	require.Equal(t, uint64(cpio.S_IFCHR|0o666), byName["dev/null"].Mode)
	require.Equal(t, [2]uint64{1, 3}, [2]uint64{byName["dev/null"].Rmajor, byName["dev/null"].Rminor})

	var again bytes.Buffer
	require.NoError(t, BuildInitramfs(&again, files))
	require.Equal(t, img.Bytes(), again.Bytes(), "same files, same bytes")
}

func TestBuildInitramfsRejects(t *testing.T) {
	for name, files := range map[string][]File{
		"relative":       {{Path: "init", Data: []byte("x")}},
		"unclean":        {{Path: "/a/../init", Data: []byte("x")}},
		"root":           {Dir("/", 0o755)},
		"twice":          {{Path: "/init"}, {Path: "/init"}},
		"empty link":     {{Path: "/l", Mode: fs.ModeSymlink}},
		"named pipe":     {{Path: "/p", Mode: fs.ModeNamedPipe}},
		"dir twice":      {Dir("/d", 0o755), Dir("/d", 0o700)},
		"file as dir":    {{Path: "/a/b"}, {Path: "/a"}},
		"dir under file": {{Path: "/a"}, {Path: "/a/b"}},
		"missing host":   {{Path: "/x", Source: "/nonexistent/ycq"}},
	} {
		t.Run(name, func(t *testing.T) {
			err := BuildInitramfs(io.Discard, files)
			require.Error(t, err)
			if name != "missing host" {
				require.ErrorIs(t, err, ErrBadFile)
			} else {
				require.ErrorIs(t, err, fs.ErrNotExist)
			}
		})
	}
}

// A slice of a real modules.dep (Debian 6.12.117+deb13-amd64).
const modulesDepFixture = `kernel/arch/x86/kvm/kvm.ko.xz: kernel/virt/lib/irqbypass.ko.xz
kernel/drivers/vfio/vfio.ko.xz:
kernel/drivers/vfio/vfio_iommu_type1.ko.xz: kernel/drivers/vfio/vfio.ko.xz
kernel/drivers/vfio/pci/vfio-pci-core.ko.xz: kernel/drivers/vfio/vfio.ko.xz kernel/virt/lib/irqbypass.ko.xz
kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/pci/vfio-pci-core.ko.xz kernel/drivers/vfio/vfio.ko.xz kernel/virt/lib/irqbypass.ko.xz
kernel/virt/lib/irqbypass.ko.xz:
kernel/x/loop-a.ko.xz: kernel/x/loop-b.ko.xz
kernel/x/loop-b.ko.xz: kernel/x/loop-a.ko.xz
kernel/x/broken.ko.xz: kernel/x/gone.ko.xz
`

func names(mods []Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

func TestModulesDepResolve(t *testing.T) {
	md, err := ParseModulesDep(bytes.NewBufferString(modulesDepFixture))
	require.NoError(t, err)

	mods, err := md.Resolve("vfio", "vfio_iommu_type1", "irqbypass", "vfio-pci-core", "vfio-pci")
	require.NoError(t, err)
	require.Equal(t, []string{"vfio", "vfio_iommu_type1", "irqbypass", "vfio_pci_core", "vfio_pci"}, names(mods))
	require.Equal(t, "kernel/drivers/vfio/pci/vfio-pci.ko.xz", mods[4].Rel)

	// Asking for the leaf alone pulls its dependencies in first.
	mods, err = md.Resolve("vfio-pci")
	require.NoError(t, err)
	require.Equal(t, []string{"vfio", "irqbypass", "vfio_pci_core", "vfio_pci"}, names(mods))

	_, err = md.Resolve("nosuch")
	require.ErrorIs(t, err, ErrNoModule)
	_, err = md.Resolve("broken")
	require.ErrorIs(t, err, ErrNoModule)
	require.ErrorContains(t, err, "needed by broken")
	_, err = md.Resolve("loop-a")
	require.ErrorContains(t, err, "cycle")
	require.False(t, errors.Is(err, ErrNoModule))

	_, err = ParseModulesDep(bytes.NewBufferString("no colon here\n"))
	require.Error(t, err)
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/vfio/pci/vfio-pci.ko.xz": "vfio_pci",
		"vfio-pci":                               "vfio_pci",
		"vfio_iommu_type1":                       "vfio_iommu_type1",
		"a/b/plain.ko":                           "plain",
	} {
		require.Equal(t, want, ModuleName(in), in)
	}
}

func TestLocateNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := Locate(dir)
	require.ErrorIs(t, err, ErrNotProvisioned)
	var npe *NotProvisionedError
	require.ErrorAs(t, err, &npe)
	require.Contains(t, npe.What, "debootstrap")
	require.ErrorContains(t, err, "provision.sh")

	// All stamps, no root: the loader is the first thing missing.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, stampsDirName), 0o755))
	for _, s := range stampNames {
		require.NoError(t, os.WriteFile(filepath.Join(dir, stampsDirName, s), nil, 0o644))
	}
	_, err = Locate(dir)
	require.ErrorAs(t, err, &npe)
	require.Equal(t, "dynamic loader", npe.What)
}

func TestResolveInRoot(t *testing.T) {
	root := t.TempDir()
	lib := filepath.Join(root, "usr", "lib")
	require.NoError(t, os.MkdirAll(lib, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(lib, "ld.so"), []byte("x"), 0o755))
	require.NoError(t, os.Symlink("usr/lib", filepath.Join(root, "lib")))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "lib64"), 0o755))
	// An absolute target means root's /usr/lib, never the host's.
	require.NoError(t, os.Symlink("/lib/ld.so", filepath.Join(root, "lib64", "ld.so")))

	got, err := resolveInRoot(root, "lib64/ld.so")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(lib, "ld.so"), got)

	require.NoError(t, os.Symlink("loop", filepath.Join(root, "loop")))
	_, err = resolveInRoot(root, "loop")
	require.ErrorContains(t, err, "too many")
}
