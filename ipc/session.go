package ipc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/fdpass"
)

// session is one connection's shared state, on either side.
type session struct {
	conn   *net.UnixConn
	pair   *Pair
	hello  Hello
	mode   Mode
	ctx    context.Context
	cancel context.CancelCauseFunc
	peer   chan Done // the peer's Done, once
	client bool
	rz     *resizeState // nil unless the geometry is resizable
	wmu    sync.Mutex   // one message at a time on conn (send)
	done   bool         // this side sent its Done; under wmu
	// progress counts the records this side has finished so far.
	progress atomic.Uint64
	spare    atomic.Uint64 // the producing half's count, for RoleBoth
}

// send writes one message to the peer; the role, the reader and a resize
// may each send. A Done is this side's last word but for answers; offer
// sends nothing after it.
func (s *session) send(v any, fds ...int) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, ok := v.(Done); ok {
		s.done = true
	}
	return writeMsg(s.conn, v, fds...)
}

// errSessionDone: this side has finished its role.
var errSessionDone = errors.New("ipc: this side has finished")

// offer sends a message that starts an exchange, unless this side has
// sent its Done.
func (s *session) offer(v any, fds ...int) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.done {
		return errSessionDone
	}
	return writeMsg(s.conn, v, fds...)
}

// watch reads the peer's messages until its Done, or notices it is gone,
// and cancels the session's context in that case, which stops every wait
// at once. On the way it answers the server's resize offers (client) and
// hands their answers to the resize waiting for them (server).
func (s *session) watch() {
	gone := func(err error) {
		s.cancel(err)
		close(s.peer)
	}
	for {
		body, fds, err := readBody(s.conn, 2)
		if err != nil {
			gone(fmt.Errorf("%w: %v", ErrPeerGone, err))
			return
		}
		m, err := decodeSessionMsg(body)
		if err != nil {
			fdpass.CloseAll(fds)
			gone(err)
			return
		}
		switch {
		case m.Generation != nil && s.client:
			a := Added{Queue: m.Generation.Queue, Number: m.Generation.Number, Offer: m.Generation.Offer}
			if s.rz == nil {
				fdpass.CloseAll(fds)
				a.Error = "the session is not resizable"
			} else if err := s.rz.take(m.Generation, fds, s.pair.Geometry.SlotSize); err != nil {
				a.Error = err.Error()
			}
			// An answer that cannot go (the server has finished and
			// hung up) is no failure of this side: the server rolls
			// the resize back, and the next read says whether the
			// peer is gone or sent its Done first.
			_ = s.send(sessionMsg{Added: &a})
		case m.Added != nil && !s.client && s.rz != nil && len(fds) == 0:
			// The newest answer wins: one left in the channel is for a
			// resize that gave up waiting.
			for {
				select {
				case s.rz.acks <- *m.Added:
				default:
					select {
					case <-s.rz.acks:
					default:
					}
					continue
				}
				break
			}
		case m.Generation != nil, m.Added != nil, len(fds) != 0:
			fdpass.CloseAll(fds)
			gone(fmt.Errorf("%w: a message this side does not take (generation %v, added %v, %d descriptors)",
				ErrProtocol, m.Generation != nil, m.Added != nil, len(fds)))
			return
		default:
			s.peer <- Done{Records: m.Records, Error: m.Error}
			if m.Error != "" {
				// The peer stopped before finishing its role (its Close
				// can send this Done just before it hangs up): this
				// side's waits for it stop now, as when it is gone.
				s.cancel(fmt.Errorf("%w: it stopped after %d records: %s", ErrPeerGone, m.Records, m.Error))
			}
			return
		}
	}
}

