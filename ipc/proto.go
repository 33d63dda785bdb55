package ipc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/fdpass"
)

// The control protocol on the UNIX socket. Each message is a 4-byte
// little-endian length, then that many bytes of JSON. The client sends
// Hello; the server answers Welcome, with the pair's four descriptors unless
// the client asked for names; the client answers Joined once it has
// mapped them; when a side has finished its role it sends Done. The socket closing before Done means the peer is gone.
//
// A monitoring client sends StatRequest instead of Hello; the server answers
// StatReply, with a read-only descriptor of the metadata region of each
// queue it lists, in order, and closes the connection.
const (
	ProtocolVersion = 1
	maxControlMsg   = 64 << 10
	sizeofLength    = 4
)

// Roles a client can take; the server takes the other side.
const (
	RoleProducer = "producer" // the client produces on up; the server consumes
	RoleConsumer = "consumer" // the server produces on down; the client consumes
	RoleBoth     = "both"     // the client produces on up; the server echoes each record on down
)

// MaxCount bounds the records one session may ask for.
const MaxCount = 1 << 40

// ErrProtocol: a control message that is malformed or breaks the rules.
var ErrProtocol = errors.New("ipc: protocol error")

// ErrPeerGone: the other process closed its socket, or died, before it
// finished.
var ErrPeerGone = errors.New("ipc: peer gone")

// Hello is the client's request.
type Hello struct {
	Version  int      `json:"version"`
	Role     string   `json:"role"`
	Count    uint64   `json:"count"`
	Payload  int      `json:"payload"`
	Batch    int      `json:"batch"`
	Geometry Geometry `json:"geometry"`
	ByName   bool     `json:"by_name"`
	Checksum bool     `json:"checksum"`
}

// Validate checks every field against the rules.
func (h *Hello) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: hello: "+format, append([]any{ErrProtocol}, args...)...)
	}
	if h.Version != ProtocolVersion {
		return bad("version %d, this side speaks %d", h.Version, ProtocolVersion)
	}
	switch h.Role {
	case RoleProducer, RoleConsumer, RoleBoth:
	default:
		return bad("role %q: want %s, %s or %s", h.Role, RoleProducer, RoleConsumer, RoleBoth)
	}
	if h.Count == 0 || h.Count > MaxCount {
		return bad("count %d: want 1 to %d", h.Count, uint64(MaxCount))
	}
	if err := h.Geometry.Validate(); err != nil {
		return bad("geometry: %v", err)
	}
	if h.Payload < MinPayload || h.Payload > h.Geometry.SlotSize {
		return bad("payload %d: want %d to the slot size %d", h.Payload, MinPayload, h.Geometry.SlotSize)
	}
	if h.Batch < 1 || h.Batch > h.Geometry.Slots {
		return bad("batch %d: want 1 to the slot count %d", h.Batch, h.Geometry.Slots)
	}
	return nil
}

// Welcome is the server's answer.
type Welcome struct {
	Version  int      `json:"version"`
	Geometry Geometry `json:"geometry"`
	Name     string   `json:"name,omitempty"`  // base name of the /dev/shm regions, by name only
	Error    string   `json:"error,omitempty"` // the server refused; no descriptors follow
}

// Joined tells the server the client has mapped the pair, so the server
// can remove the regions' names and start.
type Joined struct {
	OK bool `json:"ok"`
}

// Done reports the end of one side's role.
type Done struct {
	Records uint64 `json:"records"`
	Error   string `json:"error,omitempty"`
}

// StatRequest asks a server which queues it serves. It joins nothing and
// changes nothing. The first message of a connection is a StatRequest when
// it decodes as one with Stat true; anything else is taken as a Hello.
type StatRequest struct {
	Version int  `json:"version"`
	Stat    bool `json:"stat"`
}

// Validate checks the request against the rules.
func (r *StatRequest) Validate() error {
	if r.Version != ProtocolVersion {
		return fmt.Errorf("%w: stat request: version %d, this side speaks %d", ErrProtocol, r.Version, ProtocolVersion)
	}
	if !r.Stat {
		return fmt.Errorf("%w: stat request without stat", ErrProtocol)
	}
	return nil
}

// MaxStatQueues bounds the queues one StatReply may list (and so the
// descriptors that travel with it).
const MaxStatQueues = 64

// Queue names in a StatReply.
const (
	QueueUp   = "up"   // client to server
	QueueDown = "down" // server to client
)

// ServedQueue is one queue of a session, as a server describes it in a
// StatReply. Only the shape is told here; the counters are read from the
// metadata region whose descriptor travels with the reply.
type ServedQueue struct {
	Session  int      `json:"session"`        // the session's number, from 1
	Queue    string   `json:"queue"`          // QueueUp or QueueDown
	Role     string   `json:"role"`           // the client's role in the session
	Geometry Geometry `json:"geometry"`       // both queues of the session have it
	Name     string   `json:"name,omitempty"` // the /dev/shm name the metadata region was made under, if any; the server removes it once the client has joined
	// For a resizable session: the newest generation (whose metadata the
	// descriptor is) and the server's counts of the session's resizes.
	Generation uint32        `json:"generation,omitempty"`
	Resizes    *ResizeCounts `json:"resizes,omitempty"`
}

