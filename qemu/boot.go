package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Errors Boot wraps.
var (
	// ErrGuestPanic: the console shows a kernel panic (with panic=-1 and
	// -no-reboot QEMU then exits 0, so the exit status alone hides it).
	ErrGuestPanic = errors.New("qemu: guest kernel panicked")
	// ErrQEMUFailed: QEMU exited with a non-zero status.
	ErrQEMUFailed = errors.New("qemu: QEMU failed")
)

// DefaultAppend is the kernel command line Boot starts from.
const DefaultAppend = "console=ttyS0 panic=-1 quiet"

// BootConfig describes one guest run.
type BootConfig struct {
	// Initrd is an initramfs image on the host. If it is empty, Boot builds
	// one from Files into a temporary file that it removes afterwards.
	Initrd string
	Files  []File

	// Kernel defaults to the Env's kernel.
	Kernel string
	// Machine is QEMU's -machine value, default "q35"; later work uses
	// "q35,kernel-irqchip=split" for the emulated IOMMU.
	Machine string
	// Memory is QEMU's -m value, default "512M". A memory-backend-memfd in
	// Args must have the same size.
	Memory string
	// Append is added to DefaultAppend, e.g. "intel_iommu=on".
	Append []string
	// Args are extra QEMU arguments, e.g. "-device", "intel-iommu,...".
	Args []string

	// Console, if set, receives the serial console as it arrives (for
	// example a test's log); Result.Console has it all either way.
	Console io.Writer
}

// Result is what a guest run left.
type Result struct {
	Console  string        // serial console output, "\r\n" turned to "\n"
	Stderr   string        // QEMU's own diagnostics
	ExitCode int           // QEMU's exit status; -1 if killed
	Duration time.Duration // from QEMU's start to its exit
	Panic    string        // the console's "Kernel panic" line, if any
	Args     []string      // the QEMU command line, for reports
}

// Boot runs one guest to completion: the guest powers off (QEMU exits),
// panics (-no-reboot makes that an exit too), or ctx ends. On ctx's end the
// whole QEMU process group is killed. Boot returns a Result whenever QEMU
// started, also together with an error (ctx's, ErrGuestPanic or
// ErrQEMUFailed), so the console is there to explain it. Boot leaves no
// process or temporary file behind.
func (e *Env) Boot(ctx context.Context, cfg BootConfig) (*Result, error) {
	initrd := cfg.Initrd
	if initrd == "" {
		dir, err := os.MkdirTemp("", "ycq-boot-")
		if err != nil {
			return nil, fmt.Errorf("qemu: boot: %w", err)
		}
		defer os.RemoveAll(dir)
		initrd = filepath.Join(dir, "initramfs.cpio")
		if err := WriteInitramfs(initrd, cfg.Files); err != nil {
			return nil, err
		}
	}
	args := e.bootArgs(cfg, initrd)

	cmd := e.Command(ctx, args...)
	// QEMU runs in its own process group; killing the group on cancel takes
	// any helper it started along. Pdeathsig covers this process dying.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var console, stderr lockedBuffer
	cmd.Stdout = &console
	if cfg.Console != nil {
		cmd.Stdout = io.MultiWriter(&console, cfg.Console)
	}
	cmd.Stderr = &stderr

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu: boot: start: %w", err)
	}
	werr := cmd.Wait()
	res := &Result{
		Console:  strings.ReplaceAll(console.String(), "\r\n", "\n"),
		Stderr:   stderr.String(),
		ExitCode: cmd.ProcessState.ExitCode(),
		Duration: time.Since(start),
		Args:     append([]string{e.QEMU}, args...),
	}
	if i := strings.Index(res.Console, "Kernel panic"); i >= 0 {
		line, _, _ := strings.Cut(res.Console[i:], "\n")
		res.Panic = line
	}
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("qemu: boot: %w (after %v)", ctx.Err(), res.Duration.Round(time.Millisecond))
	case werr != nil:
		return res, fmt.Errorf("%w: %w: %s", ErrQEMUFailed, werr, strings.TrimSpace(res.Stderr))
	case res.Panic != "":
		return res, fmt.Errorf("%w: %s", ErrGuestPanic, res.Panic)
	}
	return res, nil
}

func (e *Env) bootArgs(cfg BootConfig, initrd string) []string {
	kernel := cfg.Kernel
	if kernel == "" {
		kernel = e.Kernel
	}
	machine := cfg.Machine
	if machine == "" {
		machine = "q35"
	}
	mem := cfg.Memory
	if mem == "" {
		mem = "512M"
	}
	cmdline := strings.Join(append([]string{DefaultAppend}, cfg.Append...), " ")
	args := []string{
		"-machine", machine,
		"-accel", "tcg",
		"-m", mem,
		"-nographic",
		"-no-reboot",
		"-nic", "none",
		"-kernel", kernel,
		"-initrd", initrd,
		"-append", cmdline,
	}
	return append(args, cfg.Args...)
}

// lockedBuffer is a bytes.Buffer safe for os/exec's copying goroutine and a
// reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
