package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"

	"github.com/u-root/u-root/pkg/cpio"
)

// ErrBadFile is wrapped by BuildInitramfs's errors about a File.
var ErrBadFile = errors.New("qemu: bad initramfs file")

// File is one entry of a guest initramfs.
type File struct {
	// Path is the absolute path in the guest, e.g. "/init".
	Path string
	// Mode holds the type (0 for a regular file, fs.ModeDir, fs.ModeSymlink,
	// fs.ModeDevice|fs.ModeCharDevice) and the permission bits.
	Mode fs.FileMode
	// Data is a regular file's contents or a symlink's target.
	Data []byte
	// Source, when Data is nil, is the host file a regular file is read from.
	Source string
	// Major and Minor number a device node.
	Major, Minor uint32
}

// Dir returns a directory entry.
func Dir(p string, perm fs.FileMode) File { return File{Path: p, Mode: fs.ModeDir | perm} }

// CharDev returns a character device node.
func CharDev(p string, perm fs.FileMode, major, minor uint32) File {
	return File{Path: p, Mode: fs.ModeDevice | fs.ModeCharDevice | perm, Major: major, Minor: minor}
}

// BaseFiles are what a Go /init needs before it mounts anything: /dev with
// /dev/console, so the kernel hands init the console as fds 0, 1 and 2, and
// the mount points /proc, /sys and /tmp.
func BaseFiles() []File {
	return []File{
		Dir("/dev", 0o755),
		CharDev("/dev/console", 0o600, 5, 1),
		Dir("/proc", 0o555),
		Dir("/sys", 0o555),
		Dir("/tmp", fs.ModeSticky|0o777),
	}
}

// BuildInitramfs writes files as an uncompressed newc cpio archive, the
// format the kernel unpacks into its initial rootfs. Each path may appear
// once. Parent directories come before their children: a directory listed
// after something inside it is written early, with its own mode; one not
// listed at all is added with mode 0755. Timestamps and owners are zero, so
// equal inputs give equal bytes. Wrap w in a gzip.Writer for a compressed
// image; the Debian kernel reads both.
func BuildInitramfs(w io.Writer, files []File) error {
	names := make([]string, len(files))
	dirs := make(map[string]File) // listed directories, by name
	seen := make(map[string]bool)
	for i, f := range files {
		name, err := guestName(f.Path)
		if err != nil {
			return err
		}
		if seen[name] {
			return fmt.Errorf("%w: %s: listed twice", ErrBadFile, f.Path)
		}
		seen[name] = true
		names[i] = name
		if f.Mode.Type() == fs.ModeDir {
			dirs[name] = f
		}
	}

	// u-root's newc writer drops a second record with the same name, so
	// each name is written exactly once, here.
	cw := cpio.Newc.Writer(w)
	written := make(map[string]bool)
	isDir := func(name string) bool { _, ok := dirs[name]; return ok || !seen[name] }
	var ino uint64
	write := func(name string, f File) error {
		rec, err := record(name, f)
		if err != nil {
			return err
		}
		ino++
		rec.Ino = ino
		rec.NLink = 1
		if rec.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			rec.NLink = 2
		}
		if err := cw.WriteRecord(rec); err != nil {
			return fmt.Errorf("qemu: initramfs %s: %w", f.Path, err)
		}
		written[name] = true
		return nil
	}
	for i, f := range files {
		for _, dir := range parents(names[i]) {
			if !isDir(dir) {
				return fmt.Errorf("%w: %s: parent /%s is not a directory", ErrBadFile, f.Path, dir)
			}
			if written[dir] {
				continue
			}
			d, ok := dirs[dir]
			if !ok {
				d = Dir("/"+dir, 0o755)
			}
			if err := write(dir, d); err != nil {
				return err
			}
		}
		if written[names[i]] {
			continue // a directory written early as a parent
		}
		if err := write(names[i], f); err != nil {
			return err
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("qemu: initramfs trailer: %w", err)
	}
	return nil
}

// guestName turns an absolute guest path into a cpio name ("init",
// "lib/modules/...").
func guestName(p string) (string, error) {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return "", fmt.Errorf("%w: %q: want a clean absolute path below /", ErrBadFile, p)
	}
	return p[1:], nil
}

// parents returns the directories above name, outermost first.
func parents(name string) []string {
	var out []string
	for d := path.Dir(name); d != "."; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}

func record(name string, f File) (cpio.Record, error) {
	perm := uint64(f.Mode.Perm())
	if f.Mode&fs.ModeSticky != 0 {
		perm |= cpio.S_ISVTX
	}
	if f.Mode&fs.ModeSetuid != 0 {
		perm |= cpio.S_ISUID
	}
	if f.Mode&fs.ModeSetgid != 0 {
		perm |= cpio.S_ISGID
	}
	switch f.Mode.Type() {
	case 0:
		data := f.Data
		if data == nil && f.Source != "" {
			var err error
			if data, err = os.ReadFile(f.Source); err != nil {
				return cpio.Record{}, fmt.Errorf("qemu: initramfs %s: %w", f.Path, err)
			}
		}
		return cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm}), nil
	case fs.ModeDir:
		return cpio.Directory(name, perm), nil
	case fs.ModeSymlink:
		if len(f.Data) == 0 {
			return cpio.Record{}, fmt.Errorf("%w: %s: symlink without a target in Data", ErrBadFile, f.Path)
		}
		return cpio.Symlink(name, string(f.Data)), nil
	case fs.ModeDevice | fs.ModeCharDevice:
		return cpio.CharDev(name, perm, uint64(f.Major), uint64(f.Minor)), nil
	default:
		return cpio.Record{}, fmt.Errorf("%w: %s: unsupported type %v", ErrBadFile, f.Path, f.Mode.Type())
	}
}

// WriteInitramfs builds files into a new file at p (mode 0644).
func WriteInitramfs(p string, files []File) (err error) {
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("qemu: initramfs: %w", err)
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("qemu: initramfs: %w", cerr)
		}
	}()
	return BuildInitramfs(out, files)
}

// GoBuild builds the main package pkg (an import path, or a directory
// relative to dir such as "./internal/guesthello") as a static linux/amd64
// executable, run from dir (the module to build in; "" for the current
// directory), and returns its bytes. It runs the `go` on PATH, which `go
// test` puts first.
func GoBuild(ctx context.Context, dir, pkg string) ([]byte, error) {
	return goBuild(ctx, dir, pkg, false, nil)
}

// goBuild is GoBuild and GoBuildCgo: it builds pkg for linux/amd64, with
// cgo or without, into a temporary file and returns its bytes; inspect,
// when not nil, looks at the file first (an error from it is goBuild's).
func goBuild(ctx context.Context, dir, pkg string, cgo bool, inspect func(bin string) error) ([]byte, error) {
	gocmd, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("qemu: go build %s: %w", pkg, err)
	}
	tmp, err := os.MkdirTemp("", "ycq-gobuild-")
	if err != nil {
		return nil, fmt.Errorf("qemu: go build %s: %w", pkg, err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "init")
	cmd := exec.CommandContext(ctx, gocmd, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cgoEnabled, what := "CGO_ENABLED=0", ""
	if cgo {
		cgoEnabled, what = "CGO_ENABLED=1", " (cgo)"
	}
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", cgoEnabled)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("qemu: go build %s%s: %w\n%s", pkg, what, err, stderr.Bytes())
	}
	if inspect != nil {
		if err := inspect(out); err != nil {
			return nil, err
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("qemu: go build %s: %w", pkg, err)
	}
	return b, nil
}
