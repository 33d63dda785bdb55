package hostdriver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// summed is the record the resize tests send: sequence, pair and a
// CRC-32C over the whole record, which the echo engine returns as is.
var summed = record.Format{Sum: true}

// checkEcho checks response b as the echo of request seq of pair.
func checkEcho(b []byte, pair int, seq uint64, size int) error {
	if len(b) != size {
		return fmt.Errorf("pair %d response %d: %d bytes, want %d", pair, seq, len(b), size)
	}
	h, err := summed.Check(b)
	if err != nil {
		return fmt.Errorf("pair %d response %d: %w", pair, seq, err)
	}
	if h.Seq != seq || h.Producer != uint32(pair) {
		return fmt.Errorf("pair %d: response %d is request %d of pair %d: lost, duplicated or reordered", pair, seq, h.Seq, h.Producer)
	}
	return nil
}

// resizeSizes grow and shrink, each step to a size other than the last.
var resizeSizes = []int{64, 8, 256, 16, 1024, 4, 128, 32, 512, 2}

// resizer resizes every pair of d in turn, rounds times, through
// resizeSizes; it returns the first error.
func resizer(ctx context.Context, d *Driver, rounds int) error {
	for i := range rounds {
		for _, p := range d.Pairs() {
			if err := p.Resize(ctx, resizeSizes[(i+p.Index())%len(resizeSizes)]); err != nil {
				return fmt.Errorf("round %d, pair %d: %w", i, p.Index(), err)
			}
		}
	}
	return nil
}

// TestResizeWhileStreaming: both queues of both pairs are resized 24
// times, growing and shrinking, while records stream through the echo
// engine, with the run-to-completion Stream and with the zero-copy calls
// (a goroutine a side). Every response is checked (sequence, pair,
// checksum), nothing is lost, every resize completes with one generation
// left, and every generation's DMA memory is given back.
func TestResizeWhileStreaming(t *testing.T) {
	const rounds, size = 24, 64
	for _, mode := range []string{"stream", "zero-copy"} {
		t.Run(mode, func(t *testing.T) {
			r := newRig(t, devicemodel.Options{Queues: 2}, nil)
			d, err := Open(r.client, Config{Engine: ycqdev.EngineEcho, Slots: 32, SlotSize: 128, Resizable: true, ResizeDeadline: 20 * time.Second})
			require.NoError(t, err)
			defer func() { require.NoError(t, d.Close()) }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			var resizing atomic.Bool
			resizing.Store(true)
			var resizeErr error
			var wg sync.WaitGroup
			wg.Go(func() {
				defer resizing.Store(false)
				resizeErr = resizer(ctx, d, rounds)
			})
			const least = 20000
			sent := make([]uint64, 2)
			got := make([]uint64, 2)
			switch mode {
			case "stream":
				s := Stream{
					Request: func(p *Pair, b []byte) (int, bool) {
						i := p.Index()
						if sent[i] >= least && !resizing.Load() {
							return 0, false
						}
						summed.Fill(b[:size], record.Header{Seq: sent[i], Producer: uint32(i)})
						sent[i]++
						return size, true
					},
					Response: func(p *Pair, b []byte) error {
						i := p.Index()
						err := checkEcho(b, i, got[i], size)
						got[i]++
						return err
					},
				}
				require.NoError(t, s.Run(ctx, d.Pairs()))
			case "zero-copy":
				var errs [2]error
				var pairs sync.WaitGroup
				for _, p := range d.Pairs() {
					pairs.Go(func() { got[p.Index()], sent[p.Index()], errs[p.Index()] = zeroCopy(ctx, p, size, least, &resizing) })
				}
				pairs.Wait()
				require.NoError(t, errors.Join(errs[:]...))
			}
			wg.Wait()
			require.NoError(t, resizeErr)
			for _, p := range d.Pairs() {
				i := p.Index()
				require.Equal(t, sent[i], got[i], "pair %d: every request answered", i)
				require.GreaterOrEqual(t, got[i], uint64(least))
				st := p.ResizeStats()
				require.Equal(t, uint64(rounds), st.Resizes, "pair %d", i)
				require.Equal(t, uint64(rounds), st.Started, "pair %d: every resize begun completed", i)
				require.Positive(t, st.Draining, "pair %d: time waiting for old generations to drain", i)
				require.LessOrEqual(t, st.Draining, sumDurations(st.Took), "pair %d: draining is part of the resizes", i)
				require.Equal(t, 1, st.Live, "pair %d: one generation outside Resize", i)
				require.Equal(t, uint32(rounds+1), st.Generation)
				require.Equal(t, resizeSizes[(rounds-1+i)%len(resizeSizes)], st.Slots)
				g, err := d.reg32Read(ycqdev.QueueReg(i, ycqdev.RegQGeneration))
				require.NoError(t, err)
				require.Equal(t, uint32(rounds+1), g, "the device uses the last generation")
				ps := p.Stats()
				require.Equal(t, sent[i], ps.Sent)
				require.Equal(t, got[i], ps.Received)
				t.Logf("pair %d: %d records, %d resizes, took %v", i, got[i], st.Resizes, st.Took[:4])
			}
			page, err := DecodeResizePage(d.rpage.Bytes())
			require.NoError(t, err)
			require.Len(t, page, len(d.Pairs()))
			for _, p := range d.Pairs() {
				st := p.ResizeStats()
				require.Equal(t, PairResizes{Pair: p.Index(), Generation: st.Generation, Slots: st.Slots, Started: st.Started,
					Completed: st.Resizes, RolledBack: st.RolledBack, Failed: st.Failed, Draining: st.Draining}, page[p.Index()],
					"the resize page says what ResizeStats says")
			}
			require.Equal(t, 1+len(d.Pairs()), d.alloc.Allocated(), "the first mapping and each pair's current generation: every older one was given back")
			require.NoError(t, d.Err())
		})
	}
}

