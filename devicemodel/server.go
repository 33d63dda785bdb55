package devicemodel

// The vfio-user server: it accepts clients (QEMU's vfio-user-pci, or the
// Go client in vfio/user) one after another, speaks the protocol to each,
// and gives the device a Host backed by the client's DMA mappings and
// interrupt eventfds.
//
// Per connection there are two goroutines: a reader, which frames
// messages and routes the client's replies to the server's own requests
// (DMA_READ/DMA_WRITE), and a dispatcher, which handles the client's
// commands strictly in arrival order and calls the device. Because
// replies never queue behind commands, a device that does message DMA
// from inside a register write does not deadlock the connection (the bug
// of libvfio-user issue #279). Commands queue between the two (at most
// cmdQueueDepth); when the queue is full the reader stops reading, and a
// DMA message waiting behind it then times out into a DMA fault rather
// than hanging.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

// Server defaults and limits. The limits are QEMU's: it refuses a server
// that offers more.
const (
	DefaultServerMaxMsgFDs = 8
	DefaultDMATimeout      = 5 * time.Second
	maxMsgFDsLimit         = 16
	maxDataXferLimit       = 64 << 20
	maxIRQVectors          = 2048 // per interrupt type, whatever a device claims
	cmdQueueDepth          = 256
)

// ErrServerBusy: ServeConn was called while another connection is served.
var ErrServerBusy = errors.New("devicemodel: server busy with another client")

// ServerOptions tune a Server. The zero value is usable.
type ServerOptions struct {
	// Logger receives one line per connection and one per error.
	// slog.Default() if nil.
	Logger *slog.Logger
	// MaxMsgFDs is the most descriptors the server accepts with one
	// message (max_msg_fds; QEMU splits SET_IRQS to fit).
	// DefaultServerMaxMsgFDs if 0; at most 16.
	MaxMsgFDs int
	// MaxDataXferSize is the largest data count the server accepts in
	// one message (max_data_xfer_size). user.DefaultMaxDataXferSize if 0;
	// at most 64 MiB.
	MaxDataXferSize uint32
	// MaxDMAMaps bounds the DMA table (max_dma_maps).
	// DefaultMaxDMAEntries if 0.
	MaxDMAMaps int
	// DMAWire is the layout of DMA_READ/DMA_WRITE: user.DMAWireSpec (the
	// zero value) for spec clients, user.DMAWireQEMU for QEMU.
	DMAWire user.DMAWire
	// DMATimeout bounds the wait for the client's answer to a DMA_READ or
	// DMA_WRITE; the access then faults. DefaultDMATimeout if 0.
	DMATimeout time.Duration
	// WriteMultiple offers REGION_WRITE_MULTI (write_multiple) to clients
	// that offer it.
	WriteMultiple bool
}

// ServerStats count what a Server has done since it was made.
type ServerStats struct {
	Connections       uint64                  // clients accepted
	Dropped           uint64                  // connections the server ended for a protocol violation
	Messages          map[user.Command]uint64 // commands received, by command
	Errors            uint64                  // commands that failed (answered with an error, or not at all when NO_REPLY)
	Interrupts        uint64                  // eventfds signalled
	InterruptsDropped uint64                  // device interrupts on vectors without an eventfd
	InterruptsPending uint64                  // device interrupts held because the vector was masked
	DMAMessages       uint64                  // DMA_READ/DMA_WRITE requests sent to the client
	DMAMessageErrors  uint64                  // of those: error replies, timeouts, garbage
	StrayReplies      uint64                  // replies that matched no request (late, or invented)
}

// Server serves one device to vfio-user clients, one client at a time.
type Server struct {
	dev  Device
	opts ServerOptions
	log  *slog.Logger

	mu  sync.Mutex
	cur *session // the connection being served, if any

	connSeq                                                    atomic.Uint64
	dropped, errs                                              atomic.Uint64
	msgs                                                       [numCommandSlots]atomic.Uint64
	irqs, irqsDropped, irqsPending, dmaMsgs, dmaMsgErrs, stray atomic.Uint64
}

// numCommandSlots counts commands 0..18 and "any other" in the last slot.
const numCommandSlots = int(user.CmdMigDataWrite) + 2

// NewServer returns a server for dev.
func NewServer(dev Device, opts *ServerOptions) *Server {
	var o ServerOptions
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxMsgFDs <= 0 {
		o.MaxMsgFDs = DefaultServerMaxMsgFDs
	}
	o.MaxMsgFDs = min(o.MaxMsgFDs, maxMsgFDsLimit)
	if o.MaxDataXferSize == 0 {
		o.MaxDataXferSize = user.DefaultMaxDataXferSize
	}
	o.MaxDataXferSize = min(o.MaxDataXferSize, maxDataXferLimit)
	if o.MaxDMAMaps <= 0 {
		o.MaxDMAMaps = DefaultMaxDMAEntries
	}
	o.MaxDMAMaps = min(o.MaxDMAMaps, user.DefaultMaxDMAMaps)
	if o.DMATimeout <= 0 {
		o.DMATimeout = DefaultDMATimeout
	}
	return &Server{dev: dev, opts: o, log: o.Logger}
}

// Serve accepts clients on l and serves dev to them, one after another,
// until ctx ends (it then returns ctx's error; the listener stays open,
// the caller owns it). A client that connects while another is being
// served waits in the listen backlog, its VERSION unanswered, until the
// first goes; QEMU gives up after its reply timeout (5 s). Waiting rather
// than refusing means a restarted QEMU is served as soon as the old
// connection's end is noticed, without a race against it.
func Serve(ctx context.Context, l *net.UnixListener, dev Device, opts *ServerOptions) error {
	return NewServer(dev, opts).Serve(ctx, l)
}

