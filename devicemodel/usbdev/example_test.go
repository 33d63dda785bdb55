package usbdev_test

import (
	"fmt"
	"net"

	"github.com/ycq-dev/ycq/devicemodel/usbdev"
	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// A usb-guest (what QEMU's usb-redir is) meets the device over a pipe: the
// hellos, the device's attach, GET_INFO, a queue pair set up with the echo
// engine, then one record out and its response back.
func Example() {
	devEnd, guestEnd := net.Pipe()
	d, err := usbdev.New(devEnd, usbdev.Options{})
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- d.Serve() }()

	r, w := redir.NewReader(guestEnd, 0), redir.NewWriter(guestEnd)
	next := func() (redir.Header, redir.Body) {
		p, err := r.Next()
		if err != nil {
			panic(err)
		}
		b, err := redir.Decode(p.Header.Type, p.Body, r.Layout(), redir.RoleHost)
		if err != nil {
			panic(err)
		}
		return p.Header, b
	}
	// A pipe holds nothing: take the device's hello before sending ours.
	_, b := next()
	caps := redir.Caps{}.With(redir.Cap64BitIDs, redir.Cap32BitBulkLength, redir.CapEPInfoMaxPacketSize, redir.CapConnectDeviceVersion)
	if err := w.Send(0, redir.Hello{Version: "example guest", Caps: caps}); err != nil {
		panic(err)
	}
	l := redir.Negotiate(caps, b.(redir.Hello).Caps)
	r.SetLayout(l)
	w.SetLayout(l)
	for {
		h, b := next()
		if h.Type == redir.TypeDeviceConnect {
			c := b.(redir.DeviceConnect)
			fmt.Printf("attached %04x:%04x\n", c.VendorID, c.ProductID)
			break
		}
	}

	control := func(c redir.ControlPacket) redir.ControlPacket {
		c.Endpoint = c.RequestType & usbproto.EndpointDirIn
		if err := w.Send(1, c); err != nil {
			panic(err)
		}
		_, b := next()
		return b.(redir.ControlPacket)
	}
	info, _ := usbproto.DecodeInfo(control(redir.ControlPacket{RequestType: usbproto.VendorIn, Request: usbproto.ReqGetInfo, Length: usbproto.SizeofInfo}).Data)
	fmt.Printf("%d queue pairs, records up to %d bytes\n", info.Pairs, info.MaxRecordSize)
	setup := usbproto.QueueSetup{Engine: ycqdev.EngineEcho, RecordSize: 8}.Encode(nil)
	st := control(redir.ControlPacket{RequestType: usbproto.VendorOut, Request: usbproto.ReqSetQueue, Index: 0, Length: usbproto.SizeofQueueSetup, Data: setup}).Status
	fmt.Println("SET_QUEUE status", st)

	if err := w.Send(2, redir.BulkPacket{Endpoint: usbproto.OutEndpoint(0), Length: 8, Data: []byte("ycq usb!")}); err != nil {
		panic(err)
	}
	_, b = next()
	fmt.Printf("OUT: %d bytes taken\n", b.(redir.BulkPacket).Length)
	if err := w.Send(3, redir.BulkPacket{Endpoint: usbproto.InEndpoint(0), Length: 512}); err != nil {
		panic(err)
	}
	_, b = next()
	fmt.Printf("IN: %q\n", b.(redir.BulkPacket).Data)

	guestEnd.Close()
	fmt.Println("Serve:", <-served)
	d.Close()
	// Output:
	// attached 1209:0001
	// 2 queue pairs, records up to 65536 bytes
	// SET_QUEUE status 0
	// OUT: 8 bytes taken
	// IN: "ycq usb!"
	// Serve: <nil>
}
