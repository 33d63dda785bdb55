package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/testenv"
)

var helpers = testenv.Helpers{Env: "YCQ_TESTENV_HELPER"}

func TestMain(m *testing.M) {
	helpers.Main(m, func(part string) error {
		switch part {
		case "ready": // say so, then wait for stdin to close
			fmt.Println("ready", os.Getenv("WHO"))
			<-testenv.StdinClosed().Done()
			return nil
		case "fail":
			return errors.New("failed on purpose")
		}
		return fmt.Errorf("unknown part %q", part)
	})
}

// fakeTB records how a helper ended a test, where the real one would stop
// the test's goroutine.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Skip(args ...any)               { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Fatal(args ...any)              { f.failed = fmt.Sprint(args...) }
func (f *fakeTB) Fatalf(format string, a ...any) { f.failed = fmt.Sprintf(format, a...) }

func TestMissing(t *testing.T) {
	for _, c := range []struct {
		require string
		fails   bool
	}{{"", false}, {"pci", false}, {"pci,vfio", true}, {"vfio", true}, {"all", true}, {"vfio2", false}} {
		t.Setenv(testenv.RequireEnv, c.require)
		f := &fakeTB{TB: t}
		testenv.Missing(f, "vfio", "needs a device: set X")
		if c.fails {
			require.Equal(t, "YCQ_REQUIRE names vfio: needs a device: set X", f.failed, c.require)
			require.Empty(t, f.skipped)
		} else {
			require.Equal(t, "needs a device: set X", f.skipped, c.require)
			require.Empty(t, f.failed)
		}
	}
}

func TestQEMU(t *testing.T) {
	gone := errors.New("no cache")
	for _, c := range []struct {
		skip, require string
		skipped       bool
	}{{"", "", false}, {"1", "", true}, {"1", "qemu", false}, {"0", "", false}} {
		t.Setenv(testenv.SkipQEMUEnv, c.skip)
		t.Setenv(testenv.RequireEnv, c.require)
		var q testenv.QEMU[int]
		calls := 0
		find := func(ctx context.Context, provision bool, log io.Writer) (int, error) {
			calls++
			require.Equal(t, c.skip != "1", provision, "provisions unless YCQ_SKIP_QEMU=1")
			_, ok := ctx.Deadline()
			require.True(t, ok)
			return 0, gone
		}
		for range 2 {
			f := &fakeTB{TB: t}
			q.Get(f, find)
			if c.skipped {
				require.Equal(t, "no QEMU guest (YCQ_SKIP_QEMU=1): no cache", f.skipped)
				require.Empty(t, f.failed)
			} else {
				require.Contains(t, f.failed, "no cache")
				require.Empty(t, f.skipped)
			}
		}
		require.Equal(t, 1, calls, "found once for every test")
	}
	var q testenv.QEMU[string]
	got := q.Get(t, func(context.Context, bool, io.Writer) (string, error) { return "env", nil })
	require.Equal(t, "env", got)
}

func TestChild(t *testing.T) {
	before := testenv.OpenFDs(t)
	c := helpers.Start(t, "ready", []string{"WHO=me"})
	c.WaitOutput(t, "ready me\n")
	require.False(t, c.Exited())
	c.Stop(t)
	require.NoError(t, c.Wait())
	require.True(t, c.Exited())
	require.Equal(t, before, testenv.OpenFDs(t), "the child's pipes are closed")

	// A child that fails before it is ready fails the wait, at once.
	c = helpers.Start(t, "fail", nil)
	f := &fakeTB{TB: t}
	c.WaitOutput(f, "ready")
	require.Contains(t, f.failed, "helper exited (exit status 1) before it wrote \"ready\"")
	require.Error(t, c.Wait())
}

func TestWaitFor(t *testing.T) {
	n := 0
	testenv.WaitFor(t, "n to reach 3", func() bool { n++; return n == 3 })
	require.Equal(t, 3, n)

	var b testenv.Buffer
	fmt.Fprint(&b, "some output")
	require.True(t, strings.HasPrefix(b.String(), "some"))
	b.Reset()
	require.Empty(t, b.String())
}