// finish tells the peer this side is done and waits for its Done, for the
// peer to go, or for grace to pass.
func (s *session) finish(records uint64, roleErr error, grace time.Duration) error {
	d := Done{Records: records}
	if roleErr != nil {
		d.Error = roleErr.Error()
	}
	if err := s.send(d); err != nil && roleErr == nil {
		roleErr = fmt.Errorf("%w: send done: %v", ErrPeerGone, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case pd, ok := <-s.peer:
		switch {
		case !ok && roleErr == nil:
			return context.Cause(s.ctx)
		case ok && pd.Error != "" && roleErr == nil:
			return fmt.Errorf("ipc: peer failed after %d records: %s", pd.Records, pd.Error)
		}
	case <-timer.C:
		if roleErr == nil {
			return fmt.Errorf("%w: no word from the peer %v after finishing", ErrPeerGone, grace)
		}
	}
	return roleErr
}

// ServerOptions configure Serve.
type ServerOptions struct {
	Mode Mode
	// ShmName, if set, makes each session's regions /dev/shm files named
	// ShmName.N.up.meta and so on (N counts sessions), for clients that
	// join by name. Descriptors are passed either way unless the client
	// asks for names.
	ShmName string
	ShmOpt  dma.Options
	Log     *slog.Logger
	// Grace is how long a side waits for the peer's Done; default 10 s.
	Grace time.Duration
	// ResizeEvery, if set, resizes the queues of every resizable session
	// in turn that often (resize.go); ResizeDeadline is how long a resize
	// waits for the client to take the new generation before it rolls
	// back, 5 s if 0.
	ResizeEvery    time.Duration
	ResizeDeadline time.Duration
}

// Serve accepts clients on l and plays the other side of each session,
// one session after another, until ctx is done or l fails. A client that
// misbehaves or dies ends its own session only. A StatRequest is answered
// at once, also while a session runs.
func Serve(ctx context.Context, l *net.UnixListener, opt ServerOptions) error {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	srv := &server{opt: opt, log: log, live: map[int]*liveSession{}}
	// Every goroutine below ends once ctx (or, when accept fails, done)
	// ends, and Serve returns only after they have.
	parent := ctx
	ctx, done := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		done()
		wg.Wait()
	}()
	hellos := make(chan pendingHello)
	wg.Go(func() { srv.sessions(ctx, hellos) })
	for {
		conn, err := l.AcceptUnix()
		if err != nil {
			// The listener closed by the AfterFunc of parent, which may
			// run before ctx, parent's child, is canceled.
			if parent.Err() != nil {
				return nil
			}
			return fmt.Errorf("ipc: accept: %w", err)
		}
		wg.Go(func() { srv.first(ctx, conn, hellos) })
	}
}

// server is what the goroutines of one Serve share.
type server struct {
	opt ServerOptions
	log *slog.Logger
	mu  sync.Mutex
	// live holds the sessions whose pair exists, by number, for stat
	// requests. A session is removed before its pair is closed, so its
	// descriptors stay open while mu is held.
	live map[int]*liveSession
}

type liveSession struct {
	role string
	pair *Pair
	name string   // the regions' /dev/shm base name, or ""
	s    *session // once it runs, for resize requests
}

// pendingHello is a connection whose first message was a Hello, waiting
// for its turn.
type pendingHello struct {
	conn  *net.UnixConn
	hello Hello
}

// first reads the first message of a connection: a stat request is
// answered here, a Hello is handed to the session loop.
func (srv *server) first(ctx context.Context, conn *net.UnixConn, hellos chan<- pendingHello) {
	// Until the message is in, ending ctx ends the read.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	body, _, err := readBody(conn, 0)
	var req request
	if err == nil {
		req, err = decodeRequest(body)
	}
	if !stop() || err != nil {
		if ctx.Err() == nil {
			srv.log.Warn("connection refused", "err", err)
		}
		conn.Close()
		return
	}
	if req.stat != nil {
		if err := srv.stat(conn, req.stat); err != nil {
			srv.log.Warn("stat request", "err", err)
		}
		conn.Close()
		return
	}
	if req.resize != nil {
		if err := srv.answerResize(conn, req.resize); err != nil {
			srv.log.Warn("resize request", "err", err)
		}
		conn.Close()
		return
	}
	select {
	case hellos <- pendingHello{conn, *req.hello}:
	case <-ctx.Done():
		conn.Close()
	}
}

// sessions serves the sessions handed to it one after another, numbering
// them from 1.
func (srv *server) sessions(ctx context.Context, hellos <-chan pendingHello) {
	for n := 1; ; n++ {
		var p pendingHello
		select {
		case p = <-hellos:
		case <-ctx.Done():
			return
		}
		start := time.Now()
		res, err := srv.serveOne(ctx, p.conn, p.hello, n)
		p.conn.Close()
		attrs := []any{"session", n, "role", res.Role, "records", res.Records, "elapsed", time.Since(start).Round(time.Millisecond)}
		if err != nil {
			srv.log.Warn("session ended", append(attrs, "err", err)...)
		} else {
			srv.log.Info("session done", append(attrs, "items_per_sec", int64(res.ItemsPerSec()))...)
		}
	}
}

