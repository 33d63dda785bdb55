package usbdev

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// fuzzLayout is the layout a QEMU-like guest and the device settle on.
var fuzzLayout = redir.Negotiate(guestCaps, ourCaps)

// pkt frames one packet in fuzzLayout.
func pkt(id uint64, b redir.Body) []byte {
	body := b.Encode(nil, fuzzLayout)
	return append(redir.Header{Type: b.Type(), Length: uint32(len(body)), ID: id}.Encode(nil, fuzzLayout), body...)
}

// fuzzSeeds are packet streams that reach the device's paths: setup,
// transfers both ways, cancels, resets, refused requests.
func fuzzSeeds() [][]byte {
	setup := func(pair uint16, engine, size uint32) []byte {
		return pkt(2, redir.ControlPacket{RequestType: usbproto.VendorOut, Request: usbproto.ReqSetQueue, Index: pair, Length: 8, Data: usbproto.QueueSetup{Engine: engine, RecordSize: size}.Encode(nil)})
	}
	rec := bytes.Repeat([]byte{7}, 64)
	return [][]byte{
		nil,
		pkt(1, redir.SetConfiguration{Configuration: 1}),
		bytes.Join([][]byte{
			setup(0, ycqdev.EngineEcho, 64),
			pkt(3, redir.BulkPacket{Endpoint: 0x81, Length: 128}),
			pkt(4, redir.BulkPacket{Endpoint: 0x01, Length: 128, Data: append(rec, rec...)}),
			pkt(5, redir.BulkPacket{Endpoint: 0x81, Length: 64}),
			pkt(5, redir.CancelDataPacket{}),
			pkt(6, redir.ControlPacket{Endpoint: 0x80, RequestType: usbproto.VendorIn, Request: usbproto.ReqGetCounters, Length: 4096}),
		}, nil),
		bytes.Join([][]byte{
			setup(1, ycqdev.EngineCRC32C, 64),
			setup(0, ycqdev.EngineSource, 64),
			pkt(3, redir.BulkPacket{Endpoint: 0x01, Length: 64, Data: append([]byte{0xFF, 0xFF, 0, 0}, rec[4:]...)}),
			pkt(4, redir.BulkPacket{Endpoint: 0x81, Length: 1 << 16}),
			pkt(5, redir.BulkPacket{Endpoint: 0x02, Length: 63, Data: rec[:63]}),
			pkt(6, redir.ControlPacket{RequestType: reqRecipEP, Request: reqClearFeature, Index: 0x02}),
			pkt(7, redir.ControlPacket{RequestType: usbproto.VendorOut, Request: usbproto.ReqReset}),
			pkt(0, redir.Reset{}),
		}, nil),
		bytes.Join([][]byte{
			setup(0, ycqdev.EngineSink, 8),
			pkt(3, redir.BulkPacket{Endpoint: 0x01, Length: 8, Data: rec[:8]}),
			pkt(4, redir.StartISOStream{Endpoint: 0x83}),
			pkt(5, redir.ControlPacket{Endpoint: 0x80, RequestType: 0x80, Request: reqGetDescriptor, Value: dtConfiguration << 8, Length: 255}),
			pkt(6, redir.SetAltSetting{}),
			pkt(0, redir.DeviceDisconnectAck{}),
			{1, 2, 3},
		}, nil),
	}
}

// FuzzDevice feeds the device arbitrary bytes after a valid hello.
// Invariants: no panic; after every packet the device holds no more than
// its windows allow (InWindow IN requests and OutWindow staged transfers a
// pair, every held id accounted for); Serve returns, on its own at the
// end of the input, or, where the input has the device stop reading (the
// OUT window exceeded), once Close is called.
func FuzzDevice(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		a, b := socketpair(t)
		d, err := New(a, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var violation error
		check := func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if err := d.checkBounds(); err != nil && violation == nil {
				violation = err
			}
		}
		d.onPacket.Store(&check)
		errc := served(d)
		drained := make(chan struct{})
		go func() {
			io.Copy(io.Discard, b)
			close(drained)
		}()
		hello := redir.Hello{Version: "fuzz", Caps: guestCaps}.Encode(nil, redir.Layout{})
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			b.Write(append(redir.Header{Type: redir.TypeHello, Length: uint32(len(hello))}.Encode(nil, redir.Layout{}), hello...))
			b.Write(input)
			b.(*net.UnixConn).CloseWrite()
		}()
	wait:
		for {
			select {
			case <-errc:
				break wait
			case <-time.After(time.Millisecond):
				if d.waiting.Load() == 1 {
					check()
					d.Close()
					<-errc
					break wait
				}
			}
		}
		d.Close()
		b.Close()
		<-wrote
		<-drained
		if violation != nil {
			t.Fatal(violation)
		}
	})
}

