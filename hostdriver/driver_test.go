package hostdriver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/internal/cpupin"
	"github.com/ycq-dev/ycq/internal/fdpass"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
	"github.com/ycq-dev/ycq/ycqdev"
)

// rig is a device model served over a socketpair to a vfio-user client,
// all in this process.
type rig struct {
	dev    *devicemodel.YCQ
	srv    *devicemodel.Server
	client *user.Client
	conn   *net.UnixConn // the server's end
	done   chan error
}

func socketpair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	a, b, err := fdpass.Socketpair()
	require.NoError(t, err)
	return a, b
}

// newRig serves a ycq device; wrap, if not nil, wraps it (a misbehaving
// variant).
func newRig(t *testing.T, opt devicemodel.Options, wrap func(devicemodel.Device) devicemodel.Device) *rig {
	t.Helper()
	dev, err := devicemodel.NewYCQ(opt)
	require.NoError(t, err)
	var served devicemodel.Device = dev
	if wrap != nil {
		served = wrap(dev)
	}
	srv := devicemodel.NewServer(served, nil)
	s, c := socketpair(t)
	r := &rig{dev: dev, srv: srv, conn: s, done: make(chan error, 1)}
	go func() { r.done <- srv.ServeConn(context.Background(), s) }()
	r.client, err = user.NewClient(c, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		r.client.Close()
		<-r.done
		dev.Close()
	})
	return r
}

// request writes a request the tests send: internal/record's Plain record
// (sequence number, pair, fill), checked end to end through the crc32c or
// echo engine.
func request(b []byte, pair int, seq uint64) {
	record.Format{}.Fill(b, record.Header{Seq: seq, Producer: uint32(pair)})
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// stream sends n requests of size bytes on p and checks every response, in
// order, against the engine; it returns how many responses it checked.
func stream(ctx context.Context, p *Pair, n, size int, engine uint32) (int, error) {
	var wg sync.WaitGroup
	var sendErr error
	wg.Go(func() {
		for seq := 0; seq < n; {
			r, err := p.ReserveUpTo(ctx, min(32, n-seq, p.h2dCap()))
			if err != nil {
				sendErr = err
				return
			}
			for i := range r.Len() {
				request(r.Slot(i)[:size], p.Index(), uint64(seq+i))
			}
			if err := r.PublishAll(size); err != nil {
				sendErr = err
				return
			}
			seq += r.Len()
		}
	})
	got := 0
	want := make([]byte, size)
	var err error
	for got < n && err == nil {
		var r Response
		if r, err = p.Receive(ctx, min(64, p.d2hCap())); err != nil {
			break
		}
		for i := 0; i < r.Len() && err == nil; i++ {
			var b []byte
			if b, err = r.Slot(i); err != nil {
				break
			}
			request(want, p.Index(), uint64(got))
			switch engine {
			case ycqdev.EngineCRC32C:
				if len(b) != 8 || binary.LittleEndian.Uint32(b) != crc32.Checksum(want, castagnoli) || binary.LittleEndian.Uint32(b[4:]) != uint32(size) {
					err = fmt.Errorf("response %d: %x, not the CRC of request %d", got, b, got)
				}
			case ycqdev.EngineEcho:
				if string(b) != string(want) {
					err = fmt.Errorf("response %d does not echo request %d", got, got)
				}
			}
			got++
		}
		if rerr := r.ReleaseAll(); err == nil {
			err = rerr
		}
	}
	if err != nil {
		// Let the sender see the failure too, then report both.
		wg.Wait()
		return got, errors.Join(err, sendErr)
	}
	wg.Wait()
	return got, sendErr
}

// openRig opens a driver with cfg on a fresh two-pair device, closed when
// the test ends, and a context with a minute's deadline.
func openRig(t *testing.T, cfg Config) (*Driver, context.Context) {
	t.Helper()
	return openRigWith(t, cfg, devicemodel.Options{Queues: 2})
}

// openRigWith is openRig with the device's options.
func openRigWith(t *testing.T, cfg Config, opt devicemodel.Options) (*Driver, context.Context) {
	t.Helper()
	r := newRig(t, opt, nil)
	d, err := Open(r.client, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return d, ctx
}

func TestStreamBothWays(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"crc32c", Config{Engine: ycqdev.EngineCRC32C}},
		{"echo, metadata in BAR2", Config{Engine: ycqdev.EngineEcho, MetaInBAR2: true, SlotSize: 256, Slots: 64}},
		{"crc32c, polling", Config{Engine: ycqdev.EngineCRC32C, Polling: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, ctx := openRig(t, c.cfg)
			var wg sync.WaitGroup
			const n = 5000
			for _, p := range d.Pairs() {
				wg.Go(func() {
					got, err := stream(ctx, p, n, 100+8*p.Index(), c.cfg.Engine)
					if err != nil || got != n {
						t.Errorf("pair %d: %d of %d: %v", p.Index(), got, n, err)
					}
				})
			}
			wg.Wait()
			for _, p := range d.Pairs() {
				st := p.Stats()
				require.Equal(t, uint64(n), st.Sent)
				require.Equal(t, uint64(n), st.Received)
				require.NoError(t, p.h2d.Check())
				require.NoError(t, p.d2h.Check())
				t.Logf("pair %d: %d doorbells, %d interrupts, %d sleeps for %d records", p.Index(), st.Doorbells, st.Interrupts, st.Sleeps, n)
				require.Less(t, st.Doorbells, uint64(n), "doorbells only when the device sleeps")
			}
			require.NoError(t, d.Err())
		})
	}
}

