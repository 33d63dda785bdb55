package devicemodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// fakeHost is host memory as one block at base, reached by IOVA, with
// interrupts counted and broadcast per vector: an interrupt closes the
// vector's current channel, waking everyone who took it, as an interrupt
// handler that wakes every waiter of a queue pair does.
type fakeHost struct {
	base uint64
	mem  []byte
	mu   sync.Mutex
	irqs [ycqdev.MaxQueuePairs + 1]chan struct{}
	n    atomic.Uint64
	msix atomic.Bool // MSI-X wired; otherwise Interrupt fails for MSI-X
	// pinning makes the host a Pinner; pins counts views not released.
	pinning bool
	pins    int
	revokes []func()
}

// newFakeHost makes host memory on the Go heap, where the race detector
// sees every access. mapped makes it an anonymous mapping instead, as it is
// outside tests: needed when metadata lives in BAR2 (a mapping too),
// because the race detector does not see atomics on mapped memory, so it
// would miss the stamps that order the payload.
func newFakeHost(t *testing.T, size int, mapped bool) *fakeHost {
	mem := ring.AlignedBytes(size)
	if mapped {
		r, err := dma.Anonymous(size, dma.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { r.Close() })
		mem = r.Bytes()
	}
	h := &fakeHost{base: 0x1000_0000, mem: mem}
	for i := range h.irqs {
		h.irqs[i] = make(chan struct{})
	}
	h.msix.Store(true)
	return h
}

// irq returns the channel the next interrupt of vector closes.
func (h *fakeHost) irq(vector uint32) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.irqs[vector]
}

