package qemu

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ycq-dev/ycq/qemu/guest"
)

// GuestModuleList is where ModuleFiles puts the list of modules to load, one
// guest path a line, each after its dependencies; guest.LoadModules reads it.
const GuestModuleList = guest.ModuleList

// ErrNoModule is wrapped when a module name is not in modules.dep.
var ErrNoModule = errors.New("qemu: no such kernel module")

// Module is one kernel module file of the guest kernel.
type Module struct {
	Name string // canonical name: file name without .ko*, '-' as '_'
	Rel  string // path relative to the modules dir, e.g. "kernel/drivers/vfio/vfio.ko.xz"
}

// ModuleName gives the kernel's name for a module file or a module name:
// "kernel/drivers/vfio/pci/vfio-pci.ko.xz" and "vfio-pci" both give
// "vfio_pci".
func ModuleName(s string) string {
	base := path.Base(s)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ModulesDep is a parsed modules.dep: each module's file and its
// dependencies' files, relative to the modules dir, keyed by ModuleName.
type ModulesDep struct {
	rel  map[string]string   // name -> file
	deps map[string][]string // name -> dependency names
}

// ParseModulesDep reads depmod's modules.dep ("file: dep dep ...").
func ParseModulesDep(r io.Reader) (*ModulesDep, error) {
	md := &ModulesDep{rel: make(map[string]string), deps: make(map[string][]string)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok || file == "" {
			return nil, fmt.Errorf("qemu: modules.dep line %d: no \"file:\"", n)
		}
		name := ModuleName(file)
		md.rel[name] = file
		var deps []string
		for _, d := range strings.Fields(rest) {
			deps = append(deps, ModuleName(d))
		}
		md.deps[name] = deps
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("qemu: modules.dep: %w", err)
	}
	return md, nil
}

// Resolve returns the named modules with everything they depend on, each
// after its dependencies and each once, in the order a loader must follow.
// Names may use '-' or '_'.
func (md *ModulesDep) Resolve(names ...string) ([]Module, error) {
	var out []Module
	state := make(map[string]int) // 0 new, 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("qemu: module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		case 2:
			return nil
		}
		rel, ok := md.rel[name]
		if !ok {
			if len(chain) > 0 {
				return fmt.Errorf("%w: %s (needed by %s)", ErrNoModule, name, chain[len(chain)-1])
			}
			return fmt.Errorf("%w: %s", ErrNoModule, name)
		}
		state[name] = 1
		for _, d := range md.deps[name] {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, Module{Name: name, Rel: rel})
		return nil
	}
	for _, n := range names {
		if err := visit(ModuleName(n), nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Modules resolves module names against the guest kernel's modules.dep; see
// ModulesDep.Resolve.
func (e *Env) Modules(names ...string) ([]Module, error) {
	f, err := os.Open(filepath.Join(e.ModulesDir, modulesDep))
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	defer f.Close()
	md, err := ParseModulesDep(f)
	if err != nil {
		return nil, err
	}
	return md.Resolve(names...)
}

// ModuleFiles resolves names (see Modules) and returns initramfs entries
// that put each module file at /lib/modules/<version>/<Rel> in the guest,
// plus GuestModuleList naming them in load order.
func (e *Env) ModuleFiles(names ...string) ([]File, []Module, error) {
	mods, err := e.Modules(names...)
	if err != nil {
		return nil, nil, err
	}
	var files []File
	var list strings.Builder
	for _, m := range mods {
		guest := path.Join("/lib/modules", e.KernelVersion, m.Rel)
		files = append(files, File{Path: guest, Mode: 0o644, Source: filepath.Join(e.ModulesDir, filepath.FromSlash(m.Rel))})
		list.WriteString(guest + "\n")
	}
	files = append(files, File{Path: GuestModuleList, Mode: 0o644, Data: []byte(list.String())})
	return files, mods, nil
}
