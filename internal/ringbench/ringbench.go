// Package ringbench measures the ring against Go channels doing the same
// work: producers write every byte of a 64-byte record, consumers read every
// byte, through a queue of 1024 records, and the sums written and read must
// agree. It backs `ycq bench ring` and the ring's testing.B benchmarks, so
// both measure the same thing.
//
// Every system takes work the moment it is there. The ring's waiting sides
// spin 1, 2, 4 ... 32 pause steps (ring.Pause) and then yield the processor, and
// start over after each success; the channels wait inside the Go runtime, as
// a Go program uses them. No side waits for a batch to build up.
package ringbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"slices"
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
	// ChanBatch is the records a batch of the batched channel carries.
	ChanBatch = 32
)

// Systems.
const (
	// SystemRing is the ycq ring through its public API.
	SystemRing = "ring"
	// SystemChan is a chan [64]byte: each record copied in and out.
	SystemChan = "chan"
	// SystemPool is pooled *[64]byte buffers through channels: a free-list
	// channel and a data channel, the nearest Go has to zero copy.
	SystemPool = "pool"
	// SystemBatch is pooled *[32][64]byte batches through a free-list and
	// a data channel: what a Go programmer passes to move records 32 at a
	// time.
	SystemBatch = "chan-batch"
	// SystemResize is the ring as a ring.Resizable whose slot count
	// alternates between Capacity and half of it every ResizeEvery, its
	// sides formatted as the ring's are.
	SystemResize = "ring-resize"
	// SystemCached is the ring through ring.CachedProducer and
	// CachedConsumer: records handed out and published one at a time,
	// from runs of up to CacheRun reserved at once.
	SystemCached = "ring-cached"
)

// CacheRun is how many slots or records ring-cached reserves at a time:
// one descriptor line's.
const CacheRun = 8

// Scenario is one shape of traffic and the systems it compares, the one
// under test first.
type Scenario struct {
	Name      string
	Producers int
	Consumers int
	Batch     int
	Systems   []string
}

// Scenarios are the shapes `ycq bench ring` runs.
var Scenarios = []Scenario{
	{"spsc", 1, 1, 1, []string{SystemRing, SystemChan, SystemPool, SystemCached}},
	{"spsc", 1, 1, ChanBatch, []string{SystemRing, SystemBatch, SystemResize}},
	{"mpmc", 2, 2, 1, []string{SystemRing, SystemChan, SystemPool, SystemResize, SystemCached}},
	{"mpmc", 2, 2, ChanBatch, []string{SystemRing, SystemBatch}},
	{"mpmc", 4, 4, 1, []string{SystemRing, SystemChan, SystemPool, SystemCached}},
}

// Result is one measurement.
type Result struct {
	System      string        `json:"system"`
	Scenario    string        `json:"scenario"`
	Batch       int           `json:"batch"`
	Producers   int           `json:"producers"`
	Consumers   int           `json:"consumers"`
	Payload     int           `json:"payload"`
	ItemsPerSec float64       `json:"items_per_sec"`
	Items       int           `json:"items"`
	Elapsed     time.Duration `json:"elapsed_ns"`
}

