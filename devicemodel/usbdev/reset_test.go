package usbdev

import (
	"testing"

	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// holdSome puts transfers on the device that it must hold: on pair 0
// (echo, 64-byte records, no IN requests) OUT transfers until both rings
// are full and OutWindow more are staged, whose completions are delayed;
// on pair 1 IN requests with no records to answer them. It returns the
// ids of the held OUT transfers and IN requests.
func holdSome(t *testing.T, d *Device, g *guest, ins int) (outs, held []uint64) {
	t.Helper()
	const recSize, k = 64, 16
	slots := usbproto.RingSlots(recSize)
	fit := 2 * slots / k // transfers the receive and transmit rings take
	for range fit + usbproto.OutWindow {
		id := g.id()
		buf := make([]byte, k*recSize)
		if err := g.bulkOut(usbproto.OutEndpoint(0), id, buf); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, id)
	}
	for i := range fit {
		if _, c := g.completion(usbproto.OutEndpoint(0)); c.Status != redir.StatusSuccess {
			t.Fatalf("OUT transfer %d of %d that fit: status %d", i, fit, c.Status)
		}
	}
	testenv.WaitFor(t, "OutWindow staged OUT transfers", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		q := d.pairs[0].q
		return q != nil && len(q.staged) == usbproto.OutWindow
	})
	for range ins {
		id := g.id()
		if err := g.bulkIn(usbproto.InEndpoint(1), id, 4096); err != nil {
			t.Fatal(err)
		}
		held = append(held, id)
	}
	testenv.WaitFor(t, "the IN requests held", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.pairs[1].ins) == ins
	})
	return outs[fit:], held
}

// cancelled waits for a cancelled completion of every id on ep and
// returns the latest place one had in the device's output.
func cancelled(t *testing.T, g *guest, ep uint8, ids []uint64) int {
	t.Helper()
	want := map[uint64]bool{}
	for _, id := range ids {
		want[id] = true
	}
	last := 0
	for range ids {
		r := g.wait(g.bulk[ep], "a cancelled completion")
		c := r.body.(redir.BulkPacket)
		if !want[r.hdr.ID] || c.Status != redir.StatusCancelled {
			t.Fatalf("endpoint %#02x: completion id %d status %d, want one of %v cancelled", ep, r.hdr.ID, c.Status, ids)
		}
		delete(want, r.hdr.ID)
		last = max(last, r.seq)
	}
	return last
}

// TestResetMidStream: after a first stream, the device holds staged OUT
// transfers (both rings full) and IN requests; RESET completes every one
// of them as cancelled before its own answer, zeroes the counters and
// stops the pairs; the guest sets the queues again and a second stream of
// 10,000 records a pair is verified in full. A bus reset then does the
// same but keeps the counters.
func TestResetMidStream(t *testing.T) {
	d, g, _ := start(t, Options{})
	enumerate(t, g, DefaultPairs)
	ss := twoPairs(4000, 0)
	setQueues(g, ss)
	runAll(t, g, ss...)

	outs, ins := holdSome(t, d, g, 5)
	id := g.id()
	if err := g.send(id, redir.ControlPacket{RequestType: usbproto.VendorOut, Request: usbproto.ReqReset}); err != nil {
		t.Fatal(err)
	}
	lastOut := cancelled(t, g, usbproto.OutEndpoint(0), outs)
	lastIn := cancelled(t, g, usbproto.InEndpoint(1), ins)
	r := g.wait(g.ctrl, "RESET's answer")
	if c := r.body.(redir.ControlPacket); r.hdr.ID != id || c.Status != redir.StatusSuccess {
		t.Fatalf("RESET: %+v", r)
	}
	if r.seq < lastOut || r.seq < lastIn {
		t.Fatalf("RESET answered (packet %d) before its cancellations (packets %d, %d)", r.seq, lastOut, lastIn)
	}
	c := g.counters()
	if c.Resets != 1 || c.BadControl != 0 || c.BadPackets != 0 || c.Pairs[0] != (usbproto.PairCounters{}) || c.Pairs[1] != (usbproto.PairCounters{}) {
		t.Fatalf("counters after RESET: %+v", c)
	}
	for i := range DefaultPairs {
		if s := g.queueState(i); s.State != 0 {
			t.Fatalf("pair %d after RESET: %+v", i, s)
		}
	}

	ss = twoPairs(10000, 0) // the sequence starts again: the device must not replay the old one
	setQueues(g, ss)
	runAll(t, g, ss...)
	c = g.counters()
	for _, s := range ss {
		if got := c.Pairs[s.pair]; got.Requests != 10000 || got.Responses != 10000 {
			t.Errorf("pair %d after the second stream: %+v", s.pair, got)
		}
	}

	// A bus reset: the same, without zeroing; GET_COUNTERS after it is
	// answered after its cancellations.
	outs, ins = holdSome(t, d, g, 3)
	if err := g.send(0, redir.Reset{}); err != nil {
		t.Fatal(err)
	}
	lastOut = cancelled(t, g, usbproto.OutEndpoint(0), outs)
	lastIn = cancelled(t, g, usbproto.InEndpoint(1), ins)
	id = g.id()
	if err := g.send(id, redir.ControlPacket{Endpoint: 0x80, RequestType: usbproto.VendorIn, Request: usbproto.ReqGetCounters, Length: 4096}); err != nil {
		t.Fatal(err)
	}
	r = g.wait(g.ctrl, "GET_COUNTERS")
	if r.seq < lastOut || r.seq < lastIn {
		t.Fatalf("a bus reset's cancellations (packets %d, %d) came after the next answer (%d)", lastOut, lastIn, r.seq)
	}
	c, err := usbproto.DecodeCounters(r.body.(redir.ControlPacket).Data)
	if err != nil {
		t.Fatal(err)
	}
	fits := uint64(2 * usbproto.RingSlots(64))
	if c.Resets != 2 || c.Pairs[1].Requests != 10000 || c.Pairs[0].Requests != 10000+fits {
		t.Fatalf("counters after a bus reset: %+v", c)
	}
	ss = twoPairs(2000, 0)
	setQueues(g, ss)
	runAll(t, g, ss...)
}

