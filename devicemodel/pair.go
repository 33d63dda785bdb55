package devicemodel

import (
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/ycq-dev/ycq/internal/cpupin"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// runLoop is one of the device's polling loops: it serves its queue pairs
// in turn, up to Batch requests each, while any has work, then polls them
// all for a while, then sleeps, registered in each pair's wake line, until
// a doorbell of one of them. One loop serves every pair unless Options.Loops
// asks for more, so the device adds one busy thread, not one a pair. Host
// memory it reaches through pinned views could fault (a client that
// truncates its file): that is caught and reported as a DMA fault of the
// pair it was serving.
func (d *YCQ) runLoop(run *runState, bell chan struct{}, pairs []*queuePair, cpus []int) {
	if unpin, err := cpupin.Thread(cpus); err != nil {
		d.log.Warn("polling loop runs unpinned", "err", err)
	} else {
		defer unpin()
	}
	defer func() {
		for _, p := range pairs {
			p.release()
		}
	}()
	debug.SetPanicOnFault(true)
	current := pairs[0]
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(interface{ Addr() uintptr })
			if !ok {
				panic(r)
			}
			d.pairFailed(run, current, qerr(ycqdev.CodeDMAFault, uint64(f.Addr()), "queue pair %d: host memory faulted: %v", current.q, r))
		}
	}()
	for {
		select {
		case <-run.stop:
			return
		default:
		}
		did := false
		for _, p := range pairs {
			current = p
			pdid, blocked, err := d.step(p)
			if err != nil {
				d.pairFailed(run, p, deviceError(err, 0))
				return
			}
			p.blocked = blocked
			did = did || pdid
		}
		if did {
			continue
		}
		if d.poll(run, pairs) {
			continue
		}
		if p, err := d.sleep(run, bell, pairs); err != nil {
			d.pairFailed(run, p, deviceError(err, 0))
			return
		}
	}
}

// step handles up to Batch requests: reads each from the host-to-device
// queue, writes its responses into the device-to-host queue, releases it.
// blocked reports that it stopped because the device-to-host queue is full.
func (d *YCQ) step(p *queuePair) (did, blocked bool, err error) {
	if p.resizable {
		if err := d.resizeStep(p); err != nil {
			return false, false, err
		}
	}
	consumed, produced := 0, 0
	holes := p.h2d.HolesPassed()
	synced := false
	defer func() {
		if !synced {
			// The batch ended in an error: store the cursors anyway, as
			// far as they can be, for the host reads them to learn which
			// requests were answered.
			p.sync(produced, consumed)
		}
	}()
	if !p.pending {
		p.h2d.Prefetch(d.opt.Batch) // the batch's descriptor lines
		p.d2h.Prefetch(d.opt.Batch)
		p.prefetch(0, 2*prefetchAhead)
	}
	for consumed < d.opt.Batch && !blocked {
		if !p.pending && consumed > 0 && consumed%prefetchAhead == 0 {
			// The next group, whose lines were not asked for yet: the CPU
			// keeps a few dozen misses in flight, and most of a whole
			// batch's asked at once would be dropped.
			p.prefetch(prefetchAhead, prefetchAhead)
		}
		if !p.pending {
			length, ok, err := p.h2d.Peek()
			if err != nil {
				return false, false, err
			}
			if !ok {
				if p.resizable {
					moved, err := d.followH2D(p)
					if err != nil {
						return false, false, err
					}
					if moved {
						continue
					}
				}
				break
			}
			at := p.h2d.slot()
			if req, ok := p.h2d.data.Slice(at, int(length)); ok {
				p.req = req // in place: the host does not touch it until it is released
			} else {
				if err := p.h2d.data.Read(at, p.in[:length]); err != nil {
					return false, false, &ring.MemoryError{Addr: at, Err: err}
				}
				p.req = p.in[:length]
			}
			p.next, p.pending = 0, true
			p.responses = p.engine.Responses(p.req)
		}
		for p.next < p.responses {
			free, err := p.d2h.Free()
			if err != nil {
				return false, false, err
			}
			if !free {
				blocked = true
				break
			}
			at := p.d2h.slot()
			out, direct := p.d2h.data.Slice(at, len(p.out))
			if !direct {
				out = p.out
			}
			n, err := p.engine.Respond(p.req, p.next, out)
			if err != nil || n < 0 || n > len(out) {
				return false, false, qerr(ycqdev.CodeBadRecord, p.h2d.Pos(), "queue pair %d, request at position %d: %v", p.q, p.h2d.Pos(), err)
			}
			if !direct {
				if err := p.d2h.data.Write(at, out[:n]); err != nil {
					return false, false, &ring.MemoryError{Addr: at, Err: err}
				}
			}
			if err := p.d2h.PublishDeferred(uint32(n)); err != nil {
				return false, false, err
			}
			p.next++
			produced++
		}
		if blocked {
			break
		}
		if err := p.h2d.ReleaseDeferred(); err != nil {
			return false, false, err
		}
		p.pending = false
		consumed++
	}
	if consumed > 0 {
		ring.StoreRelease64(&d.qrecords[p.q], d.qrecords[p.q].Load()+uint64(consumed))
	}
	if produced > 0 {
		ring.StoreRelease64(&d.qout[p.q], d.qout[p.q].Load()+uint64(produced))
	}
	synced = true
	if err := p.sync(produced, consumed); err != nil {
		return false, false, err
	}
	// Passing holes freed slots too: the host may be asleep for them.
	passed := p.h2d.HolesPassed() != holes
	if err := d.wakeHost(p, produced > 0, consumed > 0 || passed); err != nil {
		return false, false, err
	}
	return consumed+produced > 0 || passed, blocked, nil
}

