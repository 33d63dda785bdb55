package hostdriver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// A resizable pair (Config.Resizable) is two ring.Resizable queues whose
// generations the host makes and the device follows (ycqdev/REGISTERS.md,
// "Resizing a queue pair"). Both queues of a pair are resized together, so
// their generations carry the same number and live in one DMA region each
// (the first generation in the driver's own mapping).
//
// Memory ownership: a generation's region is given back only under the
// write lock of pairResize.mu, after ring.Resizable.Retire dropped both of
// its queues. Every call that touches a queue's shared memory (reserve,
// publish, release, the wake lines, the statistics) holds the read lock
// for that call only; a goroutine asleep holds no lock, and takes it again
// to unregister from the wake line it slept on, which it skips if that
// generation was retired meanwhile (dead).

// pairResize is a resizable pair's generations.
type pairResize struct {
	mu       sync.RWMutex
	h2d, d2h *ring.Resizable
	gens     []*generation            // live, oldest first; under mu
	dead     map[*ring.Queue]struct{} // queues of retired generations, for sleepers; under mu
	// Totals of retired generations (positions, holes, responses), so that
	// positions count on across generations; under mu.
	h2dBase, h2dSkipped, d2hBase uint64

	started, resizes, rolledBack, failed atomic.Uint64
	draining                             atomic.Int64 // nanoseconds in drain, every resize's
	statsMu                              sync.Mutex
	took                                 []time.Duration // each completed resize, from its start to the old generation given back
}

// generation is one generation of a pair's two queues and their memory.
type generation struct {
	gen      uint32
	slots    int
	h2d, d2h *ring.Queue
	regs     queueRegs   // its addresses, as the queue registers give them
	mem      *dma.Region // nil for the first, which lives in the driver's mapping
	iova     uint64
	retired  int // how many of its two queues Retire dropped
}

// startResizable makes the pair's first generation the start of two
// resizable queues.
func (p *Pair) startResizable() error {
	h2d, err := ring.NewResizableOn(p.h2d)
	if err != nil {
		return err
	}
	d2h, err := ring.NewResizableOn(p.d2h)
	if err != nil {
		return err
	}
	rz := &pairResize{h2d: h2d, d2h: d2h, dead: map[*ring.Queue]struct{}{}}
	rz.gens = []*generation{{gen: 1, slots: p.d.cfg.Slots, h2d: p.h2d, d2h: p.d2h, regs: p.regs}}
	// A seal or a link can leave goroutines asleep on a generation they
	// are leaving: wake them all (they look again, and sleep on the next).
	h2d.OnSeal(func(*ring.Queue) { p.interrupt() })
	d2h.OnSeal(func(*ring.Queue) { p.interrupt() })
	p.rz = rz
	return nil
}

// Sentinels of Resize.
var (
	// ErrResizeTimeout: the device did not acknowledge or follow a resize,
	// or the old generation did not drain, before the deadline.
	ErrResizeTimeout = errors.New("hostdriver: resize not followed in time")
	// ErrNotResizable: the driver was opened without Config.Resizable.
	ErrNotResizable = errors.New("hostdriver: queues not resizable")
)

// ResizeError is a resize that did not complete: which pair, the
// generation it was making, at which step it stopped, and whether it was
// rolled back (nothing named, the pair in its generation as before) or
// left for the next Resize to finish (the device may still follow).
type ResizeError struct {
	Pair       int
	Generation uint32
	Step       string // "acknowledge", "name", "follow" or "drain"
	RolledBack bool
	Err        error
}

func (e *ResizeError) Error() string {
	state := "left to finish"
	if e.RolledBack {
		state = "rolled back"
	}
	return fmt.Sprintf("hostdriver: pair %d: resize to generation %d: %s: %v (%s)", e.Pair, e.Generation, e.Step, e.Err, state)
}

func (e *ResizeError) Unwrap() error { return e.Err }