// raised reports whether vector fired since ch was taken.
func raised(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (h *fakeHost) at(iova vfio.IOVA, n int) ([]byte, error) {
	a := uint64(iova)
	if a < h.base || a-h.base > uint64(len(h.mem)) || uint64(n) > uint64(len(h.mem))-(a-h.base) {
		return nil, fmt.Errorf("%w: %#x+%d", ErrDMAFault, a, n)
	}
	return h.mem[a-h.base:][:n], nil
}

func (h *fakeHost) Read(iova vfio.IOVA, b []byte) error {
	m, err := h.at(iova, len(b))
	if err == nil {
		copy(b, m)
	}
	return err
}

func (h *fakeHost) Write(iova vfio.IOVA, b []byte) error {
	m, err := h.at(iova, len(b))
	if err == nil {
		copy(m, b)
	}
	return err
}

func (h *fakeHost) Load32(iova vfio.IOVA) (uint32, error) {
	m, err := h.at(iova, 4)
	if err != nil || iova%4 != 0 {
		return 0, errors.Join(err, ErrDMAFault)
	}
	return localWord32(m).Load(), nil
}

func (h *fakeHost) Store32(iova vfio.IOVA, v uint32) error {
	m, err := h.at(iova, 4)
	if err != nil || iova%4 != 0 {
		return errors.Join(err, ErrDMAFault)
	}
	localWord32(m).Store(v)
	return nil
}

func (h *fakeHost) Load64(iova vfio.IOVA) (uint64, error) {
	m, err := h.at(iova, 8)
	if err != nil || iova%8 != 0 {
		return 0, errors.Join(err, ErrDMAFault)
	}
	return localWord64(m).Load(), nil
}

func (h *fakeHost) Store64(iova vfio.IOVA, v uint64) error {
	m, err := h.at(iova, 8)
	if err != nil || iova%8 != 0 {
		return errors.Join(err, ErrDMAFault)
	}
	localWord64(m).Store(v)
	return nil
}

// Pin implements Pinner when h.pinning is set: views straight into the
// fake host memory, with the revoke functions kept for tests to call.
func (h *fakeHost) Pin(iova vfio.IOVA, size uint64, perm vfio.Perm, revoke func()) ([]byte, func(), error) {
	if !h.pinning {
		return nil, nil, errors.New("fake host: no pinning")
	}
	m, err := h.at(iova, int(size))
	if err != nil {
		return nil, nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pins++
	h.revokes = append(h.revokes, revoke)
	var once sync.Once
	return m, func() {
		once.Do(func() {
			h.mu.Lock()
			h.pins--
			h.mu.Unlock()
		})
	}, nil
}

func (h *fakeHost) pinned() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pins
}

func (h *fakeHost) Interrupt(idx vfio.IRQIndex, vector uint32) error {
	if idx != vfio.IRQMSIX || !h.msix.Load() || int(vector) >= len(h.irqs) {
		return errors.New("not wired")
	}
	h.n.Add(1)
	h.mu.Lock()
	close(h.irqs[vector])
	h.irqs[vector] = make(chan struct{})
	h.mu.Unlock()
	return nil
}

// testPair is the host side of one queue pair: the two queues formatted in
// fake host memory (or, for the metadata, in the device's BAR2).
type testPair struct {
	h2d, d2h                           *ring.Queue
	h2dMeta, h2dData, d2hMeta, d2hData uint64
	inBAR2                             bool
}

// layoutPair carves a queue pair out of the fake host memory at offset off.
func layoutPair(t *testing.T, h *fakeHost, d *YCQ, off uint64, slots, slotSize int, bar2Off uint64, inBAR2 bool) (*testPair, uint64) {
	t.Helper()
	metaSize := uint64(ring.MetaSize(slots))
	dataSize := uint64(slots * slotSize)
	p := &testPair{inBAR2: inBAR2}
	take := func(n uint64) uint64 {
		a := off
		off += (n + 4095) &^ 4095
		return a
	}
	if inBAR2 {
		p.h2dMeta, p.d2hMeta = bar2Off, bar2Off+((metaSize+63)&^63)
	} else {
		p.h2dMeta, p.d2hMeta = take(metaSize), take(metaSize)
	}
	p.h2dData, p.d2hData = take(dataSize), take(dataSize)
	meta := func(a uint64) []byte {
		if inBAR2 {
			return d.bar2.Bytes()[a:][:metaSize]
		}
		return h.mem[a:][:metaSize]
	}
	var err error
	p.h2d, err = ring.Format(meta(p.h2dMeta), h.mem[p.h2dData:][:dataSize], ring.Config{Slots: slots, SlotSize: slotSize, SingleConsumer: true})
	require.NoError(t, err)
	p.d2h, err = ring.Format(meta(p.d2hMeta), h.mem[p.d2hData:][:dataSize], ring.Config{Slots: slots, SlotSize: slotSize, SingleProducer: true})
	require.NoError(t, err)
	return p, off
}

func reg32(t *testing.T, d *YCQ, off uint64) uint32 {
	t.Helper()
	var b [4]byte
	require.NoError(t, d.ReadRegion(vfio.BAR0, off, b[:]))
	return binary.LittleEndian.Uint32(b[:])
}

func reg64(t *testing.T, d *YCQ, off uint64) uint64 {
	t.Helper()
	var b [8]byte
	require.NoError(t, d.ReadRegion(vfio.BAR0, off, b[:]))
	return binary.LittleEndian.Uint64(b[:])
}

func setReg32(t *testing.T, d *YCQ, off uint64, v uint32) {
	t.Helper()
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	require.NoError(t, d.WriteRegion(vfio.BAR0, off, b[:]))
}

func setReg64(t *testing.T, d *YCQ, off uint64, v uint64) {
	t.Helper()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	require.NoError(t, d.WriteRegion(vfio.BAR0, off, b[:]))
}

// program writes a queue pair's registers: IOVAs are fake host offsets
// plus base, BAR2 offsets as they are.
func program(t *testing.T, d *YCQ, h *fakeHost, q int, p *testPair, slots, slotSize int) {
	t.Helper()
	iova := func(a uint64) uint64 { return h.base + a }
	meta := iova
	flags := uint32(0)
	if p.inBAR2 {
		meta = func(a uint64) uint64 { return a }
		flags = ycqdev.QFlagMetaInBAR2
	}
	setReg64(t, d, ycqdev.QueueReg(q, ycqdev.RegQH2DMeta), meta(p.h2dMeta))
	setReg64(t, d, ycqdev.QueueReg(q, ycqdev.RegQH2DData), iova(p.h2dData))
	setReg64(t, d, ycqdev.QueueReg(q, ycqdev.RegQD2HMeta), meta(p.d2hMeta))
	setReg64(t, d, ycqdev.QueueReg(q, ycqdev.RegQD2HData), iova(p.d2hData))
	setReg32(t, d, ycqdev.QueueReg(q, ycqdev.RegQSlots), uint32(slots))
	setReg32(t, d, ycqdev.QueueReg(q, ycqdev.RegQSlotSize), uint32(slotSize))
	setReg32(t, d, ycqdev.QueueReg(q, ycqdev.RegQFlags), flags)
}

func enableBusMaster(t *testing.T, d *YCQ) {
	require.NoError(t, d.WriteRegion(vfio.ConfigRegion, cfgCommand, []byte{commandMemory | commandBusMaster, 0}))
}

func newTestDevice(t *testing.T, queues int, mapped ...bool) (*YCQ, *fakeHost) {
	t.Helper()
	return newTestDeviceOpts(t, Options{Queues: queues}, mapped...)
}

func newTestDeviceOpts(t *testing.T, opt Options, mapped ...bool) (*YCQ, *fakeHost) {
	t.Helper()
	d, err := NewYCQ(opt)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	h := newFakeHost(t, 8<<20, len(mapped) > 0 && mapped[0])
	d.Attach(h)
	enableBusMaster(t, d)
	return d, h
}

// hostSide drives one queue pair as a host driver would: it produces
// requests on H2D and consumes responses on D2H, ringing the doorbell only
// when the device sleeps and sleeping on the pair's interrupt only when it
// has nothing to do.
type hostSide struct {
	t      *testing.T
	d      *YCQ
	h      *fakeHost
	q      int
	p      *testPair
	vector uint32
	bells  atomic.Uint64
	sleeps atomic.Uint64
}

func (s *hostSide) doorbell() {
	s.bells.Add(1)
	var b [4]byte
	s.d.WriteRegion(vfio.BAR0, ycqdev.QueueReg(s.q, ycqdev.RegQDoorbell), b[:])
}

// kick rings the doorbell if the device sleeps on line.
func (s *hostSide) kick(line ring.WakeLine) {
	ring.Fence()
	if line.Waiters().Load() != 0 {
		s.doorbell()
	}
}

// waitIRQ sleeps on the pair's interrupt, registered on line, unless ready
// turns true after registering. Ten seconds without the interrupt is a
// lost wakeup.
func (s *hostSide) waitIRQ(line ring.WakeLine, ready func() bool) error {
	ch := s.h.irq(s.vector)
	line.Waiters().Add(1)
	defer line.Waiters().Add(^uint32(0))
	if ready() {
		return nil
	}
	s.sleeps.Add(1)
	select {
	case <-ch:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("lost wakeup: no interrupt for 10 s (device status %#x, queue status %#x)",
			reg32(s.t, s.d, ycqdev.RegStatus), reg32(s.t, s.d, ycqdev.QueueReg(s.q, ycqdev.RegQStatus)))
	}
}

// run sends n requests of size bytes each, made by fill, and hands each
// response to check, in order.
func (s *hostSide) run(n, size int, fill func(i int, b []byte), check func(i int, b []byte) error) error {
	var wg sync.WaitGroup
	var sendErr error
	var quit atomic.Bool
	wg.Go(func() {
		prod := s.p.h2d.Producer()
		for i := 0; i < n && !quit.Load(); {
			w, err := prod.ReserveUpTo(min(16, n-i))
			if errors.Is(err, ring.ErrFull) {
				if err := s.waitIRQ(s.p.h2d.SpaceWake(), func() bool { return s.p.h2d.Len() < s.p.h2d.Cap() }); err != nil {
					sendErr = err
					return
				}
				continue
			}
			if err != nil {
				sendErr = err
				return
			}
			for j := range w.Len() {
				fill(i+j, w.Slot(j)[:size])
			}
			if err := w.PublishAll(size); err != nil {
				sendErr = err
				return
			}
			i += w.Len()
			s.kick(s.p.h2d.ItemsWake())
		}
	})
	defer wg.Wait()
	defer quit.Store(true)
	cons := s.p.d2h.Consumer()
	deadline := time.Now().Add(time.Minute)
	for i := 0; i < n; {
		if time.Now().After(deadline) {
			return fmt.Errorf("stuck after %d of %d responses (status %#x)", i, n, reg32(s.t, s.d, ycqdev.RegStatus))
		}
		r, err := cons.ReserveUpTo(32)
		if errors.Is(err, ring.ErrEmpty) {
			if err := s.waitIRQ(s.p.d2h.ItemsWake(), func() bool { return s.p.d2h.Len() > 0 }); err != nil {
				return errors.Join(err, sendErr)
			}
			continue
		}
		if err != nil {
			return err
		}
		for j := range r.Len() {
			b, err := r.Slot(j)
			if err == nil {
				err = check(i+j, b)
			}
			if err != nil {
				return fmt.Errorf("response %d: %w", i+j, err)
			}
		}
		i += r.Len()
		if err := r.ReleaseAll(); err != nil {
			return err
		}
		s.kick(s.p.d2h.SpaceWake())
	}
	return sendErr
}

func fillRecord(i int, b []byte) {
	for k := range b {
		b[k] = byte(i*7 + k)
	}
}

func TestEnginesEndToEnd(t *testing.T) {
	const slots, slotSize = 64, 256
	for _, tc := range []struct {
		engine  uint32
		inBAR2  bool
		pinning bool
		loops   int
	}{{ycqdev.EngineCRC32C, false, false, 1}, {ycqdev.EngineEcho, false, false, 1}, {ycqdev.EngineEcho, true, false, 1}, {ycqdev.EngineCRC32C, true, false, 1},
		{ycqdev.EngineEcho, false, true, 1}, {ycqdev.EngineCRC32C, false, true, 1}, {ycqdev.EngineEcho, false, true, 2}} {
		t.Run(fmt.Sprintf("%s/bar2=%v/pinned=%v/loops=%d", EngineName(tc.engine), tc.inBAR2, tc.pinning, tc.loops), func(t *testing.T) {
			d, h := newTestDeviceOpts(t, Options{Queues: 2, Loops: tc.loops}, tc.inBAR2 || tc.pinning)
			h.pinning = tc.pinning
			setReg32(t, d, ycqdev.RegEngine, tc.engine)
			setReg32(t, d, ycqdev.RegNumQueues, 2)
			var sides []*hostSide
			off := uint64(0)
			for q := range 2 {
				var p *testPair
				p, off = layoutPair(t, h, d, off, slots, slotSize, uint64(q)*65536, tc.inBAR2)
				program(t, d, h, q, p, slots, slotSize)
				sides = append(sides, &hostSide{t: t, d: d, h: h, q: q, p: p, vector: uint32(q)})
			}
			setReg32(t, d, ycqdev.RegControl, ycqdev.ControlEnable)
			require.Equal(t, uint32(ycqdev.StatusEnabled), reg32(t, d, ycqdev.RegStatus), "error code %d", reg32(t, d, ycqdev.RegErrorCode))
			const n = 20000
			var wg sync.WaitGroup
			errs := make([]error, len(sides))
			for i, s := range sides {
				wg.Go(func() {
					size := 24 + i*8
					errs[i] = s.run(n, size, fillRecord, func(k int, b []byte) error {
						want := make([]byte, size)
						fillRecord(k, want)
						switch tc.engine {
						case ycqdev.EngineCRC32C:
							if len(b) != CRCResponseSize || binary.LittleEndian.Uint32(b) != crc32.Checksum(want, castagnoli) ||
								binary.LittleEndian.Uint32(b[4:]) != uint32(size) {
								return fmt.Errorf("crc response %x", b)
							}
						case ycqdev.EngineEcho:
							if string(b) != string(want) {
								return fmt.Errorf("echo %x, want %x", b, want)
							}
						}
						return nil
					})
				})
			}
			wg.Wait()
			for _, err := range errs {
				require.NoError(t, err)
			}
			// The device counts a step's records at its end, and may have
			// published a step's first responses (a full batch of deferred
			// stamps) before: the host can see every response a moment
			// before the counters do.
			testenv.WaitFor(t, "the device's record counters", func() bool {
				return reg64(t, d, ycqdev.RegRecordsIn) == uint64(2*n) && reg64(t, d, ycqdev.RegRecordsOut) == uint64(2*n)
			})
			require.Equal(t, uint64(n), reg64(t, d, ycqdev.QueueReg(0, ycqdev.RegQRecords)))
			require.Equal(t, uint32(ycqdev.StatusEnabled), reg32(t, d, ycqdev.RegStatus))
			for _, s := range sides {
				require.NoError(t, s.p.h2d.Check())
				require.NoError(t, s.p.d2h.Check())
				st := s.p.d2h.Stats()
				require.Equal(t, uint64(n), st.Published, "the device counts on its side")
				t.Logf("pair %d: %d doorbells, %d host sleeps, %d records; device wakeups sent %d, suppressed %d",
					s.q, s.bells.Load(), s.sleeps.Load(), n, st.ProducerWakeSent, st.ProducerWakeSuppressed)
				require.Less(t, s.bells.Load(), uint64(n), "doorbells are rung only when the device sleeps")
			}
			if tc.pinning {
				require.Equal(t, 8, h.pinned(), "two pairs: two metadata and two data views each")
			}
			setReg32(t, d, ycqdev.RegControl, 0)
			require.Zero(t, reg32(t, d, ycqdev.RegStatus))
			require.Zero(t, h.pinned(), "stopping releases every view")
		})
	}
}

// TestRevokedWhileRunning: the host unmaps memory a running pair holds
// pinned; the device stops with a DMA fault and lets go of its views.
func TestRevokedWhileRunning(t *testing.T) {
	d, h := newTestDevice(t, 1, true)
	h.pinning = true
	p, _ := layoutPair(t, h, d, 0, 16, 64, 0, false)
	program(t, d, h, 0, p, 16, 64)
	setReg32(t, d, ycqdev.RegControl, ycqdev.ControlEnable)
	require.Equal(t, uint32(ycqdev.StatusEnabled), reg32(t, d, ycqdev.RegStatus))
	require.Equal(t, 4, h.pinned())
	h.mu.Lock()
	revoke := h.revokes[0]
	h.mu.Unlock()
	revoke()
	revoke() // every view of the pair calls it; the second does nothing
	waitUntil(t, func() bool { return h.pinned() == 0 })
	require.Equal(t, uint32(ycqdev.StatusError), reg32(t, d, ycqdev.RegStatus))
	require.Equal(t, uint32(ycqdev.CodeDMAFault), reg32(t, d, ycqdev.RegErrorCode))
}

func TestSinkAndSource(t *testing.T) {
	const slots, slotSize = 32, 128
	d, h := newTestDevice(t, 1)
	p, _ := layoutPair(t, h, d, 0, slots, slotSize, 0, false)
	program(t, d, h, 0, p, slots, slotSize)
	setReg32(t, d, ycqdev.RegEngine, ycqdev.EngineSource)
	setReg32(t, d, ycqdev.RegNumQueues, 1)
	setReg32(t, d, ycqdev.RegControl, ycqdev.ControlEnable)
	s := &hostSide{t: t, d: d, h: h, q: 0, p: p}
	// One request for 1000 responses, then the host reads them all.
	w, err := p.h2d.Producer().Reserve(1)
	require.NoError(t, err)
	binary.LittleEndian.PutUint32(w.Slot(0), 1000)
	require.NoError(t, w.PublishAll(4))
	s.kick(p.h2d.ItemsWake())
	cons := p.d2h.Consumer()
	for k := 0; k < 1000; {
		r, err := cons.ReserveUpTo(8)
		if errors.Is(err, ring.ErrEmpty) {
			require.NoError(t, s.waitIRQ(p.d2h.ItemsWake(), func() bool { return p.d2h.Len() > 0 }))
			continue
		}
		require.NoError(t, err)
		for j := range r.Len() {
			b, err := r.Slot(j)
			require.NoError(t, err)
			want := make([]byte, slotSize)
			SourcePattern(want, uint64(k+j))
			require.Equal(t, want, b)
		}
		k += r.Len()
		require.NoError(t, r.ReleaseAll())
		s.kick(p.d2h.SpaceWake())
	}
	require.Equal(t, uint64(1), reg64(t, d, ycqdev.RegRecordsIn))
	require.Equal(t, uint64(1000), reg64(t, d, ycqdev.RegRecordsOut))

	// Sink: requests vanish, no responses.
	require.NoError(t, d.Reset())
	enableBusMaster(t, d)
	p, _ = layoutPair(t, h, d, 0, slots, slotSize, 0, false)
	program(t, d, h, 0, p, slots, slotSize)
	setReg32(t, d, ycqdev.RegEngine, ycqdev.EngineSink)
	setReg32(t, d, ycqdev.RegControl, ycqdev.ControlEnable)
	s.p = p
	for sent := 0; sent < 200; sent++ {
		w, err := p.h2d.Producer().Reserve(1)
		if errors.Is(err, ring.ErrFull) {
			require.NoError(t, s.waitIRQ(p.h2d.SpaceWake(), func() bool { return p.h2d.Len() < p.h2d.Cap() }))
			sent--
			continue
		}
		require.NoError(t, err)
		require.NoError(t, w.PublishAll(16))
		s.kick(p.h2d.ItemsWake())
	}
	waitUntil(t, func() bool { return reg64(t, d, ycqdev.RegRecordsIn) == 200 })
	require.Zero(t, p.d2h.Len())
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out")
		time.Sleep(time.Millisecond)
	}
}