// sync stores the pair's cursors after a batch that published produced
// responses and released consumed requests.
func (p *queuePair) sync(produced, consumed int) error {
	if produced > 0 {
		if err := p.d2h.Sync(); err != nil {
			return err
		}
	}
	if consumed > 0 {
		return p.h2d.Sync()
	}
	return nil
}

// wakeHost raises the pair's vector if a host agent sleeps for what the
// device just did: records published on the device-to-host queue, or slots
// released on the host-to-device queue. The device's stores came first; a
// device's read does not pass its earlier writes, and the fence makes this
// one's release stores (localSpace) behave so before it loads the waiters
// words.
func (d *YCQ) wakeHost(p *queuePair, published, released bool) error {
	if !published && !released {
		return nil
	}
	ring.Fence()
	raise := false
	if published {
		woke, err := p.d2h.WakeConsumers()
		if err != nil {
			return err
		}
		raise = raise || woke
	}
	if released {
		woke, err := p.h2d.WakeProducers()
		if err != nil {
			return err
		}
		raise = raise || woke
	}
	if raise {
		d.raise(p.vector)
	}
	return nil
}

// h2dReady reports whether a request is there, or the host-to-device
// queue is drained for a resize, so step moves on. Holes it passes on the
// way free their slots, so it wakes the host for them, as a release would.
func (d *YCQ) h2dReady(p *queuePair) (bool, error) {
	holes := p.h2d.HolesPassed()
	_, ready, err := p.h2d.Peek()
	if err == nil && p.h2d.HolesPassed() != holes {
		err = d.wakeHost(p, false, true)
	}
	if err == nil && !ready && p.resizable {
		var named bool
		if named, err = p.h2d.Named(); named {
			ready, err = p.h2d.Drained()
		}
	}
	return ready, err
}

// resizeStep runs before each batch of a resizable pair: it takes up a
// RESIZE the host wrote (RESIZE_ACK), and while the device-to-host queue
// is not yet in the generation asked for, looks at its link once.
func (d *YCQ) resizeStep(p *queuePair) error {
	if !d.opt.NoResizeAck {
		if r := d.qresize[p.q].Load(); r != p.acked {
			p.acked = r
			d.qresizeAck[p.q].Store(r)
		}
	}
	if p.acked == 0 || p.d2h.Generation() == p.acked {
		return nil
	}
	return d.followD2H(p)
}

