package usbhost

import (
	"errors"
	"sync"
	"time"

	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// fakeDevice is an in-memory ycq USB device keeping USB.md for the subset
// the tests need (the echo and sink engines): GET_INFO, SET_QUEUE, GET_QUEUE,
// RESET, GET_COUNTERS; OUT transfers of whole records whose echoes wait for
// IN transfers; and knobs for what goes wrong.
type fakeDevice struct {
	mu      sync.Mutex
	pairs   int
	r       int
	engine  uint32
	running []bool
	pending [][][]byte        // per pair: echoes not yet sent
	held    [][]*fakeTransfer // per pair: IN transfers waiting
	gone    bool              // everything fails with ErrGone
	closed  bool              // close was called
	stall   map[uint8]bool    // the next transfer on the endpoint stalls
	halted  map[uint8]bool    // cleared by clearHalt
	timeout map[uint8]bool    // the next transfer on the endpoint times out
	junk    map[uint8]bool    // the next IN completion is not whole responses
	cleared []uint8           // endpoints clearHalt was called on
	resets  int               // RESETs seen
	memory  bool              // deviceMemory succeeds
	mapped  int               // device memory regions not unmapped
	live    map[*fakeTransfer]bool
	// mangle, if set, rewrites the answer to vendor IN request req
	// before the driver sees it: a device that lies.
	mangle func(req uint8, p []byte) []byte
}

func newFake(pairs int) *fakeDevice {
	return &fakeDevice{pairs: pairs, running: make([]bool, pairs), pending: make([][][]byte, pairs),
		held: make([][]*fakeTransfer, pairs), stall: map[uint8]bool{}, halted: map[uint8]bool{},
		timeout: map[uint8]bool{}, junk: map[uint8]bool{}, live: map[*fakeTransfer]bool{}}
}

func (f *fakeDevice) info() usbproto.Info {
	return usbproto.Info{Version: usbproto.ProtocolVersion, Pairs: uint8(f.pairs), MaxRecordSize: usbproto.MaxRecordSize,
		MaxRecordsPerTransfer: usbproto.MaxRecordsPerTransfer, MaxTransferBytes: usbproto.MaxTransferBytes,
		OutWindow: usbproto.OutWindow, InWindow: usbproto.InWindow, Engines: 1<<ycqdev.EngineEcho | 1<<ycqdev.EngineSink}
}

func (f *fakeDevice) control(rType, req uint8, _, index uint16, data []byte, _ time.Duration) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone || f.closed {
		return 0, ErrGone
	}
	switch {
	case rType == usbproto.VendorIn && req == usbproto.ReqGetInfo:
		return copy(data, f.answer(req, f.info().Encode(nil))), nil
	case rType == usbproto.VendorOut && req == usbproto.ReqReset:
		f.resets++
		for i := range f.pairs {
			f.running[i] = false
			f.pending[i] = nil
			for _, x := range f.held[i] {
				x.complete(0, ErrIO) // the device cancelled it
			}
			f.held[i] = nil
		}
		return 0, nil
	case rType == usbproto.VendorOut && req == usbproto.ReqSetQueue && int(index) < f.pairs:
		s, err := usbproto.DecodeQueueSetup(data)
		if err != nil || f.running[index] {
			return 0, ErrStall
		}
		f.r, f.engine = int(s.RecordSize), s.Engine
		f.running[index] = true
		return len(data), nil
	case rType == usbproto.VendorIn && req == usbproto.ReqGetQueue && int(index) < f.pairs:
		var q usbproto.QueueState
		if f.running[index] {
			q = usbproto.QueueState{Engine: f.engine, RecordSize: uint32(f.r), ResponseSize: uint32(usbproto.ResponseSize(f.engine, f.r)),
				RecordsPerTransfer: uint32(usbproto.RecordsPerTransfer(f.r)), State: usbproto.QueueRunning}
		}
		return copy(data, f.answer(req, q.Encode(nil))), nil
	case rType == usbproto.VendorIn && req == usbproto.ReqGetCounters:
		c := usbproto.Counters{Resets: uint32(f.resets), Pairs: make([]usbproto.PairCounters, f.pairs)}
		return copy(data, f.answer(req, c.Encode(nil))), nil
	}
	return 0, ErrStall
}

// answer is p, the answer to vendor IN request req, as f.mangle has it.
func (f *fakeDevice) answer(req uint8, p []byte) []byte {
	if f.mangle == nil {
		return p
	}
	return f.mangle(req, p)
}

