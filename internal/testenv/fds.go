package testenv

import (
	"os"
	"testing"
)

// CountFDs counts this process's open descriptors.
func CountFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	return len(ents), err
}

// OpenFDs counts this process's open descriptors, for a test to compare
// before and after: a test fails on leaked descriptors.
func OpenFDs(t testing.TB) int {
	t.Helper()
	n, err := CountFDs()
	if err != nil {
		t.Fatalf("count open descriptors: %v", err)
	}
	return n
}