// ResizeStats count a pair's resizes.
type ResizeStats struct {
	Generation uint32          // the newest generation
	Slots      int             // its slot count
	Live       int             // generations not yet given back (1 outside Resize)
	Started    uint64          // resizes begun: a generation made and offered to the device
	Resizes    uint64          // resizes completed
	RolledBack uint64          // resizes the device did not acknowledge, undone
	Failed     uint64          // resizes that stopped after naming the generation
	Draining   time.Duration   // time spent waiting for old generations to drain, all resizes
	Took       []time.Duration // how long each completed resize took, oldest first
}

// ResizeStats reads the pair's resize counters; zero for a pair that is
// not resizable.
func (p *Pair) ResizeStats() ResizeStats {
	rz := p.rz
	if rz == nil {
		return ResizeStats{}
	}
	rz.mu.RLock()
	last := rz.gens[len(rz.gens)-1]
	st := ResizeStats{Generation: last.gen, Slots: last.slots, Live: len(rz.gens),
		Started: rz.started.Load(), Resizes: rz.resizes.Load(), RolledBack: rz.rolledBack.Load(),
		Failed: rz.failed.Load(), Draining: time.Duration(rz.draining.Load())}
	rz.mu.RUnlock()
	rz.statsMu.Lock()
	st.Took = slices.Clone(rz.took)
	rz.statsMu.Unlock()
	return st
}

// Resize changes the slot count of both queues of the pair to slots while
// requests and responses flow: it makes the next generation in new DMA
// memory, asks the device to follow (RESIZE) and waits for its
// acknowledgement, names the generation in both queues' link lines, waits
// for the device to move both queues there (GENERATION), then for the old
// generation to drain (every response taken and released, the device gone
// from it), and gives the old memory back. So outside Resize a pair has one
// generation. Responses must go on being taken meanwhile (the device moves
// its request queue on once it answered what was in it).
//
// A device that does not acknowledge before Config.ResizeDeadline (or ctx)
// leaves the pair as it was: nothing was named, the memory is given back,
// and Resize returns a *ResizeError with RolledBack (ErrResizeTimeout).
// Past that point a deadline leaves the generation named; the next Resize
// finishes that one first. Resize excludes Reset and Recover.
func (p *Pair) Resize(ctx context.Context, slots int) error {
	d, rz := p.d, p.rz
	if rz == nil {
		return fmt.Errorf("%w: pair %d", ErrNotResizable, p.index)
	}
	if err := (ring.Config{Slots: slots, SlotSize: d.cfg.SlotSize}).Validate(); err != nil || slots > ycqdev.MaxSlots {
		return fmt.Errorf("%w: resize to %d slots: a power of two up to %d", ErrConfig, slots, ycqdev.MaxSlots)
	}
	d.ctl.Lock()
	defer d.ctl.Unlock()
	if err := d.Err(); err != nil {
		return err
	}
	defer p.noteResizes() // whatever came of it
	start := time.Now()
	rz.mu.RLock()
	cur := rz.gens[len(rz.gens)-1]
	unfinished := len(rz.gens) > 1
	rz.mu.RUnlock()
	if unfinished {
		// An earlier resize stopped after it named cur: finish it.
		if err := p.finish(ctx, cur, time.Time{}); err != nil {
			return err
		}
	}
	g, err := p.newGeneration(nextGen(cur.gen), slots)
	if err != nil {
		return err
	}
	rz.started.Add(1)
	rollback := func(step string, err error) error {
		// Disarm the device; nothing was named, so it has nothing to follow.
		if werr := d.reg32(ycqdev.QueueReg(p.index, ycqdev.RegQResize), cur.gen); werr != nil {
			err = errors.Join(err, werr)
		}
		err = errors.Join(err, d.freeGeneration(g))
		rz.rolledBack.Add(1)
		return &ResizeError{Pair: p.index, Generation: g.gen, Step: step, RolledBack: true, Err: err}
	}
	// 1. Ask the device, and wait until it says it follows.
	if err := d.reg32(ycqdev.QueueReg(p.index, ycqdev.RegQResize), g.gen); err != nil {
		return rollback("acknowledge", err)
	}
	if err := p.awaitReg(ctx, ycqdev.RegQResizeAck, g.gen); err != nil {
		return rollback("acknowledge", err)
	}
	// 2. Name it: the device-to-host queue first (its single producer,
	// the device, seals it when it moves), then the host-to-device queue
	// (which seals it: the host's producers move at once).
	if err := rz.d2h.ResizeTo(g.d2h, g.regs.d2hMeta, g.regs.d2hData); err != nil {
		return rollback("name", err)
	}
	rz.mu.Lock()
	rz.gens = append(rz.gens, g)
	rz.mu.Unlock()
	if err := rz.h2d.ResizeTo(g.h2d, g.regs.h2dMeta, g.regs.h2dData); err != nil {
		// The device may follow the one named; the pair cannot go on.
		rz.failed.Add(1)
		err = &ResizeError{Pair: p.index, Generation: g.gen, Step: "name", Err: err}
		d.fail(d.withIncomplete(err))
		return err
	}
	return p.finish(ctx, g, start)
}

