package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// SkipQEMUEnv, set to 1, lets tests that need a QEMU guest skip without
// one, and keeps them from provisioning one.
const SkipQEMUEnv = "YCQ_SKIP_QEMU"

// SkipQEMU reports whether YCQ_SKIP_QEMU=1.
func SkipQEMU() bool { return os.Getenv(SkipQEMUEnv) == "1" }

// NoQEMU ends t, which has no QEMU guest because of err: it fails with the
// reason, or, with YCQ_SKIP_QEMU=1, skips (Missing "qemu", so that
// YCQ_REQUIRE=qemu still fails it).
func NoQEMU(t testing.TB, err error) {
	t.Helper()
	if !SkipQEMU() {
		t.Fatalf("no QEMU guest: %v\n(set %s=1 to skip)", err, SkipQEMUEnv)
		return
	}
	Missing(t, "qemu", fmt.Sprintf("no QEMU guest (%s=1): %v", SkipQEMUEnv, err))
}

// ProvisionTimeout bounds the provisioning a QEMU value may start.
const ProvisionTimeout = 20 * time.Minute

// QEMU is the QEMU environment the tests of one binary share, found or
// provisioned once, by the first test that asks. E is the environment's
// type (*qemu.Env); it is a parameter so that this package does not import
// qemu, whose own tests use it too. The zero value is ready.
type QEMU[E any] struct {
	once sync.Once
	env  E
	err  error
}

// Get returns the environment find returns. The first call runs find with
// whether it may provision (not with YCQ_SKIP_QEMU=1), the calling test's
// output for its progress, and ProvisionTimeout; a failure ends every test
// that asks with NoQEMU.
func (q *QEMU[E]) Get(t testing.TB, find func(ctx context.Context, provision bool, log io.Writer) (E, error)) E {
	t.Helper()
	q.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ProvisionTimeout)
		defer cancel()
		q.env, q.err = find(ctx, !SkipQEMU(), t.Output())
	})
	if q.err != nil {
		NoQEMU(t, q.err)
	}
	return q.env
}