// Serve is the function Serve, on this server.
func (s *Server) Serve(ctx context.Context, l *net.UnixListener) error {
	stop := context.AfterFunc(ctx, func() { l.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer l.SetDeadline(time.Time{})
	s.log.Info("vfio-user server listening", "socket", l.Addr().String())
	for {
		uc, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ECONNABORTED) {
				s.log.Error("vfio-user accept failed; retrying", "err", err)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			return fmt.Errorf("devicemodel: accept: %w", err)
		}
		s.ServeConn(ctx, uc)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	st := ServerStats{
		Connections:       s.connSeq.Load(),
		Dropped:           s.dropped.Load(),
		Errors:            s.errs.Load(),
		Interrupts:        s.irqs.Load(),
		InterruptsDropped: s.irqsDropped.Load(),
		InterruptsPending: s.irqsPending.Load(),
		DMAMessages:       s.dmaMsgs.Load(),
		DMAMessageErrors:  s.dmaMsgErrs.Load(),
		StrayReplies:      s.stray.Load(),
		Messages:          make(map[user.Command]uint64),
	}
	for i := range s.msgs {
		if n := s.msgs[i].Load(); n > 0 {
			cmd := user.Command(i)
			if i == numCommandSlots-1 {
				cmd = 0xffff // any command the protocol does not define
			}
			st.Messages[cmd] = n
		}
	}
	s.mu.Lock()
	if s.cur != nil {
		st.StrayReplies += s.cur.conn.StrayReplies()
	}
	s.mu.Unlock()
	return st
}

// DMAStats describes the DMA table of the connection being served (zero
// when no client is connected).
func (s *Server) DMAStats() DMAStats {
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	if cur == nil {
		return DMAStats{}
	}
	return cur.table.Stats()
}

// ServeConn serves one client on uc, which it owns and closes, until the
// client goes, breaks the protocol, or ctx ends. The device is attached
// for the duration. It returns nil when the client went away, the
// protocol violation that ended the connection, or ctx's error.
//
// A Server serves one connection at a time (the device has one host): a
// ServeConn while another runs closes uc and returns ErrServerBusy.
func (s *Server) ServeConn(ctx context.Context, uc *net.UnixConn) error {
	s.mu.Lock()
	if s.cur != nil {
		s.mu.Unlock()
		uc.Close()
		s.log.Warn("vfio-user client refused: another client is being served")
		return ErrServerBusy
	}
	ss := s.newSession(uc)
	s.cur = ss
	s.mu.Unlock()
	err := ss.run(ctx)
	s.mu.Lock()
	s.cur = nil
	s.mu.Unlock()
	s.stray.Add(ss.conn.StrayReplies())
	return err
}

// ---------------------------------------------------------------------------
// One connection

type session struct {
	srv   *Server
	id    uint64
	conn  *user.Conn
	log   *slog.Logger
	table *DMATable
	irq   *irqTable
	ctx   context.Context // ends with the connection: aborts DMA messages

	// Dispatcher state.
	negotiated bool
	cliXfer    uint32 // the client's max_data_xfer_size
	writeMulti bool
	fatal      error // set when the dispatcher decides to drop the connection
	msgs, errs uint64
}

func (s *Server) newSession(uc *net.UnixConn) *session {
	ss := &session{
		srv:     s,
		id:      s.connSeq.Add(1),
		conn:    user.NewConn(uc),
		cliXfer: user.DefaultMaxDataXferSize,
	}
	ss.log = s.log.With("conn", ss.id)
	ss.conn.SetRecvLimits(user.MaxMessageSize(s.opts.MaxDataXferSize), s.opts.MaxMsgFDs)
	ss.table = NewDMATable(ss, s.opts.MaxDMAMaps)
	ss.irq = newIRQTable(s, s.dev, ss.log)
	// Connect line: who is this?
	attrs := []any{}
	if raw, err := uc.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				attrs = append(attrs, "pid", cred.Pid, "uid", cred.Uid)
			}
		})
	}
	ss.log.Info("vfio-user client connected", attrs...)
	return ss
}