// finish waits for the device to follow to generation g, which is named,
// and for every older generation to drain, and gives those back. start
// is when the resize began, for its duration (zero: an earlier resize's
// finish, not counted).
func (p *Pair) finish(ctx context.Context, g *generation, start time.Time) error {
	d, rz := p.d, p.rz
	// The device may sleep: wake it to look at the links.
	if err := d.reg32(ycqdev.QueueReg(p.index, ycqdev.RegQDoorbell), 1); err != nil {
		return err
	}
	if err := p.awaitReg(ctx, ycqdev.RegQGeneration, g.gen); err != nil {
		rz.failed.Add(1)
		return &ResizeError{Pair: p.index, Generation: g.gen, Step: "follow", Err: err}
	}
	// Goroutines asleep on the generation the device left move on.
	p.interrupt()
	drainStart := time.Now()
	err := p.drain(ctx)
	rz.draining.Add(int64(time.Since(drainStart)))
	if err != nil {
		rz.failed.Add(1)
		return &ResizeError{Pair: p.index, Generation: g.gen, Step: "drain", Err: err}
	}
	// A reset from now on brings the device up at g.
	p.regs = g.regs
	if !start.IsZero() {
		rz.resizes.Add(1)
		rz.statsMu.Lock()
		rz.took = append(rz.took, time.Since(start))
		rz.statsMu.Unlock()
	}
	d.log.Debug("pair resized", "pair", p.index, "generation", g.gen, "slots", g.slots)
	return nil
}

// drain retires the older generations once every agent is done with
// them, waiting for that with the deadline, and gives their memory back.
func (p *Pair) drain(ctx context.Context) error {
	d := p.d
	deadline := time.Now().Add(d.cfg.ResizeDeadline)
	for i := 0; ; i++ {
		done, err := p.retire()
		if err != nil || done {
			return err
		}
		if err := d.Err(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return ErrResizeTimeout
		}
		p.interrupt() // a consumer asleep on the old generation takes its last responses
		time.Sleep(min(time.Duration(i+1)*20*time.Microsecond, time.Millisecond))
	}
}

// retire gives back every generation both of whose queues Retire drops,
// and reports whether one is left.
func (p *Pair) retire() (bool, error) {
	rz := p.rz
	var free []*generation
	rz.mu.Lock()
	for _, r := range []*ring.Resizable{rz.h2d, rz.d2h} {
		for _, q := range r.Retire() {
			rz.dead[q] = struct{}{}
			for _, g := range rz.gens {
				if g.h2d == q {
					st := q.Stats()
					rz.h2dBase += st.ProducerCursor
					rz.h2dSkipped += st.Skipped
					g.retired++
				}
				if g.d2h == q {
					rz.d2hBase += q.Stats().ProducerCursor
					g.retired++
				}
			}
		}
	}
	for len(rz.gens) > 1 && rz.gens[0].retired == 2 {
		free = append(free, rz.gens[0])
		rz.gens = rz.gens[1:]
	}
	done := len(rz.gens) == 1
	rz.mu.Unlock()
	var errs []error
	for _, g := range free {
		errs = append(errs, p.d.freeGeneration(g))
	}
	return done, errors.Join(errs...)
}

