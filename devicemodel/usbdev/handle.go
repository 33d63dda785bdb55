package usbdev

// The reader's side: what the device does with each packet the usb-guest
// sends after the hellos.

import (
	"fmt"

	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// handle answers one packet. It returns an error only when the device
// cannot go on: a write failed, or Close was called while it waited.
func (d *Device) handle(pkt redir.Packet) error {
	id, body := pkt.Header.ID, pkt.Body
	switch t := pkt.Header.Type; t {
	case redir.TypeControlPacket:
		c, err := redir.DecodeControlPacket(body, redir.RoleGuest)
		if err != nil {
			d.bad("refused: %v", err)
			return nil
		}
		return d.control(id, c)
	case redir.TypeBulkPacket:
		b, err := redir.DecodeBulkPacket(body, d.r.Layout(), redir.RoleGuest)
		if err != nil {
			d.bad("refused: %v", err)
			return nil
		}
		return d.bulk(id, b)
	case redir.TypeCancelDataPacket:
		if len(body) != 0 {
			d.bad("refused: cancel_data_packet with a %d-byte body", len(body))
			return nil
		}
		return d.cancel(id)
	case redir.TypeReset:
		if len(body) != 0 {
			d.bad("refused: reset with a %d-byte body", len(body))
			return nil
		}
		return d.busReset()
	case redir.TypeSetConfiguration:
		c, err := redir.DecodeSetConfiguration(body)
		if err != nil {
			d.bad("refused: %v", err)
			return nil
		}
		return d.setConfigurationPacket(id, c.Configuration)
	case redir.TypeGetConfiguration:
		if len(body) != 0 {
			d.bad("refused: get_configuration with a %d-byte body", len(body))
			return nil
		}
		return d.getConfigurationPacket(id)
	case redir.TypeSetAltSetting:
		a, err := redir.DecodeSetAltSetting(body)
		if err != nil {
			d.bad("refused: %v", err)
			return nil
		}
		return d.altSettingPacket(id, a.Interface, a.Alt, true)
	case redir.TypeGetAltSetting:
		a, err := redir.DecodeGetAltSetting(body)
		if err != nil {
			d.bad("refused: %v", err)
			return nil
		}
		return d.altSettingPacket(id, a.Interface, 0, false)
	case redir.TypeDeviceDisconnectAck:
		return d.disconnectAck(len(body))
	default:
		return d.unsupported(id, t, body)
	}
}

// unsupported answers the packets of transfer types and features the
// device does not have (iso, interrupt, bulk streams, bulk receiving),
// and counts everything else a guest should not send it.
func (d *Device) unsupported(id uint64, t redir.Type, body []byte) error {
	b, err := redir.Decode(t, body, d.r.Layout(), redir.RoleGuest)
	if err != nil {
		d.bad("refused: %v", err)
		return nil
	}
	d.bad("refused: %s: the device has no such endpoint or feature", t)
	var reply redir.Body
	switch v := b.(type) {
	case redir.StartISOStream:
		reply = redir.ISOStreamStatus{Status: redir.StatusInval, Endpoint: v.Endpoint}
	case redir.StopISOStream:
		reply = redir.ISOStreamStatus{Status: redir.StatusInval, Endpoint: v.Endpoint}
	case redir.StartInterruptReceiving:
		reply = redir.InterruptReceivingStatus{Status: redir.StatusInval, Endpoint: v.Endpoint}
	case redir.StopInterruptReceiving:
		reply = redir.InterruptReceivingStatus{Status: redir.StatusInval, Endpoint: v.Endpoint}
	case redir.AllocBulkStreams:
		reply = redir.BulkStreamsStatus{Endpoints: v.Endpoints, NoStreams: v.NoStreams, Status: redir.StatusInval}
	case redir.FreeBulkStreams:
		reply = redir.BulkStreamsStatus{Endpoints: v.Endpoints, Status: redir.StatusInval}
	case redir.StartBulkReceiving:
		reply = redir.BulkReceivingStatus{StreamID: v.StreamID, Endpoint: v.Endpoint, Status: redir.StatusInval}
	case redir.StopBulkReceiving:
		reply = redir.BulkReceivingStatus{StreamID: v.StreamID, Endpoint: v.Endpoint, Status: redir.StatusInval}
	case redir.InterruptPacket:
		reply = redir.InterruptPacket{Endpoint: v.Endpoint, Status: redir.StatusInval}
	default:
		// hello again, filter packets (the device has no filter
		// capability), iso data: nothing to answer.
		return nil
	}
	return d.send(id, reply)
}

// disconnectAck handles device_disconnect_ack: the next plug may connect.
func (d *Device) disconnectAck(n int) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.mu.Lock()
	if n != 0 || !d.awaitAck {
		d.badPackets++
		d.mu.Unlock()
		d.logf("refused: device_disconnect_ack (%d-byte body) with none awaited", n)
		return nil
	}
	d.awaitAck = false
	var out outbox
	d.maybeConnect(&out)
	d.mu.Unlock()
	return d.flush(&out)
}