// TestDeviceErrorStatus: the device stops on garbage the host side wrote;
// every waiter gets a DeviceError that says which requests were left.
func TestDeviceErrorStatus(t *testing.T) {
	r := newRig(t, devicemodel.Options{Queues: 1}, nil)
	d, err := Open(r.client, Config{Engine: ycqdev.EngineCRC32C, Slots: 16})
	require.NoError(t, err)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := d.Pair(0)
	got, err := stream(ctx, p, 100, 64, ycqdev.EngineCRC32C)
	require.NoError(t, err)
	require.Equal(t, 100, got)
	// Make the next descriptor the device will read a published record
	// longer than its slot, and wake the device.
	q := p.h2d.Stats().ConsumerCursor
	desc := p.layout.h2dMeta + 384 + 8*(q%16)
	binary.LittleEndian.PutUint64(d.mem.Bytes()[desc:], (q+1)|uint64(1<<20)<<32)
	doorbell := uint64(ycqdev.QueueBase + ycqdev.RegQDoorbell)
	require.NoError(t, vfio.Write32(r.client, vfio.BAR0, doorbell, 1))
	_, err = p.Receive(ctx, 1)
	var de *DeviceError
	require.ErrorAs(t, err, &de)
	require.Equal(t, uint32(ycqdev.CodeCorruptQueue), de.Code)
	require.Equal(t, uint32(0), de.Queue)
	require.ErrorIs(t, err, ErrDevice)
	var ie *IncompleteError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, []Incomplete{{Pair: 0, First: 100, End: 100}}, ie.Pairs)
	require.Contains(t, err.Error(), "every request sent was completed")
	_, err = p.Reserve(ctx, 1)
	require.ErrorIs(t, err, ErrDevice, "a stopped driver sends nothing more")
}