// TestBadConfiguration: every register or metadata mistake stops the
// device with an error code, never a crash, and a reset clears it.
func TestBadConfiguration(t *testing.T) {
	const slots, slotSize = 16, 64
	cases := []struct {
		name  string
		setup func(t *testing.T, d *YCQ, h *fakeHost, p *testPair)
		code  uint32
	}{
		{"bus mastering off", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			require.NoError(t, d.WriteRegion(vfio.ConfigRegion, cfgCommand, []byte{0, 0}))
		}, ycqdev.CodeBadConfig},
		{"slots not a power of two", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			setReg32(t, d, ycqdev.QueueReg(0, ycqdev.RegQSlots), 12)
		}, ycqdev.CodeBadConfig},
		{"slot size zero", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			setReg32(t, d, ycqdev.QueueReg(0, ycqdev.RegQSlotSize), 0)
		}, ycqdev.CodeBadConfig},
		{"too many queue pairs", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			setReg32(t, d, ycqdev.RegNumQueues, 5)
		}, ycqdev.CodeBadConfig},
		{"no such engine", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			setReg32(t, d, ycqdev.RegEngine, 99)
		}, ycqdev.CodeBadConfig},
		{"vector out of range", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			setReg32(t, d, ycqdev.QueueReg(0, ycqdev.RegQVector), 7)
		}, ycqdev.CodeBadConfig},
		{"metadata at an unmapped address", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			setReg64(t, d, ycqdev.QueueReg(0, ycqdev.RegQH2DMeta), 0xdead_0000)
		}, ycqdev.CodeDMAFault},
		{"metadata not formatted", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			clear(h.mem[p.h2dMeta : p.h2dMeta+64])
		}, ycqdev.CodeBadMetadata},
		{"slot count disagrees with the header", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			setReg32(t, d, ycqdev.QueueReg(0, ycqdev.RegQSlots), 32)
		}, ycqdev.CodeBadMetadata},
		{"H2D not single-consumer", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			binary.LittleEndian.PutUint32(h.mem[p.h2dMeta+ring.OffFeatures:], 0)
		}, ycqdev.CodeBadMetadata},
		{"BAR2 offset outside BAR2", func(t *testing.T, d *YCQ, h *fakeHost, p *testPair) {
			setReg32(t, d, ycqdev.QueueReg(0, ycqdev.RegQFlags), ycqdev.QFlagMetaInBAR2)
			setReg64(t, d, ycqdev.QueueReg(0, ycqdev.RegQH2DMeta), ycqdev.BAR2Size-8)
		}, ycqdev.CodeBadConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, h := newTestDevice(t, 1)
			p, _ := layoutPair(t, h, d, 0, slots, slotSize, 0, false)
			program(t, d, h, 0, p, slots, slotSize)
			c.setup(t, d, h, p)
			errIRQ := h.irq(1) // the error vector of a one-pair device
			setReg32(t, d, ycqdev.RegControl, ycqdev.ControlEnable)
			require.Equal(t, uint32(ycqdev.StatusError), reg32(t, d, ycqdev.RegStatus))
			require.Equal(t, c.code, reg32(t, d, ycqdev.RegErrorCode))
			require.Zero(t, reg32(t, d, ycqdev.RegControl)&ycqdev.ControlEnable, "enable is cleared")
			require.True(t, raised(errIRQ), "the error vector fired")
			setReg32(t, d, ycqdev.RegControl, ycqdev.ControlReset)
			require.Zero(t, reg32(t, d, ycqdev.RegStatus))
			require.Zero(t, reg32(t, d, ycqdev.RegErrorCode))
		})
	}
}

