package ipc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/fdpass"
	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/ring/wait"
)

// Resizing a session's queues while it runs.
//
// A client that asks for a resizable geometry (Geometry.Resizable) gets
// queues formatted RESIZABLE; each side then drives them through a
// ring.Resizable over its own mapping. The server is the agent that resizes
// (ring.Resizable.ResizeTo), when ServerOptions.ResizeEvery says so or a
// third process asks (Resize). One resize of one queue, in order:
//
//  1. The server formats generation N+1 in two new memfds and sends
//     Generation{queue, number, slots, offer} with their two descriptors.
//  2. The client maps them, attaches, gives them to its Resizable
//     (ring.Resizable.Add) and answers Added{queue, number, offer}; or
//     Added with an error, having closed them. The offer is the server's
//     serial of the message, new for every offer: a rolled-back resize
//     leaves the generation number free, and the next offer of that
//     number must not take the late answer to the one before it.
//  3. Only then does the server name generation N+1 in generation N's link
//     line (ResizeTo). The queue's single producer, in whichever process,
//     seals N when it next reserves; the consumer drains N, then follows.
//
// A client that refuses, or does not answer within ServerOptions.ResizeDeadline,
// rolls the resize back: the server closes the new regions and nothing was
// named, so nothing changed. Each side gives back a generation's regions
// once every agent is done with it (ring.Resizable.Retire), from the
// goroutine that plays its role, between batches.

// Generation is the server's offer of a queue's next generation; two
// descriptors travel with it, the metadata region's, then the data's.
type Generation struct {
	Queue  string `json:"queue"`  // QueueUp or QueueDown
	Number uint32 `json:"number"` // its generation number
	Slots  int    `json:"slots"`  // its slot count; the slot size stays
	Offer  uint64 `json:"offer"`  // the server's serial of this offer, from 1, which the answer repeats
}

// Added is the client's answer to a Generation.
type Added struct {
	Queue  string `json:"queue"`
	Number uint32 `json:"number"`
	Offer  uint64 `json:"offer"`           // the Generation's Offer
	Error  string `json:"error,omitempty"` // refused; the descriptors are closed
}

// sessionMsg is any message of a running session: a Done (its fields), or
// one of the resize messages.
type sessionMsg struct {
	Records    uint64      `json:"records"`
	Error      string      `json:"error,omitempty"`
	Generation *Generation `json:"generation,omitempty"`
	Added      *Added      `json:"added,omitempty"`
}

// ResizeRequest asks a server to resize a queue of a session it serves,
// from a third process. Like a StatRequest it is the first and only
// message of its connection, answered with a ResizeReply.
type ResizeRequest struct {
	Version int    `json:"version"`
	Resize  bool   `json:"resize"`
	Session int    `json:"session"` // as a StatReply numbers them
	Queue   string `json:"queue"`   // QueueUp or QueueDown
	Slots   int    `json:"slots"`
}

// ResizeReply answers a ResizeRequest once the resize is done or refused.
type ResizeReply struct {
	Version    int    `json:"version"`
	Generation uint32 `json:"generation,omitempty"` // the generation the queue has now
	Error      string `json:"error,omitempty"`
}

// ResizeCounts are what one side saw of a session's resizes.
type ResizeCounts struct {
	Started    uint64        // resizes the server began (a Generation sent)
	Completed  uint64        // ... and named (ResizeTo)
	RolledBack uint64        // ... and undid: the client refused or did not answer
	Deferred   uint64        // resizes not begun: the last one was not yet followed
	Added      uint64        // generations the client took
	Retired    uint64        // generations whose regions this side gave back
	Draining   time.Duration // sealed generations' time to drain, as this side saw it
}

// resizeState is a resizable session's part on either side.
type resizeState struct {
	rs [2]*ring.Resizable // QueueUp, QueueDown
	w  [2]*wait.Resizable // their waits, made before anything else uses them
	// mu guards regions: every generation this side mapped, by queue and
	// number, until it is retired.
	mu      sync.Mutex
	regions [2]map[uint32][2]*dma.Region
	closed  bool // the session is over: nothing may touch the queues
	// old is set while some queue has more than one generation mapped,
	// so the role's goroutine looks for generations to retire.
	old atomic.Bool
	// resizing serializes the server's resizes; acks carries the client's
	// Added messages from the session's reader to the resize waiting.
	resizing sync.Mutex
	acks     chan Added
	offers   uint64 // the last offer's serial; under resizing

	started, completed, rolledBack, deferred, added, retired atomic.Uint64
}

func queueIndex(name string) (int, bool) {
	switch name {
	case QueueUp:
		return 0, true
	case QueueDown:
		return 1, true
	}
	return 0, false
}

