package usbhost

import (
	"fmt"
	"log/slog"
	"math/bits"
	"time"

	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// Config says which device to drive and how.
type Config struct {
	// Vendor and Product find the device; usbproto.VendorID and
	// usbproto.ProductID if 0.
	Vendor, Product uint16
	// Pairs is the number of queue pairs; all the device has if 0.
	Pairs int
	// Engine is the device's engine for every pair (ycqdev.Engine*);
	// echo if 0.
	Engine uint32
	// RecordSize is R, the bytes of every request (a multiple of 8): each
	// request slot holds one record, and records travel whole, R bytes
	// each, in OUT transfers issued on the slots. 4096 if 0.
	RecordSize int
	// Slots is the number of slots of each of a pair's two queues, a power
	// of two; 1024 if 0.
	Slots int
	// RecordsPerTransfer is the most records one OUT transfer carries;
	// the device's limit for R if 0 (and never above it).
	RecordsPerTransfer int
	// ResponsesPerTransfer is the most responses one IN transfer asks for;
	// what fits the device's transfer limit, and a share of the response
	// queue, if 0.
	ResponsesPerTransfer int
	// OutTransfers and InTransfers are the bulk transfers a pair keeps in
	// flight each way: the device's OUT window (4) and 8 if 0, never above
	// the device's windows.
	OutTransfers, InTransfers int
	// Timeout bounds a control request and an OUT transfer (an OUT
	// transfer waits while the device is backpressured: give the
	// application's consumers at least that long); 10 s if 0, none if
	// negative. IN transfers wait for responses and have no timeout.
	Timeout time.Duration
	// DeviceMemory puts the queues' data regions in usbfs memory
	// (libusb_dev_mem_alloc), which the kernel hands the host controller
	// as it is, instead of copying each transfer into a buffer of its
	// own; a region the device cannot give (usbfs allows 16 MiB in all by
	// default, and one mapping no more than a few MiB) is anonymous memory
	// as without it. The mappings stay valid when the device goes: after
	// a replug the transfers use them with the kernel's copy.
	DeviceMemory bool
	// Poll is how often Open and Recover look for the device while it is
	// not there; 50 ms if 0.
	Poll time.Duration
	Log  *slog.Logger
}

// withDefaults fills in the zero fields that need no device.
func (c Config) withDefaults() Config {
	if c.Vendor == 0 && c.Product == 0 {
		c.Vendor, c.Product = usbproto.VendorID, usbproto.ProductID
	}
	if c.Engine == 0 {
		c.Engine = ycqdev.EngineEcho
	}
	if c.RecordSize == 0 {
		c.RecordSize = 4096
	}
	if c.Slots == 0 {
		c.Slots = 1024
	}
	switch {
	case c.Timeout == 0:
		c.Timeout = 10 * time.Second
	case c.Timeout < 0:
		c.Timeout = 0
	}
	if c.Poll <= 0 {
		c.Poll = 50 * time.Millisecond
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// pairShape is what a pair runs with, from the Config and the device's
// Info.
type pairShape struct {
	engine       uint32
	r, s         int // record and response sizes
	slots        int
	outRecords   int // most records an OUT transfer carries
	inResponses  int // most responses an IN transfer asks for
	outTransfers int
	inTransfers  int
}

// checkInfo refuses a GET_INFO answer whose limits are outside what a
// driver of contract version 1 can run with, rather than trust them: the
// version, 1 to usbproto.MaxPairs pairs, and limits no device needs to
// exceed (16 MiB records, 64 Ki records or 64 MiB a transfer).
func checkInfo(in usbproto.Info) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: GET_INFO: "+format, append([]any{ErrProtocol}, args...)...)
	}
	switch {
	case in.Version != usbproto.ProtocolVersion:
		return bad("version %d, want %d", in.Version, usbproto.ProtocolVersion)
	case in.Pairs < 1 || in.Pairs > usbproto.MaxPairs:
		return bad("%d pairs, want 1 to %d", in.Pairs, usbproto.MaxPairs)
	case in.MaxRecordSize < usbproto.MinRecordSize || in.MaxRecordSize > 1<<24:
		return bad("max_record_size %d", in.MaxRecordSize)
	case in.MaxRecordsPerTransfer < 1 || in.MaxRecordsPerTransfer > 1<<16:
		return bad("max_records_per_transfer %d", in.MaxRecordsPerTransfer)
	case in.MaxTransferBytes < usbproto.MinRecordSize || in.MaxTransferBytes > 1<<26:
		return bad("max_transfer_bytes %d", in.MaxTransferBytes)
	case in.OutWindow < 1 || in.InWindow < 1:
		return bad("windows %d OUT, %d IN", in.OutWindow, in.InWindow)
	}
	return nil
}

// shape checks c against the device's info (which checkInfo passed) and
// works out the pairs' shape.
func (c Config) shape(info usbproto.Info) (pairShape, error) {
	bad := func(format string, args ...any) (pairShape, error) {
		return pairShape{}, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	pairs, maxRecord, maxTransfer := int(info.Pairs), int(info.MaxRecordSize), int(info.MaxTransferBytes)
	outWindow, inWindow := int(info.OutWindow), int(info.InWindow)
	if c.Pairs < 0 || c.Pairs > pairs {
		return bad("%d pairs, the device has %d", c.Pairs, pairs)
	}
	if c.Engine > 31 || info.Engines&(1<<c.Engine) == 0 {
		return bad("engine %d: the device's engines are %#x", c.Engine, info.Engines)
	}
	r := c.RecordSize
	if r < usbproto.MinRecordSize || r%usbproto.RecordAlign != 0 || r > maxRecord {
		return bad("record size %d: want a multiple of %d from %d to %d", r, usbproto.RecordAlign, usbproto.MinRecordSize, maxRecord)
	}
	if c.Slots < 2 || bits.OnesCount(uint(c.Slots)) != 1 {
		return bad("%d slots: want a power of two", c.Slots)
	}
	sh := pairShape{engine: c.Engine, r: r, s: usbproto.ResponseSize(c.Engine, r), slots: c.Slots}
	kmax := min(int(info.MaxRecordsPerTransfer), maxTransfer/r)
	if kmax < 1 {
		return bad("record size %d: above the device's %d-byte transfers", r, maxTransfer)
	}
	sh.outRecords = kmax
	if c.RecordsPerTransfer > 0 {
		sh.outRecords = min(c.RecordsPerTransfer, kmax)
	}
	sh.outTransfers = outWindow
	if c.OutTransfers > 0 {
		sh.outTransfers = min(c.OutTransfers, outWindow)
	}
	sh.inTransfers = min(8, inWindow)
	if c.InTransfers > 0 {
		sh.inTransfers = min(c.InTransfers, inWindow)
	}
	if sh.s > 0 {
		// Every IN transfer in flight holds its slots: leave the
		// application half the queue.
		sh.inResponses = max(1, min(maxTransfer/sh.s, c.Slots/2/sh.inTransfers))
		if c.ResponsesPerTransfer > 0 {
			sh.inResponses = min(c.ResponsesPerTransfer, maxTransfer/sh.s)
		}
		if sh.inResponses < 1 {
			return bad("response size %d: above the device's %d-byte transfers", sh.s, maxTransfer)
		}
	}
	if sh.outRecords > c.Slots {
		sh.outRecords = c.Slots
	}
	return sh, nil
}
