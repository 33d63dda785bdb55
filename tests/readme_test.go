package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestREADMEExample: the README's example, pasted into a fresh module that
// requires this one (through a replace to the checkout), builds and prints
// what the README says it prints.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	text := string(readme)
	start := strings.Index(text, "```go\npackage main\n")
	require.GreaterOrEqual(t, start, 0, "the README has a complete example program")
	body := text[start+len("```go\n"):]
	end := strings.Index(body, "```")
	require.Greater(t, end, 0)
	program := body[:end]
	after := body[end:]
	const says = "It prints `"
	at := strings.Index(after, says)
	require.GreaterOrEqual(t, at, 0, "the README says what the example prints")
	want := after[at+len(says):]
	want = want[:strings.Index(want, "`")]

	checkout, err := filepath.Abs("..")
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(program), 0o644))
	goBin := goTool(t)
	gocmd := func(args ...string) string {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %s: %s", strings.Join(args, " "), out)
		return string(out)
	}
	gocmd("mod", "init", "example.com/try")
	gocmd("mod", "edit", "-require="+module+"@v0.0.0", "-replace="+module+"="+checkout)
	gocmd("mod", "tidy")
	require.Equal(t, want+"\n", gocmd("run", "."))
}
