package usbdev

// An in-process usb-guest: what QEMU's usb-redir device does on the other
// end of the socket (hello, enumeration through control packets,
// set_configuration, bulk transfers with many IN requests in flight), for
// the tests to drive the device with.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// guestCaps is what QEMU 11's usb-redir advertises.
var guestCaps = redir.Caps{}.With(
	redir.CapConnectDeviceVersion,
	redir.CapFilter,
	redir.CapEPInfoMaxPacketSize,
	redir.Cap64BitIDs,
	redir.Cap32BitBulkLength,
	redir.CapBulkReceiving,
	redir.CapBulkStreams,
)

// reply is a packet the guest read, its body copied and decoded.
type reply struct {
	hdr  redir.Header
	body redir.Body
	seq  int // the packet's place in what the device sent, from 1
}

// guest is the test's usb-guest. Its reader goroutine sorts what the
// device sends: bulk completions by endpoint (in wire order), control and
// status replies into one channel (the tests send control requests one at
// a time), everything else into events.
type guest struct {
	t      testing.TB
	conn   net.Conn
	r      *redir.Reader
	wmu    sync.Mutex
	w      *redir.Writer
	layout redir.Layout
	nextID atomic.Uint64

	hello  chan redir.Hello
	ctrl   chan reply
	events chan reply
	bulk   map[uint8]chan reply // by endpoint address
	sent   chan struct{}        // closed once the guest's hello is written
	done   chan struct{}
	rerr   chan error // the reader's end
}

// socketpair returns the two ends of a UNIX stream socketpair as
// net.Conns (so that the device's Writer takes its writev path).
func socketpair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), fmt.Sprintf("usbredir-%d", i))
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatalf("file conn: %v", err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// newGuest starts the guest's reader on conn (before anything is written:
// a net.Pipe has no buffer) and sends its hello.
func newGuest(t testing.TB, conn net.Conn, caps redir.Caps) *guest {
	g := &guest{
		t: t, conn: conn,
		r:      redir.NewReader(conn, 0),
		w:      redir.NewWriter(conn),
		hello:  make(chan redir.Hello, 1),
		ctrl:   make(chan reply, 64),
		events: make(chan reply, 256),
		bulk:   map[uint8]chan reply{},
		sent:   make(chan struct{}),
		done:   make(chan struct{}),
		rerr:   make(chan error, 1),
	}
	for i := range usbproto.MaxPairs {
		g.bulk[usbproto.OutEndpoint(i)] = make(chan reply, 4096)
		g.bulk[usbproto.InEndpoint(i)] = make(chan reply, 4096)
	}
	g.bulk[0] = make(chan reply, 4096) // anything for an endpoint the device lacks
	go g.read(caps)
	if err := g.send(0, redir.Hello{Version: "qemu usb-redir guest test", Caps: caps}); err != nil {
		t.Fatalf("guest hello: %v", err)
	}
	close(g.sent)
	return g
}

// read is the guest's reader goroutine.
func (g *guest) read(caps redir.Caps) {
	defer close(g.rerr)
	pkt, err := g.r.Next()
	if err != nil {
		g.rerr <- err
		return
	}
	h, err := redir.DecodeHello(pkt.Body)
	if pkt.Header.Type != redir.TypeHello || err != nil {
		g.rerr <- fmt.Errorf("device's first packet %s: %v", pkt.Header.Type, err)
		return
	}
	l := redir.Negotiate(caps, h.Caps)
	g.r.SetLayout(l)
	select { // the guest's own hello goes out in the zero layout
	case <-g.sent:
	case <-g.done:
		return
	}
	g.wmu.Lock()
	g.w.SetLayout(l)
	g.layout = l
	g.wmu.Unlock()
	g.hello <- h
	for seq := 1; ; seq++ {
		pkt, err := g.r.Next()
		if err != nil {
			g.rerr <- err
			return
		}
		body, err := redir.Decode(pkt.Header.Type, append([]byte(nil), pkt.Body...), l, redir.RoleHost)
		if err != nil {
			g.rerr <- fmt.Errorf("device sent a bad packet: %w", err)
			return
		}
		rp := reply{hdr: pkt.Header, body: body, seq: seq}
		var ch chan reply
		switch b := body.(type) {
		case redir.BulkPacket:
			ch = g.bulk[b.Endpoint]
			if ch == nil {
				ch = g.bulk[0]
			}
		case redir.ControlPacket, redir.ConfigurationStatus, redir.AltSettingStatus,
			redir.ISOStreamStatus, redir.InterruptReceivingStatus, redir.BulkStreamsStatus,
			redir.BulkReceivingStatus, redir.InterruptPacket:
			ch = g.ctrl
		default:
			ch = g.events
		}
		select {
		case ch <- rp:
		case <-g.done:
			return
		}
	}
}

// close ends the guest: its connection, then its reader.
func (g *guest) close() {
	select {
	case <-g.done:
	default:
		close(g.done)
	}
	g.conn.Close()
	for range g.rerr {
	}
}

// send writes one packet.
func (g *guest) send(id uint64, b redir.Body) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	return g.w.Send(id, b)
}

