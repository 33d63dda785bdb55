package testenv

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// WaitTimeout is how long WaitFor and Child.WaitOutput wait.
const WaitTimeout = time.Minute

// WaitFor polls cond until it holds, or fails t after WaitTimeout, saying
// what it waited for.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Buffer is a bytes.Buffer that a writer (a logger, a child's output) and
// a test may share.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset forgets what was written.
func (s *Buffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}
