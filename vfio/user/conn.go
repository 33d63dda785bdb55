package user

// The message transport: one vfio-user connection over a UNIX stream
// socket, shared by the client (Client) and the server (package
// devicemodel). It frames messages (header, then exactly msg_size-16 more
// bytes), carries file descriptors as SCM_RIGHTS on a message's first
// byte, numbers outgoing commands and routes replies to the goroutine
// waiting for them, so either end can send commands while it keeps reading
// the other's.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/internal/fdpass"
	"github.com/ycq-dev/ycq/vfio"
)

// ErrClosed: the connection is closed or broken (the peer went away, or
// sent something that ends the stream). It wraps vfio.ErrClosed, so a
// Device method that fails this way satisfies errors.Is(err,
// vfio.ErrClosed). Errors returned with it also wrap the cause (io.EOF for
// a peer that closed between messages).
var ErrClosed = fmt.Errorf("vfio-user: connection closed: %w", vfio.ErrClosed)

// closedError is why a connection ended: ErrClosed and the cause.
type closedError struct{ cause error }

func (e *closedError) Error() string   { return "vfio-user: connection closed: " + e.cause.Error() }
func (e *closedError) Unwrap() []error { return []error{ErrClosed, e.cause} }

// DefaultMaxRecvFDs is how many descriptors a Conn accepts with one
// message until SetRecvLimits says otherwise (QEMU offers 16).
const DefaultMaxRecvFDs = 16

// Message is one received message. Whoever holds it owns its descriptors:
// take the ones you keep out of FDs (TakeFD) and call CloseFDs for the rest.
type Message struct {
	Header  Header
	Payload []byte // the msg_size-16 bytes after the header
	FDs     []int  // descriptors that came with the message, close-on-exec
	// Err is set when the message arrived whole, so the stream is still
	// in step, but carried descriptors it may not (more than the limit, or
	// after its first byte); those were closed. Answer it with EINVAL.
	Err error
}

// TakeFD removes descriptor i from m.FDs and returns it; the caller owns
// it. It returns -1 if there is no such descriptor.
func (m *Message) TakeFD(i int) int {
	if i < 0 || i >= len(m.FDs) || m.FDs[i] < 0 {
		return -1
	}
	fd := m.FDs[i]
	m.FDs[i] = -1
	return fd
}

// CloseFDs closes every descriptor still in m.FDs.
func (m *Message) CloseFDs() {
	for i, fd := range m.FDs {
		if fd >= 0 {
			unix.Close(fd)
			m.FDs[i] = -1
		}
	}
	m.FDs = nil
}

// Conn is one end of a vfio-user connection.
//
// Concurrency: any number of goroutines may send (Send, Call, Reply)
// at once; each message goes out whole, with its descriptors, before the
// next starts. Exactly one goroutine reads: either Run, which also routes
// replies to Call, or a caller of Recv that does its own matching; never
// both. Call needs Run running on another goroutine.
//
// Ownership: the Conn owns the socket and closes it in Close, or when
// the stream breaks. Descriptors passed to Send are not taken: they stay
// the caller's. Received descriptors belong to whoever holds the Message.
type Conn struct {
	uc *net.UnixConn

	maxRecvSize atomic.Int64 // largest incoming message, header included
	maxRecvFDs  atomic.Int32 // most descriptors with one incoming message
	oob         []byte       // reader only: control buffer for the first chunk
	oobRest     []byte       // reader only: control buffer for later chunks

	wmu sync.Mutex // serialises writers

	mu      sync.Mutex
	pending map[uint16]chan *Message // Call waiters by msg_id
	nextID  uint16
	err     error         // why the connection ended; set once
	done    chan struct{} // closed when err is set

	stray atomic.Uint64 // replies nobody waited for (late, or never asked)
}

// NewConn wraps a connected UNIX stream socket. The Conn owns uc from now
// on. Until SetRecvLimits is called it accepts messages up to
// DefaultMaxMessageSize bytes with up to DefaultMaxRecvFDs descriptors.
func NewConn(uc *net.UnixConn) *Conn {
	c := &Conn{
		uc:      uc,
		pending: make(map[uint16]chan *Message),
		done:    make(chan struct{}),
		oobRest: make([]byte, unix.CmsgSpace(4)),
	}
	c.SetRecvLimits(DefaultMaxMessageSize, DefaultMaxRecvFDs)
	return c
}

// SetRecvLimits sets the largest message (header included) and the most
// descriptors this end accepts from now on: what it advertised as
// max_data_xfer_size (through MaxMessageSize) and max_msg_fds. A larger
// message ends the connection; extra descriptors are closed and the
// message is delivered with Err set.
func (c *Conn) SetRecvLimits(maxSize, maxFDs int) {
	c.maxRecvSize.Store(int64(max(maxSize, HeaderSize)))
	c.maxRecvFDs.Store(int32(min(max(maxFDs, 0), fdpass.MaxFDs)))
}

