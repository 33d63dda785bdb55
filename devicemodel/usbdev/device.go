package usbdev

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// ReadLimit is the longest usbredir packet body the device reads (a bulk
// OUT transfer above usbproto.MaxTransferBytes but within it is refused with a
// STALL; a longer packet ends the connection).
const ReadLimit = 1<<20 + 64

// Version is the version string of the device's usbredir hello.
const Version = "ycq usbdev 1"

// ourCaps is what the device's hello advertises (USB.md section 7).
var ourCaps = redir.Caps{}.With(
	redir.CapConnectDeviceVersion,
	redir.CapEPInfoMaxPacketSize,
	redir.Cap64BitIDs,
	redir.Cap32BitBulkLength,
	redir.CapDeviceDisconnectAck,
)

// Options configure a Device.
type Options struct {
	// Pairs is the number of queue pairs, 1 to MaxPairs; 0 means
	// DefaultPairs.
	Pairs int
	// Serial is the iSerialNumber string; "" means DefaultSerial.
	Serial string
	// Engines are the engines SET_QUEUE may name, by ycqdev engine id
	// (ids 1 to 31); nil means devicemodel.Engines().
	Engines map[uint32]devicemodel.Engine
	// Logf, if set, is told about refused input and errors.
	Logf func(format string, args ...any)
}

// Device is the ycq USB far processor, serving one usbredir connection:
// see the package documentation and USB.md.
type Device struct {
	opt     Options
	conn    io.ReadWriteCloser
	r       *redir.Reader
	engines map[uint32]devicemodel.Engine
	config  []byte // configuration descriptor, built once

	// wmu serialises writes to conn and makes a sequence of them atomic;
	// it is taken before mu, never after.
	wmu  sync.Mutex
	w    *redir.Writer
	werr error // the first write error; sticky

	mu         sync.Mutex
	layout     redir.Layout
	peerCaps   redir.Caps
	helloDone  bool
	want       bool // Plug/Unplug's intent: the device should be plugged
	connected  bool // the guest has been sent device_connect and not device_disconnect since
	awaitAck   bool // device_disconnect sent to a peer with the ack capability, ack not yet seen
	configured uint8
	pairs      []*pair
	held       map[uint64]struct{} // ids of the transfers the device holds, all pairs
	resets     uint32
	badControl uint32
	badPackets uint32

	kick   chan struct{} // wakes the engine loop (capacity 1)
	room   chan struct{} // wakes a reader waiting for staging room (capacity 1)
	done   chan struct{} // closed by Close
	stop   chan struct{} // closed when Serve ends, stopping the engine loop
	served chan struct{} // closed when Serve has returned
	wg     sync.WaitGroup

	waiting  atomic.Int32           // readers waiting for staging room (0 or 1)
	onPacket atomic.Pointer[func()] // tests: called after each packet is handled

	started   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New returns a device that will serve conn (a usbredir byte stream, the
// device being the usb-host side) once Serve is called. The device owns
// conn from now on: Serve and Close close it.
func New(conn io.ReadWriteCloser, opt Options) (*Device, error) {
	if conn == nil {
		return nil, fmt.Errorf("%w: nil connection", ErrInvalid)
	}
	if opt.Pairs == 0 {
		opt.Pairs = DefaultPairs
	}
	if opt.Pairs < 1 || opt.Pairs > usbproto.MaxPairs {
		return nil, fmt.Errorf("%w: %d queue pairs: want 1 to %d", ErrInvalid, opt.Pairs, usbproto.MaxPairs)
	}
	if opt.Serial == "" {
		opt.Serial = DefaultSerial
	}
	engines := opt.Engines
	if engines == nil {
		engines = devicemodel.Engines()
	}
	for id, e := range engines {
		if id == 0 || id > 31 || e == nil {
			return nil, fmt.Errorf("%w: engine id %d: want a non-nil engine with an id from 1 to 31", ErrInvalid, id)
		}
	}
	d := &Device{
		opt:        opt,
		conn:       conn,
		r:          redir.NewReader(conn, ReadLimit),
		w:          redir.NewWriter(conn),
		engines:    engines,
		config:     configDescriptor(opt.Pairs),
		want:       true,
		configured: usbproto.Configuration,
		held:       make(map[uint64]struct{}),
		kick:       make(chan struct{}, 1),
		room:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		stop:       make(chan struct{}),
		served:     make(chan struct{}),
	}
	for i := range opt.Pairs {
		d.pairs = append(d.pairs, &pair{index: i, outEP: usbproto.OutEndpoint(i), inEP: usbproto.InEndpoint(i)})
	}
	return d, nil
}

// Serve runs the device on its connection: it sends the device's hello,
// reads the peer's, connects the device (unless Unplug was called) and
// answers what the peer sends until the connection ends or Close is
// called. It returns nil when the peer closed the connection between
// packets, ErrClosed after Close, a *redir.ProtocolError for a packet that
// put the stream out of step, an error wrapping ErrHandshake for a first
// packet that is not a hello, or the connection's error. Serve closes the
// connection, and every goroutine it started has ended when it returns.
// It may be called once.
func (d *Device) Serve() error {
	if !d.started.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Serve called twice", ErrInvalid)
	}
	defer close(d.served)
	select {
	case <-d.done:
		return ErrClosed
	default:
	}
	err := d.serve()
	close(d.stop)
	cerr := d.conn.Close()
	d.wg.Wait()
	d.mu.Lock()
	for _, p := range d.pairs {
		p.q = nil
		p.ins = nil
	}
	clear(d.held)
	d.mu.Unlock()
	select {
	case <-d.done:
		return ErrClosed
	default:
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	d.wmu.Lock()
	if d.werr != nil {
		err = d.werr // the reader's error is only the closed connection's echo
	}
	d.wmu.Unlock()
	if err == nil && cerr != nil && !errors.Is(cerr, io.ErrClosedPipe) {
		d.logf("close: %v", cerr)
	}
	return err
}

// Close closes the connection, ends Serve, and waits for it to return. It
// returns the connection's Close error (the first call's).
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		d.closeErr = d.conn.Close()
	})
	if d.started.Load() {
		<-d.served
	}
	return d.closeErr
}

