package guest

import "testing"

// TestParam: the first name=value on the command line counts, a longer
// name with the same start is another parameter, and a missing one is def.
func TestParam(t *testing.T) {
	const cmdline = "console=ttyS0 ycq.mode=test ycq.modes=x ycq.mode=demo panic=-1\n"
	for _, c := range []struct{ name, def, want string }{
		{"ycq.mode", "probe", "test"},
		{"ycq.modes", "", "x"},
		{"ycq.size", "64", "64"},
		{"panic", "", "-1"},
		{"console", "", "ttyS0"},
	} {
		if got := param(cmdline, c.name, c.def); got != c.want {
			t.Errorf("param(%q, %q) = %q, want %q", c.name, c.def, got, c.want)
		}
	}
}
