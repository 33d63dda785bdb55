package ring_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ring/wait"
)

// The conformance test of ring/c: the C single agent (ycq_ring.c, in the
// driver ring/c/conformance/echo.c) runs as a separate process, as a device
// would, on two queues in memfds: it consumes queue in, which Go producers
// feed, and produces into queue out, which Go consumers drain. It checks
// and echoes every Go record and adds records of its own, so out carries
// records of every Go producer and of the device, each with (producer,
// sequence, checksum). Both sides draw batch sizes, reserve modes, publish
// and release order, holes, rollbacks and give-backs from a seed, and both
// sleep on the futex words when they wait (the Go side through ring/wait).
// At the end: every record arrived once, in order per producer, intact;
// Queue.Check is clean; and every counter in the metadata is what the side
// that writes it says it did.

type echoCase struct {
	name                 string
	producers, consumers int
	perProducer          uint64
	start                uint64 // first position: near 2^32 crosses the stamp wrap
	variant              string // of buildDevice
}

func TestCRefConformance(t *testing.T) {
	cases := []echoCase{
		{name: "one producer", producers: 1, consumers: 1, perProducer: 20000, variant: "plain"},
		{name: "three producers near 2^32", producers: 3, consumers: 2, perProducer: 8000, start: 1<<32 - 5000, variant: "plain"},
		{name: "split 64-bit words near 2^32", producers: 2, consumers: 1, perProducer: 8000, start: 1<<32 - 3000, variant: "split64"},
	}
	devs := map[string]string{}
	for _, c := range cases {
		if devs[c.variant] == "" {
			devs[c.variant] = buildDevice(t, c.variant)
		}
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { runEcho(t, devs[c.variant], c, uint64(i+1)) })
	}
}