// TestResetInFlight: the driver resets the device while requests are in
// flight, and again from elsewhere (a function reset); nothing is lost.
func TestResetInFlight(t *testing.T) {
	r := newRig(t, devicemodel.Options{Queues: 2}, nil)
	d, err := Open(r.client, Config{Engine: ycqdev.EngineCRC32C, Slots: 64})
	require.NoError(t, err)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 20000
	var wg sync.WaitGroup
	var streamErr [2]error
	var got [2]int
	var stop atomic.Bool
	for _, p := range d.Pairs() {
		wg.Go(func() {
			// Retry across resets: a wait that saw the reset returns
			// ErrReset; after Recover the stream goes on where it was.
			got[p.Index()], streamErr[p.Index()] = streamAcrossResets(ctx, d, p, n, &stop)
		})
	}
	testenv.WaitFor(t, "a quarter of the responses", func() bool { return d.Pair(0).Stats().Received > n/4 })
	require.NoError(t, d.Reset(), "driver-initiated reset")
	testenv.WaitFor(t, "half of the responses", func() bool { return d.Pair(0).Stats().Received > n/2 })
	require.NoError(t, r.dev.Reset(), "a function reset from outside the driver")
	testenv.WaitFor(t, "the driver to see the reset", func() bool {
		if errors.Is(d.Err(), ErrReset) {
			require.NoError(t, d.Recover())
			return true
		}
		d.checkHealth()
		return false
	})
	wg.Wait()
	stop.Store(true)
	for i := range 2 {
		require.NoError(t, streamErr[i], "pair %d", i)
		require.Equal(t, n, got[i], "pair %d", i)
	}
}

// streamAcrossResets is stream that waits out a reset: on ErrReset it
// waits for the driver to recover and goes on.
func streamAcrossResets(ctx context.Context, d *Driver, p *Pair, n int, stop *atomic.Bool) (int, error) {
	var sent atomic.Int64
	var wg sync.WaitGroup
	var sendErr error
	retry := func(err error) bool {
		if !errors.Is(err, ErrReset) {
			return false
		}
		for d.Err() != nil && ctx.Err() == nil && !stop.Load() {
			time.Sleep(time.Millisecond)
		}
		return true
	}
	wg.Go(func() {
		for int(sent.Load()) < n {
			r, err := p.ReserveUpTo(ctx, min(32, n-int(sent.Load()), p.h2dCap()))
			if err != nil {
				if retry(err) {
					continue
				}
				sendErr = err
				return
			}
			for i := range r.Len() {
				request(r.Slot(i)[:64], p.Index(), uint64(int(sent.Load())+i))
			}
			err = r.PublishAll(64)
			sent.Add(int64(r.Len()))
			if err != nil && !retry(err) {
				sendErr = err
				return
			}
		}
	})
	got := 0
	want := make([]byte, 64)
	for got < n {
		r, err := p.Receive(ctx, min(64, p.d2hCap()))
		if err != nil {
			if retry(err) {
				continue
			}
			wg.Wait()
			return got, errors.Join(err, sendErr)
		}
		for i := range r.Len() {
			b, err := r.Slot(i)
			request(want, p.Index(), uint64(got))
			if err != nil || binary.LittleEndian.Uint32(b) != crc32.Checksum(want, castagnoli) {
				wg.Wait()
				return got, fmt.Errorf("pair %d: response %d wrong or missing (%v)", p.Index(), got, err)
			}
			got++
		}
		r.ReleaseAll()
	}
	wg.Wait()
	return got, sendErr
}

// TestDeviceGone: the device's socket closes under a running driver. Every
// call ends promptly with ErrGone; responses already published are still
// read; Close works.
func TestDeviceGone(t *testing.T) {
	r := newRig(t, devicemodel.Options{Queues: 1}, nil)
	d, err := Open(r.client, Config{Engine: ycqdev.EngineCRC32C, Slots: 16})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := d.Pair(0)
	require.NoError(t, p.Send(ctx, make([]byte, 32)))
	testenv.WaitFor(t, "the response", func() bool { return p.d2h.Len() == 1 })
	r.conn.Close() // the device vanishes
	// Sends go on until the queue is full or the driver notices; then
	// they fail with ErrGone.
	var sendErr error
	for range 40 {
		if sendErr = p.Send(ctx, make([]byte, 32)); sendErr != nil {
			break
		}
	}
	require.ErrorIs(t, sendErr, ErrGone)
	buf := make([]byte, 8)
	n, err := p.Recv(ctx, buf)
	require.NoError(t, err, "the response published before the loss is still read")
	require.Equal(t, 8, n)
	_, err = p.Recv(ctx, buf)
	require.ErrorIs(t, err, ErrGone)
	require.NoError(t, ctx.Err(), "ended by the driver, not by the deadline")
	require.NoError(t, d.Close())
}

