package wait_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ring/wait"
)

// TestWaiter: the loop spins Spin times with Pause, then arms, registers
// on the line, tries once more and sleeps; the sleep's error, Check's and
// the context's end the wait.
func TestWaiter(t *testing.T) {
	q, err := ring.New(ring.Config{Slots: 2, SlotSize: 8})
	require.NoError(t, err)
	line := q.ItemsWake()
	var log []string
	tries := 0
	try := func(n int) func() error {
		return func() error {
			tries++
			if tries >= n {
				return nil
			}
			return ring.ErrEmpty
		}
	}
	w := wait.Waiter{
		Spin:  2,
		Pause: func(i int) { log = append(log, fmt.Sprint("pause ", i)) },
		Arm: func(l ring.WakeLine) wait.Sleep {
			log = append(log, fmt.Sprint("arm, waiters ", l.Waiters().Load()))
			return func(_ context.Context, i int) error {
				log = append(log, fmt.Sprint("sleep ", i, ", waiters ", line.Waiters().Load()))
				return nil
			}
		},
	}
	require.NoError(t, w.Wait(context.Background(), line, ring.ErrEmpty, try(6)))
	require.Equal(t, []string{"pause 0", "pause 1", "arm, waiters 0", "sleep 2, waiters 1", "arm, waiters 0"}, log,
		"tries 1-2 spin; 3 arms and 4 (registered) sleeps; 5 arms and 6 (registered) succeeds")
	require.Equal(t, 6, tries)
	require.Zero(t, line.Waiters().Load(), "unregistered")

	// A try's own error ends the wait, as does Check's or the context's.
	bad := errors.New("bad")
	require.ErrorIs(t, w.Wait(context.Background(), line, ring.ErrEmpty, func() error { return bad }), bad)
	stopped := errors.New("stopped")
	w.Check = func() error { return stopped }
	tries = 0
	require.ErrorIs(t, w.Wait(context.Background(), line, ring.ErrEmpty, try(100)), stopped)
	require.Equal(t, 1, tries)
	w.Check = nil
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, w.Wait(ctx, line, ring.ErrEmpty, try(100)), context.Canceled)

	// So does the sleep's.
	w.Spin = 0
	w.Arm = func(ring.WakeLine) wait.Sleep {
		return func(context.Context, int) error { return context.DeadlineExceeded }
	}
	require.ErrorIs(t, w.Wait(context.Background(), line, ring.ErrEmpty, try(1000)), context.DeadlineExceeded)
	require.Zero(t, line.Waiters().Load())
}

// A Waiter with Backoff's pause and a sleep that just yields: a reserve
// that waits for a record another goroutine publishes.
func ExampleWaiter() {
	q, _ := ring.New(ring.Config{Slots: 4, SlotSize: 8})
	go func() {
		w, _ := q.Producer().Reserve(1)
		copy(w.Slot(0), "hello")
		w.Publish(0, 5)
	}()
	waiter := wait.Waiter{Spin: 64, Arm: func(ring.WakeLine) wait.Sleep {
		return func(context.Context, int) error { runtime.Gosched(); return nil } // a real one sleeps until woken
	}}
	c := q.Consumer()
	var r ring.ReadRun
	err := waiter.Wait(context.Background(), q.ItemsWake(), ring.ErrEmpty, func() (err error) {
		r, err = c.ReserveUpTo(1)
		return err
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ := r.Slot(0)
	fmt.Println(string(b))
	r.ReleaseAll()
	// Output: hello
}