var queueNames = [2]string{QueueUp, QueueDown}

// newResizeState wraps the pair's queues, whose regions the pair keeps,
// with the mode's waits (which set the Resizables' OnSeal, so before the
// session's reader may Add to them).
func newResizeState(p *Pair, mode Mode) (*resizeState, error) {
	st := &resizeState{acks: make(chan Added, 1)}
	for i, q := range []*ring.Queue{p.Up, p.Down} {
		r, err := ring.NewResizableOn(q)
		if err != nil {
			return nil, err
		}
		st.rs[i], st.w[i] = r, mode.WrapResizable(r)
		st.regions[i] = map[uint32][2]*dma.Region{}
	}
	return st, nil
}

// sides are the waiting sides the roles drive: of the plain queues, or of
// the resizable ones.
func (s *session) sides() (upP producer, upC consumer, downP producer, downC consumer) {
	if s.rz == nil {
		up, down := s.mode.Wrap(s.pair.Up), s.mode.Wrap(s.pair.Down)
		return up.Producer(), up.Consumer(), down.Producer(), down.Consumer()
	}
	up, down := s.rz.w[0], s.rz.w[1]
	return up.Producer(), up.Consumer(), down.Producer(), down.Consumer()
}

// job sets up j to give back old generations between its batches.
func (s *session) job(j *job) *job {
	if s.rz != nil {
		j.between = s.rz.retire
	}
	return j
}

// retire gives back the regions of every generation both sides are done
// with. It runs in the one goroutine that plays this side's role, between
// its calls on the queues, as ring.Resizable.Retire requires.
func (st *resizeState) retire() {
	if !st.old.Load() {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return
	}
	more := false
	for i, r := range st.rs {
		for _, q := range r.Retire() {
			gen := q.Config().Generation
			if regs, ok := st.regions[i][gen]; ok {
				regs[0].Close()
				regs[1].Close()
				delete(st.regions[i], gen)
				st.retired.Add(1)
			}
		}
		more = more || len(st.regions[i]) > 0
	}
	st.old.Store(more)
}

// close gives back every generation's regions but the first's, which the
// pair owns; the session's agents have stopped and its context is done.
// It waits for a resize under way, which then returns, and refuses every
// later one, and every later offer, before the regions go.
func (st *resizeState) close() error {
	st.resizing.Lock()
	defer st.resizing.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	var errs []error
	for i := range st.regions {
		for gen, regs := range st.regions[i] {
			errs = append(errs, regs[0].Close(), regs[1].Close())
			delete(st.regions[i], gen)
		}
	}
	return errors.Join(errs...)
}

// newest is the descriptor of queue i's newest generation's metadata
// (first, the pair's, if it has no later one or the session is closing),
// its number, and the session's resize counts, for a stat request,
// reopened by reopen while st.mu keeps a later generation's open (the
// pair's stays open until the session is untracked).
func (st *resizeState) newest(i, first int, reopen func(int) (int, error)) (fd int, gen uint32, c *ResizeCounts, err error) {
	counts := st.counts()
	st.mu.Lock()
	defer st.mu.Unlock()
	fd, gen = first, 1
	if !st.closed {
		gen = st.rs[i].NextGeneration() - 1
		if gen == 0 {
			gen = 1<<32 - 1
		}
		if regs, ok := st.regions[i][gen]; ok {
			fd = regs[0].FD()
		} else {
			gen = 1
		}
	}
	fd, err = reopen(fd)
	return fd, gen, &counts, err
}

func (st *resizeState) counts() ResizeCounts {
	c := ResizeCounts{Started: st.started.Load(), Completed: st.completed.Load(), RolledBack: st.rolledBack.Load(),
		Deferred: st.deferred.Load(), Added: st.added.Load(), Retired: st.retired.Load()}
	for _, r := range st.rs {
		c.Draining += r.Stats().Draining
	}
	return c
}

// generationRegions makes a queue's next generation in two new memfds.
func generationRegions(name string, g Geometry, number uint32) (q *ring.Queue, regs [2]*dma.Region, err error) {
	cfg := g.config()
	cfg.Generation = number
	if regs[0], err = dma.Memfd("ycq-ipc."+name+".meta", cfg.MetaSize(), dma.Options{}); err != nil {
		return nil, regs, err
	}
	if regs[1], err = dma.Memfd("ycq-ipc."+name+".data", cfg.DataSize(), dma.Options{}); err != nil {
		regs[0].Close()
		return nil, regs, err
	}
	if q, err = ring.Format(regs[0].Bytes(), regs[1].Bytes(), cfg); err != nil {
		regs[0].Close()
		regs[1].Close()
		return nil, regs, err
	}
	return q, regs, nil
}