// resizeWanted reports whether the host wrote a RESIZE the device has not
// taken up yet.
func (d *YCQ) resizeWanted(p *queuePair) bool {
	return p.resizable && !d.opt.NoResizeAck && d.qresize[p.q].Load() != p.acked
}

// pinned is what the device mapped for a generation it moves to.
type pinned struct {
	data     space
	releases []func()
}

// reach is the ring.Reach of a pair's side: it checks the next
// generation's size against what the device takes, and pins its metadata
// and data region (perm) where the host can pin, into into.
func (p *queuePair) reach(into *pinned, perm vfio.Perm) ring.Reach {
	return func(n ring.Next) (ring.Memory, error) {
		if n.Slots > ycqdev.MaxSlots {
			return nil, qerr(ycqdev.CodeBadConfig, uint64(n.Slots), "queue pair %d: a resize to %d slots: the device takes at most %d", p.q, n.Slots, ycqdev.MaxSlots)
		}
		geo := ring.Config{Slots: n.Slots, SlotSize: p.slotSize}
		meta := p.bar2
		if meta == nil {
			meta = p.pin(n.MetaAddr, uint64(geo.MetaSize()), vfio.DMARead|vfio.DMAWrite, &into.releases)
		} else if n.MetaAddr > ycqdev.BAR2Size || uint64(geo.MetaSize()) > ycqdev.BAR2Size-n.MetaAddr {
			return nil, errBAR2(n.MetaAddr)
		}
		into.data = p.pin(n.DataAddr, uint64(geo.DataSize()), perm, &into.releases)
		return meta, nil
	}
}

// followD2H moves the device-to-host side to the generation its link
// names, if any: the old one is sealed, its pins given back.
func (d *YCQ) followD2H(p *queuePair) error {
	var next pinned
	n, ok, err := p.d2h.Follow(p.reach(&next, vfio.DMAWrite))
	if err != nil || !ok {
		releaseAll(&next.releases)
		return err
	}
	releaseAll(&p.d2h.releases)
	p.d2h.data, p.d2h.dataAddr, p.d2h.releases = next.data, n.DataAddr, next.releases
	if n.Woke {
		d.raise(p.vector) // a host consumer slept on the generation left
	}
	d.generationNow(p)
	return nil
}

// followH2D moves the host-to-device side on once it has drained its
// generation, and reports whether it did.
func (d *YCQ) followH2D(p *queuePair) (bool, error) {
	// One load of the link line while no resize is named, and nothing
	// made for the move: step calls this whenever it finds the queue
	// empty, and the producer cursor Drained loads is the host's.
	if named, err := p.h2d.Named(); err != nil || !named {
		return false, err
	}
	if drained, err := p.h2d.Drained(); err != nil || !drained {
		return false, err
	}
	var next pinned
	n, ok, err := p.h2d.Follow(p.reach(&next, vfio.DMARead))
	if err != nil || !ok {
		releaseAll(&next.releases)
		return false, err
	}
	releaseAll(&p.h2d.releases)
	p.h2d.data, p.h2d.dataAddr, p.h2d.releases = next.data, n.DataAddr, next.releases
	d.generationNow(p)
	return true, nil
}

// generationNow shows in GENERATION the generation both queues of the
// pair are in, once they are in the same one.
func (d *YCQ) generationNow(p *queuePair) {
	if g := p.h2d.Generation(); g == p.d2h.Generation() {
		d.qgen[p.q].Store(g)
	}
}

// pollFor is how long an idle queue pair keeps looking before it sleeps: a
// doorbell costs the host a register write (a vfio-user round trip, or an
// exit to the hypervisor), so a device that polls a little first is rung
// far less often. Real devices do the same.
const pollFor = 100 * time.Microsecond

// ready reports whether pair p can go on: a request to take, or, when it
// stopped on a full device-to-host queue, a free slot there.
func (d *YCQ) ready(p *queuePair) (bool, error) {
	if d.resizeWanted(p) {
		return true, nil
	}
	if p.blocked {
		return p.d2h.Free()
	}
	return d.h2dReady(p)
}

