package qemu

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// The USB tier: a guest with QEMU's xHCI controller and a usb-redir device
// whose usbredir peer (a device model) serves on a UNIX socket, and a guest
// /init built with cgo (libusb, through gousb), which needs the machine's
// shared libraries and loader inside the initramfs.

// USBGuestModules are the kernel modules a USB guest loads: the xHCI PCI
// driver, which pulls in xhci-hcd, usbcore (which holds usbfs, the
// /dev/bus/usb nodes libusb opens) and usb-common.
var USBGuestModules = []string{"xhci-pci"}

// DefaultUSBGuest is the main package of the USB guest's /init.
const DefaultUSBGuest = "./cmd/ycq-usbguest"

// ErrNoLibrary is wrapped when a shared library a binary needs is not on
// the machine.
var ErrNoLibrary = errors.New("qemu: shared library not found")

// LibraryDirs are where SharedLibraries looks for a DT_NEEDED library, in
// order: the Debian multiarch directories first, as the machine's loader
// does without its cache. A guest finds them at the same paths, which are
// on its loader's built-in search path.
var LibraryDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/lib", "/usr/lib"}

// SharedLibraries returns what the dynamically linked ELF executable bin
// needs at run time: its program interpreter (the loader, at the path its
// PT_INTERP names) and every shared library it needs, directly or through
// another library, found in LibraryDirs. Each comes once, as an initramfs
// entry at the path where the loader will look for it, read from the real
// file behind any symlink. A static executable needs nothing: no entries.
// A shared library (no PT_INTERP) gives the libraries it needs.
func SharedLibraries(bin string) ([]File, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("qemu: shared libraries of %s: %w", bin, err)
	}
	defer f.Close()
	var interp string
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
		if err != nil {
			return nil, fmt.Errorf("qemu: shared libraries of %s: PT_INTERP: %w", bin, err)
		}
		interp = string(bytes.TrimRight(b, "\x00"))
	}
	needed, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("qemu: shared libraries of %s: %w", bin, err)
	}
	if interp == "" && len(needed) > 0 && f.Type != elf.ET_DYN {
		return nil, fmt.Errorf("qemu: %s needs %v but names no loader (PT_INTERP)", bin, needed)
	}

	var files []File
	add := func(guest string) error {
		src, err := filepath.EvalSymlinks(guest)
		if err != nil {
			return err
		}
		files = append(files, File{Path: guest, Mode: 0o755, Source: src})
		return nil
	}
	seen := map[string]bool{}
	if interp != "" {
		if !path.IsAbs(interp) || path.Clean(interp) != interp {
			return nil, fmt.Errorf("qemu: %s: loader %q is not a clean absolute path", bin, interp)
		}
		if err := add(interp); err != nil {
			return nil, fmt.Errorf("qemu: %s: loader: %w", bin, err)
		}
		// Libraries that name the loader as a dependency get the one
		// already running.
		seen[path.Base(interp)] = true
	}
	todo := slices.Clone(needed)
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		if strings.Contains(name, "/") {
			return nil, fmt.Errorf("qemu: %s needs %q: a path, not a library name", bin, name)
		}
		lib, err := findLibrary(name)
		if err != nil {
			return nil, fmt.Errorf("qemu: %s: %w", bin, err)
		}
		if err := add(lib); err != nil {
			return nil, fmt.Errorf("qemu: %s: %s: %w", bin, name, err)
		}
		more, err := importedLibraries(lib)
		if err != nil {
			return nil, fmt.Errorf("qemu: %s: %w", bin, err)
		}
		todo = append(todo, more...)
	}
	return files, nil
}

func findLibrary(name string) (string, error) {
	for _, dir := range LibraryDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s (looked in %s)", ErrNoLibrary, name, strings.Join(LibraryDirs, ", "))
}

func importedLibraries(lib string) ([]string, error) {
	f, err := elf.Open(lib)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ImportedLibraries()
}

