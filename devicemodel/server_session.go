package devicemodel

// One connection: the session that runs it, the dispatcher that handles
// the client's commands in order, VERSION negotiation and DEVICE_GET_INFO.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/vfio/user"
)

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