// serveOne runs one session on the server side.
func (srv *server) serveOne(ctx context.Context, conn *net.UnixConn, h Hello, n int) (Result, error) {
	opt := srv.opt
	if err := h.Validate(); err != nil {
		writeMsg(conn, Welcome{Version: ProtocolVersion, Error: err.Error()})
		return Result{}, err
	}
	name := ""
	if opt.ShmName != "" {
		name = fmt.Sprintf("%s.%d", opt.ShmName, n)
	}
	if h.ByName && name == "" {
		err := fmt.Errorf("%w: the client asked for regions by name, but this server was started without a name", ErrProtocol)
		writeMsg(conn, Welcome{Version: ProtocolVersion, Error: err.Error()})
		return Result{}, err
	}
	pair, err := CreatePair(h.Geometry, name, opt.ShmOpt)
	if err != nil {
		writeMsg(conn, Welcome{Version: ProtocolVersion, Error: err.Error()})
		return Result{}, err
	}
	defer pair.Close()
	ls := &liveSession{role: h.Role, pair: pair, name: name}
	srv.track(n, ls)
	defer srv.untrack(n)
	w := Welcome{Version: ProtocolVersion, Geometry: h.Geometry}
	var fds []int
	if h.ByName {
		w.Name = name
	} else {
		fds = pair.FDs()
	}
	if err := writeMsg(conn, w, fds...); err != nil {
		return Result{}, fmt.Errorf("send welcome: %w", err)
	}
	var j Joined
	if _, err := readMsg(conn, &j, 0); err != nil {
		return Result{}, fmt.Errorf("waiting for the client to join: %w", err)
	}
	if !j.OK {
		return Result{}, fmt.Errorf("ipc: the client could not join the pair")
	}
	if err := pair.Unlink(); err != nil {
		return Result{}, err
	}
	s, err := newSession(ctx, conn, pair, h, opt.Mode, false)
	if err != nil {
		return Result{}, err
	}
	defer func() {
		s.cancel(nil) // a resize waiting for the client returns
		s.close()
	}()
	srv.mu.Lock()
	ls.s = s
	srv.mu.Unlock()
	if opt.ResizeEvery > 0 && s.rz != nil {
		go srv.resizeEvery(s, opt.ResizeEvery)
	}
	res, err := s.run(false)
	return res, s.finish(res.Records, err, grace(opt.Grace))
}

func (srv *server) track(n int, ls *liveSession) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.live[n] = ls
}

func (srv *server) untrack(n int) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	delete(srv.live, n)
}

// stat answers a stat request: every queue of every live session, each
// with a descriptor of its metadata region opened anew read-only, so the
// asker can map it but not write it. Only a peer of this process's user
// (or root) is answered: the descriptors show other clients' sessions.
func (srv *server) stat(conn *net.UnixConn, req *StatRequest) error {
	refuse := func(err error) error {
		writeMsg(conn, StatReply{Version: ProtocolVersion, Error: err.Error()})
		return err
	}
	if err := req.Validate(); err != nil {
		return refuse(err)
	}
	if err := samePeerUser(conn); err != nil {
		return refuse(err)
	}
	srv.mu.Lock()
	nums := make([]int, 0, len(srv.live))
	for n := range srv.live {
		nums = append(nums, n)
	}
	slices.Sort(nums)
	var queues []ServedQueue
	var fds []int
	defer func() { fdpass.CloseAll(fds) }()
	var err error
	for _, n := range nums {
		ls := srv.live[n]
		all := ls.pair.FDs()
		for _, q := range []struct {
			queue string
			fd    int
			name  string
		}{{QueueUp, all[0], regionNames[0]}, {QueueDown, all[2], regionNames[2]}} {
			if len(queues) == MaxStatQueues {
				break
			}
			var gen uint32
			var counts *ResizeCounts
			var fd int
			var rerr error
			if ls.s != nil && ls.s.rz != nil {
				i, _ := queueIndex(q.queue)
				fd, gen, counts, rerr = ls.s.rz.newest(i, q.fd, reopenReadOnly)
			} else {
				fd, rerr = reopenReadOnly(q.fd)
			}
			if rerr != nil {
				err = fmt.Errorf("session %d %s queue: %w", n, q.queue, rerr)
				break
			}
			fds = append(fds, fd)
			sq := ServedQueue{Session: n, Queue: q.queue, Role: ls.role, Geometry: ls.pair.Geometry, Generation: gen, Resizes: counts}
			if ls.name != "" {
				sq.Name = ls.name + "." + q.name
			}
			queues = append(queues, sq)
		}
	}
	srv.mu.Unlock()
	if err != nil {
		return refuse(err)
	}
	return writeMsg(conn, StatReply{Version: ProtocolVersion, Queues: queues}, fds...)
}

