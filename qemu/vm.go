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
	if cfg.Module == "" {
		m, err := moduleDir()
		if err != nil {
			return nil, err
		}
		cfg.Module = m
	}
	initBin, err := GoBuild(ctx, cfg.Module, "./cmd/ycq-guest")
	if err != nil {
		return nil, err
	}
	modFiles, _, err := e.ModuleFiles(GuestModules...)
	if err != nil {
		return nil, err
	}
	files := append(BaseFiles(), File{Path: "/init", Mode: 0o755, Data: initBin})
	files = append(files, modFiles...)
	// VFIOUserAppend says why each kernel parameter is there.
	appendArgs := slices.Concat(VFIOUserAppend, []string{"ycq.mode=" + cfg.Mode}, cfg.Params)
	res, err := e.Boot(ctx, BootConfig{
		Files:   files,
		Machine: VFIOUserMachine,
		Memory:  cfg.Memory,
		Append:  appendArgs,
		Args:    append([]string{"-smp", "2"}, VFIOUserArgs(cfg.Socket, cfg.Memory)...),
		Console: cfg.Console,
	})
	if res == nil {
		return nil, err
	}
	vr := &VMResult{Result: res}
	sc := bufio.NewScanner(strings.NewReader(res.Console))
	inTable := false
	var table strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "YCQ-RESULT "):
			var m map[string]any
			if jerr := json.Unmarshal([]byte(strings.TrimPrefix(line, "YCQ-RESULT ")), &m); jerr == nil {
				vr.Line = m
			}
		case line == "YCQ-TABLE-BEGIN":
			inTable = true
		case line == "YCQ-TABLE-END":
			inTable = false
		case inTable:
			table.WriteString(line + "\n")
		}
	}
	vr.Table = table.String()
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
