// Package guestbench is what the QEMU guests' /init programs share: finding
// the ycq device on the guest's PCI bus, one echo loop written once for
// both transports (hostdriver's PCIe pairs and usbhost's USB pairs, whose
// application APIs mirror), and the side-by-side figures of `ycq bench
// usb`: rounds of each path, their medians and spreads, and the ratios.
//
// Nothing here holds state between calls; an Echo call owns its pair for
// the call's duration (one goroutine publishes requests, the caller's
// goroutine receives and checks the responses).
package guestbench

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/vfio/pci"
)

// FindYCQ returns the PCI address of the ycq device (the Go device model's
// identity, 1234:7963) under sysRoot, printing every device it sees with
// logf.
func FindYCQ(sysRoot string, logf func(format string, args ...any)) (string, error) {
	devs, err := pci.List(sysRoot)
	if err != nil {
		return "", err
	}
	found := ""
	for _, d := range devs {
		logf("pci %s %04x:%04x class %06x driver %q group %d", d.Addr, d.VendorID, d.DeviceID, d.Class, d.Driver, d.IOMMUGroup)
		if d.VendorID == devicemodel.DefaultIdentity.VendorID && d.DeviceID == devicemodel.DefaultIdentity.DeviceID {
			found = d.Addr
		}
	}
	if found == "" {
		return "", fmt.Errorf("no ycq device (%04x:%04x) on the PCI bus", devicemodel.DefaultIdentity.VendorID, devicemodel.DefaultIdentity.DeviceID)
	}
	return found, nil
}

// The application's side of a queue pair, as both transports give it
// (hostdriver.Pair and usbhost.Pair; their Request and Response runs).
type (
	// RequestRun is a run of reserved request slots.
	RequestRun interface {
		Len() int
		Slot(i int) []byte
		PublishAll(length int) error
	}
	// ResponseRun is a run of received responses.
	ResponseRun interface {
		Len() int
		Slot(i int) ([]byte, error)
		ReleaseAll() error
	}
	// Pair is a queue pair whose runs are Req and Resp.
	Pair[Req, Resp any] interface {
		Index() int
		ReserveUpTo(ctx context.Context, n int) (Req, error)
		Receive(ctx context.Context, n int) (Resp, error)
	}
)

// Records is the format of Echo's records: (pair, sequence) in the header,
// a fill derived from them, and a CRC-32C over the whole record, so a
// response is checked in every byte.
var Records = record.Format{Sum: true}

// ErrMismatch is wrapped when a response is not the echo of its request.
var ErrMismatch = errors.New("guestbench: response does not echo its request")

// Echo sends n records of size bytes on p, each written in full in its
// slot (reserve up to batch, fill, publish), and checks every response as
// the echo of its request, in order (receive up to batch, read in place,
// release). It returns how many responses it checked. The echo engine
// must be the pair's.
func Echo[P Pair[Req, Resp], Req, Resp any, PReq interface {
	*Req
	RequestRun
}, PResp interface {
	*Resp
	ResponseRun
}](ctx context.Context, p P, n int64, size, batch int) (int64, error) {
	if size < Records.HeaderSize() || batch < 1 || n < 0 {
		return 0, fmt.Errorf("guestbench: echo of %d records of %d bytes in batches of %d: want records of at least %d bytes", n, size, batch, Records.HeaderSize())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pair := uint32(p.Index())
	var sendErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := int64(0); seq < n; {
			req, err := p.ReserveUpTo(ctx, int(min(int64(batch), n-seq)))
			if err != nil {
				sendErr = fmt.Errorf("pair %d: reserve request %d: %w", pair, seq, err)
				return
			}
			r := PReq(&req)
			for i := range r.Len() {
				Records.Fill(r.Slot(i)[:size], record.Header{Seq: uint64(seq) + uint64(i), Producer: pair})
			}
			if err := r.PublishAll(size); err != nil {
				sendErr = fmt.Errorf("pair %d: publish requests %d..: %w", pair, seq, err)
				return
			}
			seq += int64(r.Len())
		}
	})
	got, err := receive[P, Req, Resp, PResp](ctx, p, n, size, batch)
	if err != nil {
		cancel() // the sender may be waiting for room that never comes
	}
	wg.Wait()
	return got, errors.Join(err, sendErr)
}

// receive is Echo's receiving side.
func receive[P Pair[Req, Resp], Req, Resp any, PResp interface {
	*Resp
	ResponseRun
}](ctx context.Context, p P, n int64, size, batch int) (int64, error) {
	pair := uint32(p.Index())
	var got int64
	for got < n {
		resp, err := p.Receive(ctx, batch)
		if err != nil {
			return got, fmt.Errorf("pair %d: receive after %d responses: %w", pair, got, err)
		}
		r := PResp(&resp)
		for i := range r.Len() {
			b, err := r.Slot(i)
			if err != nil {
				return got, fmt.Errorf("pair %d: response %d: %w", pair, got, err)
			}
			if len(b) != size {
				return got, fmt.Errorf("%w: pair %d: response %d has %d bytes, its request %d", ErrMismatch, pair, got, len(b), size)
			}
			h, err := Records.Check(b)
			if err != nil || h.Producer != pair || h.Seq != uint64(got) {
				return got, fmt.Errorf("%w: pair %d: response %d is record (pair %d, seq %d): %v", ErrMismatch, pair, got, h.Producer, h.Seq, err)
			}
			got++
		}
		if err := r.ReleaseAll(); err != nil {
			return got, fmt.Errorf("pair %d: release: %w", pair, err)
		}
	}
	return got, nil
}