// Stat asks the server at path which queues it serves, without joining
// any. Each queue comes with a read-only descriptor of its metadata
// region, which the caller owns and must close (CloseStat closes them all).
// The server's refusal, or a reply that breaks the rules, is an error
// wrapping ErrProtocol.
func Stat(ctx context.Context, path string) ([]StatQueue, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("ipc: %w", err)
	}
	conn := c.(*net.UnixConn)
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := writeMsg(conn, StatRequest{Version: ProtocolVersion, Stat: true}); err != nil {
		return nil, fmt.Errorf("ipc: send stat request: %w", err)
	}
	body, fds, err := readBody(conn, MaxStatQueues)
	if err != nil {
		if errors.Is(err, ErrPeerGone) {
			// A server of this protocol answers; one that hangs up read
			// the request as a bad Hello.
			return nil, fmt.Errorf("%w: stat: the server closed the connection without an answer (not a ycq ipc server, or one without stat requests): %w", ErrProtocol, err)
		}
		return nil, fmt.Errorf("ipc: stat: %w", err)
	}
	r, err := decodeStatReply(body, len(fds))
	if err != nil {
		fdpass.CloseAll(fds)
		return nil, err
	}
	if r.Error != "" {
		return nil, fmt.Errorf("%w: the server refused the stat request: %s", ErrProtocol, r.Error)
	}
	out := make([]StatQueue, len(fds))
	for i, fd := range fds {
		out[i] = StatQueue{ServedQueue: r.Queues[i], Meta: os.NewFile(uintptr(fd), fmt.Sprintf("session %d %s meta", r.Queues[i].Session, r.Queues[i].Queue))}
	}
	return out, nil
}

// StatQueue is one queue Stat found: what the server said of it, and a
// read-only descriptor of its metadata region, owned by the caller.
type StatQueue struct {
	ServedQueue
	Meta *os.File
}

// CloseStat closes the descriptors of the queues Stat returned.
func CloseStat(qs []StatQueue) error {
	var errs []error
	for _, q := range qs {
		if q.Meta != nil {
			errs = append(errs, q.Meta.Close())
		}
	}
	return errors.Join(errs...)
}

func grace(d time.Duration) time.Duration {
	if d <= 0 {
		return 10 * time.Second
	}
	return d
}