func runEcho(t *testing.T, dev string, c echoCase, seed uint64) {
	const slots, slotSize = 16, 64
	in := newCQueue(t, ring.Config{Slots: slots, SlotSize: slotSize, SingleConsumer: true, SingleProducer: c.producers == 1}, c.start)
	out := newCQueue(t, ring.Config{Slots: slots, SlotSize: slotSize, SingleProducer: true, SingleConsumer: c.consumers == 1}, c.start)
	d := startDevice(t, dev, []string{"echo", "in=" + in.spec(3), "out=" + out.spec(4),
		fmt.Sprint("seed=", seed), fmt.Sprint("go_producers=", c.producers), fmt.Sprint("per_producer=", c.perProducer),
		fmt.Sprint("own=", c.perProducer), "batch=8", "holes=40", "rollbacks=30", "giveback=40", "spin=32"},
		in.file, out.file)
	d.expect(t, "attached")

	ctx, cancel := context.WithTimeout(context.Background(), cHangGuard)
	defer cancel()
	opt := &wait.Options{Spin: 8}
	wIn, wOut := wait.New(in.q, opt), wait.New(out.q, opt)
	total := uint64(c.producers+1) * c.perProducer // the device's records too

	var producers, consumers sync.WaitGroup
	errs := make(chan error, c.producers+c.consumers)
	aborted := make([]uint64, c.producers)
	for id := range c.producers {
		producers.Go(func() {
			var err error
			aborted[id], err = goProduce(ctx, wIn, uint32(id), c.perProducer, seed)
			if err != nil {
				errs <- err
			}
		})
	}
	consCtx, stop := context.WithCancel(ctx)
	defer stop()
	var got atomic.Uint64
	logs := make([][]seen, c.consumers)
	returned := make([]uint64, c.consumers)
	for id := range c.consumers {
		consumers.Go(func() {
			var err error
			logs[id], returned[id], err = goConsume(consCtx, wOut, id, seed, &got, total, stop)
			if err != nil {
				errs <- err
			}
		})
	}
	producers.Wait()
	d.closeStdin() // the Go producers are done: the device may finish
	consumers.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("%v (device said:\n%s)", err, d.out.String())
	}
	if t.Failed() {
		return
	}
	sum := d.finish(t)
	// The device may leave holes after its last record: pass them, as any
	// consumer would, before comparing the counters.
	_, err := out.q.Consumer().ReserveUpTo(1)
	require.ErrorIs(t, err, ring.ErrEmpty, "nothing after the last record")

	var all []seen
	var goReturned, goAborted uint64
	for id := range c.consumers {
		all = append(all, logs[id]...)
		goReturned += returned[id]
	}
	for _, n := range aborted {
		goAborted += n
	}
	verifySeen(t, all, c.producers+1, c.perProducer)

	goRecords := uint64(c.producers) * c.perProducer
	ist, ost := in.q.Stats(), out.q.Stats()
	S := c.start
	// Queue in: Go produced, the device consumed.
	require.Equal(t, goRecords, sum["taken"], "records the device took")
	require.Equal(t, S+goRecords, ist.Published)
	require.Equal(t, goAborted, ist.Aborted, "slots the Go producers aborted")
	require.Equal(t, ist.ProducerCursor+ist.RolledBack, ist.Published+ist.Aborted, "every reserved slot published or aborted")
	require.Equal(t, S+sum["released"], ist.Released, "cons_released")
	require.Equal(t, S+goRecords, ist.Released)
	require.Equal(t, sum["skipped"], ist.Skipped, "cons_skipped")
	require.Equal(t, ist.Aborted-ist.RolledBack, ist.Skipped, "every hole passed over once")
	require.Equal(t, sum["returned"], ist.Returned, "cons_returned")
	require.Equal(t, sum["empty"], ist.Empty, "cons_empty")
	require.Equal(t, sum["in_pos"], ist.ConsumerCursor)
	require.Equal(t, ist.ProducerCursor, ist.ConsumerCursor, "the device passed every position")
	require.Equal(t, sum["in_wakes"], ist.ConsumerWakeSent, "cons_wake_sent: FUTEX_WAKE calls")
	require.Equal(t, sum["in_wake_checks"], ist.ConsumerWakeSent+ist.ConsumerWakeSuppressed)
	require.Zero(t, ist.ProducerCorrupt)
	require.Zero(t, ist.ConsumerCorrupt)
	// Queue out: the device produced, Go consumed.
	require.Equal(t, c.perProducer, sum["own"], "records of its own")
	require.Equal(t, S+total, ost.Published)
	require.Equal(t, S+sum["published"], ost.Published, "prod_published")
	require.Equal(t, sum["aborted"], ost.Aborted, "prod_aborted")
	require.Equal(t, sum["rolled"], ost.RolledBack, "prod_rolled_back")
	require.Equal(t, sum["full"], ost.Full, "prod_full")
	require.Equal(t, sum["out_pos"], ost.ProducerCursor)
	require.Equal(t, ost.ProducerCursor+ost.RolledBack, ost.Published+ost.Aborted)
	require.Equal(t, sum["out_wakes"], ost.ProducerWakeSent, "prod_wake_sent: FUTEX_WAKE calls")
	require.Equal(t, sum["out_wake_checks"], ost.ProducerWakeSent+ost.ProducerWakeSuppressed)
	require.Equal(t, S+total, ost.Released)
	require.Equal(t, ost.Aborted-ost.RolledBack, ost.Skipped, "every hole passed over once")
	require.Equal(t, goReturned, ost.Returned, "cons_returned")
	require.Equal(t, ost.ProducerCursor, ost.ConsumerCursor)
	require.Zero(t, ost.ProducerCorrupt)
	require.Zero(t, ost.ConsumerCorrupt)
	for _, q := range []*ring.Queue{in.q, out.q} {
		require.NoError(t, q.Check())
		require.Zero(t, q.ItemsWake().Waiters().Load(), "nobody left asleep")
		require.Zero(t, q.SpaceWake().Waiters().Load(), "nobody left asleep")
	}
	// What the run covered.
	require.NotZero(t, ist.Skipped, "holes from Go")
	require.NotZero(t, ist.RolledBack, "rollbacks from Go")
	require.NotZero(t, ist.Returned, "give-backs by the device")
	require.NotZero(t, ost.Skipped, "holes from the device")
	require.NotZero(t, ost.RolledBack, "rollbacks by the device")
	require.Greater(t, ist.ProducerCursor-S, uint64(20*slots), "many laps")
	if S > 0 && S < 1<<32 {
		require.Greater(t, ist.ProducerCursor, uint64(1<<32), "in crossed the 2^32 stamp wrap")
		require.Greater(t, ost.ProducerCursor, uint64(1<<32), "out crossed the 2^32 stamp wrap")
	}
	t.Logf("in: %d positions, %d holes, %d rolled back, %d given back; out: %d positions, %d holes, %d rolled back; "+
		"device slept %d+%d times and sent %d+%d wakeups; Go sent %d+%d",
		ist.ProducerCursor-S, ist.Skipped, ist.RolledBack, ist.Returned, ost.ProducerCursor-S, ost.Skipped, ost.RolledBack,
		sum["in_sleeps"], sum["out_sleeps"], ist.ConsumerWakeSent, ost.ProducerWakeSent, ist.ProducerWakeSent, ost.ConsumerWakeSent)
}

