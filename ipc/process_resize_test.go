package ipc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ring/wait"
)

// The tests in this file share one resizable queue (ring.NewResizable's
// format) among processes, resized by a process that neither produces nor
// consumes. Each process has its own ring.Resizable over its own mappings
// (an rzView), and this is how every process comes to hold every
// generation before it is named, as the resize protocol asks (LAYOUT.md,
// "Resizing", step 1):
//
//   - The first generation is in two memfds each process inherits as
//     descriptors 4 and 5 (FIRST_GEN and FIRST_SLOTS say which); descriptor
//     3 is the control region (rzControl), one memfd they all map.
//   - The resizer makes generation N in two /dev/shm files under temporary
//     names, formats it, renames the data file and then the metadata file
//     to BASE.gN.data and BASE.gN.meta (so a metadata name that exists is a
//     formatted queue), and stores N in the control region's offered word.
//   - Every other process runs a watcher goroutine: once offered reaches
//     the generation after the last it took, it opens the two names,
//     attaches, gives the queue to its Resizable (Add) and stores N in its
//     ack word.
//   - Once every participant's ack word says N, or that it left (rzLeft),
//     the resizer removes both names (the mappings stay) and only then
//     names N in the link line (ResizeTo). A name lives only from its
//     creation to the last participant's open; t.Cleanup removes whatever a
//     failed run left under BASE.
//   - Each process retires generations (Resizable.Retire) from the
//     goroutine that plays its part, between its batches, checks each
//     (Queue.Check) and unmaps it; the memory goes with the last mapping.

// The control region: words of 8 bytes.
const (
	rzOffered  = 0 // the newest generation whose names are in place
	rzConsumed = 1 // records consumers took and released, in all
	rzHold     = 2 // set: the producer of "rz-hold" may reserve its last run
	rzAcks     = 8 // rzAcks+i: the newest generation participant i took, or rzLeft
	rzMaxParts = 16
	rzCtlSize  = dma.PageSize
	rzLeft     = ^uint64(0) // an ack word's value once its participant is gone
	rzSlotSize = 64
	// rzPoll is how long a process that waits for a word of the control
	// region sleeps between looks.
	rzPoll = 200 * time.Microsecond
)

// rzFormat is the records' layout: producer, sequence number, checksum.
var rzFormat = record.Format{Sum: true}

type rzControl struct{ b []byte }

func (c rzControl) ack(i int) *atomic.Uint64 { return c.word(rzAcks + i) }

// rzView is one process's Resizable over its own mappings of the
// generations, with the regions of each until it is retired.
type rzView struct {
	base   string
	single bool // SingleProducer
	r      *ring.Resizable
	w      *wait.Resizable // made first: its OnSeal wakes the sleepers of a generation sealed here

	mu      sync.Mutex
	regions map[uint32][2]*dma.Region
	queues  map[uint32]*ring.Queue
	added   int // generations taken from the watcher
	retired int // generations retired and unmapped
}

func newRzView(base string, q *ring.Queue, regs [2]*dma.Region) (*rzView, error) {
	r, err := ring.NewResizableOn(q)
	if err != nil {
		return nil, err
	}
	v := &rzView{base: base, single: q.Config().SingleProducer, r: r,
		w:       wait.NewResizable(r, &wait.Options{Spin: 16}),
		regions: map[uint32][2]*dma.Region{}, queues: map[uint32]*ring.Queue{}}
	v.keep(q, regs)
	return v, nil
}

func (v *rzView) keep(q *ring.Queue, regs [2]*dma.Region) {
	v.mu.Lock()
	defer v.mu.Unlock()
	gen := q.Config().Generation
	v.regions[gen], v.queues[gen] = regs, q
}

// newest is the number of the newest generation this view holds.
func (v *rzView) newest() uint32 {
	v.mu.Lock()
	defer v.mu.Unlock()
	var n uint32
	for gen := range v.regions {
		n = max(n, gen)
	}
	return n
}

