package usbhost

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// plugs is an opener over fake devices: each open returns the current
// one, or ErrNotFound while there is none.
type plugs struct {
	mu  sync.Mutex
	cur *fakeDevice
}

func (pl *plugs) plug(f *fakeDevice) { pl.mu.Lock(); pl.cur = f; pl.mu.Unlock() }

func (pl *plugs) open() (device, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.cur == nil || pl.cur.gone {
		return nil, ErrNotFound
	}
	return pl.cur, nil
}

func openFake(t *testing.T, f *fakeDevice, cfg Config) (*Driver, *plugs) {
	t.Helper()
	pl := &plugs{cur: f}
	if cfg.RecordSize == 0 {
		cfg.RecordSize = 64
	}
	if cfg.Slots == 0 {
		cfg.Slots = 256
	}
	cfg.Poll = time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	d, err := openWith(ctx, cfg, pl.open)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d, pl
}

var testFormat = record.Format{Sum: true}

// streamChecked sends n records on p and checks every echo in order;
// at(got) runs after each batch of responses; an error from the driver
// goes to onErr, which may recover (nil) or give up.
func streamChecked(ctx context.Context, p *Pair, n int, at func(got int), onErr func(error) error) error {
	var sendErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := 0; seq < n; {
			r, err := p.ReserveUpTo(ctx, min(16, n-seq))
			if err != nil {
				if err = onErr(err); err != nil {
					sendErr = err
					return
				}
				continue
			}
			for i := range r.Len() {
				testFormat.Fill(r.Slot(i), record.Header{Seq: uint64(seq + i), Producer: uint32(p.Index())})
			}
			if err := r.PublishAll(p.SlotSize()); err != nil {
				sendErr = err
				return
			}
			seq += r.Len()
		}
	})
	defer wg.Wait()
	for got := 0; got < n; {
		r, err := p.Receive(ctx, 32)
		if err != nil {
			if err = onErr(err); err != nil {
				return fmt.Errorf("pair %d after %d: %w", p.Index(), got, err)
			}
			continue
		}
		for i := range r.Len() {
			b, err := r.Slot(i)
			if err != nil {
				return err
			}
			h, err := testFormat.Check(b)
			if err != nil || h.Producer != uint32(p.Index()) || h.Seq != uint64(got) {
				return fmt.Errorf("pair %d: response %d is (queue %d, seq %d): %v", p.Index(), got, h.Producer, h.Seq, err)
			}
			got++
		}
		if err := r.ReleaseAll(); err != nil {
			return err
		}
		if at != nil {
			at(got)
		}
	}
	wg.Wait()
	return sendErr
}

func giveUp(err error) error { return err }