func (ss *session) run(ctx context.Context) error {
	start := time.Now()
	sctx, cancel := context.WithCancel(ctx)
	ss.ctx = sctx
	stopWatch := context.AfterFunc(sctx, func() { ss.conn.Close() })

	ss.srv.dev.Attach(ss)

	queue := make(chan *user.Message, cmdQueueDepth)
	var readErr error
	go func() {
		defer close(queue)
		readErr = ss.conn.Run(func(m *user.Message) {
			select {
			case queue <- m:
			case <-ss.conn.Done():
				m.CloseFDs()
			}
		})
	}()
	for m := range queue {
		if ss.fatal != nil {
			m.CloseFDs() // dropping: nothing more is served
			continue
		}
		ss.dispatch(m)
		if ss.fatal != nil {
			ss.conn.Close()
		}
	}
	// queue is closed, so the reader has returned and readErr is set.

	cancel()
	stopWatch()
	ss.srv.dev.Detach()
	var errs []error
	if err := ss.table.Close(); err != nil {
		errs = append(errs, err)
	}
	ss.irq.close()
	dstats := ss.table.Stats()

	var result error
	reason, level := "client went away", slog.LevelInfo
	switch {
	case ss.fatal != nil:
		result, reason, level = ss.fatal, ss.fatal.Error(), slog.LevelWarn
		ss.srv.dropped.Add(1)
	case ctx.Err() != nil:
		result, reason = ctx.Err(), "server stopping: "+ctx.Err().Error()
	case readErr != nil && !isDisconnect(readErr):
		// Framing broke: a header that cannot be decoded, or a
		// message over the limit.
		result, reason, level = readErr, "dropped for a protocol violation: "+readErr.Error(), slog.LevelWarn
		ss.srv.dropped.Add(1)
	case readErr != nil && !errors.Is(readErr, io.EOF):
		reason = "lost: " + readErr.Error() // reset, or gone mid-message
	}
	if len(errs) > 0 {
		ss.log.Error("vfio-user cleanup failed", "err", errors.Join(errs...))
	}
	ss.log.Log(context.Background(), level, "vfio-user client disconnected", "reason", reason,
		"duration", time.Since(start).Round(time.Millisecond), "messages", ss.msgs, "errors", ss.errs,
		"dma_maps", dstats.Maps, "dma_entries_left", dstats.Entries)
	return result
}

// isDisconnect reports whether a connection ended because the peer went
// away (EOF, reset) rather than because of what it sent.
func isDisconnect(err error) bool {
	var pe *user.ProtocolError
	return !errors.As(err, &pe)
}

// drop ends the connection after the current message.
func (ss *session) drop(format string, args ...any) {
	if ss.fatal == nil {
		ss.fatal = fmt.Errorf("devicemodel: dropping the connection: "+format, args...)
	}
}

// reqError is a failed command: the errno to answer with and why.
type reqError struct {
	errno syscall.Errno
	err   error
}

func failf(errno syscall.Errno, format string, args ...any) *reqError {
	return &reqError{errno: errno, err: fmt.Errorf(format, args...)}
}

// errnoOf picks the errno for a failure from the device or the table:
// the errno it wraps, else def.
func errnoOf(err error, def syscall.Errno) syscall.Errno {
	var en syscall.Errno
	if errors.As(err, &en) && en != 0 {
		return en
	}
	return def
}

func (ss *session) dispatch(m *user.Message) {
	h := m.Header
	ss.msgs++
	slot := int(h.Command)
	if slot >= numCommandSlots-1 {
		slot = numCommandSlots - 1
	}
	ss.srv.msgs[slot].Add(1)
	payload, fds, rerr := ss.handle(m)
	m.CloseFDs() // whatever the handler did not take
	if rerr == nil {
		if !h.NoReply() {
			ss.conn.Reply(h, payload, fds)
		}
		return
	}
	ss.errs++
	ss.srv.errs.Add(1)
	level := slog.LevelWarn
	if h.Command == user.CmdDMAUnmap && rerr.errno == unix.ENOENT {
		level = slog.LevelInfo // QEMU unmaps ranges it never mapped when it attaches
	}
	ss.log.Log(context.Background(), level, "vfio-user request failed", "cmd", h.Command.String(), "msg_id", h.MsgID,
		"errno", rerr.errno.Error(), "no_reply", h.NoReply(), "err", rerr.err)
	if !h.NoReply() {
		ss.conn.ReplyError(h, rerr.errno)
	}
}

// handle runs one command and returns the reply payload and descriptors,
// or the failure. The message's descriptors are closed after it returns
// unless it took them (TakeFD).
func (ss *session) handle(m *user.Message) ([]byte, []int, *reqError) {
	h := m.Header
	if m.Err != nil {
		return nil, nil, &reqError{unix.EINVAL, m.Err}
	}
	if h.Command != user.CmdVersion && !ss.negotiated {
		return nil, nil, failf(unix.EINVAL, "%s before VERSION", h.Command)
	}
	switch h.Command {
	case user.CmdDMAMap, user.CmdDeviceSetIRQs:
	default:
		if len(m.FDs) > 0 {
			return nil, nil, failf(unix.EINVAL, "%s carries %d descriptors, it takes none", h.Command, len(m.FDs))
		}
	}
	switch h.Command {
	case user.CmdVersion:
		return ss.version(m)
	case user.CmdDMAMap:
		return ss.dmaMap(m)
	case user.CmdDMAUnmap:
		return ss.dmaUnmap(m)
	case user.CmdDeviceGetInfo:
		return ss.deviceInfo(m)
	case user.CmdDeviceGetRegionInfo:
		return ss.regionInfo(m)
	case user.CmdDeviceGetIRQInfo:
		return ss.irqInfo(m)
	case user.CmdDeviceSetIRQs:
		return ss.setIRQs(m)
	case user.CmdRegionRead:
		return ss.regionRead(m)
	case user.CmdRegionWrite:
		return ss.regionWrite(m)
	case user.CmdRegionWriteMulti:
		if ss.writeMulti {
			return ss.regionWriteMulti(m)
		}
	case user.CmdDeviceReset:
		if err := ss.srv.dev.Reset(); err != nil {
			return nil, nil, &reqError{errnoOf(err, unix.EIO), fmt.Errorf("device reset: %w", err)}
		}
		ss.irq.reset()
		ss.log.Info("vfio-user device reset")
		return nil, nil, nil
	}
	return nil, nil, failf(unix.ENOSYS, "%s is not supported", h.Command)
}

