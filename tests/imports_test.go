package tests

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/ycq-dev/ycq"

// layerRules are the import rules of the module (ARCHITECTURE.md): lower
// layers never import higher ones. Each rule names the packages it covers
// (a path relative to the module, and everything under it) and what of the
// module they may depend on, directly or not. A package of the module under
// internal/ that depends on nothing of the module (a leaf helper) is allowed
// everywhere.
var layerRules = []struct {
	pkgs  string
	allow []string // "" means nothing of the module but leaves
	deny  []string // denied even where allow would let them through
}{
	{pkgs: "ring", allow: []string{"ring"}},
	{pkgs: "dma", allow: []string{"dma"}},
	{pkgs: "ycqdev", allow: []string{"ycqdev"}},
	{pkgs: "vfio", allow: []string{"vfio", "ring", "dma"}},
	{pkgs: "ipc", allow: []string{"ipc", "ring", "dma"}},
	{pkgs: "qemu", allow: []string{"qemu"}},
	{pkgs: "usb", allow: []string{"usb"}},
	{pkgs: "hostdriver", allow: []string{"hostdriver", "ycqdev", "vfio", "ring", "dma"}, deny: []string{"devicemodel"}},
	{pkgs: "devicemodel", allow: []string{"devicemodel", "ycqdev", "vfio", "usb", "ring", "dma"}, deny: []string{"hostdriver"}},
}

// under reports whether pkg (relative to the module) is dir or below it.
func under(pkg, dir string) bool { return pkg == dir || strings.HasPrefix(pkg, dir+"/") }

// layerViolations checks a dependency graph (package -> every package of
// the module it depends on, relative paths) against layerRules, and the
// rule that nothing outside cmd/ depends on a package under cmd/.
func layerViolations(deps map[string][]string) []string {
	leaf := func(p string) bool { return under(p, "internal") && len(deps[p]) == 0 }
	var bad []string
	for _, pkg := range slices.Sorted(func(yield func(string) bool) {
		for p := range deps {
			if !yield(p) {
				return
			}
		}
	}) {
		for _, d := range deps[pkg] {
			if under(d, "cmd") && !under(pkg, "cmd") {
				bad = append(bad, fmt.Sprintf("%s depends on %s: only cmd/ may use cmd/ packages", pkg, d))
			}
		}
		for _, r := range layerRules {
			if !under(pkg, r.pkgs) {
				continue
			}
			for _, d := range deps[pkg] {
				ok := leaf(d) || slices.ContainsFunc(r.allow, func(a string) bool { return under(d, a) })
				if slices.ContainsFunc(r.deny, func(a string) bool { return under(d, a) }) {
					ok = false
				}
				if !ok {
					bad = append(bad, fmt.Sprintf("%s depends on %s: %s may depend only on %v", pkg, d, r.pkgs, r.allow))
				}
			}
		}
	}
	return bad
}

// moduleDeps runs go list -deps over the module's non-test packages.
func moduleDeps(t *testing.T) map[string][]string {
	cmd := exec.Command(goTool(t), "list", "-json=ImportPath,Deps", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", exitStderr(err))
	deps := map[string][]string{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Deps       []string
		}
		require.NoError(t, dec.Decode(&p))
		rel, ok := relative(p.ImportPath)
		require.True(t, ok, "package %s outside the module", p.ImportPath)
		deps[rel] = []string{}
		for _, d := range p.Deps {
			if r, ok := relative(d); ok {
				deps[rel] = append(deps[rel], r)
			}
		}
	}
	return deps
}

// goTool is the go command on PATH (the Makefile puts Go's bin there).
func goTool(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command must be on PATH")
	return goBin
}

func relative(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	return strings.CutPrefix(path, module+"/")
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// TestImportLayers: the module's packages, as go list -deps sees them,
// hold no import from a lower layer to a higher one.
func TestImportLayers(t *testing.T) {
	deps := moduleDeps(t)
	for _, p := range []string{"ring", "dma", "ycqdev", "vfio", "vfio/user", "hostdriver", "devicemodel", "qemu", "cmd/ycq"} {
		require.Contains(t, deps, p, "go list lists %s", p)
	}
	require.Empty(t, layerViolations(deps))
}

// TestImportLayersCatch: the check fails for each kind of import it is
// there to stop.
func TestImportLayersCatch(t *testing.T) {
	real := moduleDeps(t)
	for _, c := range []struct{ pkg, dep string }{
		{"ring", "dma"},
		{"dma", "ring"},
		{"ring", "internal/ringbench"},
		{"vfio/user", "hostdriver"},
		{"vfio", "devicemodel"},
		{"hostdriver", "devicemodel"},
		{"devicemodel", "hostdriver"},
		{"ipc", "cmd/internal/demo"},
		{"qemu", "hostdriver"},
		{"ycqdev", "ring"},
	} {
		deps := map[string][]string{}
		for p, d := range real {
			deps[p] = slices.Clone(d)
		}
		deps[c.pkg] = append(deps[c.pkg], c.dep)
		require.NotEmpty(t, layerViolations(deps), "%s importing %s must be refused", c.pkg, c.dep)
	}
}
