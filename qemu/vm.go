package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// VMConfig describes a guest run of the ycq device: QEMU with an emulated
// Intel IOMMU and shared memfd guest RAM, the device attached with
// vfio-user-pci to a device model serving on Socket, and a guest /init
// (cmd/ycq-guest) that drives it through kernel VFIO.
type VMConfig struct {
	// Socket is where the device model serves vfio-user.
	Socket string
	// Mode is the guest's ycq.mode: probe, demo or test.
	Mode string
	// Params are more ycq.* kernel parameters (ycq.size=..., ...).
	Params []string
	// Memory is the guest RAM, default 1G.
	Memory string
	// Module is the directory of the ycq module, for building the guest
	// init; found from the working directory when empty.
	Module string
	// Console receives the serial console as it comes.
	Console io.Writer
}

// VMResult is what the guest said.
type VMResult struct {
	*Result
	// Line is the guest's YCQ-RESULT object, decoded.
	Line map[string]any
	// Table is the demo's result table, if the guest printed one.
	Table string
}

// GuestModules are the kernel modules the guest loads, in order.
var GuestModules = []string{"vfio", "vfio_iommu_type1", "irqbypass", "vfio-pci-core", "vfio-pci"}

// RunVM boots the guest and returns once it powered off, with its result
// line decoded. The guest's own failure (its YCQ-RESULT carries an error)
// is an error too.
func (e *Env) RunVM(ctx context.Context, cfg VMConfig) (*VMResult, error) {
	if cfg.Memory == "" {
		cfg.Memory = "1G"
	}
	module, err := orModuleDir(cfg.Module)
	if err != nil {
		return nil, err
	}
	initBin, err := GoBuild(ctx, module, "./cmd/ycq-guest")
	if err != nil {
		return nil, err
	}
	files, err := e.guestFiles(initBin, nil, GuestModules)
	if err != nil {
		return nil, err
	}
	// VFIOUserAppend says why each kernel parameter is there.
	return e.runGuest(ctx, BootConfig{
		Files:   files,
		Machine: VFIOUserMachine,
		Memory:  cfg.Memory,
		Append:  slices.Concat(VFIOUserAppend, []string{"ycq.mode=" + cfg.Mode}, cfg.Params),
		Args:    append([]string{"-smp", "2"}, VFIOUserArgs(cfg.Socket, cfg.Memory)...),
		Console: cfg.Console,
	})
}

// guestFiles are the initramfs of a guest: BaseFiles, the /init initBin
// and the shared libraries it loads (libs, nil for a static one), and
// modules with their list.
func (e *Env) guestFiles(initBin []byte, libs []File, modules []string) ([]File, error) {
	modFiles, _, err := e.ModuleFiles(modules...)
	if err != nil {
		return nil, err
	}
	files := append(BaseFiles(), File{Path: "/init", Mode: 0o755, Data: initBin})
	files = append(files, libs...)
	return append(files, modFiles...), nil
}

// runGuest boots bc and returns once the guest powered off, with its
// YCQ-RESULT line and table decoded: what RunVM, RunUSBVM and RunBothVM
// share. A guest that printed no result line, or whose result carries an
// error, is an error too. The result is nil only when the guest did not
// boot.
func (e *Env) runGuest(ctx context.Context, bc BootConfig) (*VMResult, error) {
	res, err := e.Boot(ctx, bc)
	if res == nil {
		return nil, err
	}
	vr := guestResult(res)
	if err != nil {
		return vr, err
	}
	if vr.Line == nil {
		return vr, errors.New("qemu: the guest printed no YCQ-RESULT line")
	}
	if msg, _ := vr.Line["error"].(string); msg != "" {
		return vr, fmt.Errorf("qemu: the guest failed: %s", msg)
	}
	return vr, nil
}

// guestResult decodes the console's last YCQ-RESULT line and its table.
// A guest's first line may not start a console line (see below), so a
// result is found anywhere in one.
func guestResult(res *Result) *VMResult {
	vr := &VMResult{Result: res}
	sc := bufio.NewScanner(strings.NewReader(res.Console))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	inTable := false
	var table strings.Builder
	for sc.Scan() {
		line := sc.Text()
		// The first line the guest prints may follow the firmware's
		// terminal escapes, without a newline between them.
		_, after, isResult := strings.Cut(line, "YCQ-RESULT ")
		switch {
		case isResult:
			var m map[string]any
			if json.Unmarshal([]byte(after), &m) == nil {
				vr.Line = m
			}
		case strings.HasSuffix(line, "YCQ-TABLE-BEGIN"):
			inTable = true
		case line == "YCQ-TABLE-END":
			inTable = false
		case inTable:
			table.WriteString(line + "\n")
		}
	}
	vr.Table = table.String()
	return vr
}

// orModuleDir is dir, or the ycq module's directory when dir is empty.
func orModuleDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	return moduleDir()
}

// moduleDir finds the ycq module's directory with `go env GOMOD`.
func moduleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("qemu: find the ycq module (run from inside it): %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("qemu: not inside the ycq module: run from the repository")
	}
	return filepath.Dir(mod), nil
}