// cancel handles cancel_data_packet.
func (d *Device) cancel(id uint64) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var out outbox
	d.mu.Lock()
	found := false
	if _, held := d.held[id]; held {
		for _, p := range d.pairs {
			if p.cancel(d, &out, id) {
				found = true
				break
			}
		}
	}
	d.mu.Unlock()
	if found {
		d.signalRoom()
	}
	return d.flush(&out)
}

// busReset handles usbredir reset: as RESET, but the counters stay.
func (d *Device) busReset() error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var out outbox
	d.mu.Lock()
	if d.connected {
		d.stopAll(&out)
		d.resets++
	}
	d.mu.Unlock()
	d.signalRoom()
	return d.flush(&out)
}

// setConfigurationPacket handles set_configuration.
func (d *Device) setConfigurationPacket(id uint64, c uint8) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var out outbox
	d.mu.Lock()
	switch {
	case !d.connected:
		out.add(id, redir.ConfigurationStatus{Status: redir.StatusIOError, Configuration: d.configured})
	case c > usbproto.Configuration:
		d.badControl++
		out.add(id, redir.ConfigurationStatus{Status: redir.StatusStall, Configuration: d.configured})
	default:
		d.setConfiguration(&out, c)
		out.add(id, redir.ConfigurationStatus{Status: redir.StatusSuccess, Configuration: c})
	}
	d.mu.Unlock()
	d.signalRoom()
	return d.flush(&out)
}

// setConfiguration applies configuration c (0 or 1): every pair stops,
// and the guest is sent the new interface_info and ep_info. Called with
// wmu and mu held.
func (d *Device) setConfiguration(out *outbox, c uint8) {
	d.stopAll(out)
	d.configured = c
	out.add(0, d.interfaceInfo())
	out.add(0, d.epInfo())
}

// getConfigurationPacket handles get_configuration.
func (d *Device) getConfigurationPacket(id uint64) error {
	d.mu.Lock()
	st := redir.ConfigurationStatus{Status: redir.StatusSuccess, Configuration: d.configured}
	if !d.connected {
		st.Status = redir.StatusIOError
	}
	d.mu.Unlock()
	return d.send(id, st)
}

// altSettingPacket handles set_alt_setting (set) and get_alt_setting.
func (d *Device) altSettingPacket(id uint64, iface, alt uint8, set bool) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var out outbox
	d.mu.Lock()
	st := redir.AltSettingStatus{Status: redir.StatusSuccess, Interface: iface}
	switch {
	case !d.connected:
		st.Status = redir.StatusIOError
	case d.configured != usbproto.Configuration || iface != usbproto.InterfaceNum || (set && alt != 0):
		d.badControl++
		st.Status = redir.StatusStall
	case set:
		d.clearHalts()
	}
	out.add(id, st)
	d.mu.Unlock()
	return d.flush(&out)
}

// clearHalts clears the halt of every bulk endpoint. Called with mu held.
func (d *Device) clearHalts() {
	for _, p := range d.pairs {
		p.outHalted, p.inHalted = false, false
	}
	d.signalKick()
}

// pairOf returns the pair whose bulk endpoint ep is, if the device has it.
func (d *Device) pairOf(ep uint8) (*pair, bool) {
	i, ok := usbproto.EndpointPair(ep)
	if !ok || i >= len(d.pairs) {
		return nil, false
	}
	return d.pairs[i], true
}

// bulk handles a bulk_packet: an OUT transfer with its data, or an IN
// request.
func (d *Device) bulk(id uint64, b redir.BulkPacket) error {
	p, ok := d.pairOf(b.Endpoint)
	if !ok || b.StreamID != 0 {
		return d.refuseData(id, b.Endpoint, "bulk_packet for endpoint %#02x, stream %d: no such endpoint", b.Endpoint, b.StreamID)
	}
	if b.Endpoint&usbproto.EndpointDirIn != 0 {
		return d.bulkIn(id, p, b.Length)
	}
	return d.bulkOut(id, p, b.Data)
}