// checkBounds reports a held-transfer count beyond the windows. Called
// with mu held.
func (d *Device) checkBounds() error {
	held := 0
	for _, p := range d.pairs {
		if len(p.ins) > usbproto.InWindow {
			return fmt.Errorf("pair %d holds %d IN requests", p.index, len(p.ins))
		}
		held += len(p.ins)
		if q := p.q; q != nil {
			if len(q.staged) > usbproto.OutWindow {
				return fmt.Errorf("pair %d holds %d OUT transfers", p.index, len(q.staged))
			}
			held += len(q.staged)
			for _, s := range q.staged {
				if len(s.data) > usbproto.MaxTransferBytes {
					return fmt.Errorf("pair %d staged %d bytes", p.index, len(s.data))
				}
			}
		}
	}
	if held != len(d.held) {
		return fmt.Errorf("%d transfers held, %d ids", held, len(d.held))
	}
	return nil
}

// FuzzControl sends the device well-framed control packets with arbitrary
// setup fields and data. Invariants: every one gets exactly one answer
// with its id and setup, a success to an IN request carries at most
// wLength bytes, and a refusal carries none.
func FuzzControl(f *testing.F) {
	f.Add(uint8(usbproto.VendorIn), uint8(usbproto.ReqGetInfo), uint16(0), uint16(0), uint16(24), []byte(nil))
	f.Add(uint8(usbproto.VendorOut), uint8(usbproto.ReqSetQueue), uint16(0), uint16(1), uint16(8), usbproto.QueueSetup{Engine: 2, RecordSize: 64}.Encode(nil))
	f.Add(uint8(usbproto.VendorOut), uint8(usbproto.ReqReset), uint16(0), uint16(0), uint16(0), []byte(nil))
	f.Add(uint8(0x80), uint8(reqGetDescriptor), uint16(dtString<<8|2), uint16(usbproto.LangEnglishUS), uint16(3), []byte(nil))
	f.Add(uint8(reqRecipEP), uint8(reqSetFeature), uint16(0), uint16(0x81), uint16(0), []byte(nil))
	f.Add(uint8(0), uint8(reqSetConfiguration), uint16(0), uint16(0), uint16(0), []byte(nil))
	f.Fuzz(func(t *testing.T, reqType, req uint8, value, index, length uint16, data []byte) {
		a, b := socketpair(t)
		d, err := New(a, Options{})
		if err != nil {
			t.Fatal(err)
		}
		errc := served(d)
		g := newGuest(t, b, guestCaps)
		defer func() {
			d.Close()
			g.close()
			<-errc
		}()
		g.handshake()
		g.attach()
		c := redir.ControlPacket{Endpoint: reqType & reqDirIn, RequestType: reqType, Request: req, Value: value, Index: index}
		if reqType&reqDirIn != 0 {
			c.Length = length
		} else {
			data = data[:min(len(data), 4096)]
			c.Length, c.Data = uint16(len(data)), data
		}
		for range 2 { // twice: the first may change the state the second sees
			id := g.id()
			if err := g.send(id, c); err != nil {
				t.Fatal(err)
			}
			var r reply
			for r.hdr.ID != id { // interface_info, ep_info or cancellations may come first
				select {
				case r = <-g.ctrl:
				case <-g.events:
				case <-time.After(time.Minute):
					t.Fatal("no answer")
				}
			}
			got := r.body.(redir.ControlPacket)
			if got.RequestType != c.RequestType || got.Request != c.Request || got.Value != c.Value || got.Index != c.Index {
				t.Fatalf("answer %+v to %+v", got, c)
			}
			if got.Status == redir.StatusSuccess && reqType&reqDirIn != 0 && (len(got.Data) > int(length) || int(got.Length) != len(got.Data)) {
				t.Fatalf("%d bytes (length %d) for wLength %d", len(got.Data), got.Length, length)
			}
			if got.Status != redir.StatusSuccess && len(got.Data) != 0 {
				t.Fatalf("status %d with %d bytes", got.Status, len(got.Data))
			}
		}
	})
}
