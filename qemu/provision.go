package qemu

import (
	"context"
	_ "embed" // provision.sh travels inside the binary
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

//go:embed provision.sh
var provisionScript []byte

// ErrCannotProvision is wrapped by CanProvision's and Provision's errors when
// this machine lacks what provisioning needs.
var ErrCannotProvision = errors.New("qemu: cannot provision here")

// CanProvision reports why provision.sh cannot run on this machine, or nil.
// It does not check that the package mirrors are reachable.
func CanProvision() error {
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			return fmt.Errorf("%w: not root and no sudo", ErrCannotProvision)
		}
		if err := exec.Command("sudo", "-n", "true").Run(); err != nil {
			return fmt.Errorf("%w: not root and sudo -n fails: %v", ErrCannotProvision, err)
		}
	}
	for _, tool := range []string{"bash", "chroot", "flock", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCannotProvision, tool, err)
		}
	}
	_, errApt := exec.LookPath("apt-get")
	_, errDeb := exec.LookPath("debootstrap")
	if errApt != nil && errDeb != nil {
		return fmt.Errorf("%w: neither debootstrap nor apt-get to install it", ErrCannotProvision)
	}
	return nil
}

// Provision runs the embedded provision.sh for cacheDir, writing its
// progress to log, then returns Locate's result. It is idempotent: steps
// already done are skipped, so on a provisioned cache it takes well under a
// second. Cancelling ctx sends SIGTERM to the script's process group (the
// script unmounts what it mounted) and SIGKILL a minute later.
func Provision(ctx context.Context, cacheDir string, log io.Writer) (*Env, error) {
	if err := CanProvision(); err != nil {
		return nil, err
	}
	cache, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("qemu: cache dir %q: %w", cacheDir, err)
	}
	dir, err := os.MkdirTemp("", "ycq-provision-")
	if err != nil {
		return nil, fmt.Errorf("qemu: provision: %w", err)
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "provision.sh")
	if err := os.WriteFile(script, provisionScript, 0o755); err != nil {
		return nil, fmt.Errorf("qemu: provision: %w", err)
	}

	if log == nil {
		log = io.Discard
	}
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), "YCQ_CACHE="+cache)
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("qemu: provision %s: %w", cache, ctx.Err())
		}
		return nil, fmt.Errorf("qemu: provision %s (its log says why): %w", cache, err)
	}
	return Locate(cache)
}
