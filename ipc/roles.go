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
func (m Mode) Wrap(q *ring.Queue) *wait.Queue { return wait.New(q, m.options()) }

// WrapResizable gives a resizable queue the waits of the mode.
func (m Mode) WrapResizable(r *ring.Resizable) *wait.Resizable {
	return wait.NewResizable(r, m.options())
}

func (m Mode) options() *wait.Options {
	switch {
	case m.Spin:
		return &wait.Options{Spin: math.MaxInt}
	case m.Block:
		return &wait.Options{Spin: 0}
	}
	return nil
}

// producer and consumer are the waiting sides of a queue (wait.Queue) or of
// a resizable one (wait.Resizable), which the roles drive alike.
type producer interface {
	Reserve(ctx context.Context, n int) (wait.WriteRun, error)
	ReserveUpTo(ctx context.Context, n int) (wait.WriteRun, error)
}

type consumer interface {
	ReserveUpTo(ctx context.Context, n int) (wait.ReadRun, error)
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
	// between, if set, runs after each batch, in the goroutine that plays
	// the role: where a resizable session gives back old generations.
	between func()
}

// produce writes count records through p.
func (j *job) produce(ctx context.Context, p producer) error {
	for seq := uint64(0); seq < j.count; {
		n, err := j.produceSome(ctx, p, seq)
		if err != nil {
			return err
		}
		seq += uint64(n)
	}
	return nil
}

// produceSome publishes up to a batch of records from seq on, waiting for
// space as ctx allows, and returns how many.
func (j *job) produceSome(ctx context.Context, p producer, seq uint64) (int, error) {
	w, err := p.ReserveUpTo(ctx, int(min(uint64(j.batch), j.count-seq)))
	if err != nil {
		return 0, fmt.Errorf("produce record %d: %w", seq, cause(ctx, err))
	}
	now := monotonicNs()
	f := recordFormat(j.checksum)
	for i := range w.Len() {
		f.Fill(w.Slot(i)[:j.payload], record.Header{Seq: seq + uint64(i), Producer: j.source, SentNs: now})
	}
	if err := w.PublishAll(j.payload); err != nil {
		return 0, fmt.Errorf("publish records %d-%d: %w", seq, seq+uint64(w.Len())-1, err)
	}
	j.done.Store(seq + uint64(w.Len()))
	if j.between != nil {
		j.between()
	}
	return w.Len(), nil
}

// consume reads count records through c, checking each, and measures
// their latency. If ctx ends early it still takes what was already
// published.
func (j *job) consume(ctx context.Context, c consumer) error {
	for next := uint64(0); next < j.count; {
		n, err := j.consumeSome(ctx, c, next)
		if err != nil && ctx.Err() != nil {
			// The peer is gone or we were stopped: drain what was
			// published, then report.
			n, err = j.consumeSome(stopped, c, next)
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("after %d of %d records: %w", next, j.count, context.Cause(ctx))
			}
		}
		if err != nil {
			return err
		}
		next += uint64(n)
	}
	return nil
}

// consumeSome takes up to a batch of records, the first due to be next,
// waiting for them as ctx allows; checks each and counts their latency.
func (j *job) consumeSome(ctx context.Context, c consumer, next uint64) (int, error) {
	r, err := c.ReserveUpTo(ctx, j.batch)
	if err != nil {
		return 0, fmt.Errorf("consume record %d: %w", next, cause(ctx, err))
	}
	now := monotonicNs()
	// Records a producer wrote in one batch share a send time: count them
	// together.
	var sent, same uint64
	for i := range r.Len() {
		b, err := r.Slot(i)
		if err != nil {
			return 0, fmt.Errorf("record %d: %w", next, err)
		}
		rec, err := readRecord(b, j.payload, j.checksum)
		if err != nil {
			return 0, err
		}
		if rec.Seq != next {
			return 0, fmt.Errorf("%w: record %d arrived where %d was due (lost, duplicated or reordered)", ErrRecord, rec.Seq, next)
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
		return 0, fmt.Errorf("release before record %d: %w", next, err)
	}
	j.done.Store(next)
	if j.between != nil {
		j.between()
	}
	return r.Len(), nil
}

// both sends pj's records on up and takes cj's echoes from down in one
// loop, run to completion: a batch out when there is room, a batch in when
// there are echoes, and a wait (spin, then sleep) only for an echo when
// neither moved. One busy thread, where a sending and a receiving one would
// compete with the echoing peer for two CPUs.
func both(ctx context.Context, pj, cj *job, p producer, c consumer) error {
	var seq, next uint64
	// stop is where ctx ending leads: take the echoes already there, then
	// say why the run ended.
	stop := func() error {
		for next < cj.count {
			n, err := cj.consumeSome(stopped, c, next)
			if err != nil {
				break
			}
			next += uint64(n)
		}
		return fmt.Errorf("after %d of %d records: %w", next, cj.count, context.Cause(ctx))
	}
	for next < cj.count {
		moved := 0
		if seq < pj.count {
			n, err := pj.produceSome(stopped, p, seq)
			if err != nil && !wouldWait(ctx, err) {
				if ctx.Err() != nil {
					return stop()
				}
				return err
			}
			seq += uint64(n)
			moved += n
		}
		n, err := cj.consumeSome(stopped, c, next)
		if err != nil && !wouldWait(ctx, err) {
			if ctx.Err() != nil {
				return stop()
			}
			return err
		}
		next += uint64(n)
		moved += n
		if moved > 0 {
			continue
		}
		// Nothing moved, so the request queue is full or every record is
		// sent: echoes are on their way. Wait for one.
		if n, err = cj.consumeSome(ctx, c, next); err != nil {
			if ctx.Err() != nil {
				return stop()
			}
			return err
		}
		next += uint64(n)
	}
	return nil
}

// wouldWait reports that err is a non-blocking try finding nothing to do,
// not a failure, while ctx still runs.
func wouldWait(ctx context.Context, err error) bool {
	return ctx.Err() == nil && errors.Is(err, context.Canceled)
}

// echo copies count records from c to p, as they come.
func (j *job) echo(ctx context.Context, c consumer, p producer) error {
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
		if j.between != nil {
			j.between()
		}
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
	Resizes ResizeCounts // a resizable session's resizes, as this side saw them
}

// ItemsPerSec is Records over Elapsed.
func (r Result) ItemsPerSec() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// BytesPerSec is the payload rate.
func (r Result) BytesPerSec() float64 { return r.ItemsPerSec() * float64(r.Payload) }