// poll looks for work on every pair for up to pollFor and reports whether
// it found some.
func (d *YCQ) poll(run *runState, pairs []*queuePair) bool {
	deadline := time.Now().Add(pollFor)
	for i := 0; ; i++ {
		for _, p := range pairs {
			if ready, err := d.ready(p); ready || err != nil {
				return true // an error is step's to report
			}
		}
		if i%16 == 15 {
			select {
			case <-run.stop:
				return true
			default:
			}
			if time.Now().After(deadline) {
				return false
			}
		}
		ring.Spin(32)
	}
}

// waitLine is the side of p the device sleeps on: records on the
// host-to-device queue, or space on the device-to-host queue.
func (p *queuePair) waitLine() interface{ Sleeping(bool) error } {
	if p.blocked {
		return &p.d2h
	}
	return &p.h2d
}

// sleep registers the device as a sleeper on the wake line each pair waits
// on, looks at each once more, and waits for a doorbell of any of them.
// The host rings a pair's doorbell after it publishes (or releases) and
// then sees the device registered. On an error it says which pair.
func (d *YCQ) sleep(run *runState, bell chan struct{}, pairs []*queuePair) (*queuePair, error) {
	registered := 0
	defer func() {
		for _, p := range pairs[:registered] {
			p.waitLine().Sleeping(false)
		}
	}()
	for _, p := range pairs {
		if err := p.waitLine().Sleeping(true); err != nil {
			return p, err
		}
		registered++
	}
	// The registrations are release stores: fence them before the last
	// look, which the host's publish-fence-load pairs with.
	ring.Fence()
	for _, p := range pairs {
		if ready, err := d.ready(p); err != nil || ready {
			return p, err
		}
	}
	for _, p := range pairs {
		d.qstatus[p.q].Store(ycqdev.QStatusRunning | ycqdev.QStatusSleeping)
	}
	select {
	case <-bell:
		d.wakeups.Add(1)
	case <-run.stop:
	}
	for _, p := range pairs {
		d.qstatus[p.q].Store(ycqdev.QStatusRunning)
	}
	// Unregister from the last: pairs[:registered] stay the ones still
	// registered, for the deferred cleanup should one fail.
	for registered > 0 {
		p := pairs[registered-1]
		registered--
		if err := p.waitLine().Sleeping(false); err != nil {
			return p, err
		}
	}
	return nil, nil
}

// pairFailed stops the device on a queue pair's error. The goroutines of
// that run stop on their own; the next enable or reset waits for them.
func (d *YCQ) pairFailed(run *runState, p *queuePair, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run != run {
		return // stopped meanwhile; the error is moot
	}
	d.failLocked(uint32(p.q), err)
	d.run = nil
	d.stopped = append(d.stopped, run)
	close(run.stop)
}

// localSpace is memory the device reaches directly: its own BAR2 memory,
// by offset, or a pinned view of host memory, by IOVA (base is the IOVA of
// b[0]).
type localSpace struct {
	b    []byte
	base uint64
}

func newLocalSpace(b []byte) localSpace { return localSpace{b: b} }

// Slice returns [a, a+n) in place.
func (s localSpace) Slice(a uint64, n int) ([]byte, bool) {
	if a < s.base {
		return nil, false
	}
	a -= s.base
	if !s.check(a, n) {
		return nil, false
	}
	return s.b[a : a+uint64(n) : a+uint64(n)], true
}

func (s localSpace) check(a uint64, n int) bool {
	return a <= uint64(len(s.b)) && uint64(n) <= uint64(len(s.b))-a
}

func (s localSpace) word32(a uint64) (*atomic.Uint32, error) {
	if a%4 != 0 || a < s.base || !s.check(a-s.base, 4) {
		return nil, s.errAt(a)
	}
	return localWord32(s.b[a-s.base:][:4]), nil
}

