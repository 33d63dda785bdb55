package usbdev

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// raw writes a packet of type typ with this body as is, in the guest's
// layout: the header's length is the body's.
func (g *guest) raw(typ redir.Type, id uint64, body []byte) {
	g.t.Helper()
	g.wmu.Lock()
	defer g.wmu.Unlock()
	b := redir.Header{Type: typ, Length: uint32(len(body)), ID: id}.Encode(nil, g.layout)
	if _, err := g.conn.Write(append(b, body...)); err != nil {
		g.t.Fatalf("raw %s: %v", typ, err)
	}
}

// sync sends GET_INFO and waits for its answer: the device handles packets
// in order and answers each before it reads the next, so everything it
// said about the packets before is in by then.
func (g *guest) sync() {
	g.t.Helper()
	if _, err := usbproto.DecodeInfo(g.controlIn(usbproto.VendorIn, usbproto.ReqGetInfo, 0, 0, usbproto.SizeofInfo)); err != nil {
		g.t.Fatal(err)
	}
}

// quiet fails the test if the device said anything not yet received.
func (g *guest) quiet(what string) {
	g.t.Helper()
	for ep, ch := range g.bulk {
		if len(ch) > 0 {
			r := <-ch
			g.t.Errorf("%s: unexpected completion on endpoint %#02x: %+v", what, ep, r)
		}
	}
	if len(g.ctrl) > 0 {
		g.t.Errorf("%s: unexpected %+v", what, <-g.ctrl)
	}
	if len(g.events) > 0 {
		g.t.Errorf("%s: unexpected %+v", what, <-g.events)
	}
}

// expectBulk waits for the completion of id on ep with status st.
func (g *guest) expectBulk(what string, ep uint8, id uint64, st redir.Status) {
	g.t.Helper()
	r := g.wait(g.bulk[ep], what)
	if c := r.body.(redir.BulkPacket); r.hdr.ID != id || c.Status != st || len(c.Data) != 0 {
		g.t.Errorf("%s: completion id %d status %d (%d bytes), want id %d status %d", what, r.hdr.ID, c.Status, len(c.Data), id, st)
	}
}

