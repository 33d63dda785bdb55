package hostdriver

import (
	"fmt"

	"github.com/ycq-dev/ycq/ycqdev"
)

// Reset resets the device while requests may be in flight and brings it
// back with the same queues, so nothing is lost: the device resumes at the
// first request it had not released, and responses it had published stay
// in the device-to-host queue. (A request whose response the device had
// published but not yet released is released here, so that the device does
// not answer it twice; a source request may still be answered again from
// its first response.)
func (d *Driver) Reset() error {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	if err := d.reg32(ycqdev.RegControl, ycqdev.ControlReset); err != nil {
		d.fail(d.withIncomplete(err))
		return d.Err()
	}
	return d.recover()
}

// Recover brings a stopped device back (after a reset from elsewhere, or an
// error the host has since fixed) with the same queues, and clears the
// driver's error. It returns the device's error if the device refuses. A
// resizable pair comes back at the generation its last completed Resize
// made (the device follows any named after it); Recover waits for a Resize
// under way.
func (d *Driver) Recover() error {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	return d.recover()
}

func (d *Driver) recover() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	d.mu.Unlock()
	if err := d.reg32(ycqdev.RegControl, ycqdev.ControlReset); err != nil {
		return d.withIncomplete(err)
	}
	if err := enableBusMaster(d.dev); err != nil {
		return d.withIncomplete(err)
	}
	for _, p := range d.pairs {
		if err := p.settle(); err != nil {
			return d.withIncomplete(err)
		}
	}
	if err := d.program(); err != nil {
		return d.withIncomplete(err)
	}
	if err := d.enable(); err != nil {
		return err
	}
	d.mu.Lock()
	d.failed = nil
	d.mu.Unlock()
	d.log.Info("device recovered")
	d.wakeAll()
	return nil
}

// settle runs while the device is stopped: for engines that answer each
// request once, a request whose response is published is released here,
// on the device's behalf, so the resumed device does not answer it again.
func (p *Pair) settle() error {
	if !p.answerOnce() {
		return nil
	}
	if p.rz != nil {
		return p.settleResizable()
	}
	h, answered := p.h2d.Stats(), p.answered()
	for h.ConsumerCursor < answered && h.ConsumerCursor < h.ProducerCursor {
		run, err := p.h2d.Consumer().Reserve(1)
		if err != nil {
			return fmt.Errorf("pair %d: release the answered request at %d: %w", p.index, h.ConsumerCursor, err)
		}
		if err := run.ReleaseAll(); err != nil {
			return err
		}
		h = p.h2d.Stats()
	}
	return nil
}

// settleResizable is settle across a resizable pair's generations: the
// host takes the answered requests through the queue's consuming side,
// which moves through drained generations as the device would.
func (p *Pair) settleResizable() error {
	for {
		t := p.totals()
		if t.consumed >= t.answered || t.consumed >= t.reserved {
			return nil
		}
		p.rlock()
		run, err := p.rz.h2d.Consumer().Reserve(1)
		if err == nil {
			err = run.ReleaseAll()
		}
		p.runlock()
		if err != nil {
			return fmt.Errorf("pair %d: release the answered request at %d: %w", p.index, t.consumed, err)
		}
	}
}