// TestGarbageWhileRunning: the host writes garbage into the metadata and a
// length while the device runs: the device stops with an error status.
func TestGarbageWhileRunning(t *testing.T) {
	const slots, slotSize = 16, 64
	for _, poison := range []struct {
		name string
		fn   func(h *fakeHost, p *testPair)
		code uint32
	}{
		{"stamp from nowhere", func(h *fakeHost, p *testPair) {
			localWord64(h.mem[p.h2dMeta+ring.OffDescs:]).Store(0x77 | uint64(8)<<32)
		}, ycqdev.CodeCorruptQueue},
		{"length larger than the slot", func(h *fakeHost, p *testPair) {
			localWord64(h.mem[p.h2dMeta+ring.OffDescs:]).Store(1 | uint64(slotSize+8)<<32)
		}, ycqdev.CodeCorruptQueue},
		{"data region unmapped", func(h *fakeHost, p *testPair) {
			localWord64(h.mem[p.h2dMeta+ring.OffDescs:]).Store(1 | uint64(8)<<32)
		}, ycqdev.CodeDMAFault},
	} {
		t.Run(poison.name, func(t *testing.T) {
			d, h := newTestDevice(t, 1)
			p, _ := layoutPair(t, h, d, 0, slots, slotSize, 0, false)
			program(t, d, h, 0, p, slots, slotSize)
			if poison.code == ycqdev.CodeDMAFault {
				setReg64(t, d, ycqdev.QueueReg(0, ycqdev.RegQH2DData), 0x10)
			}
			setReg32(t, d, ycqdev.RegControl, ycqdev.ControlEnable)
			require.Equal(t, uint32(ycqdev.StatusEnabled), reg32(t, d, ycqdev.RegStatus))
			poison.fn(h, p)
			var b [4]byte
			require.NoError(t, d.WriteRegion(vfio.BAR0, ycqdev.QueueReg(0, ycqdev.RegQDoorbell), b[:]))
			waitUntil(t, func() bool { return reg32(t, d, ycqdev.RegStatus) == ycqdev.StatusError })
			require.Equal(t, poison.code, reg32(t, d, ycqdev.RegErrorCode))
			require.Equal(t, uint32(0), reg32(t, d, ycqdev.RegErrorQueue))
			require.Equal(t, uint32(ycqdev.QStatusError), reg32(t, d, ycqdev.QueueReg(0, ycqdev.RegQStatus)))
			// Enabling again checks again, and works once the host fixes
			// its queue.
			p, _ = layoutPair(t, h, d, 0, slots, slotSize, 0, false)
			program(t, d, h, 0, p, slots, slotSize)
			setReg32(t, d, ycqdev.RegControl, ycqdev.ControlEnable)
			require.Equal(t, uint32(ycqdev.StatusEnabled), reg32(t, d, ycqdev.RegStatus))
		})
	}
}