// zeroCopy streams echo records on p with Reserve/Publish on one goroutine
// and Receive/Release on another until at least least were sent and
// resizing is over, checking every response.
func zeroCopy(ctx context.Context, p *Pair, size int, least uint64, resizing *atomic.Bool) (got, sent uint64, err error) {
	var total atomic.Uint64 // what the sender sent, once it stopped
	var done atomic.Bool
	var sendErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer done.Store(true)
		n := uint64(0)
		defer func() { total.Store(n) }()
		for n < least || resizing.Load() {
			r, err := p.ReserveUpTo(ctx, min(16, p.h2dCap()))
			if err != nil {
				sendErr = err
				return
			}
			for i := range r.Len() {
				summed.Fill(r.Slot(i)[:size], record.Header{Seq: n + uint64(i), Producer: uint32(p.Index())})
			}
			if err := r.PublishAll(size); err != nil {
				sendErr = err
				return
			}
			n += uint64(r.Len())
		}
	})
	for !done.Load() || got < total.Load() {
		rctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		r, rerr := p.Receive(rctx, 32)
		cancel()
		if errors.Is(rerr, context.DeadlineExceeded) && ctx.Err() == nil {
			continue // look at done again
		}
		if rerr != nil {
			err = rerr
			break
		}
		for i := 0; i < r.Len() && err == nil; i++ {
			var b []byte
			if b, err = r.Slot(i); err == nil {
				err = checkEcho(b, p.Index(), got, size)
			}
			got++
		}
		if rerr := r.ReleaseAll(); err == nil {
			err = rerr
		}
		if err != nil {
			break
		}
	}
	wg.Wait()
	return got, total.Load(), errors.Join(err, sendErr)
}

// reg32Read reads a register of the device (for tests).
func (d *Driver) reg32Read(off uint64) (uint32, error) {
	return vfio.Read32(d.dev, vfio.BAR0, off)
}