// awaitReg waits until the pair's register reg reads want, with the
// resize deadline.
func (p *Pair) awaitReg(ctx context.Context, reg uint64, want uint32) error {
	d := p.d
	deadline := time.Now().Add(d.cfg.ResizeDeadline)
	for i := 0; ; i++ {
		v, err := vfio.Read32(d.dev, vfio.BAR0, ycqdev.QueueReg(p.index, reg))
		if err != nil {
			return gone(err)
		}
		if v == want {
			return nil
		}
		if i%16 == 15 {
			// A device reset from elsewhere clears the register: notice
			// it rather than wait for the deadline.
			if st, err := d.status(); err != nil || st&ycqdev.StatusEnabled == 0 {
				d.checkHealth()
			}
		}
		if err := d.Err(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: register %#x reads %d, want %d after %v", ErrResizeTimeout, reg, v, want, d.cfg.ResizeDeadline)
		}
		time.Sleep(min(time.Duration(i+1)*20*time.Microsecond, time.Millisecond))
	}
}

// nextGen is the generation number after gen: counting up, never 0.
func nextGen(gen uint32) uint32 {
	if gen == 1<<32-1 {
		return 1
	}
	return gen + 1
}

// newGeneration allocates, maps and formats generation gen of the pair's
// two queues, slots slots each, in one DMA region of its own.
func (p *Pair) newGeneration(gen uint32, slots int) (_ *generation, err error) {
	d := p.d
	meta := roundUp(uint64(ring.MetaSize(slots)), dma.PageSize)
	data := roundUp(uint64(slots*d.cfg.SlotSize), dma.PageSize)
	size := 2*meta + 2*data
	g := &generation{gen: gen, slots: slots}
	if g.mem, err = dma.Memfd(fmt.Sprintf("ycq-pair%d-gen%d", p.index, gen), int(size), dma.Options{Huge: d.cfg.Huge}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.freeGeneration(g))
		}
	}()
	if g.iova, err = d.alloc.Alloc(size); err != nil {
		return nil, fmt.Errorf("IOVA for %d bytes: %w", size, err)
	}
	if err := d.dev.MapDMA(vfio.IOVA(g.iova), g.mem, 0, size, vfio.DMARead|vfio.DMAWrite); err != nil {
		g.iova, err = 0, errors.Join(d.alloc.Free(g.iova), err)
		return nil, fmt.Errorf("map %d bytes of DMA memory at IOVA %#x: %w", size, g.iova, gone(err))
	}
	b := g.mem.Bytes()
	h2dCfg, d2hCfg := d.queueConfigs(slots, gen)
	if g.h2d, err = ring.Format(b[:meta], b[2*meta:][:data], h2dCfg); err != nil {
		return nil, err
	}
	if g.d2h, err = ring.Format(b[meta:][:meta], b[2*meta+data:][:data], d2hCfg); err != nil {
		return nil, err
	}
	g.regs = queueRegs{h2dMeta: g.iova, d2hMeta: g.iova + meta, h2dData: g.iova + 2*meta, d2hData: g.iova + 2*meta + data, slots: uint32(slots)}
	return g, nil
}

// freeGeneration unmaps and closes a generation's own memory.
func (d *Driver) freeGeneration(g *generation) error {
	if g.mem == nil {
		return nil // the first generation: part of the driver's mapping
	}
	var errs []error
	if g.iova != 0 {
		if err := d.dev.UnmapDMA(vfio.IOVA(g.iova), uint64(g.mem.Size())); err != nil && !errors.Is(gone(err), ErrGone) {
			errs = append(errs, err)
		}
		errs = append(errs, d.alloc.Free(g.iova))
		g.iova = 0
	}
	errs = append(errs, g.mem.Close())
	g.mem = nil
	return errors.Join(errs...)
}

// freeGenerations gives back every generation's own memory, at Close.
func (p *Pair) freeGenerations() error {
	if p.rz == nil {
		return nil
	}
	p.rz.mu.Lock()
	defer p.rz.mu.Unlock()
	var errs []error
	for _, g := range p.rz.gens {
		errs = append(errs, p.d.freeGeneration(g))
	}
	return errors.Join(errs...)
}

// live reports whether q is not a retired generation's queue; p.rlock
// held.
func (p *Pair) live(q *ring.Queue) bool {
	if p.rz == nil {
		return true
	}
	_, dead := p.rz.dead[q]
	return !dead
}
