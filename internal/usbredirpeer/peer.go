// Package usbredirpeer is a minimal usb-guest side of the usbredir protocol,
// built on github.com/ycq-dev/ycq/usb/redir, for interop tests: it talks to
// a third-party usb-host (usbredir's own usbredirect, which exports a real
// USB device through libusbredirhost) and so checks the codec in the role
// the device model does not play. The codec encodes what a usb-guest sends
// (hello, control and bulk packets, set_configuration, cancel_data_packet)
// and decodes what a usb-host sends (hello, interface_info, ep_info,
// device_connect, the data packet replies), each against usbredir's own
// implementation of the other end.
//
// A Guest is a test tool, not a driver: one connection, one device, data
// packets answered through channels keyed by id, and every packet that is
// not a data-packet reply recorded for the caller to inspect.
package usbredirpeer

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ycq-dev/ycq/usb/redir"
)

// Version is the version string of our hello.
const Version = "ycq usbredirpeer"

// OurCaps are the capabilities the Guest advertises: every one that
// changes the wire format except bulk streams, which a USB 2 device has no
// use for, so that the negotiated layout exercises the optional fields.
var OurCaps = redir.Caps{}.With(
	redir.Cap64BitIDs,
	redir.CapConnectDeviceVersion,
	redir.CapEPInfoMaxPacketSize,
	redir.Cap32BitBulkLength,
)

// FirstID is the id of the first packet after the hello. It is above 32
// bits, so with Layout.IDs64 a peer that truncated ids would answer the
// wrong packet and the reply would not be routed.
const FirstID = 1<<40 + 1

// ErrClosed is returned for requests on a Guest whose connection ended.
var ErrClosed = errors.New("usbredirpeer: connection closed")

// Device is what the usb-host announced: its device_connect with the
// interface_info and ep_info that came before it.
type Device struct {
	Connect    redir.DeviceConnect
	Interfaces redir.InterfaceInfo
	Endpoints  redir.EPInfo
}

// Guest is a usb-guest on one connection to a usb-host.
type Guest struct {
	conn   net.Conn
	r      *redir.Reader
	layout redir.Layout
	peer   redir.Hello

	wmu    sync.Mutex // the Writer and nextID
	w      *redir.Writer
	nextID uint64

	mu      sync.Mutex
	waiting map[uint64]chan redir.Body
	events  []redir.Body  // every non-reply packet, in order
	notify  chan struct{} // closed and replaced when events grows
	err     error         // why the reader stopped
	done    chan struct{}
}

// Dial connects to a usb-host listening at addr (TCP) and exchanges hellos.
func Dial(addr string) (*Guest, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	g, err := New(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return g, nil
}

// New runs the hello exchange on c (our hello first, then the peer's) and
// starts reading. The Guest owns c from then on.
func New(c net.Conn) (*Guest, error) {
	g := &Guest{
		conn:    c,
		r:       redir.NewReader(c, 0),
		w:       redir.NewWriter(c),
		waiting: make(map[uint64]chan redir.Body),
		notify:  make(chan struct{}),
		done:    make(chan struct{}),
		nextID:  FirstID - 1,
	}
	if err := g.w.Send(0, redir.Hello{Version: Version, Caps: OurCaps}); err != nil {
		return nil, fmt.Errorf("usbredirpeer: send hello: %w", err)
	}
	p, err := g.r.Next()
	if err != nil {
		return nil, fmt.Errorf("usbredirpeer: read hello: %w", err)
	}
	if p.Header.Type != redir.TypeHello {
		return nil, fmt.Errorf("usbredirpeer: first packet is %s, not hello", p.Header.Type)
	}
	h, err := redir.DecodeHello(p.Body)
	if err != nil {
		return nil, fmt.Errorf("usbredirpeer: peer's hello: %w", err)
	}
	g.peer = h
	g.layout = redir.Negotiate(OurCaps, h.Caps)
	g.r.SetLayout(g.layout)
	g.w.SetLayout(g.layout)
	go g.readLoop()
	return g, nil
}

// Peer is the usb-host's hello.
func (g *Guest) Peer() redir.Hello { return g.peer }

// Layout is the negotiated wire layout.
func (g *Guest) Layout() redir.Layout { return g.layout }

// Close closes the connection and waits for the reader.
func (g *Guest) Close() error {
	err := g.conn.Close()
	<-g.done
	return err
}

// Err is why the reader stopped, once it has (nil before).
func (g *Guest) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *Guest) readLoop() {
	defer close(g.done)
	for {
		p, err := g.r.Next()
		if err == nil {
			var b redir.Body
			b, err = redir.Decode(p.Header.Type, p.Body, g.layout, redir.RoleHost)
			if err == nil {
				g.deliver(p.Header.ID, own(b))
				continue
			}
		}
		g.mu.Lock()
		g.err = err
		for id, ch := range g.waiting {
			close(ch)
			delete(g.waiting, id)
		}
		close(g.notify)
		g.mu.Unlock()
		return
	}
}

