//go:build cgo

package usbhost

// The device on gousb (github.com/google/gousb v1.1.3) and libusb: gousb
// finds, opens and configures the device, claims its interface and runs
// its control requests and libusb's event loop; the bulk transfers are
// libusb's own, submitted here on the driver's slot memory, because gousb's
// transfers and streams own their buffers and copy every transfer into or
// out of them. This file, callback_cgo.go and handle_unsafe.go are the
// only places that touch C.

/*
#cgo pkg-config: libusb-1.0
#include <libusb.h>
#include <stdint.h>

extern void usbhostDone(uintptr_t id);

static void LIBUSB_CALL usbhost_done(struct libusb_transfer *t) {
	usbhostDone((uintptr_t)t->user_data);
}

static int usbhost_submit(struct libusb_transfer *t, libusb_device_handle *h,
		unsigned char ep, unsigned char *buf, int len, unsigned int timeout, uintptr_t id) {
	libusb_fill_bulk_transfer(t, h, ep, buf, len, usbhost_done, (void *)id, timeout);
	return libusb_submit_transfer(t);
}

static int usbhost_status(struct libusb_transfer *t) { return t->status; }
static int usbhost_actual(struct libusb_transfer *t) { return t->actual_length; }
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime/cgo"
	"sync"
	"time"

	"github.com/google/gousb"

	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// usbOpener opens the device cfg names with gousb. Each attempt makes a
// new gousb context: libusb (built with udev, as Debian's is) learns of
// devices that come and go from udevd's events, and where no udevd runs
// (the QEMU guest's Go init) only a new context enumerates afresh, so a
// replugged device is found.
func usbOpener(cfg Config) opener {
	return func() (_ device, err error) {
		ctx, err := newContext()
		if err != nil {
			return nil, err
		}
		g := &gousbDevice{ctx: ctx}
		defer func() {
			if err != nil {
				err = errors.Join(err, g.close())
			}
		}()
		g.dev, err = ctx.OpenDeviceWithVIDPID(gousb.ID(cfg.Vendor), gousb.ID(cfg.Product))
		if g.dev == nil {
			if err != nil {
				return nil, fmt.Errorf("%w: %04x:%04x: %w", ErrNotFound, cfg.Vendor, cfg.Product, gousbError(err))
			}
			return nil, fmt.Errorf("%w: %04x:%04x", ErrNotFound, cfg.Vendor, cfg.Product)
		}
		if g.cfg, err = g.dev.Config(usbproto.Configuration); err != nil {
			return nil, fmt.Errorf("usbhost: configuration %d: %w", usbproto.Configuration, gousbError(err))
		}
		if g.intf, err = g.cfg.Interface(usbproto.InterfaceNum, usbproto.AltSetting); err != nil {
			return nil, fmt.Errorf("usbhost: claim interface %d: %w", usbproto.InterfaceNum, gousbError(err))
		}
		if g.h, err = deviceHandle(g.dev); err != nil {
			return nil, err
		}
		return g, nil
	}
}

// Devices lists the vendor:product IDs ("1d6b:0002") of the USB devices
// libusb enumerates: what the machine has, for a probe.
func Devices() ([]string, error) {
	ctx, err := newContext()
	if err != nil {
		return nil, err
	}
	var ids []string
	_, err = ctx.OpenDevices(func(d *gousb.DeviceDesc) bool {
		ids = append(ids, fmt.Sprintf("%s:%s", d.Vendor, d.Product))
		return false
	})
	return ids, errors.Join(gousbError(err), ctx.Close())
}

// newContext is gousb.NewContext, which panics when libusb_init fails.
func newContext() (ctx *gousb.Context, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: libusb_init: %v", ErrIO, r)
		}
	}()
	return gousb.NewContext(), nil
}

type gousbDevice struct {
	ctx  *gousb.Context
	dev  *gousb.Device
	cfg  *gousb.Config
	intf *gousb.Interface
	h    *C.libusb_device_handle
}

func (g *gousbDevice) control(rType, request uint8, value, index uint16, data []byte, timeout time.Duration) (int, error) {
	g.dev.ControlTimeout = timeout
	n, err := g.dev.Control(rType, request, value, index, data)
	if err != nil {
		return n, gousbError(err)
	}
	return n, nil
}

func (g *gousbDevice) clearHalt(ep uint8) error {
	return libusbError(C.libusb_clear_halt(g.h, C.uchar(ep)))
}

func (g *gousbDevice) newTransfer(ep uint8) (transfer, error) {
	t := C.libusb_alloc_transfer(0)
	if t == nil {
		return nil, fmt.Errorf("%w: libusb_alloc_transfer failed", ErrIO)
	}
	x := &libusbTransfer{t: t, h: g.h, ep: ep}
	x.id = cgo.NewHandle(x)
	return x, nil
}

// close releases the interface, the configuration, the device and the
// context, in that order (gousb refuses any other).
func (g *gousbDevice) close() error {
	var errs []error
	if g.intf != nil {
		g.intf.Close()
		g.intf = nil
	}
	if g.cfg != nil {
		errs = append(errs, g.cfg.Close())
		g.cfg = nil
	}
	if g.dev != nil {
		errs = append(errs, g.dev.Close())
		g.dev = nil
	}
	if g.ctx != nil {
		errs = append(errs, g.ctx.Close())
		g.ctx = nil
	}
	return errors.Join(errs...)
}

// libusbTransfer is one libusb_transfer, submitted on slot memory: the
// buffer is memory outside the Go heap (the queues' anonymous mappings),
// so libusb may keep the pointer while the transfer is in flight.
type libusbTransfer struct {
	t  *C.struct_libusb_transfer
	h  *C.libusb_device_handle
	ep uint8
	id cgo.Handle

	mu        sync.Mutex
	ch        chan struct{} // closed by the completion callback
	inFlight  bool
	cancelled bool
}

func (x *libusbTransfer) submit(buf []byte, timeout time.Duration) error {
	if len(buf) == 0 {
		return fmt.Errorf("%w: an empty bulk transfer", ErrProtocol)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.inFlight {
		return fmt.Errorf("%w: transfer submitted twice", ErrIO)
	}
	x.ch = make(chan struct{})
	x.cancelled = false
	x.inFlight = true
	rc := C.usbhost_submit(x.t, x.h, C.uchar(x.ep), (*C.uchar)(&buf[0]), C.int(len(buf)),
		C.uint(timeout.Milliseconds()), C.uintptr_t(x.id))
	if rc != 0 {
		x.inFlight = false
		close(x.ch)
		return libusbError(rc)
	}
	return nil
}

// completed runs on gousb's event goroutine, from libusb's callback.
func (x *libusbTransfer) completed() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.inFlight {
		x.inFlight = false
		close(x.ch)
	}
}

func (x *libusbTransfer) done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.ch
}

func (x *libusbTransfer) result() (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := int(C.usbhost_actual(x.t))
	switch st := C.usbhost_status(x.t); st {
	case C.LIBUSB_TRANSFER_COMPLETED:
		return n, nil
	case C.LIBUSB_TRANSFER_CANCELLED:
		if x.cancelled {
			return n, errCancelled
		}
		return n, fmt.Errorf("%w: cancelled", ErrIO)
	case C.LIBUSB_TRANSFER_TIMED_OUT:
		return n, ErrTimeout
	case C.LIBUSB_TRANSFER_STALL:
		return n, ErrStall
	case C.LIBUSB_TRANSFER_NO_DEVICE:
		return n, ErrGone
	case C.LIBUSB_TRANSFER_OVERFLOW:
		return n, fmt.Errorf("%w: the device sent more than the transfer holds", ErrProtocol)
	default:
		return n, fmt.Errorf("%w: status %v", ErrIO, gousb.TransferStatus(st))
	}
}

func (x *libusbTransfer) cancel() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.inFlight {
		x.cancelled = true
		C.libusb_cancel_transfer(x.t)
	}
}

func (x *libusbTransfer) free() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.t != nil && !x.inFlight {
		C.libusb_free_transfer(x.t)
		x.t = nil
		x.id.Delete()
	}
}

// libusbError maps a libusb error code to the sentinels.
func libusbError(rc C.int) error {
	if rc >= 0 {
		return nil
	}
	return gousbError(gousb.Error(rc))
}

// gousbError maps gousb's errors to the sentinels, keeping the original.
func gousbError(err error) error {
	var ge gousb.Error
	var ts gousb.TransferStatus
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ge):
		switch ge {
		case gousb.ErrorNoDevice:
			return fmt.Errorf("%w: %w", ErrGone, err)
		case gousb.ErrorPipe:
			return fmt.Errorf("%w: %w", ErrStall, err)
		case gousb.ErrorTimeout:
			return fmt.Errorf("%w: %w", ErrTimeout, err)
		}
	case errors.As(err, &ts):
		switch ts {
		case gousb.TransferNoDevice:
			return fmt.Errorf("%w: %w", ErrGone, err)
		case gousb.TransferStall:
			return fmt.Errorf("%w: %w", ErrStall, err)
		case gousb.TransferTimedOut:
			return fmt.Errorf("%w: %w", ErrTimeout, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrIO, err)
}