// Unplug makes the guest see the device go away: the transfers it holds
// complete with usb_redir_cancelled, then device_disconnect (USB.md
// section 6). It fails with ErrInvalid if the device is already unplugged.
func (d *Device) Unplug() error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.mu.Lock()
	if !d.want {
		d.mu.Unlock()
		return fmt.Errorf("%w: the device is not plugged", ErrInvalid)
	}
	d.want = false
	var out outbox
	if d.connected {
		d.stopAll(&out)
		d.connected = false
		d.awaitAck = d.peerCaps.Has(redir.CapDeviceDisconnectAck)
		out.add(0, redir.DeviceDisconnect{})
	}
	d.mu.Unlock()
	d.signalRoom()
	return d.flush(&out)
}

// Plug makes the guest see the device arrive again, as a fresh device in
// configuration 1 with every pair stopped (USB.md section 6). If the peer
// acknowledges disconnects, device_connect waits for the acknowledgement
// of the last one. It fails with ErrInvalid if the device is plugged.
func (d *Device) Plug() error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.mu.Lock()
	if d.want {
		d.mu.Unlock()
		return fmt.Errorf("%w: the device is already plugged", ErrInvalid)
	}
	d.want = true
	var out outbox
	d.maybeConnect(&out)
	d.mu.Unlock()
	return d.flush(&out)
}

// Connected reports whether the guest has been told the device is there
// (device_connect sent, no device_disconnect since).
func (d *Device) Connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connected
}

// Counters returns the device's counters, as GET_COUNTERS does.
func (d *Device) Counters() Counters {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.countersLocked()
}

func (d *Device) countersLocked() Counters {
	c := Counters{Resets: d.resets, BadControl: d.badControl, BadPackets: d.badPackets}
	for _, p := range d.pairs {
		c.Pairs = append(c.Pairs, p.counters())
	}
	return c
}