// own copies a data packet's data out of the Reader's buffer.
func own(b redir.Body) redir.Body {
	switch p := b.(type) {
	case redir.ControlPacket:
		p.Data = append([]byte(nil), p.Data...)
		return p
	case redir.BulkPacket:
		p.Data = append([]byte(nil), p.Data...)
		return p
	case redir.InterruptPacket:
		p.Data = append([]byte(nil), p.Data...)
		return p
	}
	return b
}

func (g *Guest) deliver(id uint64, b redir.Body) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b.Type().IsData() {
		if ch, ok := g.waiting[id]; ok {
			delete(g.waiting, id)
			ch <- b
			return
		}
	}
	g.events = append(g.events, b)
	close(g.notify)
	g.notify = make(chan struct{})
}

// Events returns a copy of every packet received that was not the reply
// to a pending data packet, in order.
func (g *Guest) Events() []redir.Body {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]redir.Body(nil), g.events...)
}

// WaitEvent waits until an event after the first `from` satisfies match, and
// returns its index; it gives up after limit or when the connection ends.
func (g *Guest) WaitEvent(from int, limit time.Duration, match func(redir.Body) bool) (int, redir.Body, error) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		g.mu.Lock()
		for i := from; i < len(g.events); i++ {
			if match(g.events[i]) {
				b := g.events[i]
				g.mu.Unlock()
				return i, b, nil
			}
		}
		from = len(g.events)
		notify, err := g.notify, g.err
		g.mu.Unlock()
		if err != nil {
			return 0, nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		select {
		case <-notify:
		case <-deadline.C:
			return 0, nil, fmt.Errorf("usbredirpeer: no such packet within %v", limit)
		}
	}
}

// WaitDevice waits for device_connect and returns it with the last
// interface_info and ep_info before it (the usb-host sends those first).
func (g *Guest) WaitDevice(from int, limit time.Duration) (int, Device, error) {
	i, b, err := g.WaitEvent(from, limit, func(b redir.Body) bool { return b.Type() == redir.TypeDeviceConnect })
	if err != nil {
		return 0, Device{}, err
	}
	d := Device{Connect: b.(redir.DeviceConnect)}
	var haveIf, haveEP bool
	for _, e := range g.Events()[:i] {
		switch e := e.(type) {
		case redir.InterfaceInfo:
			d.Interfaces, haveIf = e, true
		case redir.EPInfo:
			d.Endpoints, haveEP = e, true
		}
	}
	if !haveIf || !haveEP {
		return i, d, fmt.Errorf("usbredirpeer: device_connect without interface_info (%v) or ep_info (%v) before it", haveIf, haveEP)
	}
	return i, d, nil
}

// Send sends a packet that expects no reply by id (a control packet of the
// protocol, such as set_configuration or reset).
func (g *Guest) Send(b redir.Body) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.nextID++
	return g.w.Send(g.nextID, b)
}

