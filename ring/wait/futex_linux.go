package wait

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Futex operations on a word in shared memory. Not FUTEX_PRIVATE_FLAG: the
// word may be mapped by other processes, and the kernel then keys the wait
// on the page, so a wake from any of them reaches the sleeper.
const (
	futexWaitOp = 0 // FUTEX_WAIT
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexWait sleeps while *addr == val, for at most timeout (0: no limit).
// It returns nil when woken or when *addr no longer held val, and
// unix.ETIMEDOUT or unix.EINTR otherwise.
func futexWait(addr *atomic.Uint32, val uint32, timeout time.Duration) error {
	var tsp *unix.Timespec
	if timeout > 0 {
		ts := unix.NsecToTimespec(int64(timeout))
		tsp = &ts
	}
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp,
		uintptr(val), uintptr(unsafe.Pointer(tsp)), 0, 0)
	switch errno {
	case 0, unix.EAGAIN:
		return nil
	default:
		return errno
	}
}

// futexWake wakes up to n sleepers on addr.
func futexWake(addr *atomic.Uint32, n int) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, uintptr(n), 0, 0, 0)
}