// serve is Serve's loop: the handshake, then one packet at a time.
func (d *Device) serve() error {
	if err := d.send(0, redir.Hello{Version: Version, Caps: ourCaps}); err != nil {
		return err
	}
	pkt, err := d.r.Next()
	if err != nil {
		if errors.Is(err, redir.ErrMalformed) {
			return fmt.Errorf("%w: first packet: %w", ErrHandshake, err)
		}
		return err
	}
	if pkt.Header.Type != redir.TypeHello {
		return fmt.Errorf("%w: first packet is %s", ErrHandshake, pkt.Header.Type)
	}
	hello, err := redir.DecodeHello(pkt.Body)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	d.handshake(hello)
	if err := d.connectAfterHello(); err != nil {
		return err
	}
	d.wg.Add(1)
	go d.engineLoop()
	for {
		pkt, err := d.r.Next()
		if err != nil {
			if errors.Is(err, redir.ErrMalformed) {
				d.bad("refused: %v", err)
				continue
			}
			return err
		}
		if err := d.handle(pkt); err != nil {
			return err
		}
		if f := d.onPacket.Load(); f != nil {
			(*f)()
		}
	}
}

// handshake records the peer's hello and switches both directions to the
// negotiated layout. No other goroutine writes yet, but Plug and Unplug
// may run: the layout changes under wmu.
func (d *Device) handshake(h redir.Hello) {
	l := redir.Negotiate(ourCaps, h.Caps)
	d.wmu.Lock()
	d.mu.Lock()
	d.peerCaps = append(redir.Caps(nil), h.Caps...)
	d.layout = l
	d.r.SetLayout(l)
	d.w.SetLayout(l)
	d.mu.Unlock()
	d.wmu.Unlock()
}

// connectAfterHello sends device_connect (with its interface_info and
// ep_info) unless the device was unplugged before the handshake.
func (d *Device) connectAfterHello() error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.mu.Lock()
	d.helloDone = true
	var out outbox
	d.maybeConnect(&out)
	d.mu.Unlock()
	return d.flush(&out)
}

// maybeConnect queues interface_info, ep_info and device_connect of a
// fresh device if it should be plugged and may be: after the handshake,
// not connected, no disconnect acknowledgement pending. Called with wmu
// and mu held.
func (d *Device) maybeConnect(out *outbox) {
	if !d.want || !d.helloDone || d.connected || d.awaitAck {
		return
	}
	d.stopAll(out) // nothing is held while disconnected; this clears halts
	d.configured = usbproto.Configuration
	d.connected = true
	out.add(0, d.interfaceInfo())
	out.add(0, d.epInfo())
	out.add(0, redir.DeviceConnect{
		Speed:            redir.SpeedHigh,
		VendorID:         usbproto.VendorID,
		ProductID:        usbproto.ProductID,
		DeviceVersionBCD: usbproto.BCDDevice,
	})
}

// interfaceInfo is interface_info for the current configuration. Called
// with mu held.
func (d *Device) interfaceInfo() redir.InterfaceInfo {
	var f redir.InterfaceInfo
	if d.configured == usbproto.Configuration {
		f.Count = 1
		f.Number[0] = usbproto.InterfaceNum
		f.Class[0] = usbproto.ClassVendor
	}
	return f
}

// epInfo is ep_info for the current configuration. Called with mu held.
func (d *Device) epInfo() redir.EPInfo {
	var e redir.EPInfo
	for i := range e.EPType {
		e.EPType[i] = redir.EPInvalid
	}
	for _, ep := range []uint8{0x00, usbproto.EndpointDirIn} {
		i := redir.EndpointIndex(ep)
		e.EPType[i] = redir.EPControl
		e.MaxPacketSize[i] = usbproto.MaxPacket0
	}
	if d.configured == usbproto.Configuration {
		for _, p := range d.pairs {
			for _, ep := range []uint8{p.outEP, p.inEP} {
				i := redir.EndpointIndex(ep)
				e.EPType[i] = redir.EPBulk
				e.Interface[i] = usbproto.InterfaceNum
				e.MaxPacketSize[i] = usbproto.BulkPacket
			}
		}
	}
	return e
}