// retire retires what every agent is done with, checks it and unmaps it.
// Only the goroutine that plays the process's part calls it, between its
// calls on the queue, as Retire requires.
func (v *rzView) retire() error {
	var errs []error
	for _, q := range v.r.Retire() {
		gen := q.Config().Generation
		if err := q.Check(); err != nil {
			errs = append(errs, fmt.Errorf("retired generation %d: %w", gen, err))
		}
		v.mu.Lock()
		regs, ok := v.regions[gen]
		delete(v.regions, gen)
		delete(v.queues, gen)
		v.retired++
		v.mu.Unlock()
		if !ok {
			errs = append(errs, fmt.Errorf("retired generation %d, which this process does not hold", gen))
			continue
		}
		errs = append(errs, regs[0].Close(), regs[1].Close())
	}
	return errors.Join(errs...)
}

// close unmaps every generation still held.
func (v *rzView) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for gen, regs := range v.regions {
		regs[0].Close()
		regs[1].Close()
		delete(v.regions, gen)
	}
}

func rzName(base string, gen uint32, part string) string {
	return fmt.Sprintf("%s.g%d.%s", base, gen, part)
}

func rzPath(name string) string { return filepath.Join(dma.DefaultShmDir, name) }

// rzRemove removes generation gen's names.
func rzRemove(base string, gen uint32) error {
	var errs []error
	for _, part := range []string{"meta", "data"} {
		if err := os.Remove(rzPath(rzName(base, gen, part))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rzCreate makes generation cfg.Generation under base's names: in files
// under temporary names, formatted, then renamed, the metadata last.
func rzCreate(base string, cfg ring.Config) (q *ring.Queue, regs [2]*dma.Region, err error) {
	parts := [2]string{"meta", "data"}
	sizes := [2]int{cfg.MetaSize(), cfg.DataSize()}
	fail := func(err error) (*ring.Queue, [2]*dma.Region, error) {
		for i, part := range parts {
			if regs[i] != nil {
				regs[i].Close()
			}
			os.Remove(rzPath(rzName(base+".tmp", cfg.Generation, part)))
		}
		rzRemove(base, cfg.Generation)
		return nil, [2]*dma.Region{}, err
	}
	for i, part := range parts {
		if regs[i], err = dma.CreateShm(rzName(base+".tmp", cfg.Generation, part), sizes[i], dma.Options{}); err != nil {
			return fail(err)
		}
	}
	if q, err = ring.Format(regs[0].Bytes(), regs[1].Bytes(), cfg); err != nil {
		return fail(err)
	}
	for _, i := range []int{1, 0} {
		if err := os.Rename(rzPath(rzName(base+".tmp", cfg.Generation, parts[i])), rzPath(rzName(base, cfg.Generation, parts[i]))); err != nil {
			return fail(err)
		}
	}
	return q, regs, nil
}

// rzOpen maps and attaches generation gen by its names.
func rzOpen(base string, gen uint32) (*ring.Queue, [2]*dma.Region, error) {
	var regs [2]*dma.Region
	var err error
	if regs[0], err = dma.OpenShm(rzName(base, gen, "meta"), dma.Options{}); err != nil {
		return nil, regs, err
	}
	if regs[1], err = dma.OpenShm(rzName(base, gen, "data"), dma.Options{}); err != nil {
		regs[0].Close()
		return nil, [2]*dma.Region{}, err
	}
	q, err := ring.Attach(regs[0].Bytes(), regs[1].Bytes())
	if err == nil && q.Config().Generation != gen {
		err = fmt.Errorf("%s holds generation %d", rzName(base, gen, "meta"), q.Config().Generation)
	}
	if err != nil {
		regs[0].Close()
		regs[1].Close()
		return nil, [2]*dma.Region{}, err
	}
	return q, regs, nil
}

// watch takes every generation the resizer offers, in order, and acks
// each as participant index, until ctx ends. With retire it also retires
// (for a process that plays no part on the queue but watching).
func (v *rzView) watch(ctx context.Context, ctl rzControl, index int, retire bool) error {
	next := v.newest() + 1
	var q *ring.Queue // opened, not yet added
	var regs [2]*dma.Region
	defer func() {
		if q != nil {
			regs[0].Close()
			regs[1].Close()
		}
	}()
	for ctx.Err() == nil {
		if retire {
			if err := v.retire(); err != nil {
				return err
			}
		}
		if q == nil {
			if ctl.word(rzOffered).Load() < uint64(next) {
				time.Sleep(rzPoll)
				continue
			}
			var err error
			if q, regs, err = rzOpen(v.base, next); err != nil {
				return err
			}
		}
		v.mu.Lock()
		err := v.r.Add(q)
		if err == nil {
			v.regions[next], v.queues[next] = regs, q
			v.added++
		}
		v.mu.Unlock()
		if errors.Is(err, ring.ErrResizing) {
			// This process's agents are that many generations behind;
			// they catch up as they go, and the resizer waits.
			time.Sleep(rzPoll)
			continue
		}
		if err != nil {
			return fmt.Errorf("add generation %d: %w", next, err)
		}
		q = nil
		ctl.ack(index).Store(uint64(next))
		next++
	}
	return nil
}

// startWatch runs watch in a goroutine. failed reports the error it
// stopped with, if it stopped; stop ends it and returns its error.
func (v *rzView) startWatch(ctx context.Context, ctl rzControl, index int, retire bool) (failed, stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = v.watch(ctx, ctl, index, retire)
	}()
	failed = func() error {
		select {
		case <-done:
			if err == nil && ctx.Err() == nil {
				return errors.New("the watcher stopped")
			}
			return err
		default:
			return nil
		}
	}
	stop = func() error {
		cancel()
		<-done
		return err
	}
	return failed, stop
}

// resize makes the queue slots slots, as the agent that resizes: it
// offers the next generation, waits until participants 0 to parts-1 have
// taken it (or left), removes its names and names it. ErrResizing, before
// anything is made, if a single producer has not followed the last resize.
func (v *rzView) resize(ctx context.Context, ctl rzControl, parts, slots int) error {
	if v.r.ResizePending() {
		return ring.ErrResizing
	}
	cfg := ring.Config{Slots: slots, SlotSize: rzSlotSize, SingleProducer: v.single, Resizable: true, Generation: v.r.NextGeneration()}
	gen := cfg.Generation
	q, regs, err := rzCreate(v.base, cfg)
	if err != nil {
		return err
	}
	ctl.word(rzOffered).Store(uint64(gen))
	for i := range parts {
		for ctl.ack(i).Load() < uint64(gen) {
			if ctx.Err() != nil {
				regs[0].Close()
				regs[1].Close()
				return errors.Join(ctx.Err(), rzRemove(v.base, gen))
			}
			time.Sleep(rzPoll)
		}
	}
	if err := rzRemove(v.base, gen); err != nil {
		return err
	}
	if err := v.r.ResizeTo(q, 0, 0); err != nil {
		regs[0].Close()
		regs[1].Close()
		return err
	}
	v.keep(q, regs)
	return v.retire()
}

// rzHelperView is a helper process's view: the control region at 3, its
// first generation at 4 and 5.
func rzHelperView() (*rzView, rzControl, error) {
	ctlReg, err := dma.Map(3, rzCtlSize)
	if err != nil {
		return nil, rzControl{}, err
	}
	cfg := ring.Config{Slots: envInt("FIRST_SLOTS"), SlotSize: rzSlotSize}
	var regs [2]*dma.Region
	if regs[0], err = dma.Map(4, cfg.MetaSize()); err != nil {
		return nil, rzControl{}, err
	}
	if regs[1], err = dma.Map(5, cfg.DataSize()); err != nil {
		return nil, rzControl{}, err
	}
	q, err := ring.Attach(regs[0].Bytes(), regs[1].Bytes())
	if err != nil {
		return nil, rzControl{}, err
	}
	if gen := q.Config().Generation; gen != uint32(envInt("FIRST_GEN")) {
		return nil, rzControl{}, fmt.Errorf("descriptors 4 and 5 hold generation %d", gen)
	}
	v, err := newRzView(os.Getenv("BASE"), q, regs)
	return v, rzControl{ctlReg.Bytes()}, err
}

// runResizeHelper plays the parts of this file's tests (runHelper's "rz-"
// modes).
func runResizeHelper(mode string) error {
	ctx := testenv.StdinClosed()
	v, ctl, err := rzHelperView()
	if err != nil {
		return err
	}
	defer v.close()
	if mode == "rz-resize" {
		return rzResizeLoop(ctx, v, ctl)
	}
	index := envInt("INDEX")
	failed, stop := v.startWatch(ctx, ctl, index, false)
	switch mode {
	case "rz-produce":
		err = rzProduce(ctx, v, ctl, failed, false)
	case "rz-hold":
		err = rzProduce(ctx, v, ctl, failed, true)
	case "rz-consume":
		err = rzConsume(ctx, v, ctl, failed)
	default:
		err = fmt.Errorf("unknown helper %q", mode)
	}
	err = errors.Join(err, stop())
	// Gone: the resizer waits for this process no more. After the watcher
	// stopped, which would store over it.
	ctl.ack(index).Store(rzLeft)
	return err
}

// rzResizeLoop is "rz-resize": RESIZES resizes to random sizes, resize i
// once consumers have taken i/(RESIZES+1) of TOTAL records, so that they
// spread over the run, each waiting for participants 0 to PARTS-1.
func rzResizeLoop(ctx context.Context, v *rzView, ctl rzControl) error {
	n, total, parts := envInt("RESIZES"), envInt("TOTAL"), envInt("PARTS")
	rng := rand.New(rand.NewPCG(uint64(envInt("SEED")), 5))
	for i := range n {
		for ctl.word(rzConsumed).Load() < uint64(i*total/(n+1)) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(rzPoll)
		}
		slots := 1 << (1 + rng.IntN(10))
		if err := v.resize(ctx, ctl, parts, slots); err != nil {
			return fmt.Errorf("resize %d to %d slots: %w", i, slots, err)
		}
	}
	fmt.Println("resized", n, "retired", v.retired)
	return nil
}

// rzProduce is "rz-produce": N records of producer ID, in runs of 1 to 8,
// each run's records published in a random order and the rest of it
// aborted now and then. With LINGER=1 it then keeps following resizes
// (a single producer seals the generation it leaves only when it next
// reserves) until stdin closes. With hold ("rz-hold"), it follows resizes
// until the control region's hold word is set, then reserves a last run of
// 4 slots, publishes records N and N+1 in its slots 0 and 2, says
// "holding N+2" and waits, holding slots 1 and 3, to be killed.
func rzProduce(ctx context.Context, v *rzView, ctl rzControl, failed func() error, hold bool) error {
	id, n := uint32(envInt("ID")), uint64(envInt("N"))
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	p := v.w.Producer()
	put := func(w *wait.WriteRun, i int, seq uint64) {
		rzFormat.Fill(w.Slot(i), record.Header{Seq: seq, Producer: id})
	}
	for seq := uint64(0); seq < n; {
		if err := failed(); err != nil {
			return err
		}
		w, err := p.ReserveUpTo(ctx, 1+rng.IntN(8))
		if err != nil {
			return fmt.Errorf("produce record %d: %w", seq, err)
		}
		k := 0
		for range w.Len() {
			if seq+uint64(k) == n || rng.IntN(16) == 0 {
				break // the rest of the run is aborted below
			}
			put(&w, k, seq+uint64(k))
			k++
		}
		for _, i := range rng.Perm(k) {
			if err := w.Publish(i, rzSlotSize); err != nil {
				return err
			}
		}
		if err := w.AbortAll(); err != nil {
			return err
		}
		seq += uint64(k)
		if err := v.retire(); err != nil {
			return err
		}
	}
	linger := func(until func() bool) error {
		for !until() {
			if err := failed(); err != nil {
				return err
			}
			if w, err := v.r.Producer().ReserveUpTo(1); err == nil {
				if err := w.AbortAll(); err != nil {
					return err
				}
			} else if !errors.Is(err, ring.ErrFull) {
				return err
			}
			if err := v.retire(); err != nil {
				return err
			}
			time.Sleep(rzPoll)
		}
		return nil
	}
	if !hold {
		fmt.Println("produced", n)
		if os.Getenv("LINGER") == "1" {
			return linger(func() bool { return ctx.Err() != nil })
		}
		return nil
	}
	if err := linger(func() bool { return ctl.word(rzHold).Load() != 0 || ctx.Err() != nil }); err != nil {
		return err
	}
	w, err := p.Reserve(ctx, 4)
	if err != nil {
		return err
	}
	put(&w, 0, n)
	put(&w, 2, n+1)
	if err := errors.Join(w.Publish(0, rzSlotSize), w.Publish(2, rzSlotSize)); err != nil {
		return err
	}
	fmt.Println("holding", n+2)
	<-ctx.Done()
	return errors.New("stopped while holding slots: it was to be killed")
}

// rzConsume is "rz-consume": it consumes until stdin closes, then takes
// what is left without waiting, and writes a log entry (parseLog) for
// each record, its position the generation's number (from 0) times 2^40
// plus its position there. Runs of 1 to 8, released in a random order.
func rzConsume(ctx context.Context, v *rzView, ctl rzControl, failed func() error) error {
	rng := rand.New(rand.NewPCG(uint64(envInt("INDEX")), 11))
	c := v.w.Consumer()
	bw := bufio.NewWriter(os.Stdout)
	take := func(ctx context.Context) error {
		r, err := c.ReserveUpTo(ctx, 1+rng.IntN(8))
		if err != nil {
			return err
		}
		for i := range r.Len() {
			b, err := r.Slot(i)
			if err != nil {
				return err
			}
			if len(b) != rzSlotSize {
				return fmt.Errorf("a record of %d bytes, %d expected", len(b), rzSlotSize)
			}
			h, err := rzFormat.Check(b)
			if err != nil {
				return err
			}
			var e [logEntry]byte
			binary.LittleEndian.PutUint64(e[0:], r.Generation()<<40|r.Position(i))
			binary.LittleEndian.PutUint32(e[8:], h.Producer)
			binary.LittleEndian.PutUint64(e[12:], h.Seq)
			bw.Write(e[:])
		}
		for _, i := range rng.Perm(r.Len()) {
			if err := r.Release(i); err != nil {
				return err
			}
		}
		ctl.word(rzConsumed).Add(uint64(r.Len()))
		return v.retire()
	}
	for {
		if err := failed(); err != nil {
			return err
		}
		err := take(ctx)
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			return err
		}
	}
	for {
		err := take(stopped)
		if errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			return err
		}
	}
	return bw.Flush()
}

