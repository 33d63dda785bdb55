package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// Layout of a provisioned cache, as provision.sh writes it. This file and
// provision.sh are the only places that know it.
const (
	rootDirName   = "trixie-root"
	kernelDirName = "kernel"
	stampsDirName = "stamps"

	archLib      = "usr/lib/x86_64-linux-gnu"
	loaderName   = "ld-linux-x86-64.so.2"
	qemuBinary   = "usr/bin/qemu-system-x86_64"
	qemuDataDir  = "usr/share/qemu"
	seabiosDir   = "usr/share/seabios"
	qemuModDir   = archLib + "/qemu"
	modulesDep   = "modules.dep"
	kernelPrefix = "vmlinuz-"
)

// stampNames are the steps of provision.sh; a cache is complete only when
// every one finished (an interrupted run leaves its step without a stamp).
var stampNames = []string{"debootstrap", "backports", "install_qemu", "kernel"}

// ErrNotProvisioned is wrapped by every error that Locate returns for a cache
// that lacks something provision.sh would have made.
var ErrNotProvisioned = errors.New("qemu: cache not provisioned")

// NotProvisionedError says what Locate found missing and how to fix it.
type NotProvisionedError struct {
	Cache string // the cache directory
	What  string // what is missing, e.g. "QEMU binary"
	Path  string // where it was looked for
	Err   error  // the underlying error, if any
}

func (e *NotProvisionedError) Error() string {
	msg := fmt.Sprintf("qemu: %s missing at %s", e.What, e.Path)
	if e.Err != nil && !errors.Is(e.Err, fs.ErrNotExist) {
		msg = fmt.Sprintf("qemu: %s unusable at %s: %v", e.What, e.Path, e.Err)
	}
	return msg + fmt.Sprintf("; provision it with `YCQ_CACHE=%s bash qemu/provision.sh` (make provision)", e.Cache)
}

// Unwrap returns ErrNotProvisioned and the underlying error.
func (e *NotProvisionedError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrNotProvisioned}
	}
	return []error{ErrNotProvisioned, e.Err}
}

// Env is a provisioned cache: a Debian 13 root holding QEMU, run without
// chroot through the root's own dynamic loader, and an unpacked guest kernel.
// All paths are absolute. An Env is read-only and safe for concurrent use.
type Env struct {
	Cache string // the cache directory

	Root       string   // the Debian 13 root
	Loader     string   // the root's dynamic loader, symlinks resolved inside Root
	LibraryDir string   // the root's library directory, for --library-path
	QEMU       string   // qemu-system-x86_64 inside Root
	DataDirs   []string // QEMU -L directories: its data, then SeaBIOS
	ModuleDir  string   // QEMU's loadable modules, for QEMU_MODULE_DIR

	Kernel        string // the guest kernel image (boot/vmlinuz-<version>)
	KernelVersion string // the kernel release, e.g. "6.12.117+deb13-amd64"
	ModulesDir    string // lib/modules/<version>, with modules.dep
}

// DefaultCacheDir is $YCQ_CACHE, or else $HOME/.cache/ycq, as in
// provision.sh and the Makefile.
func DefaultCacheDir() (string, error) {
	if dir := os.Getenv("YCQ_CACHE"); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("qemu: no YCQ_CACHE and no home directory: %w", err)
	}
	return filepath.Join(home, ".cache", "ycq"), nil
}

// Find returns the Env of the cache in DefaultCacheDir. When the cache is
// not provisioned and provision is set, it provisions it first, if this
// machine can (CanProvision): it writes what was missing, then
// Provision's output, to log. Without provision, or when the machine
// cannot, the error says what is missing and how to provision it.
func Find(ctx context.Context, provision bool, log io.Writer) (*Env, error) {
	cache, err := DefaultCacheDir()
	if err != nil {
		return nil, err
	}
	env, err := Locate(cache)
	if err == nil || !provision {
		return env, err
	}
	if perr := CanProvision(); perr != nil {
		return nil, fmt.Errorf("%w; and %w", err, perr)
	}
	fmt.Fprintf(log, "%v\nprovisioning %s now (a minute or two from nothing)\n", err, cache)
	return Provision(ctx, cache, log)
}

