package ring_test

import (
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"ycq/ring"
)

const benchPayload = 64

func fill(b []byte, v uint64) {
	b = b[:benchPayload]
	for i := 0; i < benchPayload; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], v+uint64(i))
	}
}

func sum(b []byte) (s uint64) {
	for i := 0; i+8 <= len(b); i += 8 {
		s += binary.LittleEndian.Uint64(b[i:])
	}
	return s
}

// benchRing moves b.N records of 64 bytes through a 1024-slot queue with
// the given producer and consumer counts and batch size.
func benchRing(b *testing.B, producers, consumers, batch int) {
	q, err := ring.New(ring.Config{Slots: 1024, SlotSize: benchPayload,
		SingleProducer: producers == 1, SingleConsumer: consumers == 1})
	if err != nil {
		b.Fatal(err)
	}
	total := b.N
	b.SetBytes(benchPayload)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	var sink uint64
	var mu sync.Mutex
	for p := range producers {
		n := total / producers
		if p == 0 {
			n += total % producers
		}
		wg.Go(func() {
			prod := q.Producer()
			for sent := 0; sent < n; {
				k := min(batch, n-sent)
				w, err := prod.ReserveUpTo(k)
				if errors.Is(err, ring.ErrFull) {
					for range 50 {
						runtime.Gosched()
					}
					continue
				}
				if err != nil {
					b.Error(err)
					return
				}
				for i := range w.Len() {
					fill(w.Slot(i), uint64(sent+i))
				}
				if err := w.PublishAll(benchPayload); err != nil {
					b.Error(err)
					return
				}
				sent += w.Len()
			}
		})
	}
	var got sync.WaitGroup
	var taken atomic.Int64
	for range consumers {
		got.Go(func() {
			cons := q.Consumer()
			var s uint64
			defer func() { mu.Lock(); sink += s; mu.Unlock() }()
			for {
				r, err := cons.ReserveUpTo(batch)
				if errors.Is(err, ring.ErrEmpty) {
					if taken.Load() >= int64(total) {
						return
					}
					runtime.Gosched()
					continue
				}
				if err != nil {
					b.Error(err)
					return
				}
				for i := range r.Len() {
					p, _ := r.Slot(i)
					s += sum(p)
				}
				n := r.Len()
				if err := r.ReleaseAll(); err != nil {
					b.Error(err)
					return
				}
				if taken.Add(int64(n)) >= int64(total) {
					return
				}
			}
		})
	}
	wg.Wait()
	got.Wait()
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "items/s")
	st := q.Stats()
	b.ReportMetric(float64(st.Full)/float64(total), "full/item")
	b.ReportMetric(float64(st.Empty)/float64(total), "empty/item")
}

func BenchmarkRingSPSC(b *testing.B)        { benchRing(b, 1, 1, 1) }
func BenchmarkRingSPSCBatch32(b *testing.B) { benchRing(b, 1, 1, 32) }
func BenchmarkRingMPMC(b *testing.B)        { benchRing(b, 2, 2, 1) }
