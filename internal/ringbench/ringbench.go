// Package ringbench measures the ring against a Go channel doing the same
// work: producers write a 64-byte record, consumers read it, through a queue
// of 1024 records. It backs `ycq bench ring` and the ring's testing.B
// benchmarks, so both measure the same thing.
package ringbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ycq-dev/ycq/ring"
)

const (
	// Payload is the record size in bytes.
	Payload = 64
	// Capacity is the queue capacity in records, for every system.
	Capacity = 1024
	// ChanBatch is the batch size of the batched channel baseline.
	ChanBatch = 32
)

// Systems under test.
const (
	SystemRing = "ring"
	SystemChan = "chan"
)

// Systems lists every system, the one under test first.
var Systems = []string{SystemRing, SystemChan}

// Scenario is one shape of traffic.
type Scenario struct {
	Name      string
	Producers int
	Consumers int
	Batch     int
}

// Scenarios are the shapes `ycq bench ring` runs.
var Scenarios = []Scenario{
	{"spsc", 1, 1, 1},
	{"spsc", 1, 1, 32},
	{"mpmc", 2, 2, 1},
}

// Result is one measurement.
type Result struct {
	System      string  `json:"system"`
	Scenario    string  `json:"scenario"`
	Batch       int     `json:"batch"`
	Producers   int     `json:"producers"`
	Consumers   int     `json:"consumers"`
	Payload     int     `json:"payload"`
	ItemsPerSec float64 `json:"items_per_sec"`
	Items       int     `json:"-"`
	Elapsed     time.Duration
}

// Run moves about items records through system in scenario sc and reports
// the rate. Every record is checked: the sum of all payload words read must
// equal the sum written.
func Run(system string, sc Scenario, items int) (Result, error) {
	if sc.Producers < 1 || sc.Consumers < 1 || sc.Batch < 1 || items < sc.Producers {
		return Result{}, fmt.Errorf("ringbench: bad scenario %+v with %d items", sc, items)
	}
	per := items / sc.Producers
	if system == SystemChan && sc.Batch > 1 {
		per -= per % ChanBatch
	}
	res := Result{System: system, Scenario: sc.Name, Batch: sc.Batch, Producers: sc.Producers,
		Consumers: sc.Consumers, Payload: Payload, Items: per * sc.Producers}
	var run func(sc Scenario, per int) (written, read uint64, err error)
	switch system {
	case SystemRing:
		run = runRing
	case SystemChan:
		switch sc.Batch {
		case 1:
			run = runChan[[1][Payload]byte]
		case ChanBatch:
			run = runChan[[ChanBatch][Payload]byte]
		default:
			return Result{}, fmt.Errorf("ringbench: the channel baseline batches 1 or %d, not %d", ChanBatch, sc.Batch)
		}
	default:
		return Result{}, fmt.Errorf("ringbench: unknown system %q", system)
	}
	start := time.Now()
	written, read, err := run(sc, per)
	res.Elapsed = time.Since(start)
	if err != nil {
		return res, err
	}
	if written != read {
		return res, fmt.Errorf("ringbench: %s %s: payload sum read %d, written %d", system, sc.Name, read, written)
	}
	res.ItemsPerSec = float64(res.Items) / res.Elapsed.Seconds()
	return res, nil
}

// fill writes record number v of a producer: eight words.
func fill(b []byte, v uint64) uint64 {
	b = b[:Payload]
	var s uint64
	for i := 0; i < Payload; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], v+uint64(i))
		s += v + uint64(i)
	}
	return s
}

// sum reads a record.
func sum(b []byte) uint64 {
	b = b[:Payload]
	var s uint64
	for i := 0; i < Payload; i += 8 {
		s += binary.LittleEndian.Uint64(b[i:])
	}
	return s
}

// Watermark is how many records (or free slots) a waiting side lets build
// up before it goes on. Taking every record the moment it appears makes the
// producer and the consumer work on the same cache lines at once, which here
// costs far more than waiting (a line takes about 245 ns to cross between the
// CPUs); letting a burst build up first is what polling drivers (NAPI, DPDK)
// do too.
const Watermark = Capacity / 4

