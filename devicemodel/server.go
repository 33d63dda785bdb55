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
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

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

// Stats returns the server's counters: how a program that runs the server
// (and the QEMU tier of the tests) sees what it has done.
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