// TestHostilePackets feeds the device, after a valid hello, packets no
// correct usb-guest sends: malformed bodies, lengths that lie, unknown
// types, types only a usb-host sends, IN data from the guest, unknown
// endpoints and transfer types, duplicate ids, bad control requests. The
// device answers each as USB.md says (or not at all), counts it, and keeps
// serving: a stream through it afterwards is verified.
func TestHostilePackets(t *testing.T) {
	d, g, _ := start(t, Options{})
	g.setConfiguration(1)
	l := g.layout
	before := d.Counters()

	// Dropped and counted: nothing to answer.
	silent := []struct {
		what string
		typ  redir.Type
		body []byte
	}{
		{"unknown type", 99, []byte{1, 2, 3, 4, 5}},
		{"unknown control type", 50, nil},
		{"device_connect from the guest", redir.TypeDeviceConnect, redir.DeviceConnect{VendorID: 1}.Encode(nil, l)},
		{"ep_info from the guest", redir.TypeEPInfo, redir.EPInfo{}.Encode(nil, l)},
		{"truncated control_packet", redir.TypeControlPacket, []byte{0x80, 6, 0x80}},
		{"bulk OUT whose length lies", redir.TypeBulkPacket, redir.BulkPacket{Endpoint: 0x01, Length: 100, Data: make([]byte, 50)}.Encode(nil, l)},
		{"bulk IN carrying guest data", redir.TypeBulkPacket, redir.BulkPacket{Endpoint: 0x81, Length: 8, Data: make([]byte, 8)}.Encode(nil, l)},
		{"control OUT with fewer data bytes than wLength", redir.TypeControlPacket, redir.ControlPacket{RequestType: usbproto.VendorOut, Request: usbproto.ReqSetQueue, Length: 8, Data: make([]byte, 4)}.Encode(nil, l)},
		{"buffered_bulk_packet from the guest", redir.TypeBufferedBulkPacket, redir.BufferedBulkPacket{Endpoint: 0x81, Length: 4, Data: make([]byte, 4)}.Encode(nil, l)},
		{"second hello", redir.TypeHello, redir.Hello{Version: "again"}.Encode(nil, l)},
		{"filter_filter", redir.TypeFilterFilter, redir.FilterFilter{Rules: "-1,-1,-1,-1,0"}.Encode(nil, l)},
		{"filter_reject", redir.TypeFilterReject, nil},
		{"unexpected device_disconnect_ack", redir.TypeDeviceDisconnectAck, nil},
		{"iso_packet", redir.TypeISOPacket, redir.ISOPacket{Endpoint: 0x03, Length: 2, Data: []byte{1, 2}}.Encode(nil, l)},
		{"reset with a body", redir.TypeReset, []byte{0}},
		{"cancel with a body", redir.TypeCancelDataPacket, []byte{0, 0}},
		{"get_configuration with a body", redir.TypeGetConfiguration, []byte{0}},
		{"set_configuration without its byte", redir.TypeSetConfiguration, nil},
	}
	for i, tc := range silent {
		g.raw(tc.typ, g.id(), tc.body)
		g.sync()
		g.quiet(tc.what)
		if c := d.Counters(); c.BadPackets != before.BadPackets+uint32(i+1) {
			t.Fatalf("%s: bad_packets %d, want %d", tc.what, c.BadPackets, before.BadPackets+uint32(i+1))
		}
	}
	// A cancel of an id the device does not hold: ignored, not counted.
	g.raw(redir.TypeCancelDataPacket, 12345, nil)
	g.sync()
	g.quiet("cancel of an unknown id")

	// Answered with usb_redir_inval: no such endpoint or transfer type.
	bad0 := d.Counters().BadPackets
	for _, tc := range []struct {
		what string
		ep   uint8
		body redir.Body
	}{
		{"bulk to endpoint 0x05", 0x05, redir.BulkPacket{Endpoint: 0x05, Length: 1, Data: []byte{1}}},
		{"bulk IN to endpoint 0x8F", 0x8F, redir.BulkPacket{Endpoint: 0x8F, Length: 64}},
		{"bulk to endpoint 0", 0x00, redir.BulkPacket{Endpoint: 0x00, Length: 1, Data: []byte{1}}},
		{"bulk with a stream id", 0x81, redir.BulkPacket{Endpoint: 0x81, Length: 64, StreamID: 3}},
	} {
		id := g.id()
		if err := g.send(id, tc.body); err != nil {
			t.Fatal(err)
		}
		ch := g.bulk[tc.ep]
		if ch == nil {
			ch = g.bulk[0]
		}
		r := g.wait(ch, tc.what)
		if c := r.body.(redir.BulkPacket); r.hdr.ID != id || c.Status != redir.StatusInval {
			t.Errorf("%s: %+v", tc.what, r)
		}
	}
	statusReplies := []struct {
		what string
		body redir.Body
		want redir.Type
	}{
		{"start_iso_stream", redir.StartISOStream{Endpoint: 0x83, PktsPerURB: 1, NoURBs: 1}, redir.TypeISOStreamStatus},
		{"stop_iso_stream", redir.StopISOStream{Endpoint: 0x83}, redir.TypeISOStreamStatus},
		{"start_interrupt_receiving", redir.StartInterruptReceiving{Endpoint: 0x83}, redir.TypeInterruptReceivingStatus},
		{"stop_interrupt_receiving", redir.StopInterruptReceiving{Endpoint: 0x83}, redir.TypeInterruptReceivingStatus},
		{"alloc_bulk_streams", redir.AllocBulkStreams{Endpoints: 1 << 17, NoStreams: 4}, redir.TypeBulkStreamsStatus},
		{"free_bulk_streams", redir.FreeBulkStreams{Endpoints: 1 << 17}, redir.TypeBulkStreamsStatus},
		{"start_bulk_receiving", redir.StartBulkReceiving{Endpoint: 0x81, BytesPerTransfer: 512, NoTransfers: 5}, redir.TypeBulkReceivingStatus},
		{"stop_bulk_receiving", redir.StopBulkReceiving{Endpoint: 0x81}, redir.TypeBulkReceivingStatus},
		{"interrupt OUT", redir.InterruptPacket{Endpoint: 0x03, Length: 2, Data: []byte{1, 2}}, redir.TypeInterruptPacket},
	}
	for _, tc := range statusReplies {
		id := g.id()
		if err := g.send(id, tc.body); err != nil {
			t.Fatal(err)
		}
		r := g.wait(g.ctrl, tc.what)
		if r.hdr.Type != tc.want || r.hdr.ID != id || statusOf(r.body) != redir.StatusInval {
			t.Errorf("%s: %s id %d %+v", tc.what, r.hdr.Type, r.hdr.ID, r.body)
		}
	}
	if got := d.Counters().BadPackets - bad0; got != 4+uint32(len(statusReplies)) {
		t.Errorf("bad_packets went up by %d, want %d", got, 4+len(statusReplies))
	}
	// A control packet whose endpoint disagrees with its direction.
	id := g.id()
	if err := g.send(id, redir.ControlPacket{Endpoint: 0x80, RequestType: usbproto.VendorOut, Request: usbproto.ReqReset}); err != nil {
		t.Fatal(err)
	}
	if r := g.wait(g.ctrl, "control on the wrong endpoint"); r.body.(redir.ControlPacket).Status != redir.StatusInval {
		t.Errorf("control on the wrong endpoint: %+v", r)
	}

	// Control requests refused with a STALL.
	bc := d.Counters().BadControl
	setup := func(engine, size uint32) []byte {
		return usbproto.QueueSetup{Engine: engine, RecordSize: size}.Encode(nil)
	}
	stalls := []struct {
		what             string
		reqType, req     uint8
		value, index, ln uint16
		data             []byte
	}{
		{"unknown vendor request", usbproto.VendorIn, 0x77, 0, 0, 8, nil},
		{"GET_INFO with wValue 1", usbproto.VendorIn, usbproto.ReqGetInfo, 1, 0, 24, nil},
		{"GET_INFO as OUT", usbproto.VendorOut, usbproto.ReqGetInfo, 0, 0, 0, nil},
		{"vendor request to the interface", usbproto.VendorIn | reqRecipIface, usbproto.ReqGetInfo, 0, 0, 24, nil},
		{"class request", 0x21, 0x09, 0, 0, 0, nil},
		{"SET_QUEUE with 7 bytes", usbproto.VendorOut, usbproto.ReqSetQueue, 0, 0, 7, make([]byte, 7)},
		{"SET_QUEUE with 9 bytes", usbproto.VendorOut, usbproto.ReqSetQueue, 0, 0, 9, make([]byte, 9)},
		{"SET_QUEUE of pair 9", usbproto.VendorOut, usbproto.ReqSetQueue, 0, 9, 8, setup(1, 64)},
		{"SET_QUEUE of engine 9", usbproto.VendorOut, usbproto.ReqSetQueue, 0, 0, 8, setup(9, 64)},
		{"SET_QUEUE of engine 0", usbproto.VendorOut, usbproto.ReqSetQueue, 0, 0, 8, setup(0, 64)},
		{"SET_QUEUE of 12-byte records", usbproto.VendorOut, usbproto.ReqSetQueue, 0, 0, 8, setup(1, 12)},
		{"SET_QUEUE of 1 MiB records", usbproto.VendorOut, usbproto.ReqSetQueue, 0, 0, 8, setup(1, 1<<20)},
		{"SET_QUEUE of 0-byte records", usbproto.VendorOut, usbproto.ReqSetQueue, 0, 0, 8, setup(1, 0)},
		{"RESET with data", usbproto.VendorOut, usbproto.ReqReset, 0, 0, 1, []byte{1}},
		{"RESET with wIndex", usbproto.VendorOut, usbproto.ReqReset, 0, 1, 0, nil},
		{"GET_QUEUE of pair 2", usbproto.VendorIn, usbproto.ReqGetQueue, 0, 2, 24, nil},
		{"GET_DESCRIPTOR BOS", reqDirIn, reqGetDescriptor, 0x0F << 8, 0, 5, nil},
		{"GET_DESCRIPTOR string 9", reqDirIn, reqGetDescriptor, dtString<<8 | 9, usbproto.LangEnglishUS, 255, nil},
		{"GET_DESCRIPTOR configuration 1", reqDirIn, reqGetDescriptor, dtConfiguration<<8 | 1, 0, 9, nil},
		{"GET_DESCRIPTOR other speed", reqDirIn, reqGetDescriptor, 7 << 8, 0, 9, nil},
		{"GET_STATUS of endpoint 0x85", reqDirIn | reqRecipEP, reqGetStatus, 0, 0x85, 2, nil},
		{"GET_STATUS of interface 1", reqDirIn | reqRecipIface, reqGetStatus, 0, 1, 2, nil},
		{"SET_FEATURE halt of endpoint 0", reqRecipEP, reqSetFeature, featureEndpointHalt, 0, 0, nil},
		{"CLEAR_FEATURE of endpoint 0x09", reqRecipEP, reqClearFeature, featureEndpointHalt, 0x09, 0, nil},
		{"CLEAR_FEATURE remote wakeup", 0, reqClearFeature, 1, 0, 0, nil},
		{"SET_CONFIGURATION 2", 0, reqSetConfiguration, 2, 0, 0, nil},
		{"SET_INTERFACE alt 1", reqRecipIface, reqSetInterface, 1, 0, 0, nil},
		{"GET_INTERFACE of interface 3", reqDirIn | reqRecipIface, reqGetInterface, 0, 3, 1, nil},
		{"SYNCH_FRAME", reqDirIn | reqRecipEP, 12, 0, 0x81, 2, nil},
	}
	for i, tc := range stalls {
		c := g.control(tc.reqType, tc.req, tc.value, tc.index, tc.ln, tc.data)
		if c.Status != redir.StatusStall || len(c.Data) != 0 {
			t.Errorf("%s: status %d with %d bytes, want a stall", tc.what, c.Status, len(c.Data))
		}
		if got := d.Counters().BadControl; got != bc+uint32(i+1) {
			t.Errorf("%s: bad_control %d, want %d", tc.what, got, bc+uint32(i+1))
		}
	}
	if err := g.send(g.id(), redir.SetConfiguration{Configuration: 5}); err != nil {
		t.Fatal(err)
	}
	if cs := g.wait(g.ctrl, "set_configuration 5").body.(redir.ConfigurationStatus); cs.Status != redir.StatusStall || cs.Configuration != 1 {
		t.Errorf("set_configuration 5: %+v", cs)
	}
	g.sync()
	g.quiet("after the refused requests")

	// The device still works.
	g.setQueue(0, ycqdev.EngineEcho, 64)
	s := stream{pair: 0, engine: ycqdev.EngineEcho, recSize: 64, records: 2000, perTransfer: 16, inFlight: 8, inLen: 1024}
	if err := s.run(g); err != nil {
		t.Fatal(err)
	}
}