// Locate validates an existing provisioned cache without running anything.
// Its errors wrap ErrNotProvisioned and name what is missing.
func Locate(cacheDir string) (*Env, error) {
	cache, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("qemu: cache dir %q: %w", cacheDir, err)
	}
	missing := func(what, p string, err error) error {
		return &NotProvisionedError{Cache: cache, What: what, Path: p, Err: err}
	}
	for _, s := range stampNames {
		p := filepath.Join(cache, stampsDirName, s)
		if _, err := os.Stat(p); err != nil {
			return nil, missing("stamp of provisioning step "+s, p, err)
		}
	}

	root := filepath.Join(cache, rootDirName)
	e := &Env{
		Cache:      cache,
		Root:       root,
		LibraryDir: filepath.Join(root, archLib),
		QEMU:       filepath.Join(root, qemuBinary),
		DataDirs:   []string{filepath.Join(root, qemuDataDir), filepath.Join(root, seabiosDir)},
		ModuleDir:  filepath.Join(root, qemuModDir),
	}
	if e.Loader, err = resolveInRoot(root, filepath.Join(archLib, loaderName)); err != nil {
		return nil, missing("dynamic loader", filepath.Join(root, archLib, loaderName), err)
	}
	checks := []struct {
		what, path string
		dir        bool
	}{
		{"QEMU binary", e.QEMU, false},
		{"QEMU data directory", e.DataDirs[0], true},
		{"SeaBIOS directory", e.DataDirs[1], true},
		{"QEMU module directory", e.ModuleDir, true},
	}
	for _, c := range checks {
		if err := checkPath(c.path, c.dir); err != nil {
			return nil, missing(c.what, c.path, err)
		}
	}

	kdir := filepath.Join(cache, kernelDirName)
	images, err := filepath.Glob(filepath.Join(kdir, "boot", kernelPrefix+"*"))
	if err != nil || len(images) != 1 {
		err = fmt.Errorf("want one %s* image, found %d", kernelPrefix, len(images))
		if len(images) == 0 {
			err = fs.ErrNotExist
		}
		return nil, missing("guest kernel", filepath.Join(kdir, "boot", kernelPrefix+"*"), err)
	}
	e.Kernel = images[0]
	e.KernelVersion = strings.TrimPrefix(filepath.Base(e.Kernel), kernelPrefix)
	e.ModulesDir = filepath.Join(kdir, "lib", "modules", e.KernelVersion)
	if err := checkPath(filepath.Join(e.ModulesDir, modulesDep), false); err != nil {
		return nil, missing("kernel modules.dep", filepath.Join(e.ModulesDir, modulesDep), err)
	}
	return e, nil
}

func checkPath(p string, dir bool) error {
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return err
	case dir && !fi.IsDir():
		return errors.New("not a directory")
	case !dir && !fi.Mode().IsRegular():
		return errors.New("not a regular file")
	}
	return nil
}

// resolveInRoot follows the symlinks on the way to rel inside root, each
// component in turn, treating absolute link targets as relative to root, and
// returns the host path of the regular file it reaches. The root's loader is
// reached through absolute symlinks on some layouts; followed on the host
// they would reach the host's own, mismatched, loader.
func resolveInRoot(root, rel string) (string, error) {
	todo := strings.Split(strings.Trim(path.Clean("/"+filepath.ToSlash(rel)), "/"), "/")
	done := "/" // resolved so far, inside root, no symlinks
	for links := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			done = path.Dir(done)
			continue
		}
		next := path.Join(done, c)
		host := filepath.Join(root, filepath.FromSlash(next))
		fi, err := os.Lstat(host)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > 40 {
			return "", errors.New("too many levels of symbolic links")
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			done = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	host := filepath.Join(root, filepath.FromSlash(done))
	if err := checkPath(host, false); err != nil {
		return "", err
	}
	return host, nil
}

// Command returns an unstarted qemu-system-x86_64 with args, run through the
// root's loader with the root's libraries, data directories and modules.
// The caller owns the process; Boot adds process-group teardown.
func (e *Env) Command(ctx context.Context, args ...string) *exec.Cmd {
	argv := []string{"--library-path", e.LibraryDir, e.QEMU}
	for _, d := range e.DataDirs {
		argv = append(argv, "-L", d)
	}
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, e.Loader, argv...)
	cmd.Env = append(os.Environ(), "QEMU_MODULE_DIR="+e.ModuleDir)
	return cmd
}

// Version returns QEMU's first --version line.
func (e *Env) Version(ctx context.Context) (string, error) {
	out, err := e.Command(ctx, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("qemu: --version: %w", err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// HasDevice reports whether `-device help` lists the device name.
func (e *Env) HasDevice(ctx context.Context, name string) (bool, error) {
	out, err := e.Command(ctx, "-device", "help").Output()
	if err != nil {
		return false, fmt.Errorf("qemu: -device help: %w", err)
	}
	return strings.Contains(string(out), `name "`+name+`"`), nil
}