// Run moves about items records through system in scenario sc and reports
// the rate. Every record is checked: the sum of all payload words read must
// equal the sum written.
func Run(system string, sc Scenario, items int) (Result, error) {
	if sc.Producers < 1 || sc.Consumers < 1 || sc.Batch < 1 || sc.Batch > Capacity || items < sc.Producers {
		return Result{}, fmt.Errorf("ringbench: bad scenario %+v with %d items", sc, items)
	}
	per := items / sc.Producers
	var run func(sc Scenario, per int) (written, read uint64, err error)
	switch system {
	case SystemRing:
		run = runRing
	case SystemResize:
		run = runRingResize
	case SystemCached:
		if sc.Batch != 1 {
			return Result{}, fmt.Errorf("ringbench: %s hands out single records, not batches of %d", system, sc.Batch)
		}
		run = runRingCached
	case SystemChan:
		if sc.Batch != 1 {
			return Result{}, fmt.Errorf("ringbench: %s carries single records, not batches of %d", system, sc.Batch)
		}
		run = runChan
	case SystemPool:
		if sc.Batch != 1 {
			return Result{}, fmt.Errorf("ringbench: %s carries single records, not batches of %d", system, sc.Batch)
		}
		run = runPool[[1][Payload]byte]
	case SystemBatch:
		if sc.Batch != ChanBatch {
			return Result{}, fmt.Errorf("ringbench: %s carries batches of %d, not %d", system, ChanBatch, sc.Batch)
		}
		per -= per % ChanBatch
		run = runPool[[ChanBatch][Payload]byte]
	default:
		return Result{}, fmt.Errorf("ringbench: unknown system %q", system)
	}
	if per < 1 {
		return Result{}, fmt.Errorf("ringbench: %d items are too few for %s %+v", items, system, sc)
	}
	res := Result{System: system, Scenario: sc.Name, Batch: sc.Batch, Producers: sc.Producers,
		Consumers: sc.Consumers, Payload: Payload, Items: per * sc.Producers}
	// Collect what earlier runs left (ring-resize allocates a queue a
	// resize) before the clock starts, for every system alike.
	runtime.GC()
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

// Backoff is the ring's wait when the other side has not caught up: spin
// 1, 2, 4 ... 32 PAUSE steps, then yield the processor on every further
// try, until Reset after the next success (the wait the DPDK anchor's
// figures were taken with).
type Backoff struct{ spins int }

// Wait waits once.
func (b *Backoff) Wait() {
	if b.spins < 32 {
		b.spins = max(1, 2*b.spins)
		ring.Pause(b.spins)
		return
	}
	runtime.Gosched()
}

// Reset starts the next wait from one step.
func (b *Backoff) Reset() { b.spins = 0 }

func newRing(sc Scenario) (*ring.Queue, error) {
	return ring.New(ring.Config{Slots: Capacity, SlotSize: Payload,
		SingleProducer: sc.Producers == 1, SingleConsumer: sc.Consumers == 1})
}

func runRing(sc Scenario, per int) (written, read uint64, err error) {
	q, err := newRing(sc)
	if err != nil {
		return 0, 0, err
	}
	return runSides(sc, per, q.Producer, q.Consumer, nil)
}

// ResizeEvery is how often the ring-resize system changes the slot count.
const ResizeEvery = 10 * time.Millisecond

// runRingResize is runRing over a ring.Resizable, single sides formatted
// single as newRing does, that a goroutine grows to Capacity and shrinks
// to half of it every ResizeEvery while the records flow.
func runRingResize(sc Scenario, per int) (written, read uint64, err error) {
	r, err := ring.NewResizable(ring.Config{Slots: Capacity, SlotSize: Payload,
		SingleProducer: sc.Producers == 1, SingleConsumer: sc.Consumers == 1})
	if err != nil {
		return 0, 0, err
	}
	stop := resizeEvery(r)
	written, read, err = runSides(sc, per, r.Producer, r.Consumer, nil)
	return written, read, errors.Join(err, stop())
}

// runRingCached is runRing through a CachedProducer and a CachedConsumer
// on each side.
func runRingCached(sc Scenario, per int) (written, read uint64, err error) {
	q, err := newRing(sc)
	if err != nil {
		return 0, 0, err
	}
	newP := func() cachedProducer {
		c, _ := q.CachedProducer(CacheRun)
		return cachedProducer{c}
	}
	newC := func() cachedConsumer {
		c, _ := q.CachedConsumer(CacheRun)
		return cachedConsumer{c}
	}
	return runSides(sc, per, newP, newC, nil)
}

// cachedProducer and cachedConsumer are the cached sides as runSides
// drives them: a batch of one each call.
type cachedProducer struct{ c *ring.CachedProducer }

func (p cachedProducer) ReserveUpTo(int) (ring.WriteRun, error) { return p.c.Reserve() }
func (p cachedProducer) Flush() error                           { return p.c.Flush() }

type cachedConsumer struct{ c *ring.CachedConsumer }

func (c cachedConsumer) ReserveUpTo(int) (ring.ReadRun, error) { return c.c.Reserve() }

// reserver is a producing or consuming side: ring's, or a Resizable's.
type reserver[R any] interface {
	ReserveUpTo(n int) (R, error)
}

// runSides runs sc's producers and consumers over the sides newP and newC
// make. Each instantiation is its own code (the sides are distinct struct
// types), so the calls stay direct. With stalls not nil, every producer
// times each of its waits for room, from the reserve refused as full to the
// next that succeeded, into it.
func runSides[P reserver[ring.WriteRun], C reserver[ring.ReadRun]](sc Scenario, per int, newP func() P, newC func() C, stalls *stallLog) (written, read uint64, err error) {
	var wsum, rsum atomic.Uint64
	var producing atomic.Int32
	producing.Store(int32(sc.Producers))
	errs := make(chan error, sc.Producers+sc.Consumers)
	var wg sync.WaitGroup
	for range sc.Producers {
		wg.Go(func() {
			defer producing.Add(-1)
			p := newP()
			var s uint64
			var wait Backoff
			var h *histogram
			var since int64 // when the wait under way began, or 0
			if stalls != nil {
				h = new(histogram)
				defer stalls.add(h)
			}
			for sent := 0; sent < per; {
				w, err := p.ReserveUpTo(min(sc.Batch, per-sent))
				if err == ring.ErrFull {
					if h != nil && since == 0 {
						since = stalls.now()
					}
					wait.Wait()
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				wait.Reset()
				if since != 0 {
					h.add(stalls.now() - since)
					since = 0
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
			if f, ok := any(p).(interface{ Flush() error }); ok {
				// Slots a cached producer reserved and did not use: the
				// consumers would wait at them for ever.
				if err := f.Flush(); err != nil {
					errs <- err
					return
				}
			}
			wsum.Add(s)
		})
	}
	for range sc.Consumers {
		wg.Go(func() {
			c := newC()
			var s uint64
			var wait Backoff
			for {
				r, err := c.ReserveUpTo(sc.Batch)
				if err == ring.ErrEmpty {
					// Producers publish before they count themselves
					// done, so empty after done means drained.
					if producing.Load() != 0 {
						wait.Wait()
						continue
					}
					if r, err = c.ReserveUpTo(sc.Batch); err == ring.ErrEmpty {
						break
					}
				}
				if err != nil {
					errs <- err
					return
				}
				wait.Reset()
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

// runChan copies each record into and out of a chan [64]byte.
func runChan(sc Scenario, per int) (written, read uint64, err error) {
	c := make(chan [Payload]byte, Capacity)
	var wsum, rsum atomic.Uint64
	var prod, cons sync.WaitGroup
	for range sc.Producers {
		prod.Go(func() {
			var s uint64
			for i := range per {
				var v [Payload]byte
				s += fill(v[:], uint64(i))
				c <- v
			}
			wsum.Add(s)
		})
	}
	for range sc.Consumers {
		cons.Go(func() {
			var s uint64
			for v := range c {
				s += sum(v[:])
			}
			rsum.Add(s)
		})
	}
	prod.Wait()
	close(c)
	cons.Wait()
	return wsum.Load(), rsum.Load(), nil
}

// batchOf is what the pooled channels carry: one record, or ChanBatch.
type batchOf interface {
	[1][Payload]byte | [ChanBatch][Payload]byte
}

// runPool passes pointers to pooled buffers of B: producers take a free
// buffer from the free list, fill it in place and send the pointer;
// consumers read it in place and give it back. The pool holds Capacity
// records, as the other systems do.
func runPool[B batchOf](sc Scenario, per int) (written, read uint64, err error) {
	var zero B
	n := len(zero)
	bufs := Capacity / n
	free := make(chan *B, bufs)
	data := make(chan *B, bufs)
	for range bufs {
		free <- new(B)
	}
	var wsum, rsum atomic.Uint64
	var prod, cons sync.WaitGroup
	for range sc.Producers {
		prod.Go(func() {
			var s uint64
			for i := 0; i < per; i += n {
				v := <-free
				for j := range n {
					s += fill((*v)[j][:], uint64(i+j))
				}
				data <- v
			}
			wsum.Add(s)
		})
	}
	for range sc.Consumers {
		cons.Go(func() {
			var s uint64
			for v := range data {
				for j := range n {
					s += sum((*v)[j][:])
				}
				free <- v
			}
			rsum.Add(s)
		})
	}
	prod.Wait()
	close(data)
	cons.Wait()
	return wsum.Load(), rsum.Load(), nil
}

// StallScenarios are the shapes MeasureStalls compares the ring and
// ring-resize in.
var StallScenarios = []Scenario{
	{"spsc", 1, 1, ChanBatch, []string{SystemRing, SystemResize}},
	{"mpmc", 2, 2, 1, []string{SystemRing, SystemResize}},
}

// Stalls are how long the producers of one run waited for room: each wait,
// from a reserve refused as full to the next one that succeeded. A ring
// waits whenever its consumers fall behind; ring-resize waits as well while
// a switch drains, so the two side by side show what a switch costs.
type Stalls struct {
	System    string        `json:"system"`
	Scenario  string        `json:"scenario"`
	Batch     int           `json:"batch"`
	Producers int           `json:"producers"`
	Consumers int           `json:"consumers"`
	Items     int           `json:"items"`
	Waits     uint64        `json:"waits"`
	P99       time.Duration `json:"p99_ns"` // the upper bound of its histogram bucket: at most 1/8 high
	Max       time.Duration `json:"max_ns"`
}

// MeasureStalls runs items records through system (ring or ring-resize) in
// scenario sc, as Run does, and times its producers' waits for room.
func MeasureStalls(system string, sc Scenario, items int) (Stalls, error) {
	if sc.Producers < 1 || sc.Consumers < 1 || sc.Batch < 1 || sc.Batch > Capacity || items < sc.Producers {
		return Stalls{}, fmt.Errorf("ringbench: bad scenario %+v with %d items", sc, items)
	}
	per := items / sc.Producers
	log := &stallLog{base: time.Now()}
	var written, read uint64
	var err error
	runtime.GC()
	switch system {
	case SystemRing:
		q, qerr := newRing(sc)
		if qerr != nil {
			return Stalls{}, qerr
		}
		written, read, err = runSides(sc, per, q.Producer, q.Consumer, log)
	case SystemResize:
		r, rerr := ring.NewResizable(ring.Config{Slots: Capacity, SlotSize: Payload,
			SingleProducer: sc.Producers == 1, SingleConsumer: sc.Consumers == 1})
		if rerr != nil {
			return Stalls{}, rerr
		}
		stop := resizeEvery(r)
		written, read, err = runSides(sc, per, r.Producer, r.Consumer, log)
		err = errors.Join(err, stop())
	default:
		return Stalls{}, fmt.Errorf("ringbench: no stall run for %q", system)
	}
	if err != nil {
		return Stalls{}, fmt.Errorf("ringbench: %s %s: %w", system, sc.Name, err)
	}
	if written != read {
		return Stalls{}, fmt.Errorf("ringbench: %s %s: wrote sum %#x, read sum %#x", system, sc.Name, written, read)
	}
	h := &log.h
	return Stalls{System: system, Scenario: sc.Name, Batch: sc.Batch, Producers: sc.Producers,
		Consumers: sc.Consumers, Items: per * sc.Producers, Waits: h.count,
		P99: time.Duration(h.quantile(0.99)), Max: time.Duration(h.max)}, nil
}

// stallLog gathers the producers' histograms of one stall run.
type stallLog struct {
	base time.Time
	mu   sync.Mutex
	h    histogram
}

// now is the time since the run began, at least 1 (0 means no wait).
func (l *stallLog) now() int64 { return max(int64(time.Since(l.base)), 1) }

func (l *stallLog) add(h *histogram) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, n := range h.n {
		l.h.n[i] += n
	}
	l.h.count += h.count
	l.h.max = max(l.h.max, h.max)
}

// histogram counts durations in nanoseconds in buckets of 1/8 of a power of
// two (below 8 ns, one a nanosecond), so a quantile is within 1/8 of the
// truth; the maximum is exact.
type histogram struct {
	n     [64 * 8]uint64
	count uint64
	max   int64
}

func (h *histogram) add(d int64) {
	d = max(d, 0)
	h.n[histBucket(d)]++
	h.count++
	h.max = max(h.max, d)
}

// histBucket is the bucket of d >= 0: d itself below 8, else 8 buckets
// for each power of two, by the three bits below the top one.
func histBucket(d int64) int {
	if d < 8 {
		return int(d)
	}
	e := bits.Len64(uint64(d)) - 4
	return (e+1)*8 + int(uint64(d)>>e&7)
}

// histUpper is the largest duration bucket i holds.
func histUpper(i int) int64 {
	if i < 8 {
		return int64(i)
	}
	e, m := i/8-1, int64(i%8)
	return (8+m+1)<<e - 1
}

// quantile is the upper bound of the bucket that holds quantile q, capped
// at the maximum; 0 with nothing counted.
func (h *histogram) quantile(q float64) int64 {
	if h.count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	seen := uint64(0)
	for i, n := range h.n {
		if seen += n; seen >= max(rank, 1) {
			return min(histUpper(i), h.max)
		}
	}
	return h.max
}

// Latency is the one-way latency of one system at a steady offered load.
type Latency struct {
	System  string        `json:"system"`
	Rate    float64       `json:"offered_per_sec"`
	Records int           `json:"records"`
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
	Max     time.Duration `json:"max_ns"`
}

// latencySides makes MeasureLatency's producer and consumer over the sides
// newP and newC make: one record at a time, each stamped with its send
// time, waiting with Backoff.
func latencySides[P interface {
	Reserve(n int) (ring.WriteRun, error)
}, C interface {
	Reserve(n int) (ring.ReadRun, error)
}](records int, now func() int64, newP func() P, newC func() C) (produce func(due func(i int) int64) error, consume func(got func(b []byte)) error) {
	produce = func(due func(i int) int64) error {
		p := newP()
		var wait Backoff
		for i := range records {
			due(i)
			w, err := p.Reserve(1)
			for err == ring.ErrFull {
				wait.Wait()
				w, err = p.Reserve(1)
			}
			if err != nil {
				return err
			}
			wait.Reset()
			b := w.Slot(0)
			fill(b, uint64(i))
			binary.LittleEndian.PutUint64(b, uint64(now()))
			if err := w.PublishAll(Payload); err != nil {
				return err
			}
		}
		return nil
	}
	consume = func(got func(b []byte)) error {
		c := newC()
		var wait Backoff
		for range records {
			r, err := c.Reserve(1)
			for err == ring.ErrEmpty {
				wait.Wait()
				r, err = c.Reserve(1)
			}
			if err != nil {
				return err
			}
			wait.Reset()
			b, err := r.Slot(0)
			if err != nil {
				return err
			}
			got(b)
			if err := r.ReleaseAll(); err != nil {
				return err
			}
		}
		return nil
	}
	return produce, consume
}

// resizeEvery resizes r between Capacity and half of it every ResizeEvery
// until the returned stop is called, which returns the first error.
func resizeEvery(r *ring.Resizable) (stop func() error) {
	done := make(chan struct{})
	resized := make(chan error, 1)
	go func() {
		t := time.NewTicker(ResizeEvery)
		defer t.Stop()
		for i := 1; ; i++ {
			select {
			case <-done:
				resized <- nil
				return
			case <-t.C:
				if err := r.Resize(Capacity >> (i % 2)); err != nil {
					<-done
					resized <- err
					return
				}
			}
		}
	}()
	return func() error {
		close(done)
		return <-resized
	}
}

// LatencySystems are the systems MeasureLatency compares.
var LatencySystems = []string{SystemRing, SystemChan, SystemResize}

// MeasureLatency offers records records at rate per second from one
// producer to one consumer, batch 1, and measures each one from just before
// its producer publishes (sends) it to just after the consumer has read it.
// The producer keeps to the schedule (record i is due at start + i/rate) and
// waits for it by spinning, so a late record is measured from when it was
// sent, not when it was due.
func MeasureLatency(system string, rate float64, records int) (Latency, error) {
	if rate <= 0 || records < 100 {
		return Latency{}, fmt.Errorf("ringbench: latency at %v records/s over %d records", rate, records)
	}
	base := time.Now()
	now := func() int64 { return int64(time.Since(base)) }
	samples := make([]time.Duration, 0, records)
	interval := float64(time.Second) / rate
	var produce func(due func(i int) int64) error
	var consume func(got func(b []byte)) error
	var stopResize func() error // ring-resize's resizer
	defer func() {
		if stopResize != nil {
			stopResize()
		}
	}()
	switch system {
	case SystemRing:
		q, err := newRing(Scenario{Producers: 1, Consumers: 1})
		if err != nil {
			return Latency{}, err
		}
		produce, consume = latencySides(records, now, q.Producer, q.Consumer)
	case SystemResize:
		r, err := ring.NewResizable(ring.Config{Slots: Capacity, SlotSize: Payload, SingleProducer: true, SingleConsumer: true})
		if err != nil {
			return Latency{}, err
		}
		stopResize = resizeEvery(r)
		produce, consume = latencySides(records, now, r.Producer, r.Consumer)
	case SystemChan:
		c := make(chan [Payload]byte, Capacity)
		produce = func(due func(i int) int64) error {
			for i := range records {
				due(i)
				var v [Payload]byte
				fill(v[:], uint64(i))
				binary.LittleEndian.PutUint64(v[:], uint64(now()))
				c <- v
			}
			return nil
		}
		consume = func(got func(b []byte)) error {
			for range records {
				v := <-c
				got(v[:])
			}
			return nil
		}
	default:
		return Latency{}, fmt.Errorf("ringbench: no latency run for %q", system)
	}
	var wg sync.WaitGroup
	var perr, cerr error
	start := now() + int64(time.Millisecond)
	wg.Go(func() {
		perr = produce(func(i int) int64 {
			due := start + int64(float64(i)*interval)
			for now() < due {
			}
			return due
		})
	})
	wg.Go(func() {
		cerr = consume(func(b []byte) {
			sent := int64(binary.LittleEndian.Uint64(b))
			sum(b) // read every byte, as the throughput runs do
			samples = append(samples, time.Duration(now()-sent))
		})
	})
	wg.Wait()
	if stopResize != nil {
		perr = errors.Join(perr, stopResize())
		stopResize = nil
	}
	if err := errors.Join(perr, cerr); err != nil {
		return Latency{}, err
	}
	slices.Sort(samples)
	at := func(q float64) time.Duration { return samples[min(len(samples)-1, int(q*float64(len(samples))))] }
	return Latency{System: system, Rate: rate, Records: records, P50: at(0.50), P99: at(0.99), Max: samples[len(samples)-1]}, nil
}

// PingPong measures how long a cache line takes to go from one CPU to the
// other and back: two goroutines, each on its own thread, hand a counter
// back and forth for about d. On 2 vCPUs the host places them near each
// other or far apart, and it changes between runs; print this beside every
// figure.
func PingPong(d time.Duration) time.Duration {
	var ball atomic.Uint64
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for v := uint64(1); !stop.Load(); {
			if ball.Load() == v {
				ball.Store(v + 1)
				v += 2
			}
		}
	})
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	trips := uint64(0)
	for v := uint64(0); ; trips++ {
		ball.Store(v + 1)
		for ball.Load() != v+2 {
			if time.Since(start) > 10*d {
				// The other side got no CPU (more goroutines than
				// CPUs, or a busy machine): say so with a large value.
				stop.Store(true)
				wg.Wait()
				return time.Since(start) / time.Duration(max(trips, 1))
			}
		}
		v += 2
		if trips%1024 == 1023 && time.Since(start) > d {
			break
		}
	}
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()
	return elapsed / time.Duration(trips+1)
}