// goProduce publishes n records of producer id into q through ring/wait,
// in random batches and orders, with holes and rollbacks; it returns how
// many slots it aborted (holes, and rolled back).
func goProduce(ctx context.Context, q *wait.Queue, id uint32, n, seed uint64) (aborted uint64, err error) {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	p := q.Producer()
	slotSize := q.Queue().Config().SlotSize
	for seq := uint64(0); seq < n; {
		want := 1 + rng.IntN(8)
		var w wait.WriteRun
		if rng.IntN(2) == 0 {
			w, err = p.Reserve(ctx, want)
		} else {
			w, err = p.ReserveUpTo(ctx, want)
		}
		if err != nil {
			return aborted, fmt.Errorf("producer %d: reserve %d: %w", id, want, err)
		}
		// Slots [0, k) are finished in a random order; the rest, if any,
		// are given up with AbortAll (rolled back when nothing follows).
		k := w.Len()
		if rng.IntN(20) == 0 {
			k = rng.IntN(w.Len())
		}
		hole := make([]bool, k)
		lens := make([]int, k)
		for i := range k {
			hole[i] = seq >= n || rng.IntN(20) == 0
			if !hole[i] {
				lens[i] = recMin + rng.IntN(slotSize-recMin+1)
				writeRecord(w.Slot(i), id, seq, lens[i])
				seq++
			}
		}
		for _, i := range rng.Perm(k) {
			if hole[i] {
				err = w.Abort(i)
				aborted++
			} else {
				err = w.Publish(i, lens[i])
			}
			if err != nil {
				return aborted, fmt.Errorf("producer %d: slot %d: %w", id, i, err)
			}
		}
		if k < w.Len() {
			aborted += uint64(w.Len() - k)
			if err := w.AbortAll(); err != nil {
				return aborted, fmt.Errorf("producer %d: abort all: %w", id, err)
			}
		}
	}
	return aborted, nil
}