func (ss *session) version(m *user.Message) ([]byte, []int, *reqError) {
	if ss.negotiated {
		return nil, nil, failf(unix.EINVAL, "second VERSION")
	}
	v, err := user.DecodeVersion(m.Payload)
	if err != nil {
		ss.drop("VERSION: %v", err)
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	if v.Major != 0 {
		ss.drop("client speaks protocol version %d.%d, this server 0.0", v.Major, v.Minor)
		return nil, nil, failf(unix.EINVAL, "major version %d", v.Major)
	}
	o := &ss.srv.opts
	fds, xfer := uint64(o.MaxMsgFDs), uint64(o.MaxDataXferSize)
	caps := &user.Capabilities{MaxMsgFDs: &fds, MaxDataXferSize: &xfer}
	cliFDs := uint64(user.DefaultMaxMsgFDs)
	if c := v.Caps; c != nil {
		if c.MaxDataXferSize != nil {
			ss.cliXfer = uint32(min(*c.MaxDataXferSize, maxDataXferLimit))
		}
		if c.MaxMsgFDs != nil {
			cliFDs = *c.MaxMsgFDs
		}
		if c.PgSizes != nil {
			if *c.PgSizes&user.DefaultPgSizes == 0 {
				ss.drop("client's pgsizes %#x lacks 4 KiB", *c.PgSizes)
				return nil, nil, failf(unix.EINVAL, "pgsizes %#x lacks 4 KiB", *c.PgSizes)
			}
			pg := uint64(user.DefaultPgSizes)
			caps.PgSizes = &pg
		}
		if c.MaxDMAMaps != nil {
			n := min(uint64(o.MaxDMAMaps), *c.MaxDMAMaps)
			caps.MaxDMAMaps = &n
		}
		if c.WriteMultiple && o.WriteMultiple {
			caps.WriteMultiple = true
			ss.writeMulti = true
		}
	}
	if cliFDs < 1 {
		ss.drop("client takes max_msg_fds %d; region descriptors cannot be sent", cliFDs)
		return nil, nil, failf(unix.EINVAL, "max_msg_fds %d", cliFDs)
	}
	ss.negotiated = true
	ss.log.Info("vfio-user version negotiated", "client_minor", v.Minor, "client_max_data_xfer_size", ss.cliXfer,
		"client_max_msg_fds", cliFDs, "max_msg_fds", fds, "max_data_xfer_size", xfer, "write_multiple", ss.writeMulti,
		"dma_wire", o.DMAWire.String())
	return user.Version{Major: 0, Minor: 0, Caps: caps}.Encode(nil), nil, nil
}

func (ss *session) dmaMap(m *user.Message) ([]byte, []int, *reqError) {
	d, err := user.DecodeDMAMap(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	if len(m.FDs) > 1 {
		return nil, nil, failf(unix.EINVAL, "DMA_MAP with %d descriptors", len(m.FDs))
	}
	if d.Flags&^(user.DMAMapRead|user.DMAMapWrite) != 0 {
		return nil, nil, failf(unix.EINVAL, "DMA_MAP flags %#x", uint32(d.Flags))
	}
	var perm vfio.Perm
	if d.Flags&user.DMAMapRead != 0 {
		perm |= vfio.DMARead
	}
	if d.Flags&user.DMAMapWrite != 0 {
		perm |= vfio.DMAWrite
	}
	if err := ss.table.Map(vfio.IOVA(d.Address), d.Size, perm, m.TakeFD(0), d.Offset); err != nil {
		return nil, nil, &reqError{errnoOf(err, unix.EINVAL), err}
	}
	return nil, nil, nil
}

func (ss *session) dmaUnmap(m *user.Message) ([]byte, []int, *reqError) {
	d, err := user.DecodeDMAUnmap(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	switch {
	case d.Flags&^user.DMAUnmapAll != 0:
		return nil, nil, failf(unix.EINVAL, "DMA_UNMAP flags %#x (dirty bitmaps are not supported)", uint32(d.Flags))
	case d.Flags&user.DMAUnmapAll != 0:
		if d.Address != 0 || d.Size != 0 {
			return nil, nil, failf(unix.EINVAL, "UNMAP_ALL with address %#x size %#x", d.Address, d.Size)
		}
		if err := ss.table.UnmapAll(); err != nil {
			return nil, nil, &reqError{unix.EIO, err}
		}
	default:
		if err := ss.table.Unmap(vfio.IOVA(d.Address), d.Size); err != nil {
			return nil, nil, &reqError{errnoOf(err, unix.EINVAL), err}
		}
	}
	return user.DMAUnmap{ArgSz: 0, Flags: d.Flags, Address: d.Address, Size: d.Size}.Encode(nil), nil, nil
}

func (ss *session) deviceInfo(m *user.Message) ([]byte, []int, *reqError) {
	if _, err := user.DecodeDeviceInfo(m.Payload); err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	di := ss.srv.dev.Info()
	var flags user.DeviceFlags
	if di.Reset {
		flags |= user.DeviceFlagReset
	}
	if di.PCI {
		flags |= user.DeviceFlagPCI
	}
	return user.DeviceInfo{Flags: flags, NumRegions: di.NumRegions, NumIRQs: di.NumIRQs}.Encode(nil), nil, nil
}

// sizeofSparseReply is the region info reply with a sparse mmap capability
// of n areas: the 32-byte struct, the 16-byte capability head, 16 bytes
// per area. Encoding the reply gives the same number; this tells the
// short reply how much room to ask for.
func sizeofSparseReply(n int) (uint32, error) {
	b, err := user.RegionInfo{Caps: []user.RegionCap{user.SparseMmapCap{Areas: make([]user.SparseArea, n)}}}.Encode(nil)
	return uint32(len(b)), err
}

func (ss *session) regionInfo(m *user.Message) ([]byte, []int, *reqError) {
	req, err := user.DecodeRegionInfoRequest(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	di := ss.srv.dev.Info()
	if uint32(req.Index) >= di.NumRegions {
		return nil, nil, failf(unix.EINVAL, "region %d of %d", req.Index, di.NumRegions)
	}
	r := ss.srv.dev.Region(vfio.RegionIndex(req.Index))
	ri := user.RegionInfo{Index: req.Index, Size: r.Info.Size}
	if r.Info.Size == 0 {
		b, _ := ri.Encode(nil) // cannot fail without capabilities
		return b, nil, nil
	}
	if r.Info.Flags&vfio.RegionRead != 0 {
		ri.Flags |= user.RegionFlagRead
	}
	if r.Info.Flags&vfio.RegionWrite != 0 {
		ri.Flags |= user.RegionFlagWrite
	}
	areas := r.Info.Mappable()
	if r.FD < 0 || len(areas) == 0 {
		b, _ := ri.Encode(nil)
		return b, nil, nil
	}
	ri.Flags |= user.RegionFlagMmap
	ri.Offset = r.MmapOffset
	need, err := sizeofSparseReply(len(areas))
	if err != nil {
		return nil, nil, &reqError{unix.EIO, err}
	}
	if req.ArgSz < need {
		// Too small for the capability: the 32-byte struct alone,
		// argsz saying how much to ask for, no descriptor.
		ri.ArgSz = need
		b, _ := ri.Encode(nil)
		return b, nil, nil
	}
	sp := user.SparseMmapCap{Areas: make([]user.SparseArea, len(areas))}
	for i, a := range areas {
		sp.Areas[i] = user.SparseArea{Offset: a.Offset, Size: a.Size}
	}
	ri.Caps = []user.RegionCap{sp}
	b, err := ri.Encode(nil)
	if err != nil {
		return nil, nil, &reqError{unix.EIO, err}
	}
	return b, []int{r.FD}, nil // the device keeps its fd; SCM_RIGHTS sends a copy
}

func (ss *session) irqInfo(m *user.Message) ([]byte, []int, *reqError) {
	req, err := user.DecodeIRQInfo(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	di := ss.srv.dev.Info()
	if uint32(req.Index) >= di.NumIRQs {
		return nil, nil, failf(unix.EINVAL, "interrupt type %d of %d", req.Index, di.NumIRQs)
	}
	q := ss.srv.dev.IRQ(vfio.IRQIndex(req.Index))
	flags := user.IRQInfoFlags(q.Flags) & (user.IRQInfoEventFD | user.IRQInfoMaskable | user.IRQInfoAutomasked | user.IRQInfoNoResize)
	return user.IRQInfo{Flags: flags, Index: req.Index, Count: min(q.Count, maxIRQVectors)}.Encode(nil), nil, nil
}

// regionCheck validates an access of count bytes at off of region idx
// against the region and the negotiated transfer size.
func (ss *session) regionCheck(idx user.RegionIndex, off uint64, count int, flag vfio.RegionFlags) *reqError {
	di := ss.srv.dev.Info()
	if uint32(idx) >= di.NumRegions {
		return failf(unix.EINVAL, "region %d of %d", idx, di.NumRegions)
	}
	info := ss.srv.dev.Region(vfio.RegionIndex(idx)).Info
	switch {
	case info.Size == 0:
		return failf(unix.EINVAL, "region %d does not exist", idx)
	case info.Flags&flag == 0:
		return failf(unix.EINVAL, "region %d does not allow that access (flags %#x)", idx, info.Flags)
	case count == 0:
		return failf(unix.EINVAL, "empty access to region %d", idx)
	case count > int(ss.srv.opts.MaxDataXferSize):
		return failf(unix.EINVAL, "%d bytes exceed max_data_xfer_size %d", count, ss.srv.opts.MaxDataXferSize)
	case off > info.Size || uint64(count) > info.Size-off:
		return failf(unix.EINVAL, "%d bytes at %#x are outside region %d (%#x bytes)", count, off, idx, info.Size)
	}
	return nil
}

func (ss *session) regionRead(m *user.Message) ([]byte, []int, *reqError) {
	a, err := user.DecodeRegionReadRequest(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	if rerr := ss.regionCheck(a.Region, a.Offset, int(a.Count), vfio.RegionRead); rerr != nil {
		return nil, nil, rerr
	}
	// One buffer: the reply head, then the data the device fills in.
	b := user.RegionAccess{Offset: a.Offset, Region: a.Region, Count: a.Count}.Encode(make([]byte, 0, 16+int(a.Count)))
	head := len(b)
	b = b[:head+int(a.Count)]
	if err := ss.srv.dev.ReadRegion(vfio.RegionIndex(a.Region), a.Offset, b[head:]); err != nil {
		return nil, nil, &reqError{errnoOf(err, unix.EIO), fmt.Errorf("device read of %d bytes of region %d at %#x: %w", a.Count, a.Region, a.Offset, err)}
	}
	return b, nil, nil
}

func (ss *session) regionWrite(m *user.Message) ([]byte, []int, *reqError) {
	d, err := user.DecodeRegionWriteRequest(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	if rerr := ss.regionCheck(d.Region, d.Offset, len(d.Data), vfio.RegionWrite); rerr != nil {
		return nil, nil, rerr
	}
	if err := ss.srv.dev.WriteRegion(vfio.RegionIndex(d.Region), d.Offset, d.Data); err != nil {
		return nil, nil, &reqError{errnoOf(err, unix.EIO), fmt.Errorf("device write of %d bytes to region %d at %#x: %w", len(d.Data), d.Region, d.Offset, err)}
	}
	return user.RegionAccess{Offset: d.Offset, Region: d.Region, Count: uint32(len(d.Data))}.Encode(nil), nil, nil
}

func (ss *session) regionWriteMulti(m *user.Message) ([]byte, []int, *reqError) {
	wm, err := user.DecodeRegionWriteMulti(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	for i := range wm.Writes {
		w := &wm.Writes[i]
		if rerr := ss.regionCheck(w.Region, w.Offset, int(w.Count), vfio.RegionWrite); rerr != nil {
			rerr.err = fmt.Errorf("write %d of %d: %w", i, len(wm.Writes), rerr.err)
			return nil, nil, rerr
		}
		if err := ss.srv.dev.WriteRegion(vfio.RegionIndex(w.Region), w.Offset, w.Bytes()); err != nil {
			return nil, nil, &reqError{errnoOf(err, unix.EIO), fmt.Errorf("write %d of %d: device write to region %d at %#x: %w", i, len(wm.Writes), w.Region, w.Offset, err)}
		}
	}
	return user.RegionWriteMultiReply{Count: uint64(len(wm.Writes))}.Encode(nil), nil, nil
}

func (ss *session) setIRQs(m *user.Message) ([]byte, []int, *reqError) {
	q, err := user.DecodeIRQSet(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	if err := ss.irq.set(q, m); err != nil {
		return nil, nil, err
	}
	return nil, nil, nil
}

// ---------------------------------------------------------------------------
// Host, for the device

// Read implements Host.
func (ss *session) Read(iova vfio.IOVA, b []byte) error { return ss.table.Read(iova, b) }

// Write implements Host.
func (ss *session) Write(iova vfio.IOVA, b []byte) error { return ss.table.Write(iova, b) }

// Load32 implements Host.
func (ss *session) Load32(iova vfio.IOVA) (uint32, error) { return ss.table.Load32(iova) }

// Store32 implements Host.
func (ss *session) Store32(iova vfio.IOVA, v uint32) error { return ss.table.Store32(iova, v) }

// Load64 implements Host.
func (ss *session) Load64(iova vfio.IOVA) (uint64, error) { return ss.table.Load64(iova) }

// Store64 implements Host.
func (ss *session) Store64(iova vfio.IOVA, v uint64) error { return ss.table.Store64(iova, v) }

// Pin implements Pinner: direct views of memory-backed mappings.
func (ss *session) Pin(iova vfio.IOVA, size uint64, perm vfio.Perm, revoke func()) ([]byte, func(), error) {
	return ss.table.Pin(iova, size, perm, revoke)
}

// Interrupt implements Host.
func (ss *session) Interrupt(idx vfio.IRQIndex, vector uint32) error {
	return ss.irq.interrupt(idx, vector)
}

// ReadDMA implements DMAMessenger: DMA_READ requests to the client, in
// pieces no larger than both ends' max_data_xfer_size.
func (ss *session) ReadDMA(iova uint64, b []byte) error { return ss.dmaMessage(iova, b, false) }

// WriteDMA implements DMAMessenger with DMA_WRITE requests.
func (ss *session) WriteDMA(iova uint64, b []byte) error { return ss.dmaMessage(iova, b, true) }

func (ss *session) dmaMessage(iova uint64, b []byte, write bool) error {
	chunk := int(min(ss.cliXfer, ss.srv.opts.MaxDataXferSize))
	if chunk == 0 {
		return errors.New("the client takes no DMA data (max_data_xfer_size 0)")
	}
	wire := ss.srv.opts.DMAWire
	for done := 0; done < len(b); {
		n := min(len(b)-done, chunk)
		at := iova + uint64(done)
		ss.srv.dmaMsgs.Add(1)
		if err := ss.dmaOne(at, b[done:done+n], write, wire); err != nil {
			ss.srv.dmaMsgErrs.Add(1)
			return err
		}
		done += n
	}
	return nil
}

func (ss *session) dmaOne(at uint64, p []byte, write bool, wire user.DMAWire) error {
	ctx, cancel := context.WithTimeout(ss.ctx, ss.srv.opts.DMATimeout)
	defer cancel()
	cmd := user.CmdDMARead
	var req []byte
	var err error
	if write {
		cmd = user.CmdDMAWrite
		req, err = user.DMAWriteRequest{Address: at, Data: p}.Encode(nil, wire)
	} else {
		req, err = user.DMAReadRequest{Address: at, Count: uint64(len(p))}.Encode(nil, wire)
	}
	if err != nil {
		return err
	}
	m, err := ss.conn.Call(ctx, cmd, req, nil)
	if err != nil {
		return fmt.Errorf("%s of %d bytes at %#x: %w", cmd, len(p), at, err)
	}
	defer m.CloseFDs()
	if len(m.FDs) > 0 {
		return fmt.Errorf("%s reply carries descriptors", cmd)
	}
	if write {
		r, err := user.DecodeDMAWriteReply(m.Payload, wire)
		if err != nil {
			return err
		}
		if wire == user.DMAWireSpec && (r.Address != at || r.Count != uint64(len(p))) {
			return fmt.Errorf("DMA_WRITE of %d bytes at %#x: reply echoes %d bytes at %#x", len(p), at, r.Count, r.Address)
		}
		return nil
	}
	r, err := user.DecodeDMAReadReply(m.Payload, wire)
	if err != nil {
		return err
	}
	if r.Address != at || len(r.Data) != len(p) {
		return fmt.Errorf("DMA_READ of %d bytes at %#x: reply has %d bytes at %#x", len(p), at, len(r.Data), r.Address)
	}
	copy(p, r.Data)
	return nil
}

// ---------------------------------------------------------------------------
// Interrupts

// irqVector is one interrupt: where it goes and whether it is held.
type irqVector struct {
	trigger int // eventfd to signal, or -1
	masked  bool
	pending bool
	mask    *fdWatch // eventfd the client signals to mask, if any
	unmask  *fdWatch // eventfd the client signals to unmask (INTx resample)
}

// irqTable is the connection's interrupt routing, from SET_IRQS.
type irqTable struct {
	srv *Server
	log *slog.Logger

	mu     sync.Mutex
	vecs   [][]irqVector // by vfio.IRQIndex; len is the device's count
	closed bool
}

func newIRQTable(srv *Server, dev Device, log *slog.Logger) *irqTable {
	t := &irqTable{srv: srv, log: log}
	n := dev.Info().NumIRQs
	t.vecs = make([][]irqVector, min(n, 64))
	for i := range t.vecs {
		c := min(dev.IRQ(vfio.IRQIndex(i)).Count, maxIRQVectors)
		t.vecs[i] = make([]irqVector, c)
		for j := range t.vecs[i] {
			t.vecs[i][j].trigger = -1
		}
	}
	return t
}

// interrupt raises vector of idx for the device.
func (t *irqTable) interrupt(idx vfio.IRQIndex, vector uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(idx) >= len(t.vecs) || int64(vector) >= int64(len(t.vecs[idx])) {
		return fmt.Errorf("devicemodel: interrupt %v vector %d: %w", idx, vector, vfio.ErrNoIRQ)
	}
	v := &t.vecs[idx][vector]
	switch {
	case t.closed || v.trigger < 0:
		t.srv.irqsDropped.Add(1)
	case v.masked:
		v.pending = true
		t.srv.irqsPending.Add(1)
	default:
		t.fire(v.trigger)
	}
	return nil
}

// fire signals an eventfd: adds 1 to its counter. t.mu held. It never
// blocks: an eventfd whose counter is full (the client wrote near 2^64)
// is not writable, and the interrupt is dropped.
func (t *irqTable) fire(fd int) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if n, err := unix.Poll(pfd, 0); err != nil || n == 0 || pfd[0].Revents&unix.POLLOUT == 0 {
		t.srv.irqsDropped.Add(1)
		return
	}
	one := [8]byte{1} // u64 1, little-endian (host order on the hosts we support)
	if _, err := unix.Write(fd, one[:]); err != nil {
		t.srv.irqsDropped.Add(1)
		return
	}
	t.srv.irqs.Add(1)
}

// setMask masks or unmasks a vector; unmasking fires a pending interrupt.
// t.mu held.
func (t *irqTable) setMask(v *irqVector, masked bool) {
	v.masked = masked
	if !masked && v.pending && v.trigger >= 0 {
		v.pending = false
		t.fire(v.trigger)
	}
}

// reset clears pending interrupts and masks (DEVICE_RESET); eventfds stay.
func (t *irqTable) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.vecs {
		for j := range t.vecs[i] {
			t.vecs[i][j].pending, t.vecs[i][j].masked = false, false
		}
	}
}

// release closes what vector v holds. t.mu held; watchers are stopped
// after it is released (they take t.mu), so they are returned.
func (v *irqVector) release() []*fdWatch {
	if v.trigger >= 0 {
		unix.Close(v.trigger)
		v.trigger = -1
	}
	var w []*fdWatch
	if v.mask != nil {
		w = append(w, v.mask)
		v.mask = nil
	}
	if v.unmask != nil {
		w = append(w, v.unmask)
		v.unmask = nil
	}
	return w
}

// close releases every eventfd; later interrupts are dropped.
func (t *irqTable) close() {
	t.mu.Lock()
	t.closed = true
	var stop []*fdWatch
	for i := range t.vecs {
		for j := range t.vecs[i] {
			v := &t.vecs[i][j]
			stop = append(stop, v.release()...)
			v.masked, v.pending = false, false
		}
	}
	t.mu.Unlock()
	for _, w := range stop {
		w.stop()
	}
}

// isEventfd reports whether fd is an eventfd.
func isEventfd(fd int) bool {
	l, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return err == nil && l == "anon_inode:[eventfd]"
}

// set applies a SET_IRQS message (validated as libvfio-user's irq.c
// does, see the design notes 1.11). Eventfds it keeps are taken from m.
func (t *irqTable) set(q user.IRQSet, m *user.Message) *reqError {
	const (
		dataMask   = user.IRQSetDataNone | user.IRQSetDataBool | user.IRQSetDataEventFD
		actionMask = user.IRQSetActionMask | user.IRQSetActionUnmask | user.IRQSetActionTrigger
	)
	data, action := q.Flags&dataMask, q.Flags&actionMask
	if int(q.Index) >= len(t.vecs) || len(t.vecs[q.Index]) == 0 {
		return failf(unix.EINVAL, "interrupt type %d is not implemented", q.Index)
	}
	n := uint64(len(t.vecs[q.Index]))
	nfds := len(m.FDs)
	switch {
	case nfds > 0 && data != user.IRQSetDataEventFD:
		return failf(unix.EINVAL, "%d descriptors without DATA_EVENTFD", nfds)
	case q.Count == 0 && (data != user.IRQSetDataNone || action != user.IRQSetActionTrigger || q.Start != 0):
		return failf(unix.EINVAL, "count 0 is only DATA_NONE|ACTION_TRIGGER at start 0 (flags %#x, start %d)", uint32(q.Flags), q.Start)
	case uint64(q.Start) >= n || uint64(q.Start)+uint64(q.Count) > n:
		return failf(unix.EINVAL, "vectors %d+%d of interrupt type %d, which has %d", q.Start, q.Count, q.Index, n)
	case (vfio.IRQIndex(q.Index) == vfio.IRQErr || vfio.IRQIndex(q.Index) == vfio.IRQReq) && (action != user.IRQSetActionTrigger || q.Count > 1):
		return failf(unix.EINVAL, "ERR and REQ take only ACTION_TRIGGER with count <= 1")
	case data == user.IRQSetDataEventFD && nfds != 0 && nfds != int(q.Count):
		return failf(unix.EINVAL, "%d eventfds for %d vectors", nfds, q.Count)
	}
	for i, fd := range m.FDs {
		if !isEventfd(fd) {
			return failf(unix.EINVAL, "descriptor %d of %d is not an eventfd", i, nfds)
		}
	}

	t.mu.Lock()
	var stop []*fdWatch
	defer func() {
		t.mu.Unlock()
		for _, w := range stop {
			w.stop()
		}
	}()
	vecs := t.vecs[q.Index]
	if q.Count == 0 { // disable the whole index
		for j := range vecs {
			stop = append(stop, vecs[j].release()...)
			vecs[j].masked, vecs[j].pending = false, false
		}
		return nil
	}
	for k := range q.Count {
		v := &vecs[q.Start+k]
		switch data {
		case user.IRQSetDataEventFD:
			fd := -1
			if nfds > 0 {
				fd = m.TakeFD(int(k))
			}
			switch action {
			case user.IRQSetActionTrigger:
				if v.trigger >= 0 {
					unix.Close(v.trigger)
				}
				v.trigger = fd
				if fd >= 0 && v.pending && !v.masked {
					v.pending = false
					t.fire(fd)
				}
			case user.IRQSetActionMask, user.IRQSetActionUnmask:
				slot := &v.mask
				masked := action == user.IRQSetActionMask
				if !masked {
					slot = &v.unmask
				}
				if *slot != nil {
					stop = append(stop, *slot)
					*slot = nil
				}
				if fd >= 0 {
					w, err := t.watch(fd, vfio.IRQIndex(q.Index), q.Start+k, masked)
					if err != nil {
						return &reqError{unix.EIO, err}
					}
					*slot = w
				}
			}
		case user.IRQSetDataNone, user.IRQSetDataBool:
			if data == user.IRQSetDataBool && q.Data[k] == 0 {
				continue
			}
			switch action {
			case user.IRQSetActionTrigger:
				if v.trigger >= 0 && !v.masked {
					t.fire(v.trigger)
				} else if v.masked {
					v.pending = true
				}
			case user.IRQSetActionMask:
				t.setMask(v, true)
			case user.IRQSetActionUnmask:
				t.setMask(v, false)
			}
		}
	}
	return nil
}

// fdWatch waits for a client's mask or unmask eventfd and applies it.
type fdWatch struct {
	fd, stopfd int
	done       chan struct{}
}

// watch starts a goroutine that masks (or unmasks) vector of idx each
// time the client signals fd. The watch owns fd.
//
// The fd is switched to non-blocking, so a client that reads its own
// eventfd between our poll and our read cannot make the read, and so the
// connection's teardown, hang. (That flag is shared with the client's copy;
// the client only writes this eventfd, which never blocks short of counter
// overflow.)
func (t *irqTable) watch(fd int, idx vfio.IRQIndex, vector uint32, mask bool) (*fdWatch, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make eventfd non-blocking: %w", err)
	}
	stopfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &fdWatch{fd: fd, stopfd: stopfd, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(stopfd), Events: unix.POLLIN}}
		var buf [8]byte
		for {
			pfd[0].Revents, pfd[1].Revents = 0, 0
			if _, err := unix.Poll(pfd, -1); err != nil {
				if err == unix.EINTR {
					continue
				}
				return
			}
			if pfd[1].Revents != 0 {
				return
			}
			if pfd[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
				return
			}
			if pfd[0].Revents&unix.POLLIN == 0 {
				continue
			}
			if _, err := unix.Read(fd, buf[:]); err != nil && err != unix.EAGAIN && err != unix.EINTR {
				return
			}
			t.mu.Lock()
			if !t.closed && int(idx) < len(t.vecs) && int(vector) < len(t.vecs[idx]) {
				t.setMask(&t.vecs[idx][vector], mask)
			}
			t.mu.Unlock()
		}
	}()
	return w, nil
}

// stop ends the watch and closes its descriptors. Not with t.mu held.
func (w *fdWatch) stop() {
	one := [8]byte{1}
	unix.Write(w.stopfd, one[:])
	<-w.done
	unix.Close(w.fd)
	unix.Close(w.stopfd)
}