// GoBuildCgo builds the main package pkg like GoBuild, but with cgo, as a
// dynamically linked executable for this machine, and returns its bytes
// with the initramfs entries of the loader and shared libraries it needs
// (SharedLibraries). The libraries come from this machine, so the guest
// runs the binary with the libraries it was linked against; the guest
// kernel is all it shares with the guest's Debian.
//
// Why not static: Debian ships libusb-1.0.a, but it calls libudev, of
// which Debian ships no static archive, and a static glibc program cannot
// load libraries later. Copying a handful of libraries is the robust way.
func GoBuildCgo(ctx context.Context, dir, pkg string) ([]byte, []File, error) {
	var libs []File
	b, err := goBuild(ctx, dir, pkg, true, func(bin string) (err error) {
		libs, err = SharedLibraries(bin)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return b, libs, nil
}

// USBVMConfig describes a guest run of the USB tier: QEMU with a qemu-xhci
// controller and one usb-redir device, whose chardev connects to a usbredir
// peer (the device model) serving on Socket, and a guest /init built with
// cgo from Init.
type USBVMConfig struct {
	// Socket is where the usbredir peer listens; QEMU connects to it at
	// start, so it must be listening by then.
	Socket string
	// Mode is the guest's ycq.mode.
	Mode string
	// Params are more ycq.* kernel parameters.
	Params []string
	// Memory is the guest RAM, default 512M.
	Memory string
	// CPUs is the guest's vCPU count, default 2.
	CPUs int
	// Module is the ycq module's directory, found from the working
	// directory when empty.
	Module string
	// Init is the main package of the guest /init, relative to Module;
	// default DefaultUSBGuest.
	Init string
	// Console receives the serial console as it comes.
	Console io.Writer
}

// USBArgs are the QEMU arguments of the USB tier: an xHCI controller and a
// usb-redir device on it whose usbredir stream is the UNIX socket at
// socket (QEMU the client).
func USBArgs(socket string) []string {
	return []string{
		"-device", "qemu-xhci,id=xhci",
		"-chardev", "socket,id=ycqusb,path=" + socket,
		"-device", "usb-redir,chardev=ycqusb,id=ycqredir,bus=xhci.0",
	}
}

// USBGuestFiles are the initramfs of a USB guest: BaseFiles, the cgo
// /init and what it needs to run, and USBGuestModules with their list.
func (e *Env) USBGuestFiles(ctx context.Context, module, pkg string) ([]File, error) {
	return e.cgoGuestFiles(ctx, module, pkg, USBGuestModules)
}

// cgoGuestFiles are the initramfs of a guest whose /init is pkg built
// with cgo: BaseFiles, the /init and the shared libraries it loads, and
// modules with their list.
func (e *Env) cgoGuestFiles(ctx context.Context, module, pkg string, modules []string) ([]File, error) {
	initBin, libs, err := GoBuildCgo(ctx, module, pkg)
	if err != nil {
		return nil, err
	}
	return e.guestFiles(initBin, libs, modules)
}

// RunUSBVM boots a USB guest and returns once it powered off, with its
// YCQ-RESULT line decoded, as RunVM does. The guest's own failure is an
// error too.
func (e *Env) RunUSBVM(ctx context.Context, cfg USBVMConfig) (*VMResult, error) {
	if cfg.Socket == "" {
		return nil, errors.New("qemu: a USB guest needs the usbredir peer's socket")
	}
	if cfg.Memory == "" {
		cfg.Memory = "512M"
	}
	if cfg.CPUs <= 0 {
		cfg.CPUs = 2
	}
	if cfg.Init == "" {
		cfg.Init = DefaultUSBGuest
	}
	module, err := orModuleDir(cfg.Module)
	if err != nil {
		return nil, err
	}
	files, err := e.USBGuestFiles(ctx, module, cfg.Init)
	if err != nil {
		return nil, err
	}
	return e.runGuest(ctx, BootConfig{
		Files:   files,
		Memory:  cfg.Memory,
		Append:  append([]string{"no_timer_check", "ycq.mode=" + cfg.Mode}, cfg.Params...),
		Args:    append([]string{"-smp", fmt.Sprint(cfg.CPUs)}, USBArgs(cfg.Socket)...),
		Console: cfg.Console,
	})
}