func (f *fakeDevice) newTransfer(ep uint8) (transfer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return nil, ErrGone
	}
	x := &fakeTransfer{f: f, ep: ep}
	f.live[x] = true
	return x, nil
}

func (f *fakeDevice) clearHalt(ep uint8) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleared = append(f.cleared, ep)
	delete(f.halted, ep)
	return nil
}

// deviceMemory gives Go memory when f.memory is set (the tests only see
// that it is used), and fails otherwise.
func (f *fakeDevice) deviceMemory(size int) ([]byte, func() error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.memory {
		return nil, nil, errors.New("fake: no device memory")
	}
	f.mapped++
	return make([]byte, size), func() error {
		f.mu.Lock()
		f.mapped--
		f.mu.Unlock()
		return nil
	}, nil
}

func (f *fakeDevice) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if len(f.live) > 0 {
		return errors.New("fake: closed with transfers not freed")
	}
	return nil
}

// unplug makes the device vanish: what it holds fails with ErrGone.
func (f *fakeDevice) unplug() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gone = true
	for i := range f.pairs {
		for _, x := range f.held[i] {
			x.complete(0, ErrGone)
		}
		f.held[i] = nil
	}
}

func (f *fakeDevice) set(m map[uint8]bool, ep uint8) {
	f.mu.Lock()
	m[ep] = true
	f.mu.Unlock()
}

// serve completes held IN transfers of pair i with pending echoes; f.mu held.
func (f *fakeDevice) serve(i int) {
	for len(f.held[i]) > 0 && len(f.pending[i]) > 0 {
		x := f.held[i][0]
		f.held[i] = f.held[i][1:]
		n := 0
		for len(f.pending[i]) > 0 && n+f.r <= len(x.buf) {
			n += copy(x.buf[n:], f.pending[i][0])
			f.pending[i] = f.pending[i][1:]
		}
		if f.junk[x.ep] {
			delete(f.junk, x.ep)
			n--
		}
		x.complete(n, nil)
	}
}

type fakeTransfer struct {
	f   *fakeDevice
	ep  uint8
	buf []byte
	ch  chan struct{}
	n   int
	err error
	in  bool // in flight
}

func (x *fakeTransfer) submit(buf []byte, timeout time.Duration) error {
	f := x.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return ErrGone
	}
	x.buf, x.ch, x.in, x.n, x.err = buf, make(chan struct{}), true, 0, nil
	pair, _ := usbproto.EndpointPair(x.ep)
	switch {
	case f.halted[x.ep]:
		x.complete(0, ErrStall)
	case f.stall[x.ep]:
		delete(f.stall, x.ep)
		f.halted[x.ep] = true
		x.complete(0, ErrStall)
	case f.timeout[x.ep] && timeout > 0:
		delete(f.timeout, x.ep)
		x.complete(0, ErrTimeout)
	case x.ep&usbproto.EndpointDirIn == 0: // OUT: whole records, echoed
		if !f.running[pair] || len(buf)%f.r != 0 {
			f.halted[x.ep] = true
			x.complete(0, ErrStall)
			return nil
		}
		for off := 0; off < len(buf) && f.engine == ycqdev.EngineEcho; off += f.r {
			f.pending[pair] = append(f.pending[pair], append([]byte(nil), buf[off:off+f.r]...))
		}
		x.complete(len(buf), nil)
		f.serve(pair)
	default:
		f.held[pair] = append(f.held[pair], x)
		if f.running[pair] {
			f.serve(pair)
		}
	}
	return nil
}

// complete ends the transfer; f.mu held.
func (x *fakeTransfer) complete(n int, err error) {
	if !x.in {
		return
	}
	x.in, x.n, x.err = false, n, err
	close(x.ch)
}

func (x *fakeTransfer) done() <-chan struct{} {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	return x.ch
}

func (x *fakeTransfer) result() (int, error) {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	return x.n, x.err
}

func (x *fakeTransfer) cancel() {
	f := x.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.held {
		for j, h := range f.held[i] {
			if h == x {
				f.held[i] = append(f.held[i][:j:j], f.held[i][j+1:]...)
			}
		}
	}
	x.complete(0, errCancelled)
}

func (x *fakeTransfer) free() {
	x.f.mu.Lock()
	defer x.f.mu.Unlock()
	delete(x.f.live, x)
}
