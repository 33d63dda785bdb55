// Package usbhost drives the ycq USB far processor (the device of
// devicemodel/usbdev, whose contract is devicemodel/usbdev/USB.md, its
// identity, vendor requests and their layouts in package ycqdev/usbproto,
// which the device uses too) from the host, over libusb through github.com/google/gousb v1.1.3 (cgo, Debian's
// libusb-1.0-0-dev). It gives the same zero-copy API as the PCIe host
// driver (package hostdriver), so an application switches transport
// without rewriting its loop: reserve request slots, fill them in place,
// publish them; receive responses, read them in place, release them; or
// Send and Recv.
//
// # Transfers on slot memory
//
// Each queue pair has two queues of package ring, their data regions in
// anonymous mappings outside the Go heap. A request is one record of the
// pair's record size R, the whole slot (USB.md 4.1): a run of published
// slots is contiguous memory and goes out as one bulk OUT transfer issued
// on it, up to the device's records-per-transfer. Each IN transfer is
// issued on a run of reserved response slots; the device fills it with
// whole responses, which are published where they landed, and the slots
// it left empty are given back as holes. Neither direction stages or
// copies in this driver; with Config.DeviceMemory the queues' data are
// usbfs memory, which the kernel does not copy either (in anonymous memory
// usbfs copies every transfer). PairStats.Copies counts every transfer
// copied on its way, by either. (gousb's own transfers and streams own
// their buffers and copy each transfer, so gousb finds, opens and
// configures the device, claims the interface, runs the control requests
// and libusb's event loop, and the bulk transfers are libusb's, submitted
// here; handle_unsafe.go reads the libusb handle out of gousb's Device.)
//
// # Nothing acknowledged lost
//
// A request slot is released only once its OUT transfer completed and all
// its responses came (for the sink engine, once its OUT transfer
// completed). A device reset (Reset), a stall, a timeout or a device that
// vanishes stops the driver with a typed error (ErrStall, ErrTimeout,
// ErrGone, ErrIO, ErrProtocol, in a *TransferError inside an
// *IncompleteError that says what was unanswered); responses already
// received stay readable; and Recover (or Reset) sets the queues up again
// and sends every unanswered request again, in order, so each request is
// answered exactly once (a source request answered in part is answered
// again from its first response). Recover reopens a device that vanished,
// waiting for it to come back.
//
// # Concurrency and ownership
//
// A Pair is safe for any number of goroutines on both sides. Per pair the
// driver runs one goroutine for OUT transfers and one for IN transfers,
// besides gousb's event goroutine; application goroutines that wait sleep
// on channels the transport fires only when someone sleeps (ring/wait's
// protocol on the queues' wake lines). Driver methods are safe for
// concurrent use; Reset, Recover, Counters and Close are serialized. The
// driver owns the queues' memory, the transfers, the device handle and the
// gousb context; Close releases them all and returns what failed, joined.
//
// Without cgo the package builds, and Open returns ErrNoUSB.
package usbhost
