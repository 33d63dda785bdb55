package qemu

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func guestPaths(files []File) []string {
	var out []string
	for _, f := range files {
		out = append(out, f.Path)
	}
	return out
}

// TestSharedLibrariesOfADynamicProgram: a Debian program gets its loader,
// at the path PT_INTERP names, and libc, each once, read from the file
// behind the symlinks.
func TestSharedLibrariesOfADynamicProgram(t *testing.T) {
	const bin = "/bin/true"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no %s on this machine", bin)
	}
	files, err := SharedLibraries(bin)
	require.NoError(t, err)
	paths := guestPaths(files)
	require.Equal(t, "/lib64/ld-linux-x86-64.so.2", paths[0], "the loader first")
	require.Contains(t, paths, "/lib/x86_64-linux-gnu/libc.so.6")
	require.Len(t, slices.Compact(slices.Sorted(slices.Values(paths))), len(paths), "each once")
	for _, f := range files {
		fi, err := os.Lstat(f.Source)
		require.NoError(t, err)
		require.True(t, fi.Mode().IsRegular(), "%s read from a regular file, not %s", f.Path, f.Source)
	}
}

// TestSharedLibrariesOfLibusb: libusb's own dependencies are followed
// (libudev on Debian), which a cgo program linked with -lusb-1.0 needs in
// the guest.
func TestSharedLibrariesOfLibusb(t *testing.T) {
	lib, err := findLibrary("libusb-1.0.so.0")
	if err != nil {
		t.Skipf("%v: `make tools` installs libusb-1.0-0-dev", err)
	}
	files, err := SharedLibraries(lib)
	require.NoError(t, err)
	paths := guestPaths(files)
	require.Contains(t, paths, "/lib/x86_64-linux-gnu/libc.so.6")
	t.Logf("libusb needs %v", paths)
}

// TestSharedLibrariesOfAStaticProgram: GoBuild's static program needs
// nothing.
func TestSharedLibrariesOfAStaticProgram(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	b, err := GoBuild(ctx, ".", "./internal/guesthello")
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "init")
	require.NoError(t, os.WriteFile(p, b, 0o755))
	files, err := SharedLibraries(p)
	require.NoError(t, err)
	require.Empty(t, files)
}

// TestSharedLibrariesRefusesNonELF: a file that is no ELF is an error, not
// an empty list.
func TestSharedLibrariesRefusesNonELF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755))
	_, err := SharedLibraries(p)
	require.Error(t, err)
}

func TestUSBArgs(t *testing.T) {
	require.Equal(t, []string{
		"-device", "qemu-xhci,id=xhci",
		"-chardev", "socket,id=ycqusb,path=/run/x.sock",
		"-device", "usb-redir,chardev=ycqusb,id=ycqredir,bus=xhci.0",
	}, USBArgs("/run/x.sock"))
}

// TestUSBGuestModulesResolve: the guest kernel's modules.dep gives the xHCI
// driver with usbcore (which holds usbfs) before it.
func TestUSBGuestModulesResolve(t *testing.T) {
	env := testEnv(t)
	_, mods, err := env.ModuleFiles(USBGuestModules...)
	require.NoError(t, err)
	require.Equal(t, []string{"usb_common", "usbcore", "xhci_hcd", "xhci_pci"}, names(mods))
}

// TestEnvQEMUHasUSBRedir: QEMU finds its usb-redir module (QEMU_MODULE_DIR)
// and has the xHCI controller.
func TestEnvQEMUHasUSBRedir(t *testing.T) {
	env := testEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, dev := range []string{"usb-redir", "qemu-xhci"} {
		ok, err := env.HasDevice(ctx, dev)
		require.NoError(t, err)
		require.True(t, ok, "QEMU lacks %s", dev)
	}
}

// TestGuestResultAfterEscapes: a result line that follows the firmware's
// terminal escapes on the same console line is found; a later one wins.
func TestGuestResultAfterEscapes(t *testing.T) {
	res := &Result{Console: "\x1b[2J\x1b[0mSeaBIOS\n\x1bc\x1b[?7l\x1b[2JYCQ-RESULT {\"mode\":\"probe\"}\n" +
		"YCQ-TABLE-BEGIN\nrow\nYCQ-TABLE-END\nYCQ-RESULT {\"mode\":\"usb\",\"n\":2}\nYCQ-GUEST-EXIT ok\n"}
	vr := guestResult(res)
	require.Equal(t, map[string]any{"mode": "usb", "n": float64(2)}, vr.Line)
	require.Equal(t, "row\n", vr.Table)
	vr = guestResult(&Result{Console: "\x1bc\x1b[?7l\x1b[2JYCQ-TABLE-BEGIN\nrow 1\nrow 2\nYCQ-TABLE-END\n"})
	require.Equal(t, "row 1\nrow 2\n", vr.Table, "a table right after the escapes")
	require.Nil(t, guestResult(&Result{Console: "YCQ-RESULT {not json\n"}).Line)
}