// goConsume takes records from q through ring/wait, in random batches,
// sometimes giving part of a run back, and releases them in a random order;
// it logs each record it checked. got counts the records of all consumers;
// the one that takes the last calls stop, which wakes the others.
func goConsume(ctx context.Context, q *wait.Queue, id int, seed uint64, got *atomic.Uint64, total uint64, stop func()) (log []seen, returned uint64, err error) {
	rng := rand.New(rand.NewPCG(seed, uint64(1000+id)))
	c := q.Consumer()
	for got.Load() < total {
		n := 1 + rng.IntN(8)
		var r wait.ReadRun
		// An exact reserve only while plenty remain: one for more than
		// the other consumers leave would never be met.
		if total-got.Load() > 64 && rng.IntN(2) == 0 {
			r, err = c.Reserve(ctx, n)
		} else {
			r, err = c.ReserveUpTo(ctx, n)
		}
		if errors.Is(err, ring.ErrFragmented) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil && got.Load() == total {
				return log, returned, nil // another consumer took the last
			}
			return log, returned, fmt.Errorf("consumer %d: reserve %d after %d records: %w", id, n, got.Load(), err)
		}
		if rng.IntN(25) == 0 {
			had, i := r.Len(), rng.IntN(r.Len())
			switch err := r.AbortFrom(i); {
			case err == nil:
				returned += uint64(had - i)
			case !errors.Is(err, ring.ErrNotLast):
				return log, returned, fmt.Errorf("consumer %d: give back: %w", id, err)
			}
		}
		for i := range r.Len() {
			b, err := r.Slot(i)
			if err != nil {
				return log, returned, fmt.Errorf("consumer %d: slot: %w", id, err)
			}
			producer, seq, err := checkRecord(b)
			if err != nil {
				return log, returned, fmt.Errorf("consumer %d: record at %d: %w", id, r.Position(i), err)
			}
			log = append(log, seen{pos: r.Position(i), producer: producer, seq: seq})
		}
		if rng.IntN(2) == 0 {
			err = r.ReleaseAll()
		} else {
			for _, i := range rng.Perm(r.Len()) {
				if err = r.Release(i); err != nil {
					break
				}
			}
		}
		if err != nil {
			return log, returned, fmt.Errorf("consumer %d: release: %w", id, err)
		}
		if got.Add(uint64(r.Len())) == total {
			stop()
		}
	}
	return log, returned, nil
}