// misbehave wraps a device so that its DMA writes to descriptors carry
// garbage lengths now and then, and it raises spurious interrupts.
type misbehave struct {
	devicemodel.Device
	garbage  bool
	spurious bool
}

type badHost struct {
	devicemodel.Host
	m *misbehave
	n atomic.Uint64
}

func (m *misbehave) Attach(h devicemodel.Host) { m.Device.Attach(&badHost{Host: h, m: m}) }

func (h *badHost) Store64(iova vfio.IOVA, v uint64) error {
	k := h.n.Add(1)
	if h.m.spurious && k%7 == 0 {
		h.Host.Interrupt(vfio.IRQMSIX, uint32(k%3))
	}
	// A published descriptor is stamp | length<<32 with a small length:
	// make one of them claim far more than a slot.
	if h.m.garbage && k > 2000 && v>>32 != 0 && v>>32 < 1<<20 {
		v |= 0x7fff << 32
		h.m.garbage = false
	}
	return h.Host.Store64(iova, v)
}

func TestMisbehavingDevice(t *testing.T) {
	t.Run("spurious interrupts", func(t *testing.T) {
		r := newRig(t, devicemodel.Options{Queues: 2}, func(d devicemodel.Device) devicemodel.Device {
			return &misbehave{Device: d, spurious: true}
		})
		d, err := Open(r.client, Config{Engine: ycqdev.EngineCRC32C, Slots: 32})
		require.NoError(t, err)
		defer d.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		got, err := stream(ctx, d.Pair(0), 3000, 48, ycqdev.EngineCRC32C)
		require.NoError(t, err)
		require.Equal(t, 3000, got)
		require.NoError(t, d.Err())
	})
	t.Run("garbage length", func(t *testing.T) {
		r := newRig(t, devicemodel.Options{Queues: 1}, func(d devicemodel.Device) devicemodel.Device {
			return &misbehave{Device: d, garbage: true}
		})
		d, err := Open(r.client, Config{Engine: ycqdev.EngineEcho, Slots: 32, SlotSize: 64})
		require.NoError(t, err)
		defer d.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		got, err := stream(ctx, d.Pair(0), 100000, 48, ycqdev.EngineEcho)
		require.Error(t, err)
		require.ErrorIs(t, err, ErrDevice)
		require.Less(t, got, 100000)
		var ie *IncompleteError
		require.ErrorAs(t, d.Err(), &ie)
		t.Logf("stopped after %d good responses: %v", got, d.Err())
	})
}

