//go:build linux

package guest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// mounts are the file systems a test init wants, in order.
var mounts = []struct{ source, target, fstype string }{
	{"devtmpfs", "/dev", "devtmpfs"},
	{"proc", "/proc", "proc"},
	{"sysfs", "/sys", "sysfs"},
}

// Setup mounts devtmpfs on /dev, proc on /proc and sysfs on /sys, creating
// the mount points if needed. A file system already mounted there is fine.
func Setup() error {
	var errs []error
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("guest: mkdir %s: %w", m.target, err))
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("guest: mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	return errors.Join(errs...)
}

// KernelRelease is uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// LoadModule loads one module file with finit_module. A compressed file
// (.ko.xz, .ko.zst, .ko.gz) is handed to the kernel as it is, with
// MODULE_INIT_COMPRESSED_FILE; the Debian kernel decompresses it itself.
// A module that is already loaded counts as loaded.
func LoadModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("guest: load module: %w", err)
	}
	defer f.Close()
	flags := 0
	if path.Ext(file) != ".ko" {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("guest: finit_module %s: %w", path.Base(file), err)
	}
	return nil
}

// ModuleResult is one module's outcome in LoadModules.
type ModuleResult struct {
	File string // guest path
	Err  error  // nil when loaded
}

// LoadModules loads every module listed in the file list (one guest path a
// line, dependencies first, as qemu.Env.ModuleFiles writes
// ModuleList) in order and reports each. It goes on after a
// failure, so the report shows all of them; the error joins the failures.
func LoadModules(list string) ([]ModuleResult, error) {
	f, err := os.Open(list)
	if err != nil {
		return nil, fmt.Errorf("guest: module list: %w", err)
	}
	defer f.Close()
	var res []ModuleResult
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		file := strings.TrimSpace(sc.Text())
		if file == "" {
			continue
		}
		err := LoadModule(file)
		res = append(res, ModuleResult{File: file, Err: err})
		errs = append(errs, err)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("guest: module list: %w", err))
	}
	return res, errors.Join(errs...)
}

// PowerOff syncs and powers the guest off, which makes QEMU exit. It does
// not return; if the reboot call fails, it says so and exits, and the
// kernel's panic (with panic=-1 and -no-reboot) ends QEMU instead.
func PowerOff() {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Fprintf(os.Stderr, "guest: power off: %v\n", err)
	os.Exit(1)
}

// Main runs fn as the guest's whole life: Setup, fn, a closing line
// "YCQ-GUEST-EXIT ok" or "YCQ-GUEST-EXIT error: ..." on stdout, then
// PowerOff, also when fn panics.
func Main(fn func() error) {
	defer PowerOff()
	defer func() {
		if r := recover(); r != nil {
			fmt.Printf("YCQ-GUEST-EXIT error: panic: %v\n", r)
		}
	}()
	err := Setup()
	if err == nil {
		err = fn()
	}
	if err != nil {
		fmt.Printf("YCQ-GUEST-EXIT error: %v\n", err)
		return
	}
	fmt.Println("YCQ-GUEST-EXIT ok")
}