// TestResizeRacingReset: resizes of both pairs race driver resets and
// function resets from outside the driver while both pairs stream; Resize
// and Reset exclude each other, a resize cut short by a reset is finished
// by the next one, a reset brings the device up at the generation the
// last resize made (the device follows any named after it), and every
// response is checked, none lost.
func TestResizeRacingReset(t *testing.T) {
	r := newRig(t, devicemodel.Options{Queues: 2}, nil)
	d, err := Open(r.client, Config{Engine: ycqdev.EngineCRC32C, Slots: 64, Resizable: true, ResizeDeadline: 20 * time.Second})
	require.NoError(t, err)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 20000
	var wg sync.WaitGroup
	var streamErr [2]error
	var got [2]int
	var stop atomic.Bool
	for _, p := range d.Pairs() {
		wg.Go(func() { got[p.Index()], streamErr[p.Index()] = streamAcrossResets(ctx, d, p, n, &stop) })
	}
	var resizes, resets atomic.Int64
	var side sync.WaitGroup
	var resizeErr, resetErr error
	side.Go(func() {
		for i := 0; !stop.Load() && resizes.Load() < 40; i++ {
			p := d.Pair(i % 2)
			err := p.Resize(ctx, resizeSizes[i%len(resizeSizes)])
			switch {
			case err == nil:
				resizes.Add(1)
			case errors.Is(err, ErrReset):
				time.Sleep(100 * time.Microsecond) // the driver recovers
			default:
				resizeErr = err
				return
			}
		}
	})
	side.Go(func() {
		for i := 0; !stop.Load() && resets.Load() < 8; i++ {
			time.Sleep(2 * time.Millisecond)
			if i%2 == 0 {
				if err := d.Reset(); err != nil {
					resetErr = err
					return
				}
				resets.Add(1)
				continue
			}
			// A function reset from outside the driver, perhaps in the
			// middle of a resize, which notices it and stops; the driver
			// recovers, and the next resize finishes the one cut short.
			if err := r.dev.Reset(); err != nil {
				resetErr = err
				return
			}
			for !errors.Is(d.Err(), ErrReset) && ctx.Err() == nil {
				d.checkHealth()
				time.Sleep(100 * time.Microsecond)
			}
			if err := d.Recover(); err != nil {
				resetErr = err
				return
			}
			resets.Add(1)
		}
	})
	wg.Wait()
	stop.Store(true)
	side.Wait()
	require.NoError(t, resizeErr)
	require.NoError(t, resetErr)
	for i := range 2 {
		require.NoError(t, streamErr[i], "pair %d", i)
		require.Equal(t, n, got[i], "pair %d", i)
	}
	t.Logf("%d resizes and %d resets while %d records a pair streamed", resizes.Load(), resets.Load(), n)
	require.Positive(t, resizes.Load())
	require.Positive(t, resets.Load())
	for _, p := range d.Pairs() {
		require.Equal(t, 1, p.ResizeStats().Live)
	}
}

// TestResizeNotAcknowledged: a device that never takes up RESIZE makes
// Resize fail after its deadline with a *ResizeError (ErrResizeTimeout,
// rolled back); nothing was named, the memory is given back, and the pair
// goes on in its generation.
func TestResizeNotAcknowledged(t *testing.T) {
	r := newRig(t, devicemodel.Options{Queues: 1, NoResizeAck: true}, nil)
	d, err := Open(r.client, Config{Engine: ycqdev.EngineCRC32C, Slots: 16, Resizable: true, ResizeDeadline: 50 * time.Millisecond})
	require.NoError(t, err)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := d.Pair(0)
	got, err := stream(ctx, p, 500, 64, ycqdev.EngineCRC32C)
	require.NoError(t, err)
	require.Equal(t, 500, got)

	err = p.Resize(ctx, 64)
	var re *ResizeError
	require.ErrorAs(t, err, &re)
	require.ErrorIs(t, err, ErrResizeTimeout)
	require.True(t, re.RolledBack)
	require.Equal(t, "acknowledge", re.Step)
	require.Equal(t, uint32(2), re.Generation)
	require.NoError(t, d.Err(), "a refused resize does not stop the driver")
	st := p.ResizeStats()
	require.Equal(t, ResizeStats{Generation: 1, Slots: 16, Live: 1, Started: 1, RolledBack: 1, Took: st.Took}, st)
	page, err := DecodeResizePage(d.rpage.Bytes())
	require.NoError(t, err)
	require.Equal(t, PairResizes{Pair: 0, Generation: 1, Slots: 16, Started: 1, RolledBack: 1}, page[0], "the resize page counts the rollback")
	require.Equal(t, 1, d.alloc.Allocated(), "the new generation's memory was given back")
	v, err := d.reg32Read(ycqdev.QueueReg(0, ycqdev.RegQResize))
	require.NoError(t, err)
	require.Equal(t, uint32(1), v, "RESIZE disarmed")

	got, err = stream(ctx, p, 2000, 64, ycqdev.EngineCRC32C)
	require.NoError(t, err)
	require.Equal(t, 2000, got, "the pair works in its old generation")
	require.Equal(t, 16, p.h2dCap())
	require.Equal(t, 16, p.d2hCap())

	// A driver without Resizable refuses to resize.
	d2, ctx2 := openRig(t, Config{Engine: ycqdev.EngineEcho})
	require.ErrorIs(t, d2.Pair(0).Resize(ctx2, 64), ErrNotResizable)
	require.ErrorIs(t, p.Resize(ctx, 3), ErrConfig)
}

func sumDurations(ds []time.Duration) (sum time.Duration) {
	for _, d := range ds {
		sum += d
	}
	return sum
}
