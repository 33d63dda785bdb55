package ring_test

import (
	"fmt"
	"testing"

	"github.com/ycq-dev/ycq/internal/ringbench"
	"github.com/ycq-dev/ycq/ring"
)

// BenchmarkQueue runs the `ycq bench ring` scenarios for every system
// under testing.B; b.N is the number of records, so benchstat compares
// commits. `ycq bench ring` prints the same side by side, as ratios.
func BenchmarkQueue(b *testing.B) {
	for _, sc := range ringbench.Scenarios {
		for _, sys := range sc.Systems {
			b.Run(fmt.Sprintf("%s/%s-%dx%d/batch%d", sys, sc.Name, sc.Producers, sc.Consumers, sc.Batch), func(b *testing.B) {
				b.SetBytes(ringbench.Payload)
				b.ReportAllocs()
				r, err := ringbench.Run(sys, sc, max(b.N, 1024))
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.ItemsPerSec, "items/s")
			})
		}
	}
}

// BenchmarkRoundTrip is one goroutine producing and consuming: the CPU cost
// of the operations themselves, with no cache line crossing between CPUs.
func BenchmarkRoundTrip(b *testing.B) {
	for _, batch := range []int{1, 32} {
		for _, single := range []bool{false, true} {
			b.Run(fmt.Sprintf("batch%d/single=%v", batch, single), func(b *testing.B) {
				q, err := ring.New(ring.Config{Slots: 1024, SlotSize: 64, SingleProducer: single, SingleConsumer: single})
				if err != nil {
					b.Fatal(err)
				}
				p, c := q.Producer(), q.Consumer()
				b.ReportAllocs()
				b.SetBytes(int64(batch) * 64)
				for b.Loop() {
					w, _ := p.Reserve(batch)
					_ = w.PublishAll(64)
					r, _ := c.Reserve(batch)
					_ = r.ReleaseAll()
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "items/s")
			})
		}
	}
}

// TestHotPathDoesNotAllocate: reserve, write, publish, reserve, read and
// release allocate nothing, on every kind of side.
func TestHotPathDoesNotAllocate(t *testing.T) {
	for _, single := range []bool{false, true} {
		q, err := ring.New(ring.Config{Slots: 64, SlotSize: 64, SingleProducer: single, SingleConsumer: single})
		if err != nil {
			t.Fatal(err)
		}
		p, c := q.Producer(), q.Consumer()
		allocs := testing.AllocsPerRun(1000, func() {
			w, _ := p.ReserveUpTo(8)
			for i := range w.Len() {
				w.Slot(i)[0] = byte(i)
			}
			_ = w.Publish(0, 64)
			_ = w.PublishAll(64)
			r, _ := c.Reserve(w.Len())
			for i := range r.Len() {
				b, _ := r.Slot(i)
				_ = b[0]
			}
			_ = r.Release(0)
			_ = r.ReleaseAll()
		})
		if allocs != 0 {
			t.Fatalf("single=%v: %v allocations per round trip", single, allocs)
		}
	}
}

// TestPause: Pause returns, for any count.
func TestPause(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 1000} {
		ring.Pause(n)
	}
}