// engineByID returns the engine SET_QUEUE names.
func (d *Device) engineByID(id uint32) (devicemodel.Engine, bool) {
	e, ok := d.engines[id]
	return e, ok
}

// engineMask is GET_INFO's engines field.
func (d *Device) engineMask() uint32 {
	var m uint32
	for id := range d.engines {
		m |= 1 << id
	}
	return m
}

// info is GET_INFO's answer.
func (d *Device) info() usbproto.Info {
	return usbproto.Info{
		Version:               usbproto.ProtocolVersion,
		Pairs:                 uint8(len(d.pairs)),
		MaxRecordSize:         usbproto.MaxRecordSize,
		MaxRecordsPerTransfer: usbproto.MaxRecordsPerTransfer,
		MaxTransferBytes:      usbproto.MaxTransferBytes,
		OutWindow:             usbproto.OutWindow,
		InWindow:              usbproto.InWindow,
		Engines:               d.engineMask(),
	}
}

// stopAll stops every pair and queues the cancellation of every transfer
// the device holds; it clears every halt. Called with wmu and mu held.
func (d *Device) stopAll(out *outbox) {
	for _, p := range d.pairs {
		p.stop(d, out, redir.StatusCancelled)
		p.outHalted, p.inHalted = false, false
	}
}

// resetCounters zeroes what RESET zeroes. Called with mu held.
func (d *Device) resetCounters() {
	d.badControl, d.badPackets = 0, 0
	for _, p := range d.pairs {
		p.zeroCounters()
	}
}

// bad counts a refused packet.
func (d *Device) bad(format string, args ...any) {
	d.mu.Lock()
	d.badPackets++
	d.mu.Unlock()
	d.logf(format, args...)
}

func (d *Device) logf(format string, args ...any) {
	if d.opt.Logf != nil {
		d.opt.Logf("usbdev: "+format, args...)
	}
}

// signalKick wakes the engine loop.
func (d *Device) signalKick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// signalRoom wakes a reader waiting for staging room.
func (d *Device) signalRoom() {
	select {
	case d.room <- struct{}{}:
	default:
	}
}

// outbox collects the packets a step decided on under mu, to be written
// after mu is released (with wmu still held, so that their order on the
// wire is the order of the decisions).
type outbox struct {
	pkts []outPacket
}

type outPacket struct {
	id   uint64
	body redir.Body
}

func (o *outbox) add(id uint64, b redir.Body) { o.pkts = append(o.pkts, outPacket{id, b}) }

// flush writes what out holds. Called with wmu held and mu not held.
func (d *Device) flush(out *outbox) error {
	for i, p := range out.pkts {
		if err := d.sendLocked(p.id, p.body); err != nil {
			clear(out.pkts[i:])
			return err
		}
	}
	clear(out.pkts) // drop references to ring memory
	out.pkts = out.pkts[:0]
	return nil
}

// send writes one packet.
func (d *Device) send(id uint64, b redir.Body) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	return d.sendLocked(id, b)
}

// sendLocked writes one packet with wmu held. The first write error
// closes the connection (a stream cut inside a packet is out of step for
// good) and is returned from then on.
func (d *Device) sendLocked(id uint64, b redir.Body) error {
	if d.werr != nil {
		return d.werr
	}
	if err := d.w.Send(id, b); err != nil {
		d.werr = fmt.Errorf("usbdev: write %s: %w", b.Type(), err)
		d.conn.Close()
		return d.werr
	}
	return nil
}

// ycqEngineName names an engine id for logs.
func ycqEngineName(id uint32) string {
	if id >= ycqdev.EngineEcho && id <= ycqdev.EngineSource {
		return devicemodel.EngineName(id)
	}
	return fmt.Sprintf("engine %d", id)
}