// TestEchoLoopback: two pairs, every record echoed back exactly once and
// in order, every transfer on slot memory.
func TestEchoLoopback(t *testing.T) {
	d, _ := openFake(t, newFake(2), Config{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const n = 5000
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range d.Pairs() {
		wg.Go(func() { errs[i] = streamChecked(ctx, p, n, nil, giveUp) })
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	// The OUT side counts its completions on its own goroutine: a
	// response may be read before its request's OUT completion counted.
	testenv.WaitFor(t, "every OUT completion counted", func() bool {
		for _, st := range d.Stats().Pairs {
			if st.Sent != n {
				return false
			}
		}
		return true
	})
	for _, st := range d.Stats().Pairs {
		require.Equal(t, uint64(n), st.Answered)
		require.Equal(t, uint64(n), st.Received)
		require.NotZero(t, st.OutTransfers)
		// Anonymous memory: usbfs copies every transfer submitted.
		require.GreaterOrEqual(t, st.Copies, st.OutTransfers+st.InTransfers)
	}
}

// TestResetMidStream: a Reset while records are in flight loses nothing
// and repeats nothing: what the device dropped is sent again.
func TestResetMidStream(t *testing.T) {
	f := newFake(1)
	d, _ := openFake(t, f, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var once sync.Once
	var rerr error
	err := streamChecked(ctx, d.Pairs()[0], 3000, func(got int) {
		if got >= 1000 {
			once.Do(func() { rerr = d.Reset(ctx) })
		}
	}, giveUp)
	require.NoError(t, err)
	require.NoError(t, rerr)
	require.Equal(t, uint64(1), d.Stats().Resets)
	require.Equal(t, 2, f.resets, "Open's and Reset's")
}

// TestGoneAndRecover: the device vanishes mid-stream; the driver stops
// with ErrGone naming what is unanswered; Recover waits for it to come
// back (a new device) and the stream completes, exactly once.
func TestGoneAndRecover(t *testing.T) {
	f := newFake(1)
	d, pl := openFake(t, f, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var once sync.Once
	var mu sync.Mutex // onErr runs on the sender and the receiver
	var seen error
	err := streamChecked(ctx, d.Pairs()[0], 3000, func(got int) {
		if got >= 1000 {
			once.Do(func() {
				f.unplug()
				pl.plug(nil)
				go func() { time.Sleep(20 * time.Millisecond); pl.plug(newFake(1)) }()
			})
		}
	}, func(err error) error {
		if !errors.Is(err, ErrGone) {
			return err
		}
		mu.Lock()
		seen = err
		mu.Unlock()
		return d.Recover(ctx)
	})
	require.NoError(t, err)
	require.ErrorIs(t, seen, ErrGone)
	var ie *IncompleteError
	require.ErrorAs(t, seen, &ie)
	var te *TransferError
	require.ErrorAs(t, seen, &te)
	require.Equal(t, uint64(1), d.Stats().Recoveries)
}

// TestStallClearsHalt: a stalled OUT endpoint stops the driver with
// ErrStall after its halt was cleared; Recover resets and goes on.
func TestStallClearsHalt(t *testing.T) {
	f := newFake(1)
	d, _ := openFake(t, f, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var once sync.Once
	var mu sync.Mutex // onErr runs on the sender and the receiver
	var seen error
	err := streamChecked(ctx, d.Pairs()[0], 2000, func(got int) {
		if got >= 500 {
			once.Do(func() { f.set(f.stall, usbproto.OutEndpoint(0)) })
		}
	}, func(err error) error {
		if !errors.Is(err, ErrStall) {
			return err
		}
		mu.Lock()
		seen = err
		mu.Unlock()
		return d.Recover(ctx)
	})
	require.NoError(t, err)
	require.ErrorIs(t, seen, ErrStall)
	require.Contains(t, seen.Error(), "halt cleared")
	f.mu.Lock()
	require.Contains(t, f.cleared, usbproto.OutEndpoint(0))
	f.mu.Unlock()
}

// TestTimeoutTyped: an OUT transfer that times out is ErrTimeout.
func TestTimeoutTyped(t *testing.T) {
	f := newFake(1)
	d, _ := openFake(t, f, Config{Timeout: time.Second})
	f.set(f.timeout, usbproto.OutEndpoint(0))
	p := d.Pairs()[0]
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.NoError(t, p.Send(ctx, []byte("hello")))
	_, err := p.Receive(ctx, 1)
	require.ErrorIs(t, err, ErrTimeout)
	require.ErrorIs(t, d.Err(), ErrTimeout)
	require.NoError(t, d.Recover(ctx))
	b := make([]byte, 64)
	n, err := p.Recv(ctx, b)
	require.NoError(t, err, "the request was kept and sent again")
	require.Equal(t, 64, n)
	require.Equal(t, "hello", string(b[:5]))
	require.Equal(t, make([]byte, 59), b[5:], "padded with zeros to the record size")
}

// TestHostileINCompletion: an IN completion that is not whole responses
// is a protocol error; the whole responses before it are kept.
func TestHostileINCompletion(t *testing.T) {
	f := newFake(1)
	d, _ := openFake(t, f, Config{})
	f.set(f.junk, usbproto.InEndpoint(0))
	p := d.Pairs()[0]
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.NoError(t, p.Send(ctx, []byte("one")))
	_, err := p.Receive(ctx, 1)
	require.ErrorIs(t, err, ErrProtocol)
}

// TestCloseReleasesEverything: Close stops every goroutine, frees every
// transfer and the queues' memory, and later calls say ErrClosed.
func TestCloseReleasesEverything(t *testing.T) {
	fds := testenv.OpenFDs(t)
	goroutines := runtime.NumGoroutine()
	f := newFake(2)
	pl := &plugs{cur: f}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	d, err := openWith(ctx, Config{RecordSize: 64, Slots: 256}, pl.open)
	require.NoError(t, err)
	require.NoError(t, d.Pairs()[0].Send(ctx, []byte("x")))
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "twice is fine")
	require.ErrorIs(t, d.Err(), ErrClosed)
	_, err = d.Pairs()[0].Reserve(ctx, 1)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, d.Reset(ctx), ErrClosed)
	f.mu.Lock()
	require.Empty(t, f.live, "every transfer freed")
	require.True(t, f.closed)
	f.mu.Unlock()
	require.Equal(t, fds, testenv.OpenFDs(t))
	testenv.WaitFor(t, "the driver's goroutines to end", func() bool { return runtime.NumGoroutine() <= goroutines })
}

// TestOpenWaitsForTheDevice: Open looks until ctx ends, then says
// ErrNotFound with the IDs.
func TestOpenWaitsForTheDevice(t *testing.T) {
	pl := &plugs{}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	_, err := openWith(ctx, Config{Poll: time.Millisecond}, pl.open)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "1209:0001")
}

// TestConfigRefused: what the device cannot run is ErrConfig before
// anything is set up.
func TestConfigRefused(t *testing.T) {
	for _, cfg := range []Config{
		{RecordSize: 60},
		{RecordSize: 1 << 20},
		{Slots: 100},
		{Pairs: 3},
		{Engine: 2}, // the fake has echo and sink only
	} {
		pl := &plugs{cur: newFake(2)}
		_, err := openWith(t.Context(), cfg, pl.open)
		require.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
}

// TestCloseEndsRecover: Close while Recover waits for a vanished device
// ends the wait with ErrClosed instead of waiting for ctx.
func TestCloseEndsRecover(t *testing.T) {
	f := newFake(1)
	d, pl := openFake(t, f, Config{})
	p := d.Pairs()[0]
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.NoError(t, p.Send(ctx, []byte("x")))
	f.unplug()
	pl.plug(nil)
	testenv.WaitFor(t, "the driver to see the device gone", func() bool { return d.Err() != nil })
	done := make(chan error, 1)
	go func() { done <- d.Recover(ctx) }()
	time.Sleep(10 * time.Millisecond) // let Recover start waiting; either order ends the same
	require.NoError(t, d.Close())
	err := <-done
	require.Error(t, err)
	require.True(t, errors.Is(err, ErrClosed), "%v", err)
}

// TestSinkReleasesOnCompletion: with the sink engine a request is done
// once its OUT transfer completed; no IN transfer runs.
func TestSinkReleasesOnCompletion(t *testing.T) {
	d, _ := openFake(t, newFake(1), Config{Engine: ycqdev.EngineSink, Slots: 64})
	p := d.Pairs()[0]
	require.Zero(t, p.ResponseSize())
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for i := range 1000 { // far more than the 64 slots: each is released
		require.NoError(t, p.Send(ctx, []byte{byte(i)}))
	}
	testenv.WaitFor(t, "every request sent", func() bool { return p.Stats().Sent == 1000 })
	st := p.Stats()
	require.Equal(t, uint64(1000), st.Answered)
	require.Zero(t, st.InTransfers)
	require.Equal(t, st.OutTransfers, st.Copies, "anonymous memory: each OUT transfer copied by usbfs")
}

// TestPublishLengthsPadsAndSends: the ring's PublishLengths, through a
// Request, pads short records and wakes the transport like Publish.
func TestPublishLengthsPadsAndSends(t *testing.T) {
	d, _ := openFake(t, newFake(1), Config{})
	p := d.Pairs()[0]
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r, err := p.Reserve(ctx, 2)
	require.NoError(t, err)
	for i := range 2 {
		s := r.Slot(i)
		for j := range s {
			s[j] = 0xff
		}
		s[0] = byte(i)
	}
	require.NoError(t, r.PublishLengths([]int{1, 64}))
	b := make([]byte, 64)
	_, err = p.Recv(ctx, b)
	require.NoError(t, err)
	require.Equal(t, append([]byte{0}, make([]byte, 63)...), b, "padded")
	_, err = p.Recv(ctx, b)
	require.NoError(t, err)
	require.Equal(t, byte(1), b[0])
	require.Equal(t, byte(0xff), b[63], "a whole record is left as it is")
}

// BenchmarkEchoFake measures the transport's own cost: 64-byte records
// echoed by the in-memory device, reserved and received 64 at a time.
func BenchmarkEchoFake(b *testing.B) {
	pl := &plugs{cur: newFake(1)}
	d, err := openWith(b.Context(), Config{RecordSize: 64, Slots: 1024, Poll: time.Millisecond}, pl.open)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	p := d.Pairs()[0]
	b.SetBytes(64)
	b.ResetTimer()
	errc := make(chan error, 1)
	go func() {
		for sent := 0; sent < b.N; {
			r, err := p.ReserveUpTo(b.Context(), min(64, b.N-sent))
			if err != nil {
				errc <- err
				return
			}
			if err := r.PublishAll(64); err != nil {
				errc <- err
				return
			}
			sent += r.Len()
		}
		errc <- nil
	}()
	for got := 0; got < b.N; {
		r, err := p.Receive(b.Context(), 64)
		if err != nil {
			b.Fatal(err)
		}
		got += r.Len()
		if err := r.ReleaseAll(); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestDeviceMemory: with DeviceMemory the queues live in the device's
// memory, which Close unmaps; a device without it gets anonymous memory.
func TestDeviceMemory(t *testing.T) {
	for _, has := range []bool{true, false} {
		f := newFake(2)
		f.memory = has
		pl := &plugs{cur: f}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		d, err := openWith(ctx, Config{RecordSize: 64, Slots: 64, DeviceMemory: true, Poll: time.Millisecond}, pl.open)
		require.NoError(t, err)
		p := d.Pairs()[1]
		require.NoError(t, p.Send(ctx, []byte("in device memory")))
		b := make([]byte, 64)
		_, err = p.Recv(ctx, b)
		require.NoError(t, err)
		require.Equal(t, "in device memory", string(b[:16]))
		st := p.Stats()
		require.Equal(t, has, st.DeviceMemory)
		if has {
			require.Zero(t, st.Copies, "device memory: no transfer copied")
		} else {
			require.GreaterOrEqual(t, st.Copies, st.OutTransfers+st.InTransfers, "anonymous memory: usbfs copies each transfer")
			require.NotZero(t, st.Copies)
		}
		f.mu.Lock()
		if has {
			require.Equal(t, 4, f.mapped, "two queues a pair")
		}
		f.mu.Unlock()
		require.NoError(t, d.Close())
		require.Zero(t, f.mapped, "every region unmapped")
		cancel()
	}
}