// ErrResizeRefused wraps why a resize did not happen; nothing changed.
var ErrResizeRefused = errors.New("ipc: resize refused")

// resize is the server's resize of one queue of this session to slots
// slots: the steps at the top of this file. It returns the generation the
// queue has after it.
func (s *session) resize(which string, slots int, deadline time.Duration) (uint32, error) {
	st := s.rz
	refused := func(format string, args ...any) (uint32, error) {
		return 0, fmt.Errorf("%w: "+format, append([]any{ErrResizeRefused}, args...)...)
	}
	if st == nil {
		return refused("session %q queue: the session is not resizable", which)
	}
	i, ok := queueIndex(which)
	if !ok {
		return refused("queue %q: want %s or %s", which, QueueUp, QueueDown)
	}
	g := Geometry{Slots: slots, SlotSize: s.pair.Geometry.SlotSize, Resizable: true}
	if err := g.Validate(); err != nil {
		return refused("%v", err)
	}
	st.resizing.Lock()
	defer st.resizing.Unlock()
	st.mu.Lock()
	closed := st.closed
	st.mu.Unlock()
	if closed {
		return refused("the session is over")
	}
	r := st.rs[i]
	if r.ResizePending() {
		st.deferred.Add(1)
		return refused("%s queue: %v", which, ring.ErrResizing)
	}
	number := r.NextGeneration()
	q, regs, err := generationRegions(which, g, number)
	if err != nil {
		return refused("%v", err)
	}
	giveBack := func() {
		regs[0].Close()
		regs[1].Close()
	}
	st.started.Add(1)
	st.offers++
	offer := st.offers
	msg := sessionMsg{Generation: &Generation{Queue: which, Number: number, Slots: slots, Offer: offer}}
	if err := s.offer(msg, regs[0].FD(), regs[1].FD()); err != nil {
		giveBack()
		st.rolledBack.Add(1)
		return refused("send generation %d: %v", number, err)
	}
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		select {
		case a := <-st.acks:
			if a.Offer != offer || a.Queue != which || a.Number != number {
				continue // a late answer to an offer rolled back before
			}
			if a.Error != "" {
				giveBack()
				st.rolledBack.Add(1)
				return refused("the client refused generation %d: %s", number, a.Error)
			}
			if err := r.ResizeTo(q, 0, 0); err != nil {
				giveBack()
				st.rolledBack.Add(1)
				return refused("%v", err)
			}
			st.mu.Lock()
			st.regions[i][number] = regs
			st.mu.Unlock()
			st.old.Store(true)
			st.completed.Add(1)
			return number, nil
		case <-timer.C:
			giveBack()
			st.rolledBack.Add(1)
			return refused("the client did not take generation %d within %v", number, deadline)
		case <-s.ctx.Done():
			giveBack()
			st.rolledBack.Add(1)
			return refused("session over: %v", context.Cause(s.ctx))
		}
	}
}

// take is the client's side of a Generation: it maps the two regions,
// attaches, and gives the queue to its Resizable. It owns fds.
func (st *resizeState) take(g *Generation, fds []int, slotSize int) error {
	if len(fds) != 2 {
		fdpass.CloseAll(fds)
		return fmt.Errorf("%w: generation with %d descriptors, want 2", ErrProtocol, len(fds))
	}
	i, ok := queueIndex(g.Queue)
	if !ok {
		fdpass.CloseAll(fds)
		return fmt.Errorf("%w: generation of queue %q", ErrProtocol, g.Queue)
	}
	geo := Geometry{Slots: g.Slots, SlotSize: slotSize, Resizable: true}
	if err := geo.Validate(); err != nil {
		fdpass.CloseAll(fds)
		return fmt.Errorf("%w: generation geometry: %v", ErrProtocol, err)
	}
	cfg := geo.config()
	var regs [2]*dma.Region
	var err error
	if regs[0], err = dma.Map(fds[0], cfg.MetaSize()); err != nil {
		closeFD(fds[1])
		return err
	}
	if regs[1], err = dma.Map(fds[1], cfg.DataSize()); err != nil {
		regs[0].Close()
		return err
	}
	fail := func(err error) error {
		regs[0].Close()
		regs[1].Close()
		return err
	}
	q, err := ring.Attach(regs[0].Bytes(), regs[1].Bytes())
	if err != nil {
		return fail(err)
	}
	if c := q.Config(); c.Generation != g.Number || c.Slots != g.Slots || c.SlotSize != slotSize {
		return fail(fmt.Errorf("%w: generation %d of %d slots is formatted as generation %d of %d slots of %d bytes",
			ErrProtocol, g.Number, g.Slots, c.Generation, c.Slots, c.SlotSize))
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return fail(fmt.Errorf("%w: the session is over", ErrResizeRefused))
	}
	if _, ok := st.rs[i].Withdraw(g.Number); ok {
		// Offered before and rolled back by the server (our answer came
		// too late): this offer replaces that one.
		if old, ok := st.regions[i][g.Number]; ok {
			old[0].Close()
			old[1].Close()
			delete(st.regions[i], g.Number)
		}
	}
	if err := st.rs[i].Add(q); err != nil {
		return fail(err)
	}
	st.regions[i][g.Number] = regs
	st.old.Store(true)
	st.added.Add(1)
	return nil
}

