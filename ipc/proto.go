package ipc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/ycq-dev/ycq/internal/fdpass"
)

// The control protocol on the UNIX socket. Each message is a 4-byte
// little-endian length, then that many bytes of JSON. The client sends
// Hello; the server answers Welcome, with the pair's four descriptors unless
// the client asked for names; the client answers Joined once it has
// mapped them; when a side has finished its role it sends Done. The socket closing before Done means the peer is gone.
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
	var hdr [sizeofLength]byte
	n, fds, err := fdpass.Recv(c, hdr[:], maxFDs)
	if err == nil && n < len(hdr) {
		_, err = io.ReadFull(c, hdr[n:])
	}
	if err != nil {
		fdpass.CloseAll(fds)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || n == 0 && err == nil {
			return nil, ErrPeerGone
		}
		return nil, fmt.Errorf("ipc: read control message: %w", err)
	}
	size := binary.LittleEndian.Uint32(hdr[:])
	if size == 0 || size > maxControlMsg {
		fdpass.CloseAll(fds)
		return nil, fmt.Errorf("%w: message length %d", ErrProtocol, size)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(c, body); err != nil {
		fdpass.CloseAll(fds)
		return nil, fmt.Errorf("%w: message cut short: %v", ErrPeerGone, err)
	}
	if err := decodeMsg(body, v); err != nil {
		fdpass.CloseAll(fds)
		return nil, err
	}
	return fds, nil
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
