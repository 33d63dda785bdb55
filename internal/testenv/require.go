package testenv

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// RequireEnv names what must not be skipped: a comma-separated list of
// requirement names, or "all".
const RequireEnv = "YCQ_REQUIRE"

// Required reports whether YCQ_REQUIRE names need, or "all".
func Required(need string) bool {
	req := strings.Split(os.Getenv(RequireEnv), ",")
	return slices.Contains(req, need) || slices.Contains(req, "all")
}

// Missing ends t, which cannot run without need: it skips with why, which
// should give the reason and the fix, or fails with it when YCQ_REQUIRE
// names need (or "all").
func Missing(t testing.TB, need, why string) {
	t.Helper()
	if Required(need) {
		t.Fatalf("%s names %s: %s", RequireEnv, need, why)
		return
	}
	t.Skip(why)
}