// Done is closed when the connection has ended (Close, a broken stream, or
// the peer going away).
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended (wrapping ErrClosed), or nil while
// it is up.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// StrayReplies counts replies that matched no waiting Call: answers that
// came after their Call gave up, or replies to nothing.
func (c *Conn) StrayReplies() uint64 { return c.stray.Load() }

// Close shuts the connection: the socket is closed, Run and Recv return,
// and waiting and later calls fail with ErrClosed.
func (c *Conn) Close() error {
	return c.fail(errors.New("closed locally"))
}

// fail ends the connection once, with cause, and wakes every waiter.
func (c *Conn) fail(cause error) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil
	}
	c.err = &closedError{cause}
	waiters := c.pending
	c.pending = nil
	close(c.done)
	c.mu.Unlock()
	for _, ch := range waiters {
		close(ch)
	}
	// Unblocks a reader and any writer; their errors are the cause's echo.
	if err := c.uc.Close(); err != nil {
		return fmt.Errorf("vfio-user: close socket: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Writing

// Send writes one complete encoded message (header with msg_size filled
// in, then the payload) with fds attached to its first byte. The fds stay
// the caller's. A write error ends the connection.
func (c *Conn) Send(msg []byte, fds []int) error {
	if len(msg) < HeaderSize {
		return invalidf("message of %d bytes has no header", len(msg))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.Err(); err != nil {
		return err
	}
	if err := fdpass.Send(c.uc, msg, fds...); err != nil {
		c.fail(err)
		if cerr := c.Err(); cerr != nil {
			return cerr
		}
		return err
	}
	return nil
}

// send encodes h and payload into one buffer and sends it.
func (c *Conn) send(h Header, payload []byte, fds []int) error {
	b, err := EncodeMessage(make([]byte, 0, HeaderSize+len(payload)), h, payload)
	if err != nil {
		return err
	}
	return c.Send(b, fds)
}

// Reply sends a successful reply to the command req, with payload and fds.
func (c *Conn) Reply(req Header, payload []byte, fds []int) error {
	return c.send(ReplyTo(req), payload, fds)
}

// ReplyError sends the header-only error reply to req.
func (c *Conn) ReplyError(req Header, errno syscall.Errno) error {
	return c.send(ErrorReplyTo(req, errno), nil, nil)
}

// allocID picks the next msg_id that no Call is waiting on, and registers
// ch as its waiter.
func (c *Conn) allocID(ch chan *Message) (uint16, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	for range 1 << 16 {
		id := c.nextID
		c.nextID++
		if _, busy := c.pending[id]; busy {
			continue
		}
		c.pending[id] = ch
		return id, nil
	}
	return 0, fmt.Errorf("vfio-user: all 65536 message ids are waiting for replies")
}

func (c *Conn) forget(id uint16, ch chan *Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[id] == ch {
		delete(c.pending, id)
	}
}

// Call sends command cmd with payload and fds and waits for its reply,
// until ctx ends or the connection does. Run must be running. It returns
// the reply, whose descriptors the caller owns, or: a *RemoteError when
// the peer answered with an error (its descriptors closed), a
// *ProtocolError when the reply names another command, ctx's error, or an
// error wrapping ErrClosed.
func (c *Conn) Call(ctx context.Context, cmd Command, payload []byte, fds []int) (*Message, error) {
	ch := make(chan *Message, 1)
	id, err := c.allocID(ch)
	if err != nil {
		return nil, err
	}
	if err := c.send(Header{MsgID: id, Command: cmd, Flags: TypeCommand}, payload, fds); err != nil {
		c.forget(id, ch)
		return nil, err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, c.Err()
		}
		if m.Header.Command != cmd {
			m.CloseFDs()
			return nil, &ProtocolError{Command: cmd, Field: "command",
				Reason: fmt.Sprintf("reply to msg_id %d names %s", id, m.Header.Command)}
		}
		if m.Err != nil {
			return nil, m.Err
		}
		if err := m.Header.Err(); err != nil {
			m.CloseFDs()
			return nil, err
		}
		return m, nil
	case <-ctx.Done():
		// Run delivers under c.mu: once we hold it, the reply is
		// either still expected (forget it) or already in ch.
		c.mu.Lock()
		if c.pending[id] == ch {
			delete(c.pending, id)
		} else {
			select {
			case m, ok := <-ch:
				if ok {
					m.CloseFDs()
				}
			default:
			}
		}
		c.mu.Unlock()
		return nil, fmt.Errorf("vfio-user: %s (msg_id %d): no reply: %w", cmd, id, ctx.Err())
	}
}

// ---------------------------------------------------------------------------
// Reading

// Run reads messages until the connection ends, hands each command to
// handle (on Run's goroutine, in arrival order; handle owns the message
// and must not wait for a reply to a Call, which only Run can deliver) and
// routes each reply to the Call waiting for it (a reply nobody waits for
// is dropped and counted). It returns why the connection ended, wrapping
// ErrClosed; the cause is io.EOF when the peer closed between messages.
func (c *Conn) Run(handle func(*Message)) error {
	for {
		m, err := c.Recv()
		if err != nil {
			c.fail(err)
			return c.Err()
		}
		if !m.Header.IsReply() {
			handle(m)
			continue
		}
		c.mu.Lock()
		ch := c.pending[m.Header.MsgID]
		if ch != nil {
			delete(c.pending, m.Header.MsgID)
			ch <- m // buffered (1) and sent once: never blocks
		}
		c.mu.Unlock()
		if ch == nil {
			c.stray.Add(1)
			m.CloseFDs()
		}
	}
}

// Recv reads one message. Errors end the stream (the peer went away, a
// header that cannot be framed, a message over the limit, a socket
// error); the caller should Close. A message that arrived whole but with
// descriptors it may not carry is returned with Message.Err set. Only one
// goroutine may read.
func (c *Conn) Recv() (*Message, error) {
	maxFDs := int(c.maxRecvFDs.Load())
	if need := unix.CmsgSpace(4 * max(maxFDs, 1)); len(c.oob) != need {
		c.oob = make([]byte, need)
	}
	var hdr [HeaderSize]byte
	m := &Message{}
	if err := c.readFull(hdr[:], m, maxFDs, true); err != nil {
		m.CloseFDs()
		return nil, err
	}
	h, err := DecodeHeader(hdr[:])
	if err == nil {
		err = h.CheckSize(int(c.maxRecvSize.Load()))
	}
	if err != nil {
		m.CloseFDs()
		return nil, err
	}
	m.Header = h
	if n := h.PayloadLen(); n > 0 {
		m.Payload = make([]byte, n) // n is bounded by CheckSize
		if err := c.readFull(m.Payload, m, maxFDs, false); err != nil {
			m.CloseFDs()
			return nil, err
		}
	}
	if m.Err != nil {
		m.CloseFDs()
		m.Err = &ProtocolError{Command: h.Command, Field: "SCM_RIGHTS", Reason: m.Err.Error()}
	}
	return m, nil
}

// readFull fills b from the socket. Descriptors may arrive only with the
// first chunk of a message (first is true for the header); they are
// appended to m.FDs, up to maxFDs. Descriptors beyond that, or arriving
// later, are closed and recorded in m.Err.
func (c *Conn) readFull(b []byte, m *Message, maxFDs int, first bool) error {
	got := 0
	for got < len(b) {
		oob := c.oobRest
		if first && got == 0 {
			oob = c.oob
		}
		n, oobn, flags, _, err := c.uc.ReadMsgUnix(b[got:], oob)
		if oobn > 0 {
			fds, perr := parseRights(oob[:oobn])
			switch {
			case perr != nil:
				fdpass.CloseAll(fds)
				m.setErr(perr)
			case !(first && got == 0):
				fdpass.CloseAll(fds)
				m.setErr(fmt.Errorf("%d descriptors arrived after the first byte of the message", len(fds)))
			case len(fds) > maxFDs:
				fdpass.CloseAll(fds)
				m.setErr(fmt.Errorf("%d descriptors, at most %d allowed: %w", len(fds), maxFDs, fdpass.ErrTooManyFDs))
			default:
				m.FDs = append(m.FDs, fds...)
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			m.setErr(fmt.Errorf("more descriptors than the %d allowed (control data truncated): %w", maxFDs, fdpass.ErrTooManyFDs))
		}
		got += n
		if err == nil && n == 0 {
			err = io.EOF // a stream's end, however the runtime reports it
		}
		if errors.Is(err, io.EOF) {
			if got == 0 && first {
				return io.EOF
			}
			return fmt.Errorf("vfio-user: peer closed in the middle of a message (%d of %d bytes): %w", got, len(b), io.ErrUnexpectedEOF)
		}
		if err != nil {
			return fmt.Errorf("vfio-user: read: %w", err)
		}
	}
	return nil
}

// setErr records the first descriptor problem; Recv turns it into a
// *ProtocolError once the header is known.
func (m *Message) setErr(err error) {
	if m.Err == nil {
		m.Err = err
	}
}

// parseRights returns every descriptor in the control data; a control
// message that is not SCM_RIGHTS is an error, but descriptors found are
// still returned so they can be closed.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control data: %v", err)
	}
	var fds []int
	var bad error
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("unexpected control message level %d type %d", msgs[i].Header.Level, msgs[i].Header.Type)
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			bad = fmt.Errorf("rights: %v", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}
