package usbdev

// Control transfers on endpoint 0: the standard requests QEMU forwards and
// the vendor requests of USB.md section 3.

import (
	"fmt"

	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// ctrlResult is what a control request decided: a status, and for an IN
// request the data (before truncation to wLength).
type ctrlResult struct {
	status redir.Status
	data   []byte
	why    string // for the log, when refused
}

func stall(format string, args ...any) ctrlResult {
	return ctrlResult{status: redir.StatusStall, why: fmt.Sprintf(format, args...)}
}

var ok = ctrlResult{status: redir.StatusSuccess}

// control answers a control_packet.
func (d *Device) control(id uint64, c redir.ControlPacket) error {
	if c.Endpoint != c.RequestType&reqDirIn {
		d.bad("refused: control_packet on endpoint %#02x with bmRequestType %#02x", c.Endpoint, c.RequestType)
		return d.send(id, redir.ControlPacket{Endpoint: c.Endpoint, Request: c.Request, RequestType: c.RequestType,
			Value: c.Value, Index: c.Index, Status: redir.StatusInval})
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var out outbox
	d.mu.Lock()
	var res ctrlResult
	if !d.connected {
		res = ctrlResult{status: redir.StatusIOError}
	} else {
		res = d.request(&out, c)
		if res.status == redir.StatusStall {
			d.badControl++
		}
	}
	d.mu.Unlock()
	if res.why != "" {
		d.logf("control %#02x %#02x value %#04x index %#04x length %d: %s", c.RequestType, c.Request, c.Value, c.Index, c.Length, res.why)
	}
	reply := redir.ControlPacket{Endpoint: c.Endpoint, Request: c.Request, RequestType: c.RequestType,
		Value: c.Value, Index: c.Index, Status: res.status}
	if res.status == redir.StatusSuccess {
		if c.RequestType&reqDirIn != 0 {
			reply.Data = res.data[:min(len(res.data), int(c.Length))]
			reply.Length = uint16(len(reply.Data))
		} else {
			reply.Length = c.Length
		}
	}
	// What the request queued (cancellations, interface_info and ep_info
	// after SET_CONFIGURATION) goes first: RESET completes after them.
	out.add(id, reply)
	if len(out.pkts) > 1 {
		d.signalRoom()
	}
	return d.flush(&out)
}

// request decides a control request. Called with wmu and mu held.
func (d *Device) request(out *outbox, c redir.ControlPacket) ctrlResult {
	switch c.RequestType & reqTypeMask {
	case reqTypeStd:
		return d.standard(out, c)
	case reqTypeVendor:
		return d.vendor(out, c)
	}
	return stall("class or reserved request type")
}

// standard decides a standard request (USB.md section 5).
func (d *Device) standard(out *outbox, c redir.ControlPacket) ctrlResult {
	in := c.RequestType&reqDirIn != 0
	recip := c.RequestType & reqRecipMask
	switch {
	case in && recip == reqRecipDevice && c.Request == reqGetDescriptor:
		return d.descriptor(uint8(c.Value>>8), uint8(c.Value))
	case in && c.Request == reqGetStatus && c.Value == 0:
		return d.getStatus(recip, c.Index)
	case !in && recip == reqRecipEP && (c.Request == reqClearFeature || c.Request == reqSetFeature) && c.Value == featureEndpointHalt && c.Length == 0:
		return d.setHalt(out, c.Index, c.Request == reqSetFeature)
	case !in && recip == reqRecipDevice && c.Request == reqSetAddress && c.Length == 0 && c.Index == 0 && c.Value <= 127:
		return ok // QEMU handles the address itself
	case !in && recip == reqRecipDevice && c.Request == reqSetConfiguration && c.Length == 0 && c.Index == 0:
		if c.Value > usbproto.Configuration {
			return stall("no configuration %d", c.Value)
		}
		d.setConfiguration(out, uint8(c.Value))
		return ok
	case in && recip == reqRecipDevice && c.Request == reqGetConfiguration && c.Value == 0 && c.Index == 0:
		return ctrlResult{status: redir.StatusSuccess, data: []byte{d.configured}}
	case !in && recip == reqRecipIface && c.Request == reqSetInterface && c.Length == 0:
		if d.configured != usbproto.Configuration || c.Index != usbproto.InterfaceNum || c.Value != 0 {
			return stall("no interface %d alternate setting %d", c.Index, c.Value)
		}
		d.clearHalts()
		return ok
	case in && recip == reqRecipIface && c.Request == reqGetInterface && c.Value == 0:
		if d.configured != usbproto.Configuration || c.Index != usbproto.InterfaceNum {
			return stall("no interface %d", c.Index)
		}
		return ctrlResult{status: redir.StatusSuccess, data: []byte{0}}
	}
	return stall("unsupported standard request")
}

// descriptor answers GET_DESCRIPTOR.
func (d *Device) descriptor(typ, index uint8) ctrlResult {
	switch typ {
	case dtDevice:
		if index == 0 {
			return ctrlResult{status: redir.StatusSuccess, data: deviceDescriptor()}
		}
	case dtConfiguration:
		if index == 0 {
			return ctrlResult{status: redir.StatusSuccess, data: d.config}
		}
	case dtString:
		if b, found := stringDescriptor(index, d.opt.Serial); found {
			return ctrlResult{status: redir.StatusSuccess, data: b}
		}
	case dtDeviceQualifier:
		if index == 0 {
			return ctrlResult{status: redir.StatusSuccess, data: qualifierDescriptor()}
		}
	}
	return stall("no descriptor type %d index %d", typ, index)
}

// getStatus answers GET_STATUS.
func (d *Device) getStatus(recip uint8, index uint16) ctrlResult {
	status := func(v uint16) ctrlResult {
		return ctrlResult{status: redir.StatusSuccess, data: le.AppendUint16(nil, v)}
	}
	switch recip {
	case reqRecipDevice:
		if index == 0 {
			return status(0)
		}
	case reqRecipIface:
		if index == usbproto.InterfaceNum && d.configured == usbproto.Configuration {
			return status(0)
		}
	case reqRecipEP:
		if index&^uint16(usbproto.EndpointDirIn) == 0 {
			return status(0) // endpoint 0, either direction
		}
		if p, ok := d.bulkEndpoint(index); ok {
			halted := p.outHalted
			if index&usbproto.EndpointDirIn != 0 {
				halted = p.inHalted
			}
			if halted {
				return status(1)
			}
			return status(0)
		}
	}
	return stall("GET_STATUS of recipient %d index %#04x", recip, index)
}

// bulkEndpoint is the pair whose bulk endpoint wIndex names, in the
// current configuration.
func (d *Device) bulkEndpoint(index uint16) (*pair, bool) {
	if index > 0xFF || d.configured != usbproto.Configuration {
		return nil, false
	}
	return d.pairOf(uint8(index))
}

// setHalt handles CLEAR_FEATURE and SET_FEATURE(ENDPOINT_HALT).
func (d *Device) setHalt(out *outbox, index uint16, halt bool) ctrlResult {
	if index&^uint16(usbproto.EndpointDirIn) == 0 {
		if halt {
			return stall("halting endpoint 0")
		}
		return ok
	}
	p, found := d.bulkEndpoint(index)
	if !found {
		return stall("no endpoint %#02x", index)
	}
	if index&usbproto.EndpointDirIn != 0 {
		if halt {
			p.haltIn(d, out)
		} else {
			p.inHalted = false
		}
	} else {
		p.outHalted = halt
	}
	d.signalKick()
	return ok
}

// vendor decides a vendor request (USB.md section 3).
func (d *Device) vendor(out *outbox, c redir.ControlPacket) ctrlResult {
	in := c.RequestType&reqDirIn != 0
	if c.RequestType&reqRecipMask != reqRecipDevice {
		return stall("vendor request to recipient %d", c.RequestType&reqRecipMask)
	}
	switch c.Request {
	case usbproto.ReqGetInfo:
		if !in || c.Value != 0 || c.Index != 0 {
			return stall("GET_INFO: bad setup")
		}
		return ctrlResult{status: redir.StatusSuccess, data: d.info().Encode(nil)}
	case usbproto.ReqSetQueue:
		if in || c.Value != 0 {
			return stall("SET_QUEUE: bad setup")
		}
		return d.setQueue(c.Index, c.Data)
	case usbproto.ReqReset:
		if in || c.Value != 0 || c.Index != 0 || c.Length != 0 {
			return stall("RESET: bad setup")
		}
		d.stopAll(out)
		d.resetCounters()
		d.resets++
		return ok
	case usbproto.ReqGetCounters:
		if !in || c.Value != 0 || c.Index != 0 {
			return stall("GET_COUNTERS: bad setup")
		}
		return ctrlResult{status: redir.StatusSuccess, data: d.countersLocked().Encode(nil)}
	case usbproto.ReqGetQueue:
		if !in || c.Value != 0 || int(c.Index) >= len(d.pairs) {
			return stall("GET_QUEUE: bad setup")
		}
		return ctrlResult{status: redir.StatusSuccess, data: d.pairs[c.Index].state().Encode(nil)}
	}
	return stall("unknown vendor request %#02x", c.Request)
}

// setQueue handles SET_QUEUE: every check first, then the new queue.
func (d *Device) setQueue(index uint16, data []byte) ctrlResult {
	if int(index) >= len(d.pairs) {
		return stall("SET_QUEUE: no pair %d", index)
	}
	if d.configured != usbproto.Configuration {
		return stall("SET_QUEUE: the device is not configured")
	}
	p := d.pairs[index]
	if p.q != nil {
		return stall("SET_QUEUE: pair %d is not stopped", index)
	}
	s, err := usbproto.DecodeQueueSetup(data)
	if err != nil {
		return stall("%v", err)
	}
	e, found := d.engineByID(s.Engine)
	if !found {
		return stall("SET_QUEUE: no engine %d", s.Engine)
	}
	if !usbproto.ValidRecordSize(int(s.RecordSize)) {
		return stall("SET_QUEUE: record size %d: want a multiple of %d from %d to %d", s.RecordSize, usbproto.RecordAlign, usbproto.MinRecordSize, usbproto.MaxRecordSize)
	}
	if maxLen := d.layout.MaxBulkLength(); int(s.RecordSize) > maxLen {
		return stall("SET_QUEUE: %d-byte records do not fit this connection's %d-byte bulk length", s.RecordSize, maxLen)
	}
	q, err := newQueue(s.Engine, e, int(s.RecordSize))
	if err != nil {
		return stall("SET_QUEUE: %v", err)
	}
	p.q = q
	p.outHalted, p.inHalted = false, false
	d.signalKick()
	return ok
}
