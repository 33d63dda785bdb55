// Package cpupin keeps a polling loop's thread on the CPUs it was given,
// as DPDK runs each lcore on its own CPU: a loop that spins should not be
// moved about by the scheduler, away from the caches that hold its queues.
package cpupin

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrCPU is a CPU list that cannot be used: malformed, out of range, or
// naming no CPU this process may run on.
var ErrCPU = errors.New("cpupin: bad CPU list")

// maxCPU bounds the CPU numbers a list may name (unix.CPUSet's size).
const maxCPU = 1024

// Thread locks the calling goroutine to its thread and lets that thread
// run only on cpus; the function it returns gives the thread back the CPUs
// it had and unlocks it, and must be called on the same goroutine. An empty
// list changes nothing. A refused list changes nothing either.
func Thread(cpus []int) (release func(), err error) {
	if len(cpus) == 0 {
		return func() {}, nil
	}
	var set unix.CPUSet
	for _, c := range cpus {
		if c < 0 || c >= maxCPU {
			return nil, fmt.Errorf("%w: CPU %d: want 0 to %d", ErrCPU, c, maxCPU-1)
		}
		set.Set(c)
	}
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("cpupin: reading this thread's CPUs: %w", err)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		if errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("%w: CPUs %v: none of them is one this process may run on", ErrCPU, cpus)
		}
		return nil, fmt.Errorf("cpupin: CPUs %v: %w", cpus, err)
	}
	return func() {
		if unix.SchedSetaffinity(0, &old) != nil {
			// The thread keeps the narrower set: leave it locked, so
			// the runtime ends it with the goroutine instead of reusing it.
			return
		}
		runtime.UnlockOSThread()
	}, nil
}

// Parse reads a CPU list as taskset and the kernel's cpulist files write
// it: numbers and ranges, comma-separated ("1", "0,2-3"); "" is none.
func Parse(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var cpus []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b >= maxCPU {
			return nil, fmt.Errorf("%w: %q: want CPU numbers 0 to %d and ranges such as 0-3, comma-separated", ErrCPU, part, maxCPU-1)
		}
		for c := a; c <= b; c++ {
			if !seen[c] {
				seen[c] = true
				cpus = append(cpus, c)
			}
		}
	}
	return cpus, nil
}

// Allowed lists the CPUs this thread may run on, in order.
func Allowed() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("cpupin: reading this thread's CPUs: %w", err)
	}
	var cpus []int
	for c := range maxCPU {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