func TestDetachAndReset(t *testing.T) {
	const slots, slotSize = 16, 64
	d, h := newTestDevice(t, 1)
	p, _ := layoutPair(t, h, d, 0, slots, slotSize, 0, false)
	program(t, d, h, 0, p, slots, slotSize)
	setReg32(t, d, ycqdev.RegControl, ycqdev.ControlEnable)
	require.Equal(t, uint32(ycqdev.StatusEnabled), reg32(t, d, ycqdev.RegStatus))
	d.Detach()
	require.Zero(t, reg32(t, d, ycqdev.RegStatus), "a client going away resets the device")
	require.Zero(t, reg64(t, d, ycqdev.QueueReg(0, ycqdev.RegQH2DMeta)))
	var cmd [2]byte
	require.NoError(t, d.ReadRegion(vfio.ConfigRegion, cfgCommand, cmd[:]))
	require.Zero(t, cmd[0]&commandBusMaster, "and its config space")
	d.Attach(h)
	enableBusMaster(t, d)
	program(t, d, h, 0, p, slots, slotSize)
	setReg32(t, d, ycqdev.RegControl, ycqdev.ControlEnable)
	require.Equal(t, uint32(ycqdev.StatusEnabled), reg32(t, d, ycqdev.RegStatus))
	require.NoError(t, d.Reset())
	require.Zero(t, reg32(t, d, ycqdev.RegStatus))
}