func (g *guest) id() uint64 { return g.nextID.Add(1) }

// wait receives from ch, failing the test if the guest's reader ends or
// the device says nothing for WaitTimeout (a hang, not a timing check).
func (g *guest) wait(ch chan reply, what string) reply {
	g.t.Helper()
	r, err := g.next(ch, what)
	if err != nil {
		g.t.Fatal(err)
	}
	return r
}

// next is wait for goroutines other than the test's: it returns an error.
func (g *guest) next(ch chan reply, what string) (reply, error) {
	select {
	case r := <-ch:
		return r, nil
	default:
	}
	select {
	case r := <-ch:
		return r, nil
	case err := <-g.rerr:
		return reply{}, fmt.Errorf("waiting for %s: the guest's reader ended: %v", what, err)
	case <-g.done:
		return reply{}, fmt.Errorf("waiting for %s: the guest was closed", what)
	case <-time.After(testenv.WaitTimeout):
		return reply{}, fmt.Errorf("waiting for %s: nothing for %v", what, testenv.WaitTimeout)
	}
}

// handshake waits for the device's hello.
func (g *guest) handshake() redir.Hello {
	g.t.Helper()
	select {
	case h := <-g.hello:
		return h
	case err := <-g.rerr:
		g.t.Fatalf("no hello from the device: %v", err)
	case <-time.After(testenv.WaitTimeout):
		g.t.Fatalf("no hello from the device for %v", testenv.WaitTimeout)
	}
	return redir.Hello{}
}

// event waits for the next event, which must be of type want.
func (g *guest) event(want redir.Type) reply {
	g.t.Helper()
	r := g.wait(g.events, want.String())
	if r.hdr.Type != want {
		g.t.Fatalf("event %s, want %s", r.hdr.Type, want)
	}
	return r
}

// attach waits for what the device sends to connect, in usbredirhost's
// order, and returns the ep_info.
func (g *guest) attach() redir.EPInfo {
	g.t.Helper()
	g.event(redir.TypeInterfaceInfo)
	ep := g.event(redir.TypeEPInfo).body.(redir.EPInfo)
	dc := g.event(redir.TypeDeviceConnect).body.(redir.DeviceConnect)
	if dc.VendorID != usbproto.VendorID || dc.ProductID != usbproto.ProductID || dc.Speed != redir.SpeedHigh {
		g.t.Fatalf("device_connect %+v", dc)
	}
	return ep
}

// control sends a control transfer and waits for its answer.
func (g *guest) control(reqType, req uint8, value, index, length uint16, data []byte) redir.ControlPacket {
	g.t.Helper()
	id := g.id()
	c := redir.ControlPacket{Endpoint: reqType & reqDirIn, RequestType: reqType, Request: req,
		Value: value, Index: index, Length: length, Data: data}
	if err := g.send(id, c); err != nil {
		g.t.Fatalf("send control: %v", err)
	}
	r := g.wait(g.ctrl, "control reply")
	cp, ok := r.body.(redir.ControlPacket)
	if !ok || r.hdr.ID != id || cp.Request != req || cp.RequestType != reqType {
		g.t.Fatalf("control %#x/%#x id %d: got %s id %d %+v", reqType, req, id, r.hdr.Type, r.hdr.ID, r.body)
	}
	return cp
}

// controlIn is an IN control transfer that must succeed.
func (g *guest) controlIn(reqType, req uint8, value, index, length uint16) []byte {
	g.t.Helper()
	c := g.control(reqType|reqDirIn, req, value, index, length, nil)
	if c.Status != redir.StatusSuccess {
		g.t.Fatalf("control IN %#x/%#x value %#x index %#x: status %d", reqType|reqDirIn, req, value, index, c.Status)
	}
	return c.Data
}

// controlOut is an OUT control transfer; it returns the status.
func (g *guest) controlOut(reqType, req uint8, value, index uint16, data []byte) redir.Status {
	g.t.Helper()
	return g.control(reqType, req, value, index, uint16(len(data)), data).Status
}

// setQueue sends SET_QUEUE and requires success.
func (g *guest) setQueue(pair int, engine uint32, recSize int) {
	g.t.Helper()
	if st := g.controlOut(usbproto.VendorOut, usbproto.ReqSetQueue, 0, uint16(pair), usbproto.QueueSetup{Engine: engine, RecordSize: uint32(recSize)}.Encode(nil)); st != redir.StatusSuccess {
		g.t.Fatalf("SET_QUEUE pair %d engine %d record size %d: status %d", pair, engine, recSize, st)
	}
}