func (s localSpace) word64(a uint64) (*atomic.Uint64, error) {
	if a%8 != 0 || a < s.base || !s.check(a-s.base, 8) {
		return nil, s.errAt(a)
	}
	return localWord64(s.b[a-s.base:][:8]), nil
}

func (s localSpace) errAt(a uint64) error {
	if s.base == 0 {
		return errBAR2(a)
	}
	return qerr(ycqdev.CodeDMAFault, a, "access at %#x outside the pinned host memory [%#x, +%#x) or misaligned", a, s.base, len(s.b))
}

func (s localSpace) Load32(a uint64) (uint32, error) {
	w, err := s.word32(a)
	if err != nil {
		return 0, err
	}
	return w.Load(), nil
}

// Store32 and Store64 are release stores, as Memory asks: a sequentially
// consistent one (a locked exchange) would wait for every earlier store to
// drain, on each publish and release. The device fences where the protocol
// needs a store ordered before a later load (wakeHost, sleep).
func (s localSpace) Store32(a uint64, v uint32) error {
	w, err := s.word32(a)
	if err == nil {
		ring.StoreRelease32(w, v)
	}
	return err
}

func (s localSpace) Load64(a uint64) (uint64, error) {
	w, err := s.word64(a)
	if err != nil {
		return 0, err
	}
	return w.Load(), nil
}

func (s localSpace) Store64(a uint64, v uint64) error {
	w, err := s.word64(a)
	if err == nil {
		ring.StoreRelease64(w, v)
	}
	return err
}

func (s localSpace) Read(a uint64, b []byte) error {
	m, ok := s.Slice(a, len(b))
	if !ok {
		return s.errAt(a)
	}
	copy(b, m)
	return nil
}

func (s localSpace) Write(a uint64, b []byte) error {
	m, ok := s.Slice(a, len(b))
	if !ok {
		return s.errAt(a)
	}
	copy(m, b)
	return nil
}

func errBAR2(a uint64) error {
	return qerr(ycqdev.CodeBadConfig, a, "BAR2 access at offset %#x: outside the %d-byte BAR2 or misaligned", a, ycqdev.BAR2Size)
}

// Prefetch starts loading the first line of each of n blocks of stride
// bytes from a (ring.Prefetcher); a range outside the view is left out.
func (s localSpace) Prefetch(a uint64, n, stride int, write bool) {
	if a < s.base || a-s.base >= uint64(len(s.b)) {
		return
	}
	b := s.b[a-s.base:]
	if write {
		ring.PrefetchWrite(b, n, stride)
	} else {
		ring.PrefetchRead(b, n, stride)
	}
}

// prefetch starts loading the first lines of requests [off, off+n) from
// the consumer's position, and, to own, of the response slots they go to,
// ahead of their use, as a DPDK burst does (step asks for the batch's
// descriptors once, at its start). Each miss is a trip to the
// host's CPU; started together they overlap, one after another they add
// up (a trip costs several times as much when the CPUs are far apart).
func (p *queuePair) prefetch(off, n int) {
	prefetchSlots(p.h2d.data, p.h2d.dataAddr, p.h2d.Pos()+uint64(off), p.h2d.Cap(), p.slotSize, n, false)
	prefetchSlots(p.d2h.data, p.d2h.dataAddr, p.d2h.Pos()+uint64(off), p.d2h.Cap(), p.slotSize, n, true)
}

// prefetchAhead is how many requests a step's prefetch runs ahead of the
// one it handles: it asks for two groups of this many at its start (with
// the whole batch's descriptors), then for the next group each time it
// finishes one.
const prefetchAhead = 8

// prefetchSlots prefetches the first line of the n slots from position
// pos of a queue of slots slots of size bytes whose data starts at base,
// where s reaches it directly (ring.PrefetchSlots).
func prefetchSlots(s space, base, pos uint64, slots, size, n int, write bool) {
	ls, ok := s.(localSpace) // the one space that can: a concrete check is cheap
	if !ok {
		return
	}
	if data, ok := ls.Slice(base, slots*size); ok {
		ring.PrefetchSlots(data, pos, size, n, write)
	}
}