// TestPassedHolesWakeTheHost: a host producer asleep for space is woken when
// the device passes over aborted slots, which frees them, as after a release
// (issue 12, bug 2, on the device side).
func TestPassedHolesWakeTheHost(t *testing.T) {
	const slots, slotSize = 8, 64
	d, h := newTestDevice(t, 1)
	p, _ := layoutPair(t, h, d, 0, slots, slotSize, 0, false)
	program(t, d, h, 0, p, slots, slotSize)
	setReg32(t, d, ycqdev.RegControl, ycqdev.ControlEnable)
	s := &hostSide{t: t, d: d, h: h, q: 0, p: p}
	irq := h.irq(0)
	space := p.h2d.SpaceWake()
	space.Waiters().Add(1) // the host sleeps for space from here on
	defer space.Waiters().Add(^uint32(0))
	w, err := p.h2d.Producer().Reserve(slots)
	require.NoError(t, err)
	for i := range slots {
		require.NoError(t, w.Abort(i)) // holes only: no record, no release
	}
	s.kick(p.h2d.ItemsWake())
	s.doorbell()
	select {
	case <-irq:
	case <-time.After(10 * time.Second):
		t.Fatalf("lost wakeup: the device passed %d holes and raised no interrupt", p.h2d.Stats().Skipped)
	}
	waitUntil(t, func() bool { return p.h2d.Stats().Skipped == slots })
	_, err = p.h2d.Producer().Reserve(slots)
	require.NoError(t, err, "every slot is free again")
	require.Zero(t, reg64(t, d, ycqdev.RegRecordsIn), "holes are not records")
}

// TestLocalSpacePrefetch: prefetching a range that starts outside the
// view, or runs past it, asks for nothing outside it (and nothing faults);
// prefetchSlots splits a batch where the ring wraps and skips spaces that
// cannot prefetch.
func TestLocalSpacePrefetch(t *testing.T) {
	s := localSpace{b: make([]byte, 4096), base: 0x10000}
	for _, a := range []uint64{0, 0xffff, 0x10000, 0x10fc0, 0x11000, 1 << 63} {
		s.Prefetch(a, 100, 64, false)
		s.Prefetch(a, 100, 64, true)
	}
	prefetchSlots(s, 0x10000, 60, 64, 64, 32, true) // 4 to the end, 28 from the start
	prefetchSlots(s, 0x10000, 3, 64, 64, 1000, false)
	prefetchSlots(hostSpace{}, 0x10000, 0, 64, 64, 32, false)
}
