package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Helpers run parts of a package's cross-process tests in child
// processes: the test binary re-runs itself with Env naming the part, and
// plays it instead of running tests. The child inherits the parent's
// environment, gets files from descriptor 3 on, writes its stdout to the
// parent's buffer (a line such as "ready" says it is set up) and its
// stderr to the parent's, and sees its stdin close when the parent wants
// it to stop.
type Helpers struct {
	// Env is the variable that names the part, e.g. "YCQ_IPC_HELPER".
	Env string
	// Test is the test function that plays the part in the child (see
	// Run), or "" when TestMain does (see Main).
	Test string
}

// Main is for TestMain: in a child it plays the part Env names with run
// and exits, 0 if run returns nil and 1, after printing the error,
// otherwise; in the parent it runs the tests.
func (h Helpers) Main(m *testing.M, run func(part string) error) {
	if part := os.Getenv(h.Env); part != "" {
		h.play(part, run)
	}
	os.Exit(m.Run())
}

// Run is the body of the test function named by Test, for a package that
// keeps TestMain free: in a child it plays the part like Main; in the
// parent the function skips, being no test.
func (h Helpers) Run(t *testing.T, run func(part string) error) {
	part := os.Getenv(h.Env)
	if part == "" {
		t.Skip("a helper process for the cross-process tests, not a test")
	}
	h.play(part, run)
}

func (h Helpers) play(part string, run func(string) error) {
	if err := run(part); err != nil {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", part, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Child is a helper process of a test.
type Child struct {
	Cmd   *exec.Cmd
	Stdin io.WriteCloser // closing it asks the child to stop
	Out   *Buffer        // the child's stdout
	done  chan struct{}  // closed when the child has exited
	err   error          // Cmd.Wait's, once done is closed
}

// Start starts the test binary as a child playing part, with env added
// to this process's environment and files as its descriptors 3 on. The
// child is killed and reaped when t ends.
func (h Helpers) Start(t testing.TB, part string, env []string, files ...*os.File) *Child {
	t.Helper()
	run := "^$"
	if h.Test != "" {
		run = "^" + h.Test + "$"
	}
	cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.count=1")
	cmd.Env = append(append(os.Environ(), h.Env+"="+part), env...)
	cmd.ExtraFiles = files
	c := &Child{Cmd: cmd, Out: new(Buffer), done: make(chan struct{})}
	cmd.Stdout = c.Out
	cmd.Stderr = os.Stderr
	var err error
	if c.Stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatalf("helper %s: %v", part, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("helper %s: %v", part, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
	})
	return c
}

// Wait waits for the child to exit and returns how it did, as
// exec.Cmd.Wait; it may be called any number of times.
func (c *Child) Wait() error {
	<-c.done
	return c.err
}

// Exited reports whether the child has exited.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// WaitOutput waits until the child's stdout holds s. It fails t if the
// child exits first or WaitTimeout passes.
func (c *Child) WaitOutput(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !strings.Contains(c.Out.String(), s) {
		if c.Exited() {
			if strings.Contains(c.Out.String(), s) {
				return
			}
			t.Fatalf("helper exited (%v) before it wrote %q; it wrote %q", c.err, s, c.Out.String())
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the helper to write %q; it wrote %q", s, c.Out.String())
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// StopTimeout is how long Stop lets a child take to exit.
const StopTimeout = 10 * time.Second

// Stop closes the child's stdin and waits for it to exit; it fails t if
// the child fails, or if it does not exit within StopTimeout (then it is
// killed).
func (c *Child) Stop(t testing.TB) {
	t.Helper()
	c.Stdin.Close()
	select {
	case <-c.done:
		if c.err != nil {
			t.Fatalf("helper: %v", c.err)
		}
	case <-time.After(StopTimeout):
		c.Cmd.Process.Kill()
		<-c.done
		t.Fatal("helper did not stop")
	}
}

// StdinClosed, in a child, is a context that ends when the parent closes
// the child's stdin, or dies.
func StdinClosed() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx
}
