package usbproto_test

import (
	"fmt"

	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// A host sets pair 0 up for 4 KiB records through the crc32c engine
// (SET_QUEUE), and reads back what the device made of it (GET_QUEUE);
// here the device's answer is encoded by hand, as a device model would.
func Example() {
	const r = 4096
	setup := usbproto.QueueSetup{Engine: ycqdev.EngineCRC32C, RecordSize: r}.Encode(nil)
	fmt.Printf("bmRequestType %#02x bRequest %s wIndex 0: % x\n", usbproto.VendorOut, usbproto.RequestName(usbproto.ReqSetQueue), setup)

	answer := usbproto.QueueState{
		Engine: ycqdev.EngineCRC32C, RecordSize: r, ResponseSize: uint32(usbproto.ResponseSize(ycqdev.EngineCRC32C, r)),
		RecordsPerTransfer: uint32(usbproto.RecordsPerTransfer(r)), RingSlots: uint16(usbproto.RingSlots(r)),
		State: usbproto.QueueRunning,
	}.Encode(nil)
	q, err := usbproto.DecodeQueueState(answer)
	fmt.Printf("running %v: responses of %d bytes, %d records a transfer, %d slots (%v)\n",
		q.Running(), q.ResponseSize, q.RecordsPerTransfer, q.RingSlots, err)

	_, err = usbproto.DecodeQueueState(answer[:20])
	fmt.Println(err)
	// Output:
	// bmRequestType 0x40 bRequest SET_QUEUE wIndex 0: 02 00 00 00 00 10 00 00
	// running true: responses of 8 bytes, 64 records a transfer, 128 slots (<nil>)
	// usbproto: GET_QUEUE: 20 bytes: want 24 bytes
}