// TestUnplugPlug: Unplug cancels what the device holds, then sends
// device_disconnect; while unplugged every request is answered with an I/O
// error; Plug connects a fresh device (pairs stopped) that the guest
// enumerates and streams through again, verified. With a guest that
// acknowledges disconnects, Plug's device_connect waits for the ack.
func TestUnplugPlug(t *testing.T) {
	d, g, _ := start(t, Options{})
	enumerate(t, g, DefaultPairs)
	ss := twoPairs(3000, 0)
	setQueues(g, ss)
	runAll(t, g, ss...)

	outs, ins := holdSome(t, d, g, 4)
	if err := d.Unplug(); err != nil {
		t.Fatal(err)
	}
	lastOut := cancelled(t, g, usbproto.OutEndpoint(0), outs)
	lastIn := cancelled(t, g, usbproto.InEndpoint(1), ins)
	r := g.event(redir.TypeDeviceDisconnect)
	if r.seq < lastOut || r.seq < lastIn {
		t.Fatalf("device_disconnect (packet %d) before the cancellations (%d, %d)", r.seq, lastOut, lastIn)
	}
	if d.Connected() {
		t.Fatal("connected after Unplug")
	}
	if err := d.Unplug(); err == nil {
		t.Fatal("a second Unplug succeeded")
	}
	// Unplugged: I/O errors.
	if err := g.bulkOut(usbproto.OutEndpoint(0), g.id(), make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	if _, c := g.completion(usbproto.OutEndpoint(0)); c.Status != redir.StatusIOError {
		t.Fatalf("OUT while unplugged: status %d", c.Status)
	}
	if st := g.control(usbproto.VendorIn, usbproto.ReqGetInfo, 0, 0, 64, nil).Status; st != redir.StatusIOError {
		t.Fatalf("GET_INFO while unplugged: status %d", st)
	}
	if err := g.send(g.id(), redir.SetConfiguration{Configuration: 1}); err != nil {
		t.Fatal(err)
	}
	if cs := g.wait(g.ctrl, "configuration_status").body.(redir.ConfigurationStatus); cs.Status != redir.StatusIOError {
		t.Fatalf("set_configuration while unplugged: %+v", cs)
	}

	if err := d.Plug(); err != nil {
		t.Fatal(err)
	}
	g.attach()
	enumerate(t, g, DefaultPairs)
	for i := range DefaultPairs {
		if s := g.queueState(i); s.State != 0 {
			t.Fatalf("pair %d after a replug: %+v", i, s)
		}
	}
	ss = twoPairs(10000, 0)
	setQueues(g, ss)
	runAll(t, g, ss...)
	c := g.counters()
	if got := c.Pairs[1]; got.Requests != 13000 || got.Responses != 13000 {
		t.Errorf("pair 1 counters across the replug: %+v", got)
	}
}

// TestUnplugAck: a guest with usb_redir_cap_device_disconnect_ack gets
// device_connect only after it acknowledged the disconnect.
func TestUnplugAck(t *testing.T) {
	checkLeaks(t)
	a, b := socketpair(t)
	d, err := New(a, Options{Pairs: 1})
	if err != nil {
		t.Fatal(err)
	}
	errc := served(d)
	g := newGuest(t, b, guestCaps.With(redir.CapDeviceDisconnectAck))
	defer func() {
		d.Close()
		g.close()
		<-errc
	}()
	g.handshake()
	g.attach()
	if err := d.Unplug(); err != nil {
		t.Fatal(err)
	}
	g.event(redir.TypeDeviceDisconnect)
	if err := d.Plug(); err != nil {
		t.Fatal(err)
	}
	if d.Connected() {
		t.Fatal("connected before the disconnect was acknowledged")
	}
	if err := d.Plug(); err == nil {
		t.Fatal("a second Plug succeeded")
	}
	if err := g.send(0, redir.DeviceDisconnectAck{}); err != nil {
		t.Fatal(err)
	}
	g.attach()
	if !d.Connected() {
		t.Fatal("not connected after the ack")
	}
	g.setConfiguration(1)
	g.setQueue(0, ycqdev.EngineEcho, 64)
	s := stream{pair: 0, engine: ycqdev.EngineEcho, recSize: 64, records: 500, perTransfer: 8, inFlight: 4, inLen: 512}
	if err := s.run(g); err != nil {
		t.Fatal(err)
	}
}