// TestCRefSleepWake: sleeping and waking between the C device and Go, both
// ways on both wake lines, step by step, so that every wakeup is certain
// and every counter exact. Each sleeper says it is asleep only after its
// second look (the device on stdout, from its wait hook; the Go side from
// its wait.Waiter's sleep, on the device's stdin), and the other side then
// makes the record or the room the sleeper waits for and must find it
// registered.
func TestCRefSleepWake(t *testing.T) {
	const rounds, slots, slotSize = 3, 4, 32
	dev := buildDevice(t, "plain")
	cfg := ring.Config{Slots: slots, SlotSize: slotSize, SingleProducer: true, SingleConsumer: true}
	in, out := newCQueue(t, cfg, 0), newCQueue(t, cfg, 0)
	d := startDevice(t, dev, []string{"script", "in=" + in.spec(3), "out=" + out.spec(4)}, in.file, out.file)
	d.expect(t, "ready")
	ctx, cancel := context.WithTimeout(context.Background(), cHangGuard)
	defer cancel()

	prod, cons := in.q.Producer(), out.q.Consumer()
	var inSeq, outSeq uint64
	publish := func(w ring.WriteRun) {
		t.Helper()
		writeRecord(w.Slot(0), 0, inSeq, slotSize)
		inSeq++
		require.NoError(t, w.Publish(0, slotSize))
	}
	check := func(r ring.ReadRun) {
		t.Helper()
		for i := range r.Len() {
			b, err := r.Slot(i)
			require.NoError(t, err)
			producer, seq, err := checkRecord(b)
			require.NoError(t, err)
			require.Equal(t, [2]uint64{1, outSeq}, [2]uint64{uint64(producer), seq}, "the device's records, in order")
			outSeq++
		}
	}
	itemsIn := func() bool { return goWake(in.q.ItemsWake(), in.q.CountProducerWake) }
	spaceOut := func() bool { return goWake(out.q.SpaceWake(), out.q.CountConsumerWake) }

	for round := range rounds {
		// The device sleeps for records; Go publishes one and must wake it.
		d.send(t, "take 1")
		d.expect(t, "asleep in items")
		w, err := prod.Reserve(1)
		require.NoError(t, err)
		publish(w)
		require.True(t, itemsIn(), "round %d: the device is asleep for records", round)
		d.expect(t, "done take")

		// Go fills in and sleeps for room; the device drains it and must
		// wake Go.
		for range slots {
			w, err := prod.Reserve(1)
			require.NoError(t, err)
			publish(w)
			require.False(t, itemsIn(), "the device is not asleep")
		}
		err = sleeper(t, d, "drain 4").Wait(ctx, in.q.SpaceWake(), ring.ErrFull, func() (err error) {
			w, err = prod.Reserve(1)
			return err
		})
		require.NoError(t, err)
		publish(w)
		require.False(t, itemsIn())
		d.expect(t, "done drain")
		d.send(t, "take 1") // the one published after the drain: no sleep
		d.expect(t, "done take")

		// Go sleeps for records on out; the device publishes one and must
		// wake Go.
		var r ring.ReadRun
		err = sleeper(t, d, "give 1").Wait(ctx, out.q.ItemsWake(), ring.ErrEmpty, func() (err error) {
			r, err = cons.Reserve(1)
			return err
		})
		require.NoError(t, err)
		check(r)
		require.NoError(t, r.Release(0))
		require.False(t, spaceOut(), "the device is not asleep")
		d.expect(t, "done give")

		// The device fills out and sleeps for room; Go drains it and must
		// wake the device.
		d.send(t, "fill 5")
		d.expect(t, "asleep out space")
		r, err = cons.Reserve(slots)
		require.NoError(t, err)
		check(r)
		require.NoError(t, r.ReleaseAll())
		require.True(t, spaceOut(), "round %d: the device is asleep for room", round)
		d.expect(t, "done fill")
		r, err = cons.Reserve(1)
		require.NoError(t, err)
		check(r)
		require.NoError(t, r.Release(0))
		require.False(t, spaceOut())
	}
	d.send(t, "quit")
	sum := d.finish(t)

	const R = rounds
	require.Equal(t, map[string]uint64{"taken": 6 * R, "given": 6 * R, "empty": 2 * R, "full": 2 * R,
		"in_wakes": R, "out_wakes": R, "in_sleeps": R, "out_sleeps": R}, sum, "what the device did")
	ist, ost := in.q.Stats(), out.q.Stats()
	// Per round, on in: Go published 1, then 4, then 1, found it full
	// twice (its try and its second look) and woke the device once; the
	// device found it empty twice (the same) and woke Go once, after the
	// drain. On out, the same with the roles swapped.
	require.Equal(t, ring.Stats{
		ProducerCursor: 6 * R, ConsumerCursor: 6 * R, Reserved: 6 * R, Published: 6 * R, Full: 2 * R,
		Consumed: 6 * R, Released: 6 * R, Empty: 2 * R,
		ProducerWakeSent: R, ProducerWakeSuppressed: 5 * R, ConsumerWakeSent: R, ConsumerWakeSuppressed: 2 * R,
	}, ist, "in")
	require.Equal(t, ist, ost, "out")
	for _, q := range []*ring.Queue{in.q, out.q} {
		require.NoError(t, q.Check())
		require.Equal(t, uint32(R), q.ItemsWake().Futex().Load(), "one bump for each wakeup sent")
		require.Equal(t, uint32(R), q.SpaceWake().Futex().Load(), "one bump for each wakeup sent")
		require.Zero(t, q.ItemsWake().Waiters().Load())
		require.Zero(t, q.SpaceWake().Waiters().Load())
	}
}

// sleeper is a wait.Waiter that sleeps at once, and whose sleep, after the
// waiter registered and looked once more, sends cmd to the device and then
// waits on the futex word until it moves on.
func sleeper(t *testing.T, d *device, cmd string) *wait.Waiter {
	return &wait.Waiter{Arm: func(l ring.WakeLine) wait.Sleep {
		futex := l.Futex()
		v := futex.Load()
		return func(ctx context.Context, _ int) error {
			d.send(t, cmd)
			for futex.Load() == v {
				if ctx.Err() != nil {
					return fmt.Errorf("the device did not wake Go after %q within %v: %w (it said:\n%s)", cmd, cHangGuard, ctx.Err(), d.out.String())
				}
				futexWaitFor(futex, v, 100*time.Millisecond)
			}
			return nil
		}
	}}
}