// pollEvery is how many times a waiting side yields the processor between
// looks at the other side's progress. Yielding is a must with more threads
// than CPUs; looking less often keeps the waiter off the line the other side
// is writing.
const pollEvery = 16

// waitFor yields until ready reports true or until done does.
func waitFor(ready, done func() bool) {
	for {
		for range pollEvery {
			runtime.Gosched()
		}
		if ready() || done() {
			return
		}
	}
}

func runRing(sc Scenario, per int) (written, read uint64, err error) {
	q, err := ring.New(ring.Config{Slots: Capacity, SlotSize: Payload,
		SingleProducer: sc.Producers == 1, SingleConsumer: sc.Consumers == 1})
	if err != nil {
		return 0, 0, err
	}
	var wsum, rsum atomic.Uint64
	var producing atomic.Int32
	producing.Store(int32(sc.Producers))
	errs := make(chan error, sc.Producers+sc.Consumers)
	var wg sync.WaitGroup
	for range sc.Producers {
		wg.Go(func() {
			defer producing.Add(-1)
			p := q.Producer()
			var s uint64
			room := func() bool { return q.Cap()-q.Len() >= Watermark }
			never := func() bool { return false }
			for sent := 0; sent < per; {
				w, err := p.ReserveUpTo(min(sc.Batch, per-sent))
				if errors.Is(err, ring.ErrFull) {
					waitFor(room, never)
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				for i := range w.Len() {
					s += fill(w.Slot(i), uint64(sent+i))
				}
				if err := w.PublishAll(Payload); err != nil {
					errs <- err
					return
				}
				sent += w.Len()
			}
			wsum.Add(s)
		})
	}
	for range sc.Consumers {
		wg.Go(func() {
			c := q.Consumer()
			var s uint64
			items := func() bool { return q.Len() >= Watermark }
			done := func() bool { return producing.Load() == 0 }
			for {
				r, err := c.ReserveUpTo(sc.Batch)
				if errors.Is(err, ring.ErrEmpty) {
					// Producers publish before they count themselves
					// done, so empty after done means drained.
					if producing.Load() == 0 {
						if r, err = c.ReserveUpTo(sc.Batch); errors.Is(err, ring.ErrEmpty) {
							break
						}
					} else {
						waitFor(items, done)
						continue
					}
				}
				if err != nil {
					errs <- err
					return
				}
				for i := range r.Len() {
					b, err := r.Slot(i)
					if err != nil {
						errs <- err
						return
					}
					s += sum(b)
				}
				if err := r.ReleaseAll(); err != nil {
					errs <- err
					return
				}
			}
			rsum.Add(s)
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		return 0, 0, e
	}
	return wsum.Load(), rsum.Load(), nil
}

// batchOf is what the channel carries: one record, or ChanBatch of them.
type batchOf interface {
	[1][Payload]byte | [ChanBatch][Payload]byte
}

// runChan sends batches of B through a buffered channel of Capacity records.
func runChan[B batchOf](sc Scenario, per int) (written, read uint64, err error) {
	var zero B
	n := len(zero)
	c := make(chan B, Capacity/n)
	var wsum, rsum atomic.Uint64
	var prod, cons sync.WaitGroup
	for range sc.Producers {
		prod.Go(func() {
			var s uint64
			for i := 0; i < per; i += n {
				var v B
				for j := 0; j < n; j++ {
					s += fill(v[j][:], uint64(i+j))
				}
				c <- v
			}
			wsum.Add(s)
		})
	}
	for range sc.Consumers {
		cons.Go(func() {
			var s uint64
			for v := range c {
				for j := 0; j < n; j++ {
					s += sum(v[j][:])
				}
			}
			rsum.Add(s)
		})
	}
	prod.Wait()
	close(c)
	cons.Wait()
	return wsum.Load(), rsum.Load(), nil
}
