package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/testenv"
)

// vfioModules are what the guest needs for kernel VFIO, in load order.
var vfioModules = []string{"vfio", "vfio_iommu_type1", "irqbypass", "vfio-pci-core", "vfio-pci"}

var sharedEnv testenv.QEMU[*Env]

// testEnv returns the provisioned Env, provisioning the cache first if it
// is missing and this machine can. It fails with the reason when there is
// no QEMU, unless YCQ_SKIP_QEMU=1, which makes it skip (and not provision).
func testEnv(t *testing.T) *Env {
	t.Helper()
	return sharedEnv.Get(t, Find)
}

func TestEnvQEMUHasVFIOUser(t *testing.T) {
	env := testEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	v, err := env.Version(ctx)
	require.NoError(t, err)
	require.Contains(t, v, "QEMU emulator version")
	ok, err := env.HasDevice(ctx, "vfio-user-pci")
	require.NoError(t, err)
	require.True(t, ok, "%s lacks vfio-user-pci", v)
	t.Logf("%s; kernel %s", v, env.KernelVersion)
}

// TestBootSmoke boots the Debian kernel with a Go /init that prints a
// marker with the kernel release, loads the VFIO modules in dependency
// order with finit_module, and powers off.
func TestBootSmoke(t *testing.T) {
	env := testEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	initBin, err := GoBuild(ctx, ".", "./internal/guesthello")
	require.NoError(t, err)
	modFiles, mods, err := env.ModuleFiles(vfioModules...)
	require.NoError(t, err)
	require.Equal(t, []string{"vfio", "vfio_iommu_type1", "irqbypass", "vfio_pci_core", "vfio_pci"}, names(mods))

	files := append(BaseFiles(), File{Path: "/init", Mode: 0o755, Data: initBin})
	files = append(files, modFiles...)
	cfg := BootConfig{Files: files}
	if testing.Verbose() {
		cfg.Console = t.Output()
	}
	res, err := env.Boot(ctx, cfg)
	if res != nil && (err != nil || t.Failed()) {
		t.Logf("console:\n%s\nstderr:\n%s", res.Console, res.Stderr)
	}
	require.NoError(t, err)
	require.Zero(t, res.ExitCode)
	require.Contains(t, res.Console, "YCQ-GUEST-OK "+env.KernelVersion+"\n")
	for _, m := range mods {
		require.Contains(t, res.Console, "YCQ-MODULE "+filepath.Base(m.Rel)+" loaded\n")
		require.Contains(t, res.Console, "YCQ-PROC-MODULE "+m.Name+"\n")
	}
	require.Contains(t, res.Console, "YCQ-GUEST-EXIT ok\n")
	t.Logf("guest ran %v (QEMU start to exit)", res.Duration.Round(time.Millisecond))
}

// TestBootCancelLeavesNoProcess ends a boot by its deadline, long before
// the guest could finish, and checks that QEMU is gone.
func TestBootCancelLeavesNoProcess(t *testing.T) {
	env := testEnv(t)
	initrd := filepath.Join(t.TempDir(), "never-runs.cpio")
	require.NoError(t, WriteInitramfs(initrd, BaseFiles())) // no /init: would panic, later
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := env.Boot(ctx, BootConfig{Initrd: initrd})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotNil(t, res)
	require.Less(t, time.Since(start), 30*time.Second)
	require.Empty(t, processesWith(t, initrd), "QEMU outlived its context")
}

// processesWith lists the pids whose command line mentions s.
func processesWith(t *testing.T, s string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	require.NoError(t, err)
	var pids []string
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, filepath.Base(filepath.Dir(p)))
		}
	}
	return pids
}