// rzSetup is a test's side of the queue: the names' base (removed at the
// end), the control region, and this process's view of the first
// generation, formatted from cfg in memfds, whose descriptors every helper
// gets.
type rzSetup struct {
	base  string
	ctl   rzControl
	v     *rzView
	files []*os.File // control, first generation's metadata and data
	env   []string
}

func newRzSetup(t *testing.T, cfg ring.Config) *rzSetup {
	t.Helper()
	s := &rzSetup{base: fmt.Sprintf("ycq-ipc-test.%d.%d", os.Getpid(), time.Now().UnixNano())}
	// Registered first, so it runs last: after every helper is killed.
	t.Cleanup(func() {
		left, _ := filepath.Glob(rzPath(s.base) + ".*")
		for _, f := range left {
			os.Remove(f)
		}
	})
	ctl, err := dma.Memfd("ycq-ipc-test.control", rzCtlSize, dma.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { ctl.Close() })
	s.ctl = rzControl{ctl.Bytes()}
	cfg.Resizable, cfg.Generation = true, 1
	var regs [2]*dma.Region
	regs[0], err = dma.Memfd("ycq-ipc-test.g1.meta", cfg.MetaSize(), dma.Options{})
	require.NoError(t, err)
	regs[1], err = dma.Memfd("ycq-ipc-test.g1.data", cfg.DataSize(), dma.Options{})
	require.NoError(t, err)
	q, err := ring.Format(regs[0].Bytes(), regs[1].Bytes(), cfg)
	require.NoError(t, err)
	s.v, err = newRzView(s.base, q, regs)
	require.NoError(t, err)
	t.Cleanup(s.v.close)
	s.files, err = dma.Files(ctl, regs[0], regs[1])
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, f := range s.files {
			f.Close()
		}
	})
	for i := range rzMaxParts {
		s.ctl.ack(i).Store(rzLeft)
	}
	s.env = []string{"BASE=" + s.base, "FIRST_GEN=1", fmt.Sprintf("FIRST_SLOTS=%d", cfg.Slots)}
	return s
}

