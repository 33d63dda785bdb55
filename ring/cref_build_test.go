package ring_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/testenv"
)

// cDir is ring/c, from the package directory the tests run in.
const cDir = "c"

// needCC returns the path of the C compiler tool, or ends the test: it
// skips with the reason, or fails when YCQ_REQUIRE names the tool (or
// "all"), as the tests that need other parts of the machine do.
func needCC(t *testing.T, tool string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		pkg := map[string]string{"nm": "binutils"}[tool]
		if pkg == "" {
			pkg = tool
		}
		testenv.Missing(t, tool, fmt.Sprintf("no %s to build ring/c (apt-get install %s): %v", tool, pkg, err))
	}
	return path
}

// cFreestanding are the flags ring/c/README.md promises ycq_ring.c builds
// with, and a few stricter warnings a firmware build may turn on.
var cFreestanding = []string{"-std=c99", "-ffreestanding", "-nostdlib", "-Wall", "-Wextra", "-Werror", "-pedantic-errors",
	"-Wconversion", "-Wsign-conversion", "-Wshadow", "-Wcast-qual", "-Wundef", "-Wstrict-prototypes", "-Wmissing-prototypes"}

// TestCRefFreestanding: ycq_ring.c compiles as freestanding C99 with gcc
// and, where Debian's clang is installed, with clang, natively and for
// 32-bit, microcontroller and big-endian targets (clang is a cross
// compiler: only the object is made, nothing is linked or run), and the
// object needs no symbol from anywhere: no libc, no libgcc or compiler-rt
// helper, no libatomic. ARMv6-M and RV32I have no lock-free atomics, so
// they build with a port header (ports/armv6m.h shows one for ARMv6-M).
func TestCRefFreestanding(t *testing.T) {
	src := filepath.Join(cDir, "ycq_ring.c")
	builds := []struct {
		name, tool string
		flags      []string
	}{
		{"gcc -O2", "gcc", []string{"-O2"}},
		{"gcc -O0", "gcc", []string{"-O0"}},
		{"gcc -Os split64", "gcc", []string{"-Os", "-DYCQ_PORT_SPLIT64=1"}},
		{"gcc i386", "gcc", []string{"-m32", "-fno-pie", "-O2"}},
		{"gcc x86 volatile port", "gcc", []string{"-O2", `-DYCQ_PORT_HEADER="ports/x86_volatile.h"`}},
		{"gcc i386 volatile port", "gcc", []string{"-m32", "-fno-pie", "-O2", `-DYCQ_PORT_HEADER="ports/x86_volatile.h"`}},
		{"clang -O2", "clang", []string{"-O2"}},
		{"clang -O0 split64", "clang", []string{"-O0", "-DYCQ_PORT_SPLIT64=1"}},
		{"clang Cortex-M4", "clang", []string{"--target=thumbv7em-none-eabi", "-mcpu=cortex-m4", "-Os"}},
		{"clang Cortex-M0 port", "clang", []string{"--target=thumbv6m-none-eabi", "-mcpu=cortex-m0", "-Os", `-DYCQ_PORT_HEADER="ports/armv6m.h"`}},
		{"clang RV32IMAC", "clang", []string{"--target=riscv32-unknown-elf", "-march=rv32imac", "-O2"}},
		{"clang AArch64", "clang", []string{"--target=aarch64-none-elf", "-O2"}},
		{"clang big-endian PowerPC", "clang", []string{"--target=powerpc-unknown-eabi", "-O2"}},
		{"clang big-endian ARM", "clang", []string{"--target=armebv7-none-eabi", "-O2"}},
	}
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) {
			cc := needCC(t, b.tool)
			nm := needCC(t, "nm")
			obj := filepath.Join(t.TempDir(), "ycq_ring.o")
			args := append(append(append([]string{}, b.flags...), cFreestanding...), "-I.", "-c", "-o", obj, src)
			out, err := exec.Command(cc, args...).CombinedOutput()
			require.NoError(t, err, "%s %s:\n%s", b.tool, strings.Join(args, " "), out)
			undefined, err := exec.Command(nm, "-u", obj).CombinedOutput()
			require.NoError(t, err, "nm -u: %s", undefined)
			require.Empty(t, strings.TrimSpace(string(undefined)), "symbols the object needs from elsewhere")
		})
	}
	t.Run("gcc link with no libraries", func(t *testing.T) {
		// -nostdlib means something only at link time: link the object
		// alone into a shared library that may leave nothing undefined.
		gcc := needCC(t, "gcc")
		so := filepath.Join(t.TempDir(), "libycq.so")
		args := append(append([]string{}, cFreestanding...), "-O2", "-I.", "-fPIC", "-shared", "-Wl,--no-undefined", "-o", so, src)
		out, err := exec.Command(gcc, args...).CombinedOutput()
		require.NoError(t, err, "gcc %s:\n%s", strings.Join(args, " "), out)
	})
	t.Run("g++ includes the API", func(t *testing.T) {
		gxx := needCC(t, "g++")
		cc := filepath.Join(t.TempDir(), "api.cc")
		require.NoError(t, os.WriteFile(cc, []byte("#include \"ycq_agent.h\"\nint f(ycq_consumer *c) { return ycq_consumer_wake(c); }\n"), 0o644))
		args := []string{"-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic-errors", "-fsyntax-only", "-I.", "-I" + cDir, cc}
		out, err := exec.Command(gxx, args...).CombinedOutput()
		require.NoError(t, err, "g++ %s:\n%s", strings.Join(args, " "), out)
	})
}
