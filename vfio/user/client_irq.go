package user

// The Client's interrupts: DEVICE_GET_IRQ_INFO and DEVICE_SET_IRQS.

import (
	"fmt"

	"github.com/ycq-dev/ycq/vfio"
)

// IRQInfo asks for interrupt type idx and caches the answer.
func (c *Client) IRQInfo(idx vfio.IRQIndex) (vfio.IRQInfo, error) {
	if err := c.live(); err != nil {
		return vfio.IRQInfo{}, err
	}
	if uint32(idx) >= c.info.NumIRQs {
		return vfio.IRQInfo{}, fmt.Errorf("%w: %v: the device has %d interrupt types", vfio.ErrNoIRQ, idx, c.info.NumIRQs)
	}
	c.mu.Lock()
	q, ok := c.irqs[idx]
	c.mu.Unlock()
	if ok {
		return q, nil
	}
	m, err := c.call(CmdDeviceGetIRQInfo, IRQInfo{Index: idx}.Encode(nil), nil)
	if err != nil {
		return vfio.IRQInfo{}, fmt.Errorf("vfio-user: interrupt info of %v: %w", idx, err)
	}
	if err := noFDs(m); err != nil {
		return vfio.IRQInfo{}, err
	}
	ri, err := DecodeIRQInfo(m.Payload)
	if err != nil {
		return vfio.IRQInfo{}, fmt.Errorf("vfio-user: interrupt info of %v: %w", idx, err)
	}
	if ri.Index != idx {
		return vfio.IRQInfo{}, malformed(CmdDeviceGetIRQInfo, "index", "asked for %d, got %d", idx, ri.Index)
	}
	q = vfio.IRQInfo{Index: idx, Flags: vfio.IRQFlags(ri.Flags) & (vfio.IRQEventfd | vfio.IRQMaskable | vfio.IRQAutomasked | vfio.IRQNoResize), Count: ri.Count}
	c.mu.Lock()
	c.irqs[idx] = q
	c.mu.Unlock()
	return q, nil
}

// SetIRQs routes interrupts start, start+1, ... of idx to eventfds (a
// negative entry de-assigns that vector), with DATA_EVENTFD|TRIGGER
// messages of at most the server's max_msg_fds descriptors each, as QEMU
// splits them. No eventfds disables every interrupt of idx (DATA_NONE|
// TRIGGER, count 0).
func (c *Client) SetIRQs(idx vfio.IRQIndex, start uint32, eventfds []int) error {
	q, err := c.IRQInfo(idx)
	if err != nil {
		return err
	}
	if q.Count == 0 {
		return fmt.Errorf("%w: %v is not implemented", vfio.ErrNoIRQ, idx)
	}
	send := func(s IRQSet, fds []int) error {
		p, err := s.Encode(nil)
		if err != nil {
			return err
		}
		m, err := c.call(CmdDeviceSetIRQs, p, fds)
		if err != nil {
			return fmt.Errorf("vfio-user: set %v vectors %d..%d: %w", idx, s.Start, int64(s.Start)+int64(s.Count)-1, err)
		}
		return noFDs(m)
	}
	if len(eventfds) == 0 {
		return send(IRQSet{Flags: IRQSetDataNone | IRQSetActionTrigger, Index: idx}, nil)
	}
	if uint64(start)+uint64(len(eventfds)) > uint64(q.Count) {
		return fmt.Errorf("%w: %v vectors %d..%d: the device has %d", vfio.ErrNoIRQ, idx, start, uint64(start)+uint64(len(eventfds))-1, q.Count)
	}
	for i := 0; i < len(eventfds); {
		j := i + 1
		if eventfds[i] < 0 {
			for j < len(eventfds) && eventfds[j] < 0 {
				j++
			}
			err = send(IRQSet{Flags: IRQSetDataEventFD | IRQSetActionTrigger, Index: idx, Start: start + uint32(i), Count: uint32(j - i)}, nil)
		} else {
			for j < len(eventfds) && eventfds[j] >= 0 && j-i < c.srvMaxFDs {
				j++
			}
			err = send(IRQSet{Flags: IRQSetDataEventFD | IRQSetActionTrigger, Index: idx, Start: start + uint32(i), Count: uint32(j - i)}, eventfds[i:j])
		}
		if err != nil {
			return err
		}
		i = j
	}
	return nil
}