// refuseData answers a data packet the device cannot take with
// usb_redir_inval, and counts it.
func (d *Device) refuseData(id uint64, ep uint8, format string, args ...any) error {
	d.bad(format, args...)
	return d.send(id, redir.BulkPacket{Endpoint: ep, Status: redir.StatusInval})
}

// admit checks what every bulk packet must pass: a connected, configured
// device and an id not already held. It returns the status to answer
// with, or success. Called with mu held.
func (d *Device) admit(id uint64) (redir.Status, string) {
	switch {
	case !d.connected:
		return redir.StatusIOError, ""
	case d.configured != usbproto.Configuration:
		d.badPackets++
		return redir.StatusInval, "the device is not configured"
	}
	if _, dup := d.held[id]; dup {
		d.badPackets++
		return redir.StatusInval, fmt.Sprintf("id %d is already in flight", id)
	}
	return redir.StatusSuccess, ""
}

// bulkIn holds an IN request for the engine loop to complete.
func (d *Device) bulkIn(id uint64, p *pair, length uint32) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var out outbox
	d.mu.Lock()
	st, why := d.admit(id)
	switch {
	case st != redir.StatusSuccess:
	case p.inHalted:
		st = redir.StatusStall
	case length == 0 || (p.q != nil && p.q.respSize > 0 && int(length) < p.q.respSize):
		p.badTransfers.Add(1)
		why = fmt.Sprintf("IN request of %d bytes", length)
		p.haltIn(d, &out)
		st = redir.StatusStall
	case len(p.ins) >= usbproto.InWindow:
		p.badTransfers.Add(1)
		why = fmt.Sprintf("more than %d IN requests held", usbproto.InWindow)
		st = redir.StatusInval
	default:
		p.ins = append(p.ins, inRequest{id: id, length: length})
		d.held[id] = struct{}{}
	}
	if st != redir.StatusSuccess {
		out.add(id, redir.BulkPacket{Endpoint: p.inEP, Status: st})
	}
	d.mu.Unlock()
	if why != "" {
		d.logf("queue pair %d: refused: %s", p.index, why)
	}
	if st == redir.StatusSuccess {
		d.signalKick()
	}
	return d.flush(&out)
}

// bulkOut takes an OUT transfer's records into the pair's receive ring,
// or holds the transfer while the ring is full. With OutWindow transfers
// held it waits, reading nothing more, until one has moved on. data
// aliases the reader's buffer, valid until the next packet is read.
func (d *Device) bulkOut(id uint64, p *pair, data []byte) error {
	for {
		done, err := d.tryOut(id, p, data)
		if done || err != nil {
			return err
		}
		d.waiting.Add(1)
		select {
		case <-d.room:
			d.waiting.Add(-1)
		case <-d.done:
			d.waiting.Add(-1)
			return ErrClosed
		}
	}
}

// tryOut is one attempt of bulkOut: false, nil means wait for room.
func (d *Device) tryOut(id uint64, p *pair, data []byte) (bool, error) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	var out outbox
	d.mu.Lock()
	st, why := d.admit(id)
	q := p.q
	switch {
	case st != redir.StatusSuccess:
	case p.outHalted:
		st = redir.StatusStall
	case q == nil || q.failed:
		why = "OUT transfer on a stopped queue pair"
		st = redir.StatusStall
	case len(data) == 0 || len(data)%q.recSize != 0 || len(data)/q.recSize > q.perTransfer:
		why = fmt.Sprintf("OUT transfer of %d bytes for %d-byte records, at most %d a transfer", len(data), q.recSize, q.perTransfer)
		st = redir.StatusStall
	case len(q.staged) == 0 && q.putRecords(data):
		p.requests.Add(uint64(len(data) / q.recSize))
		p.outBytes.Add(uint64(len(data)))
		out.add(id, redir.BulkPacket{Endpoint: p.outEP, Status: redir.StatusSuccess, Length: uint32(len(data))})
	case len(q.staged) >= usbproto.OutWindow:
		d.mu.Unlock()
		return false, nil
	default:
		buf := q.buffer(len(data))
		copy(buf, data)
		q.staged = append(q.staged, stagedOut{id: id, data: buf})
		d.held[id] = struct{}{}
	}
	if st == redir.StatusStall && !p.outHalted {
		p.outHalted = true
		p.badTransfers.Add(1)
	}
	if st != redir.StatusSuccess {
		out.add(id, redir.BulkPacket{Endpoint: p.outEP, Status: st})
	}
	d.mu.Unlock()
	if why != "" {
		d.logf("queue pair %d: refused: %s", p.index, why)
	}
	if st == redir.StatusSuccess {
		d.signalKick()
	}
	return true, d.flush(&out)
}