// StatReply is the server's answer to a StatRequest: every queue of every
// session it serves at the moment, each with one read-only descriptor of
// its metadata region, in the same order.
type StatReply struct {
	Version int           `json:"version"`
	Queues  []ServedQueue `json:"queues"`
	Error   string        `json:"error,omitempty"` // the server refused; no descriptors follow
}

// request is the first message of a connection: a Hello or a StatRequest.
type request struct {
	hello  *Hello
	stat   *StatRequest
	resize *ResizeRequest
}

// decodeRequest decodes the first message of a connection. A Hello is only
// decoded here, not validated: the server answers an invalid one with a
// Welcome that says why.
func decodeRequest(body []byte) (request, error) {
	var sr StatRequest
	if decodeMsg(body, &sr) == nil && sr.Stat {
		return request{stat: &sr}, nil
	}
	var rr ResizeRequest
	if decodeMsg(body, &rr) == nil && rr.Resize {
		return request{resize: &rr}, nil
	}
	var h Hello
	if err := decodeMsg(body, &h); err != nil {
		return request{}, err
	}
	return request{hello: &h}, nil
}

// decodeStatReply decodes and checks a StatReply that arrived with nfds
// descriptors: one for each queue it lists.
func decodeStatReply(body []byte, nfds int) (StatReply, error) {
	var r StatReply
	if err := decodeMsg(body, &r); err != nil {
		return StatReply{}, err
	}
	bad := func(format string, args ...any) (StatReply, error) {
		return StatReply{}, fmt.Errorf("%w: stat reply: "+format, append([]any{ErrProtocol}, args...)...)
	}
	if r.Version != ProtocolVersion {
		return bad("version %d, this side speaks %d", r.Version, ProtocolVersion)
	}
	if r.Error != "" {
		if len(r.Queues) != 0 || nfds != 0 {
			return bad("a refusal with %d queues and %d descriptors", len(r.Queues), nfds)
		}
		return r, nil
	}
	if len(r.Queues) > MaxStatQueues {
		return bad("%d queues, at most %d allowed", len(r.Queues), MaxStatQueues)
	}
	if len(r.Queues) != nfds {
		return bad("%d queues but %d descriptors", len(r.Queues), nfds)
	}
	for i, q := range r.Queues {
		if q.Session < 1 {
			return bad("queue %d: session %d", i, q.Session)
		}
		if q.Queue != QueueUp && q.Queue != QueueDown {
			return bad("queue %d: %q, want %s or %s", i, q.Queue, QueueUp, QueueDown)
		}
		switch q.Role {
		case RoleProducer, RoleConsumer, RoleBoth:
		default:
			return bad("queue %d: role %q", i, q.Role)
		}
		if err := q.Geometry.Validate(); err != nil {
			return bad("queue %d: geometry: %v", i, err)
		}
		if q.Name != "" {
			if err := dma.CheckName(q.Name); err != nil {
				return bad("queue %d: name: %v", i, err)
			}
		}
	}
	return r, nil
}

// writeMsg sends v as one framed message with fds attached.
func writeMsg(c *net.UnixConn, v any, fds ...int) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(body) > maxControlMsg {
		return fmt.Errorf("%w: message of %d bytes", ErrProtocol, len(body))
	}
	msg := binary.LittleEndian.AppendUint32(make([]byte, 0, sizeofLength+len(body)), uint32(len(body)))
	return fdpass.Send(c, append(msg, body...), fds...)
}

// readMsg reads one framed message into v, accepting up to maxFDs
// descriptors with it. EOF before a message is ErrPeerGone.
func readMsg(c *net.UnixConn, v any, maxFDs int) (fds []int, err error) {
	body, fds, err := readBody(c, maxFDs)
	if err != nil {
		return nil, err
	}
	if err := decodeMsg(body, v); err != nil {
		fdpass.CloseAll(fds)
		return nil, err
	}
	return fds, nil
}

// readBody reads one framed message, undecoded, and up to maxFDs
// descriptors with it. EOF before a message is ErrPeerGone.
func readBody(c *net.UnixConn, maxFDs int) (body []byte, fds []int, err error) {
	var hdr [sizeofLength]byte
	n, fds, err := fdpass.Recv(c, hdr[:], maxFDs)
	if err == nil && n < len(hdr) {
		_, err = io.ReadFull(c, hdr[n:])
	}
	if err != nil {
		fdpass.CloseAll(fds)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || n == 0 && err == nil {
			return nil, nil, ErrPeerGone
		}
		return nil, nil, fmt.Errorf("ipc: read control message: %w", err)
	}
	size := binary.LittleEndian.Uint32(hdr[:])
	if size == 0 || size > maxControlMsg {
		fdpass.CloseAll(fds)
		return nil, nil, fmt.Errorf("%w: message length %d", ErrProtocol, size)
	}
	body = make([]byte, size)
	if _, err := io.ReadFull(c, body); err != nil {
		fdpass.CloseAll(fds)
		return nil, nil, fmt.Errorf("%w: message cut short: %v", ErrPeerGone, err)
	}
	return body, fds, nil
}

// decodeMsg decodes one JSON body strictly: unknown fields and trailing
// data are errors.
func decodeMsg(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %T: %v", ErrProtocol, v, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: %T: trailing data", ErrProtocol, v)
	}
	return nil
}
