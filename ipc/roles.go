package ipc

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ring/wait"
)

// Mode says how a side waits when its queue is empty or full. The zero
// Mode spins for a bounded time (ring/wait's DefaultSpin tries) and then
// sleeps on the queue's futex words: it neither burns a CPU while idle nor
// starves the side that has work when threads outnumber CPUs.
type Mode struct {
	// Block sleeps at once, without spinning first.
	Block bool
	// Spin never sleeps: a side polls, yielding the processor now and
	// then. Only for a machine with a CPU for every spinning side.
	Spin bool
}

// Wrap returns q with waits in this mode.
func (m Mode) Wrap(q *ring.Queue) *wait.Queue {
	switch {
	case m.Spin:
		return wait.New(q, &wait.Options{Spin: math.MaxInt})
	case m.Block:
		return wait.New(q, &wait.Options{Spin: 0})
	}
	return wait.New(q, nil)
}

// ParseMode reads a mode by its name: "spin-then-sleep" (or ""), "block"
// or "spin".
func ParseMode(name string) (Mode, error) {
	switch name {
	case "", "spin-then-sleep":
		return Mode{}, nil
	case "block":
		return Mode{Block: true}, nil
	case "spin":
		return Mode{Spin: true}, nil
	}
	return Mode{}, fmt.Errorf("ipc: mode %q: want spin-then-sleep, block or spin", name)
}

// String names the mode as ParseMode reads it.
func (m Mode) String() string {
	switch {
	case m.Spin:
		return "spin"
	case m.Block:
		return "block"
	}
	return "spin-then-sleep"
}

// job is one side's part of a session.
type job struct {
	count    uint64
	payload  int
	batch    int
	source   uint32
	checksum bool
	done     *atomic.Uint64 // records finished so far, for progress reports
	hist     histogram      // latency, on the receiving side
}

// produce writes count records into q.
func (j *job) produce(ctx context.Context, q *wait.Queue) error {
	p := q.Producer()
	for seq := uint64(0); seq < j.count; {
		w, err := p.ReserveUpTo(ctx, int(min(uint64(j.batch), j.count-seq)))
		if err != nil {
			return fmt.Errorf("produce record %d: %w", seq, cause(ctx, err))
		}
		now := monotonicNs()
		f := recordFormat(j.checksum)
		for i := range w.Len() {
			f.Fill(w.Slot(i)[:j.payload], record.Header{Seq: seq + uint64(i), Producer: j.source, SentNs: now})
		}
		if err := w.PublishAll(j.payload); err != nil {
			return fmt.Errorf("publish records %d-%d: %w", seq, seq+uint64(w.Len())-1, err)
		}
		seq += uint64(w.Len())
		j.done.Store(seq)
	}
	return nil
}

// consume reads count records from q, checking each, and measures their
// latency. If ctx ends early it still takes what was already published.
func (j *job) consume(ctx context.Context, q *wait.Queue) error {
	c := q.Consumer()
	for next := uint64(0); next < j.count; {
		r, err := c.ReserveUpTo(ctx, j.batch)
		if err != nil && ctx.Err() != nil {
			// The peer is gone or we were stopped: drain what was
			// published, then report.
			r, err = c.ReserveUpTo(stopped, j.batch)
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("after %d of %d records: %w", next, j.count, context.Cause(ctx))
			}
		}
		if err != nil {
			return fmt.Errorf("consume record %d: %w", next, err)
		}
		now := monotonicNs()
		// Records a producer wrote in one batch share a send time:
		// count them together.
		var sent, same uint64
		for i := range r.Len() {
			b, err := r.Slot(i)
			if err != nil {
				return fmt.Errorf("record %d: %w", next, err)
			}
			rec, err := readRecord(b, j.payload, j.checksum)
			if err != nil {
				return err
			}
			if rec.Seq != next {
				return fmt.Errorf("%w: record %d arrived where %d was due (lost, duplicated or reordered)", ErrRecord, rec.Seq, next)
			}
			if rec.SentNs != sent {
				if same > 0 && now > sent {
					j.hist.recordN(now-sent, same)
				}
				sent, same = rec.SentNs, 0
			}
			same++
			next++
		}
		if same > 0 && now > sent {
			j.hist.recordN(now-sent, same)
		}
		if err := r.ReleaseAll(); err != nil {
			return fmt.Errorf("release before record %d: %w", next, err)
		}
		j.done.Store(next)
	}
	return nil
}

// echo copies count records from in to out, as they come.
func (j *job) echo(ctx context.Context, in, out *wait.Queue) error {
	c, p := in.Consumer(), out.Producer()
	for next := uint64(0); next < j.count; {
		r, err := c.ReserveUpTo(ctx, j.batch)
		if err != nil {
			return fmt.Errorf("echo: consume record %d: %w", next, cause(ctx, err))
		}
		w, err := p.Reserve(ctx, r.Len())
		if err != nil {
			return fmt.Errorf("echo: produce record %d: %w", next, cause(ctx, err))
		}
		for i := range r.Len() {
			b, err := r.Slot(i)
			if err != nil {
				return fmt.Errorf("echo: record %d: %w", next, err)
			}
			if len(b) != j.payload {
				return fmt.Errorf("%w: echo: record %d is %d bytes, %d expected", ErrRecord, next, len(b), j.payload)
			}
			copy(w.Slot(i), b)
			next++
		}
		if err := w.PublishAll(j.payload); err != nil {
			return fmt.Errorf("echo: publish: %w", err)
		}
		if err := r.ReleaseAll(); err != nil {
			return fmt.Errorf("echo: release: %w", err)
		}
		j.done.Store(next)
	}
	return nil
}

// cause replaces the error of a wait that ctx ended with the reason ctx
// ended, such as ErrPeerGone.
func cause(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		if c := context.Cause(ctx); c != nil {
			return c
		}
	}
	return err
}

// stopped is a context that is already done, for non-blocking reserves.
var stopped = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// Result is what one side of a session measured.
type Result struct {
	Role    string        // the role this side played
	Records uint64        // records this side finished
	Payload int           // bytes a record
	Elapsed time.Duration // from the start of the role to its end
	P50     time.Duration // one-way (or, for RoleBoth, round-trip) latency
	P99     time.Duration
	Max     time.Duration
}

// ItemsPerSec is Records over Elapsed.
func (r Result) ItemsPerSec() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// BytesPerSec is the payload rate.
func (r Result) BytesPerSec() float64 { return r.ItemsPerSec() * float64(r.Payload) }