func newSession(ctx context.Context, conn *net.UnixConn, pair *Pair, h Hello, mode Mode, client bool) (*session, error) {
	s := &session{conn: conn, pair: pair, hello: h, mode: mode, peer: make(chan Done, 1), client: client}
	if h.Geometry.Resizable {
		var err error
		if s.rz, err = newResizeState(pair, mode); err != nil {
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	go s.watch()
	return s, nil
}

// close gives back the regions of the generations after the first (the
// pair's), once the session's agents have stopped.
func (s *session) close() error {
	if s.rz == nil {
		return nil
	}
	return s.rz.close()
}

// run plays this side's part: the client's role, or the server's
// complement of it.
func (s *session) run(client bool) (Result, error) {
	h := s.hello
	newJob := func(source uint32, done *atomic.Uint64) *job {
		return &job{count: h.Count, payload: h.Payload, batch: h.Batch, source: source, checksum: h.Checksum, done: done}
	}
	upP, upC, downP, downC := s.sides()
	res := Result{Role: h.Role, Payload: h.Payload}
	if !client {
		res.Role = map[string]string{RoleProducer: "sink", RoleConsumer: "source", RoleBoth: "echo"}[h.Role]
	}
	start := time.Now()
	var err error
	var hist *histogram
	switch {
	case client && h.Role == RoleProducer, !client && h.Role == RoleConsumer:
		p := upP
		if !client {
			p = downP
		}
		err = s.job(newJob(1, &s.progress)).produce(s.ctx, p)
	case client && h.Role == RoleConsumer, !client && h.Role == RoleProducer:
		c := downC
		if !client {
			c = upC
		}
		j := s.job(newJob(0, &s.progress))
		hist = &j.hist
		err = j.consume(s.ctx, c)
	case client && h.Role == RoleBoth:
		pj, cj := s.job(newJob(1, &s.spare)), s.job(newJob(0, &s.progress))
		hist = &cj.hist
		err = both(s.ctx, pj, cj, upP, downC)
	default: // the server echoes
		err = s.job(newJob(0, &s.progress)).echo(s.ctx, upC, downP)
	}
	res.Elapsed = time.Since(start)
	res.Records = s.progress.Load()
	if s.rz != nil {
		res.Resizes = s.rz.counts()
	}
	if hist != nil {
		res.P50, res.P99, res.Max = hist.quantile(0.50), hist.quantile(0.99), time.Duration(hist.max)
	}
	return res, err
}

// Client is one connection to a server, after the handshake.
type Client struct {
	s       *session
	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup // Run calls under way: Close waits for them
}

// Dial connects to the server at path, asks for h, and joins the pair the
// server made for it.
func Dial(ctx context.Context, path string, h Hello, mode Mode, shm dma.Options) (*Client, error) {
	h.Version = ProtocolVersion
	if err := h.Validate(); err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("ipc: %w", err)
	}
	conn := c.(*net.UnixConn)
	fail := func(err error) (*Client, error) {
		conn.Close()
		return nil, err
	}
	if err := writeMsg(conn, h); err != nil {
		return fail(fmt.Errorf("ipc: send hello: %w", err))
	}
	var w Welcome
	want := len(regionNames)
	if h.ByName {
		want = 0
	}
	fds, err := readMsg(conn, &w, want)
	if err != nil {
		return fail(fmt.Errorf("ipc: welcome: %w", err))
	}
	if w.Error != "" {
		fdpass.CloseAll(fds)
		return fail(fmt.Errorf("ipc: server refused: %s", w.Error))
	}
	if w.Version != ProtocolVersion || w.Geometry != h.Geometry {
		fdpass.CloseAll(fds)
		return fail(fmt.Errorf("%w: welcome for version %d, geometry %+v; asked for %d, %+v",
			ErrProtocol, w.Version, w.Geometry, ProtocolVersion, h.Geometry))
	}
	var pair *Pair
	if h.ByName {
		if err := dma.CheckName(w.Name + ".up.meta"); err != nil {
			return fail(fmt.Errorf("%w: welcome name: %v", ErrProtocol, err))
		}
		pair, err = OpenPair(w.Name, h.Geometry, shm)
	} else {
		pair, err = JoinPair(fds, h.Geometry)
	}
	if err != nil {
		writeMsg(conn, Joined{OK: false})
		return fail(fmt.Errorf("ipc: join: %w", err))
	}
	if err := writeMsg(conn, Joined{OK: true}); err != nil {
		pair.Close()
		return fail(fmt.Errorf("ipc: send joined: %w", err))
	}
	s, err := newSession(ctx, conn, pair, h, mode, true)
	if err != nil {
		pair.Close()
		return fail(err)
	}
	return &Client{s: s}, nil
}

// Pair is the joined queue pair.
func (c *Client) Pair() *Pair { return c.s.pair }

// Run plays the client's role to the end and reports what it measured.
func (c *Client) Run() (Result, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Result{}, fmt.Errorf("ipc: run: %w", net.ErrClosed)
	}
	c.running.Add(1)
	c.mu.Unlock()
	defer c.running.Done()
	res, err := c.s.run(true)
	return res, c.s.finish(res.Records, err, grace(0))
}

// Progress is how many records the client has finished so far; safe to
// call while Run runs.
func (c *Client) Progress() uint64 { return c.s.progress.Load() }

// Close ends the session and releases the pair. A Run under way is told to
// stop, and Close waits for it before it unmaps the pair Run works in.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.s.cancel(nil)
	err := c.s.conn.Close()
	c.running.Wait()
	return errors.Join(err, c.s.close(), c.s.pair.Close())
}

// The two system calls of the stat request, in one place.

// reopenReadOnly opens the memory file behind fd again, read-only: a new
// open file description that can be mapped PROT_READ and MAP_SHARED but
// not for writing, nor written or truncated. The caller owns the result.
func reopenReadOnly(fd int) (int, error) {
	path := "/proc/self/fd/" + strconv.Itoa(fd)
	ro, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("ipc: reopen the metadata region read-only through %s: %w", path, err)
	}
	return ro, nil
}

// samePeerUser refuses a peer that runs as another user than this process
// (root excepted), by the kernel's credentials of the socket (SO_PEERCRED).
func samePeerUser(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("ipc: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("ipc: peer credentials: %w", err)
	}
	if cerr != nil {
		return fmt.Errorf("ipc: peer credentials: %w", cerr)
	}
	if me := uint32(os.Getuid()); cred.Uid != me && cred.Uid != 0 {
		return fmt.Errorf("%w: stat is answered only to user %d (this server's) or root, not %d", ErrProtocol, me, cred.Uid)
	}
	return nil
}