// Submit sends a data packet and returns its id and the channel its reply
// comes on (closed without one if the connection ends).
func (g *Guest) Submit(b redir.DataPacket) (uint64, <-chan redir.Body, error) {
	ch := make(chan redir.Body, 1)
	g.wmu.Lock()
	defer g.wmu.Unlock()
	g.nextID++
	id := g.nextID
	g.mu.Lock()
	if g.err != nil {
		g.mu.Unlock()
		return 0, nil, fmt.Errorf("%w: %w", ErrClosed, g.err)
	}
	g.waiting[id] = ch
	g.mu.Unlock()
	if err := g.w.Send(id, b); err != nil {
		g.mu.Lock()
		delete(g.waiting, id)
		g.mu.Unlock()
		return 0, nil, err
	}
	return id, ch, nil
}

// Cancel sends cancel_data_packet for id; the reply still comes on the
// packet's channel.
func (g *Guest) Cancel(id uint64) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	return g.w.Send(id, redir.CancelDataPacket{})
}

// Await waits for a submitted packet's reply.
func Await(ch <-chan redir.Body, limit time.Duration) (redir.Body, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case b, ok := <-ch:
		if !ok {
			return nil, ErrClosed
		}
		return b, nil
	case <-t.C:
		return nil, fmt.Errorf("usbredirpeer: no reply within %v", limit)
	}
}

// Control runs one control transfer and returns the usb-host's reply.
func (g *Guest) Control(p redir.ControlPacket, limit time.Duration) (redir.ControlPacket, error) {
	_, ch, err := g.Submit(p)
	if err != nil {
		return redir.ControlPacket{}, err
	}
	b, err := Await(ch, limit)
	if err != nil {
		return redir.ControlPacket{}, err
	}
	c, ok := b.(redir.ControlPacket)
	if !ok {
		return redir.ControlPacket{}, fmt.Errorf("usbredirpeer: control packet answered by %s", b.Type())
	}
	return c, nil
}

// Bulk runs one bulk transfer and returns the usb-host's reply.
func (g *Guest) Bulk(p redir.BulkPacket, limit time.Duration) (redir.BulkPacket, error) {
	_, ch, err := g.Submit(p)
	if err != nil {
		return redir.BulkPacket{}, err
	}
	b, err := Await(ch, limit)
	if err != nil {
		return redir.BulkPacket{}, err
	}
	c, ok := b.(redir.BulkPacket)
	if !ok {
		return redir.BulkPacket{}, fmt.Errorf("usbredirpeer: bulk packet answered by %s", b.Type())
	}
	return c, nil
}

// GetDescriptor reads a standard descriptor (GET_DESCRIPTOR, device to
// host) of up to length bytes.
func (g *Guest) GetDescriptor(typ, index uint8, langID, length uint16, limit time.Duration) ([]byte, error) {
	c, err := g.Control(redir.ControlPacket{
		Endpoint:    0x80,
		Request:     0x06, // GET_DESCRIPTOR
		RequestType: 0x80, // device to host, standard, device
		Value:       uint16(typ)<<8 | uint16(index),
		Index:       langID,
		Length:      length,
	}, limit)
	if err != nil {
		return nil, err
	}
	if c.Status != redir.StatusSuccess {
		return nil, fmt.Errorf("usbredirpeer: GET_DESCRIPTOR %#x/%d: status %d", typ, index, c.Status)
	}
	return c.Data, nil
}

// StringDescriptor decodes a USB string descriptor's UTF-16LE text (BMP
// only, which is all a test's strings use).
func StringDescriptor(d []byte) (string, error) {
	if len(d) < 2 || int(d[0]) > len(d) || d[0] < 2 || d[1] != 0x03 {
		return "", fmt.Errorf("usbredirpeer: not a string descriptor: % x", d)
	}
	var rs []rune
	for i := 2; i+1 < int(d[0]); i += 2 {
		rs = append(rs, rune(uint16(d[i])|uint16(d[i+1])<<8))
	}
	return string(rs), nil
}