// TestOpenRefuses: a device that is not a ycq device, and configurations
// the device cannot run.
func TestOpenRefuses(t *testing.T) {
	r := newRig(t, devicemodel.Options{Queues: 2}, nil)
	for _, cfg := range []Config{
		{Queues: 3}, {Slots: 3}, {SlotSize: 12}, {Slots: 1 << 17},
		{MetaInBAR2: true, Slots: 1 << 16},
	} {
		_, err := Open(r.client, cfg)
		require.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
	_, err := Open(r.client, Config{Engine: 77})
	require.ErrorIs(t, err, ErrDevice)
	d, err := Open(r.client, Config{})
	require.NoError(t, err, "the device works after refusals")
	require.NoError(t, d.Close())
}

// TestStreamLoop: one goroutine drives every pair with Stream, run to
// completion, and every response matches its request, in order; with a
// window smaller than the queue, with metadata in BAR2, and polling.
func TestStreamLoop(t *testing.T) {
	for _, c := range []struct {
		name   string
		cfg    Config
		window int
		pin    bool // the stream on the last CPU, the device's loop on the first
	}{
		{"echo", Config{Engine: ycqdev.EngineEcho}, 0, false},
		{"crc32c, window 7", Config{Engine: ycqdev.EngineCRC32C, Slots: 64}, 7, false},
		{"echo, metadata in BAR2", Config{Engine: ycqdev.EngineEcho, MetaInBAR2: true, SlotSize: 256, Slots: 64}, 0, false},
		{"echo, polling", Config{Engine: ycqdev.EngineEcho, Polling: true}, 0, false},
		{"echo, pinned", Config{Engine: ycqdev.EngineEcho}, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			opt := devicemodel.Options{Queues: 2}
			var streamCPUs []int
			if c.pin {
				cpus, err := cpupin.Allowed()
				require.NoError(t, err)
				opt.CPUs, streamCPUs = cpus[:1], cpus[len(cpus)-1:]
			}
			d, ctx := openRigWith(t, c.cfg, opt)
			const n = 5000
			sent := make([]int, len(d.Pairs()))
			got := make([]int, len(d.Pairs()))
			size := func(p *Pair) int { return 100 + 8*p.Index() }
			want := make([]byte, 256)
			s := Stream{
				Window: c.window,
				CPUs:   streamCPUs,
				Request: func(p *Pair, b []byte) (int, bool) {
					if sent[p.Index()] == n {
						return 0, false
					}
					if c.pin && sent[p.Index()] == 0 {
						on, err := cpupin.Allowed() // Request runs on the stream's thread
						require.NoError(t, err)
						require.Equal(t, streamCPUs, on)
					}
					request(b[:size(p)], p.Index(), uint64(sent[p.Index()]))
					sent[p.Index()]++
					return size(p), true
				},
				Response: func(p *Pair, b []byte) error {
					w := want[:size(p)]
					request(w, p.Index(), uint64(got[p.Index()]))
					got[p.Index()]++
					switch c.cfg.Engine {
					case ycqdev.EngineCRC32C:
						if len(b) != 8 || binary.LittleEndian.Uint32(b) != crc32.Checksum(w, castagnoli) {
							return fmt.Errorf("pair %d response %d: %x", p.Index(), got[p.Index()]-1, b)
						}
					default:
						if string(b) != string(w) {
							return fmt.Errorf("pair %d response %d does not echo its request", p.Index(), got[p.Index()]-1)
						}
					}
					return nil
				},
			}
			require.NoError(t, s.Run(ctx, d.Pairs()))
			for i := range d.Pairs() {
				require.Equal(t, n, sent[i])
				require.Equal(t, n, got[i])
				st := d.Pairs()[i].Stats()
				require.Equal(t, uint64(n), st.Sent)
				require.Equal(t, uint64(n), st.Received)
			}
		})
	}
	require.ErrorIs(t, (&Stream{}).Run(context.Background(), nil), ErrConfig)
	_, err := devicemodel.NewYCQ(devicemodel.Options{Queues: 1, CPUs: []int{1023}})
	require.ErrorIs(t, err, cpupin.ErrCPU, "a device pinned to a CPU this process may not use")

	// A request longer than its slot ends the stream with ErrInvalid; its
	// batch goes back to the queue, and the driver stays usable.
	d, ctx := openRig(t, Config{Engine: ycqdev.EngineEcho})
	n := 0
	bad := Stream{
		Request: func(p *Pair, b []byte) (int, bool) {
			if n++; n == 40 {
				return len(b) + 1, true
			}
			return 8, n < 100
		},
		Response: func(*Pair, []byte) error { return nil },
	}
	require.ErrorIs(t, bad.Run(ctx, d.Pairs()[:1]), ring.ErrInvalid)
	require.NoError(t, d.Err())
	p := d.Pairs()[0]
	require.NoError(t, p.h2d.Check())
}