// reset sends RESET and requires success.
func (g *guest) reset() {
	g.t.Helper()
	if st := g.controlOut(usbproto.VendorOut, usbproto.ReqReset, 0, 0, nil); st != redir.StatusSuccess {
		g.t.Fatalf("RESET: status %d", st)
	}
}

// counters reads GET_COUNTERS.
func (g *guest) counters() Counters {
	g.t.Helper()
	c, err := usbproto.DecodeCounters(g.controlIn(usbproto.VendorIn, usbproto.ReqGetCounters, 0, 0, 4096))
	if err != nil {
		g.t.Fatal(err)
	}
	return c
}

// queueState reads GET_QUEUE.
func (g *guest) queueState(pair int) usbproto.QueueState {
	g.t.Helper()
	s, err := usbproto.DecodeQueueState(g.controlIn(usbproto.VendorIn, usbproto.ReqGetQueue, 0, uint16(pair), usbproto.SizeofQueueState))
	if err != nil {
		g.t.Fatal(err)
	}
	return s
}

// setConfiguration sends set_configuration as QEMU does and checks the
// interface_info, ep_info and configuration_status that answer it.
func (g *guest) setConfiguration(c uint8) {
	g.t.Helper()
	id := g.id()
	if err := g.send(id, redir.SetConfiguration{Configuration: c}); err != nil {
		g.t.Fatal(err)
	}
	g.event(redir.TypeInterfaceInfo)
	g.event(redir.TypeEPInfo)
	r := g.wait(g.ctrl, "configuration_status")
	cs, ok := r.body.(redir.ConfigurationStatus)
	if !ok || r.hdr.ID != id || cs.Status != redir.StatusSuccess || cs.Configuration != c {
		g.t.Fatalf("set_configuration %d: %s id %d %+v", c, r.hdr.Type, r.hdr.ID, r.body)
	}
}

// bulkOut sends an OUT transfer without waiting.
func (g *guest) bulkOut(ep uint8, id uint64, data []byte) error {
	return g.send(id, redir.BulkPacket{Endpoint: ep, Length: uint32(len(data)), Data: data})
}

// bulkIn sends an IN request without waiting.
func (g *guest) bulkIn(ep uint8, id uint64, length int) error {
	return g.send(id, redir.BulkPacket{Endpoint: ep, Length: uint32(length)})
}

// completion waits for the next bulk completion on ep.
func (g *guest) completion(ep uint8) (uint64, redir.BulkPacket) {
	g.t.Helper()
	r := g.wait(g.bulk[ep], fmt.Sprintf("a completion on endpoint %#02x", ep))
	return r.hdr.ID, r.body.(redir.BulkPacket)
}

// served runs d.Serve in a goroutine and returns where its result goes.
func served(d *Device) chan error {
	ch := make(chan error, 1)
	go func() { ch <- d.Serve() }()
	return ch
}

// start makes a device over a socketpair, a guest on the other end, runs
// the handshake and waits for the device to attach. The cleanup closes
// both and checks that no goroutine or descriptor leaked.
func start(t *testing.T, opt Options) (*Device, *guest, chan error) {
	t.Helper()
	checkLeaks(t)
	a, b := socketpair(t)
	d, err := New(a, opt)
	if err != nil {
		t.Fatal(err)
	}
	errc := served(d)
	g := newGuest(t, b, guestCaps)
	t.Cleanup(func() {
		d.Close()
		g.close()
		if err := <-errc; err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	g.handshake()
	g.attach()
	return d, g, errc
}

// checkLeaks records the goroutines and descriptors now and, when the
// test ends, fails it if the device left goroutines or descriptors behind.
// Registered first, its cleanup runs last.
func checkLeaks(t *testing.T) {
	t.Helper()
	fds := testenv.OpenFDs(t)
	t.Cleanup(func() {
		deadline := time.Now().Add(testenv.WaitTimeout)
		for left := deviceGoroutines(); left != ""; left = deviceGoroutines() {
			if time.Now().After(deadline) {
				t.Errorf("goroutines left behind:\n%s", left)
				break
			}
			time.Sleep(time.Millisecond)
		}
		if n := testenv.OpenFDs(t); n > fds {
			t.Errorf("%d descriptors open, %d before the test", n, fds)
		}
	})
}

// deviceGoroutines returns the stacks of goroutines running this
// package's device or guest code.
func deviceGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "usbdev.(*Device)") || strings.Contains(g, "usbdev.(*guest)") {
			found = append(found, g)
		}
	}
	return strings.Join(found, "\n\n")
}