// start starts a helper playing mode as participant index.
func (s *rzSetup) start(t *testing.T, mode string, index int, env ...string) *testenv.Child {
	t.Helper()
	s.ctl.ack(index).Store(1)
	return helpers.Start(t, mode, append(append(s.env, fmt.Sprintf("INDEX=%d", index)), env...), s.files...)
}

// names are the names under the base that exist now.
func (s *rzSetup) names() []string {
	left, _ := filepath.Glob(rzPath(s.base) + ".*")
	return left
}

// rzWaitTimeout bounds a phase of these tests: a guard against a hang,
// far beyond what a phase takes under the race detector on two CPUs.
const rzWaitTimeout = 5 * time.Minute

// waitRz polls cond until it holds; it fails t if a helper in running
// exits first, if failed reports an error, or after rzWaitTimeout.
func waitRz(t *testing.T, what string, running []*testenv.Child, failed func() error, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(rzWaitTimeout)
	for !cond() {
		for _, c := range running {
			if c.Exited() {
				t.Fatalf("waiting for %s: a helper exited (%v); it wrote %q", what, c.Wait(), c.Out.String())
			}
		}
		if failed != nil {
			require.NoError(t, failed(), what)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// consumed waits for the consumers to have taken n records in all, or
// more unless exact.
func (s *rzSetup) consumed(t *testing.T, n int, exact bool, running []*testenv.Child, failed func() error) {
	t.Helper()
	waitRz(t, fmt.Sprintf("%d records consumed", n), running, failed, func() bool {
		return s.ctl.word(rzConsumed).Load() >= uint64(n)
	})
	if exact {
		require.Equal(t, uint64(n), s.ctl.word(rzConsumed).Load(), "consumed")
	}
}

// generations counts the generations a log's records were consumed from.
func generations(log []record.Seen) int {
	gens := map[uint64]bool{}
	for _, e := range log {
		gens[e.Pos>>40] = true
	}
	return len(gens)
}

// stopConsumers stops the consumers and returns their logs, each
// non-empty.
func stopConsumers(t *testing.T, consumers []*testenv.Child) []record.Seen {
	t.Helper()
	var all []record.Seen
	for _, c := range consumers {
		c.Stop(t)
		b := []byte(c.Out.String())
		require.Zero(t, len(b)%logEntry)
		require.NotEmpty(t, b, "each consumer took some records")
		all = parseLog(all, b)
	}
	return all
}

// TestResizeStressAcrossProcesses: four producer processes and four consumer
// processes share one resizable queue, while a fifth process, the
// resizer, grows and shrinks it at random 200 times (40 with -short).
// Records carry (producer, sequence, checksum); every record is consumed
// once, each producer's in the order it reserved them, every generation
// is retired, checked and unmapped by every process, and no name is left
// in /dev/shm.
func TestResizeStressAcrossProcesses(t *testing.T) {
	per, resizes := 50_000, 200
	if testing.Short() {
		per, resizes = 5000, 40
	}
	const producers, consumers = 4, 4
	s := newRzSetup(t, ring.Config{Slots: 64, SlotSize: rzSlotSize})
	parts := producers + consumers + 1 // and this process, which watches
	self := parts - 1
	s.ctl.ack(self).Store(1)
	failed, stop := s.v.startWatch(context.Background(), s.ctl, self, true)
	t.Cleanup(func() { stop() }) // before the regions are unmapped, should the test end early
	var prods, cons []*testenv.Child
	for id := range producers {
		prods = append(prods, s.start(t, "rz-produce", id, fmt.Sprintf("ID=%d", id), fmt.Sprintf("N=%d", per)))
	}
	for c := range consumers {
		cons = append(cons, s.start(t, "rz-consume", producers+c))
	}
	resizer := helpers.Start(t, "rz-resize", append(s.env, fmt.Sprintf("PARTS=%d", parts), fmt.Sprintf("RESIZES=%d", resizes),
		fmt.Sprintf("TOTAL=%d", producers*per), "SEED=3"), s.files...)

	waitRz(t, "the resizer", cons, failed, resizer.Exited)
	require.NoError(t, resizer.Wait(), resizer.Out.String())
	require.Contains(t, resizer.Out.String(), fmt.Sprintf("resized %d", resizes))
	for _, p := range prods {
		waitRz(t, "the producers", cons, failed, p.Exited)
		require.NoError(t, p.Wait())
	}
	s.consumed(t, producers*per, true, cons, failed)
	all := stopConsumers(t, cons)
	require.NoError(t, stop())
	require.NoError(t, record.VerifyLog(all, producers, uint64(per)))

	require.NoError(t, s.v.retire())
	require.Equal(t, resizes, s.v.added, "this process took every generation")
	require.Equal(t, resizes, s.v.retired, "and retired all but the newest, each checked")
	st := s.v.r.Stats()
	require.Equal(t, uint64(1), st.Generations)
	require.NoError(t, s.v.r.ConsumerQueue().Check())
	require.Equal(t, uint32(resizes+1), s.v.r.ConsumerQueue().Config().Generation)
	require.Empty(t, s.names(), "no name left in /dev/shm")
	t.Logf("%d records through %d resizes across %d processes, in %d generations; the resizer: %s",
		len(all), resizes, producers+consumers+2, generations(all), strings.TrimSpace(resizer.Out.String()))
}

// TestKilledProducerMidSwitch: the single producer process of a resizable
// queue, shared by two consumer processes, follows resizes while it
// produces, then holds a run of four slots with records in slots 0 and 2
// and none in 1 and 3. The owner (this process) names the next generation;
// the producer takes its regions but never seals its own generation, and
// is killed with SIGKILL. The consumers take everything it published up to
// the slot it holds; the owner seals for it (ring.Resizable.SealAbandoned)
// once it has reaped it: the two slots become holes, the consumers take
// the record behind the first, drain the generation and follow, and a new
// producer process, started on the newest generation, produces there
// while the owner goes on resizing. Everything the dead producer published
// and everything its successor did is consumed exactly once, in order.
func TestKilledProducerMidSwitch(t *testing.T) {
	per, resizes := 50_000, 20
	if testing.Short() {
		per, resizes = 5000, 8
	}
	const consumers = 2
	s := newRzSetup(t, ring.Config{Slots: 64, SlotSize: rzSlotSize, SingleProducer: true})
	v := s.v
	ctx := context.Background()
	// Participants: 0 the producer that dies, 1 to consumers the
	// consumers, consumers+1 the producer that follows it.
	heir := consumers + 1
	parts := heir + 1
	rng := rand.New(rand.NewPCG(9, 9))
	// resizeSome makes n resizes, resize i once consumers have taken
	// from+i*count/(n+1) records, while a producer follows them.
	resizeSome := func(running []*testenv.Child, n, from, count int) {
		t.Helper()
		for i := range n {
			s.consumed(t, from+i*count/(n+1), false, running, nil)
			slots := 1 << (2 + rng.IntN(9)) // 4 and up: the held run is 4
			var err error
			waitRz(t, "the producer to follow the last resize", running, nil, func() bool {
				err = v.resize(ctx, s.ctl, parts, slots)
				return !errors.Is(err, ring.ErrResizing)
			})
			require.NoError(t, err)
		}
	}
	dying := s.start(t, "rz-hold", 0, "ID=0", fmt.Sprintf("N=%d", per))
	var cons []*testenv.Child
	for c := range consumers {
		cons = append(cons, s.start(t, "rz-consume", 1+c))
	}
	running := append([]*testenv.Child{dying}, cons...)
	resizeSome(running, resizes, 0, per)
	s.ctl.word(rzHold).Store(1)
	dying.WaitOutput(t, "holding")
	var published int
	_, err := fmt.Sscanf(dying.Out.String()[strings.Index(dying.Out.String(), "holding"):], "holding %d", &published)
	require.NoError(t, err)
	require.Equal(t, per+2, published)
	require.False(t, v.r.ResizePending(), "the producer followed every resize before it held its run")

	// The switch: named, and its regions taken by every process, the
	// producer's too; the producer never seals.
	require.NoError(t, v.resize(ctx, s.ctl, parts, 128))
	require.True(t, v.r.ResizePending())
	gen := v.newest()
	v.mu.Lock()
	left := v.queues[gen-1]
	v.mu.Unlock()
	require.NotNil(t, left)
	require.NoError(t, dying.Cmd.Process.Signal(syscall.SIGKILL))
	require.Error(t, dying.Wait(), "killed")
	s.ctl.ack(0).Store(rzLeft)
	s.consumed(t, published-1, true, cons, nil) // all but the record behind the held slot
	require.False(t, left.Sealed())
	holes, err := v.r.SealAbandoned()
	require.NoError(t, err)
	require.Equal(t, 2, holes, "slots 1 and 3 of the held run")
	s.consumed(t, published, true, cons, nil)
	waitRz(t, "the consumers to pass the last hole", cons, nil, func() bool {
		st := left.Stats()
		return st.ConsumerCursor == st.ProducerCursor
	})
	// Checked now: a resize below retires it, and unmaps it here.
	st := left.Stats()
	require.True(t, left.Sealed())
	require.Equal(t, uint64(2), st.Skipped, "the held slots, passed as holes")
	require.NoError(t, left.Check())

	// The heir: a producer process on the newest generation.
	v.mu.Lock()
	regs := v.regions[gen]
	v.mu.Unlock()
	files, err := dma.Files(regs[0], regs[1])
	require.NoError(t, err)
	files = append([]*os.File{s.files[0]}, files...)
	t.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
	s.ctl.ack(heir).Store(uint64(gen))
	heirEnv := append(append([]string(nil), s.env...), fmt.Sprintf("FIRST_GEN=%d", gen), fmt.Sprintf("FIRST_SLOTS=%d", 128),
		fmt.Sprintf("INDEX=%d", heir), "ID=1", fmt.Sprintf("N=%d", per), "LINGER=1")
	next := helpers.Start(t, "rz-produce", heirEnv, files...)
	running = append([]*testenv.Child{next}, cons...)
	resizeSome(running, resizes, published, per)
	s.consumed(t, published+per, true, running, nil)
	waitRz(t, "the heir to follow the last resize", running, nil, func() bool { return !v.r.ResizePending() })
	next.Stop(t)
	all := stopConsumers(t, cons)

	var logs [2][]record.Seen
	for _, e := range all {
		require.Less(t, e.Producer, uint32(2))
		logs[e.Producer] = append(logs[e.Producer], record.Seen{Pos: e.Pos, Seq: e.Seq})
	}
	require.NoError(t, record.VerifyLog(logs[0], 1, uint64(published)), "the dead producer's records")
	require.NoError(t, record.VerifyLog(logs[1], 1, uint64(per)), "its heir's")

	require.NoError(t, v.retire())
	require.Equal(t, uint64(1), v.r.Stats().Generations, "every generation before the newest retired")
	require.NoError(t, v.r.ConsumerQueue().Check())
	require.Empty(t, s.names(), "no name left in /dev/shm")
	t.Logf("the dead producer's %d records in %d generations, its heir's %d in %d; %d resizes in all",
		len(logs[0]), generations(logs[0]), len(logs[1]), generations(logs[1]), v.r.Stats().Resizes)
}