// Resize asks the server at path to resize queue (QueueUp or QueueDown) of
// session (as Stat numbers them) to slots slots, and waits for the answer:
// the generation the queue has now. A refusal wraps ErrResizeRefused.
func Resize(ctx context.Context, path string, session int, queue string, slots int) (uint32, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return 0, fmt.Errorf("ipc: %w", err)
	}
	conn := c.(*net.UnixConn)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	req := ResizeRequest{Version: ProtocolVersion, Resize: true, Session: session, Queue: queue, Slots: slots}
	if err := writeMsg(conn, req); err != nil {
		return 0, fmt.Errorf("ipc: send resize request: %w", err)
	}
	var rep ResizeReply
	if _, err := readMsg(conn, &rep, 0); err != nil {
		return 0, fmt.Errorf("ipc: resize: %w", err)
	}
	if rep.Version != ProtocolVersion {
		return 0, fmt.Errorf("%w: resize reply version %d", ErrProtocol, rep.Version)
	}
	if rep.Error != "" {
		return 0, fmt.Errorf("%w: %s", ErrResizeRefused, rep.Error)
	}
	return rep.Generation, nil
}

// answerResize serves a ResizeRequest: it resizes the session's queue
// and answers how it went. A requester that goes away in the middle
// changes nothing: the resize finishes or rolls back as it would.
func (srv *server) answerResize(conn *net.UnixConn, req *ResizeRequest) error {
	reply := func(gen uint32, err error) error {
		rep := ResizeReply{Version: ProtocolVersion, Generation: gen}
		if err != nil {
			rep.Error = err.Error()
		}
		if werr := writeMsg(conn, rep); err == nil {
			err = werr
		}
		return err
	}
	if req.Version != ProtocolVersion {
		return reply(0, fmt.Errorf("%w: resize request: version %d, this side speaks %d", ErrProtocol, req.Version, ProtocolVersion))
	}
	if err := samePeerUser(conn); err != nil {
		return reply(0, err)
	}
	srv.mu.Lock()
	ls := srv.live[req.Session]
	var s *session
	if ls != nil {
		s = ls.s
	}
	srv.mu.Unlock()
	if s == nil {
		return reply(0, fmt.Errorf("%w: no running session %d", ErrResizeRefused, req.Session))
	}
	return reply(s.resize(req.Queue, req.Slots, srv.resizeDeadline()))
}

func (srv *server) resizeDeadline() time.Duration {
	if srv.opt.ResizeDeadline > 0 {
		return srv.opt.ResizeDeadline
	}
	return 5 * time.Second
}

// resizeEvery resizes the session's queues in turn every d until the
// session ends, each to twice or half its slots at the start, in turn.
func (srv *server) resizeEvery(s *session, d time.Duration) {
	t := time.NewTicker(d)
	defer t.Stop()
	base := s.pair.Geometry.Slots
	sizes := []int{base * 2, base / 2, base}
	for k := 0; ; k++ {
		select {
		case <-t.C:
		case <-s.ctx.Done():
			return
		}
		which := queueNames[k%2]
		slots := sizes[(k/2)%len(sizes)]
		if slots < ring.MinSlots || slots > MaxSlots {
			continue
		}
		if _, err := s.resize(which, slots, srv.resizeDeadline()); err != nil && !errors.Is(err, ring.ErrResizing) {
			srv.log.Debug("resize", "queue", which, "slots", slots, "err", err)
		}
	}
}

// decodeSessionMsg decodes a message of a running session.
func decodeSessionMsg(body []byte) (sessionMsg, error) {
	var m sessionMsg
	if err := decodeMsg(body, &m); err != nil {
		return sessionMsg{}, err
	}
	if m.Generation != nil && m.Added != nil {
		return sessionMsg{}, fmt.Errorf("%w: a message both offers and answers a generation", ErrProtocol)
	}
	return m, nil
}