// statusOf is the status of one of the status replies.
func statusOf(b redir.Body) redir.Status {
	switch v := b.(type) {
	case redir.ISOStreamStatus:
		return v.Status
	case redir.InterruptReceivingStatus:
		return v.Status
	case redir.BulkStreamsStatus:
		return v.Status
	case redir.BulkReceivingStatus:
		return v.Status
	case redir.InterruptPacket:
		return v.Status
	}
	return 255
}

// TestHostileTransfers: bulk transfers that break the framing rules of a
// running pair stall and halt the endpoint, count a bad transfer and reach
// no engine; the halt holds until CLEAR_FEATURE(ENDPOINT_HALT); duplicate
// ids and requests beyond the IN window are refused; then a stream
// through the same pair is verified.
func TestHostileTransfers(t *testing.T) {
	d, g, _ := start(t, Options{})
	g.setConfiguration(1)
	g.setQueue(0, ycqdev.EngineEcho, 64)
	out, in := usbproto.OutEndpoint(0), usbproto.InEndpoint(0)
	clearHalt := func(ep uint8) {
		t.Helper()
		if st := g.controlOut(reqRecipEP, reqClearFeature, featureEndpointHalt, uint16(ep), nil); st != redir.StatusSuccess {
			t.Fatalf("CLEAR_FEATURE halt %#02x: %d", ep, st)
		}
	}
	halted := func(ep uint8) bool {
		t.Helper()
		return le.Uint16(g.controlIn(reqRecipEP, reqGetStatus, 0, uint16(ep), 2)) == 1
	}
	bad := uint64(0)
	for _, tc := range []struct {
		what string
		n    int
	}{
		{"63 bytes", 63}, {"no bytes", 0}, {"65 bytes", 65},
		{"257 records", 257 * 64}, {"300 KiB", 300 << 10},
	} {
		id := g.id()
		if err := g.bulkOut(out, id, make([]byte, tc.n)); err != nil {
			t.Fatal(err)
		}
		g.expectBulk(tc.what, out, id, redir.StatusStall)
		bad++
		if !halted(out) || halted(in) {
			t.Fatalf("%s: OUT halted %v, IN halted %v", tc.what, halted(out), halted(in))
		}
		id = g.id()
		if err := g.bulkOut(out, id, make([]byte, 64)); err != nil {
			t.Fatal(err)
		}
		g.expectBulk(tc.what+", then a good one while halted", out, id, redir.StatusStall)
		clearHalt(out)
	}
	// OUT on a stopped pair.
	id := g.id()
	if err := g.bulkOut(usbproto.OutEndpoint(1), id, make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	g.expectBulk("OUT on a stopped pair", usbproto.OutEndpoint(1), id, redir.StatusStall)
	clearHalt(usbproto.OutEndpoint(1))

	// IN: two held, then one shorter than a response halts the endpoint
	// and stalls all three.
	ids := []uint64{g.id(), g.id(), g.id()}
	for i, n := range []int{64, 128, 32} {
		if err := g.bulkIn(in, ids[i], n); err != nil {
			t.Fatal(err)
		}
	}
	for i := range ids {
		g.expectBulk("IN halt", in, ids[i], redir.StatusStall)
	}
	bad++
	if !halted(in) {
		t.Fatal("IN not halted")
	}
	id = g.id()
	if err := g.bulkIn(in, id, 64); err != nil {
		t.Fatal(err)
	}
	g.expectBulk("IN while halted", in, id, redir.StatusStall)
	clearHalt(in)
	id = g.id()
	if err := g.bulkIn(in, id, 0); err != nil {
		t.Fatal(err)
	}
	g.expectBulk("IN of 0 bytes", in, id, redir.StatusStall)
	bad++
	clearHalt(in)
	// SET_FEATURE halt, then clear.
	if st := g.controlOut(reqRecipEP, reqSetFeature, featureEndpointHalt, uint16(out), nil); st != redir.StatusSuccess || !halted(out) {
		t.Fatalf("SET_FEATURE halt: %d", st)
	}
	clearHalt(out)

	// A duplicate id; the IN window.
	dup := g.id()
	if err := g.bulkIn(in, dup, 64); err != nil {
		t.Fatal(err)
	}
	if err := g.bulkIn(in, dup, 64); err != nil {
		t.Fatal(err)
	}
	g.expectBulk("a duplicate id", in, dup, redir.StatusInval)
	g.raw(redir.TypeCancelDataPacket, dup, nil)
	g.expectBulk("the cancelled original", in, dup, redir.StatusCancelled)
	var window []uint64
	for range usbproto.InWindow {
		id := g.id()
		window = append(window, id)
		if err := g.bulkIn(usbproto.InEndpoint(1), id, 64); err != nil {
			t.Fatal(err)
		}
	}
	id = g.id()
	if err := g.bulkIn(usbproto.InEndpoint(1), id, 64); err != nil {
		t.Fatal(err)
	}
	g.expectBulk("beyond the IN window", usbproto.InEndpoint(1), id, redir.StatusInval)
	for _, id := range window {
		g.raw(redir.TypeCancelDataPacket, id, nil)
	}
	cancelled(t, g, usbproto.InEndpoint(1), window)
	g.sync()
	g.quiet("after the hostile transfers")

	c := d.Counters()
	if c.Pairs[0].BadTransfers != bad || c.Pairs[0].Requests != 0 || c.Pairs[1].BadTransfers != 2 {
		t.Errorf("counters %+v: want %d bad transfers on pair 0, 2 on pair 1, no requests", c, bad)
	}
	if c.BadPackets != 1 {
		t.Errorf("bad_packets %d, want 1 (the duplicate id)", c.BadPackets)
	}
	s := stream{pair: 0, engine: ycqdev.EngineEcho, recSize: 64, records: 3000, perTransfer: 32, inFlight: 8, inLen: 2048}
	if err := s.run(g); err != nil {
		t.Fatal(err)
	}
}

// serveRaw runs a device against raw bytes from a guest that sends them
// and reads (and drops) everything the device says, and returns Serve's
// result once the guest has closed its end.
func serveRaw(t *testing.T, input []byte, closeAfter bool) error {
	t.Helper()
	a, b := socketpair(t)
	d, err := New(a, Options{})
	if err != nil {
		t.Fatal(err)
	}
	errc := served(d)
	drained := make(chan struct{})
	go func() {
		io.Copy(io.Discard, b)
		close(drained)
	}()
	b.Write(input)
	if closeAfter {
		b.(*net.UnixConn).CloseWrite() // the device reads the end; its own writes still go through
	}
	err = <-errc
	b.Close()
	<-drained
	d.Close()
	return err
}

// TestHostileStream: what ends a connection, and how Serve says so.
func TestHostileStream(t *testing.T) {
	checkLeaks(t)
	l0 := redir.Layout{}
	hello := func(caps redir.Caps) []byte {
		body := redir.Hello{Version: "x", Caps: caps}.Encode(nil, l0)
		return append(redir.Header{Type: redir.TypeHello, Length: uint32(len(body))}.Encode(nil, l0), body...)
	}
	l := redir.Negotiate(guestCaps, ourCaps)
	huge := redir.Header{Type: redir.TypeBulkPacket, Length: 2 << 20, ID: 1}.Encode(nil, l)
	for _, tc := range []struct {
		what  string
		input []byte
		want  func(error) bool
	}{
		{"nothing", nil, func(err error) bool { return err == nil }},
		{"a hello, then the end", hello(guestCaps), func(err error) bool { return err == nil }},
		{"a first packet that is not a hello", redir.Header{Type: redir.TypeReset}.Encode(nil, l0), func(err error) bool { return errors.Is(err, ErrHandshake) }},
		{"a hello with no capabilities", append(redir.Header{Type: redir.TypeHello, Length: 64}.Encode(nil, l0), make([]byte, 64)...), func(err error) bool { return err == nil }},
		{"a hello without its NUL", append(redir.Header{Type: redir.TypeHello, Length: 64}.Encode(nil, l0), bytes.Repeat([]byte{'v'}, 64)...), func(err error) bool { return errors.Is(err, ErrHandshake) }},
		{"a hello of a bad length", append(redir.Header{Type: redir.TypeHello, Length: 3}.Encode(nil, l0), 1, 2, 3), func(err error) bool { return errors.Is(err, ErrHandshake) }},
		{"a packet beyond ReadLimit", append(hello(guestCaps), huge...), func(err error) bool { return errors.Is(err, redir.ErrTooLarge) }},
		{"a packet cut short", append(hello(guestCaps), redir.Header{Type: redir.TypeReset, Length: 10}.Encode(nil, l)...), func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
	} {
		if err := serveRaw(t, tc.input, true); !tc.want(err) {
			t.Errorf("%s: Serve returned %v", tc.what, err)
		}
	}
}
