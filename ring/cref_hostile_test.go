package ring_test

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
)

// TestCRefHostile: the C reference against a hostile peer. The device
// (ring/c/conformance/hostile.c, built with AddressSanitizer and
// UndefinedBehaviorSanitizer, each region mapped between inaccessible
// pages) drives its queue's producer and consumer with random calls and
// re-attaches now and then, while this process writes garbage over the
// metadata: random words, small ones, stamps and cursors a little off the
// right ones, and now and then a fresh Format with another geometry (so
// that re-attaching moves the bounds). The device must return a known code
// from every call, report the corruption it meets, and never touch memory
// outside the regions (the sanitizers and the guard pages would end it).
func TestCRefHostile(t *testing.T) {
	dev := buildDevice(t, "asan")
	cfg := ring.Config{Slots: 8, SlotSize: 16, SingleProducer: true, SingleConsumer: true}
	c := newCQueue(t, cfg, 0)
	d := startDevice(t, dev, []string{"hostile", "q=" + c.spec(3), "seed=7"}, c.file)
	d.expect(t, "ready")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { scribbleHostile(c, stop) })
	// Scribble until the device has done enough calls, met enough
	// garbage, and had each of these outcomes: the thresholds are counts,
	// not times, and the hang guard in expect bounds the wait (reaching
	// it means an outcome never came, and the test fails saying so).
	met := []string{"ok", "full", "empty", "corrupt", "invalid", "notheld", "attached", "refused"}
	for done := false; !done; {
		p := keyValues(t, d.expect(t, "progress"))
		done = p["ops"] >= 400_000 && p["corrupt"] >= 500 && p["refused"] >= 50
		for _, k := range met {
			done = done && p[k] > 0
		}
	}
	close(stop)
	wg.Wait()
	sum := d.finish(t)
	out := d.out.String()
	require.NotContains(t, out, "AddressSanitizer")
	require.NotContains(t, out, "runtime error")
	t.Logf("device: %v", sum)
	for _, k := range met {
		require.NotZero(t, sum[k], "the device met %s", k)
	}
}

// scribbleHostile writes garbage over c's metadata until stop is closed,
// in episodes: a fresh Format with a geometry that fits the regions (so
// that the device, re-attaching, gets good metadata and other bounds), a
// stretch of honest work, then a few words of garbage a little apart.
func scribbleHostile(c *cQueue, stop chan struct{}) {
	rng := rand.New(rand.NewPCG(7, 0))
	meta := c.meta
	pause := func(d time.Duration) bool {
		select {
		case <-stop:
			return false
		case <-time.After(d):
			return true
		}
	}
	for {
		g := ring.Config{Slots: 2 << rng.IntN(3), SlotSize: 8 << rng.IntN(2),
			SingleProducer: rng.IntN(8) != 0, SingleConsumer: rng.IntN(8) != 0}
		if _, err := ring.Format(meta[:g.MetaSize()], c.data, g); err != nil {
			panic(err) // every geometry drawn fits the regions
		}
		if !pause(time.Millisecond) {
			return
		}
		for range 1 + rng.IntN(6) {
			off := rng.IntN(len(meta)) &^ 7
			old := word64(meta, off).Load()
			var v uint64
			switch rng.IntN(6) {
			case 0:
				v = rng.Uint64()
			case 1:
				v = rng.Uint64() & 0xff
			case 2, 3, 4:
				// A stamp or cursor a little off: what a peer one step
				// out of step would write.
				d := []uint64{1, 2, 7, 8, 9, 1 << 32}[rng.IntN(6)]
				if rng.IntN(2) == 0 {
					d = -d
				}
				v = old + d
			default:
				// Another slot's descriptor, perhaps marked aborted.
				v = word64(meta, ring.OffDescs+8*rng.IntN(2)).Load() | uint64(rng.IntN(2))<<(32+ring.InfoFlagsShift)
			}
			scribble(meta, off, v)
			if !pause(200 * time.Microsecond) {
				return
			}
		}
	}
}
