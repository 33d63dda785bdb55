package devicemodel

// Interrupts: DEVICE_GET_IRQ_INFO, DEVICE_SET_IRQS, and the connection's
// interrupt routing (irqTable) that the device's Host.Interrupt signals
// through: eventfds to trigger, and eventfds the client signals to mask or
// unmask.

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

func (ss *session) irqInfo(m *user.Message) ([]byte, []int, *reqError) {
	req, err := user.DecodeIRQInfo(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	di := ss.srv.dev.Info()
	if uint32(req.Index) >= di.NumIRQs {
		return nil, nil, failf(unix.EINVAL, "interrupt type %d of %d", req.Index, di.NumIRQs)
	}
	q := ss.srv.dev.IRQ(req.Index)
	flags := user.IRQInfoFlags(q.Flags) & (user.IRQInfoEventFD | user.IRQInfoMaskable | user.IRQInfoAutomasked | user.IRQInfoNoResize)
	return user.IRQInfo{Flags: flags, Index: req.Index, Count: min(q.Count, maxIRQVectors)}.Encode(nil), nil, nil
}

func (ss *session) setIRQs(m *user.Message) ([]byte, []int, *reqError) {
	q, err := user.DecodeIRQSet(m.Payload)
	if err != nil {
		return nil, nil, &reqError{unix.EINVAL, err}
	}
	if err := ss.irq.set(q, m); err != nil {
		return nil, nil, err
	}
	return nil, nil, nil
}

// Interrupt implements Host.
func (ss *session) Interrupt(idx vfio.IRQIndex, vector uint32) error {
	return ss.irq.interrupt(idx, vector)
}

// irqVector is one interrupt: where it goes and whether it is held.
type irqVector struct {
	trigger int // eventfd to signal, or -1
	masked  bool
	pending bool
	mask    *fdWatch // eventfd the client signals to mask, if any
	unmask  *fdWatch // eventfd the client signals to unmask (INTx resample)
}

// irqTable is the connection's interrupt routing, from SET_IRQS.
type irqTable struct {
	srv *Server
	log *slog.Logger

	mu     sync.Mutex
	vecs   [][]irqVector // by vfio.IRQIndex; len is the device's count
	closed bool
}

func newIRQTable(srv *Server, dev Device, log *slog.Logger) *irqTable {
	t := &irqTable{srv: srv, log: log}
	n := dev.Info().NumIRQs
	t.vecs = make([][]irqVector, min(n, 64))
	for i := range t.vecs {
		c := min(dev.IRQ(vfio.IRQIndex(i)).Count, maxIRQVectors)
		t.vecs[i] = make([]irqVector, c)
		for j := range t.vecs[i] {
			t.vecs[i][j].trigger = -1
		}
	}
	return t
}

// interrupt raises vector of idx for the device.
func (t *irqTable) interrupt(idx vfio.IRQIndex, vector uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if int(idx) >= len(t.vecs) || int64(vector) >= int64(len(t.vecs[idx])) {
		return fmt.Errorf("devicemodel: interrupt %v vector %d: %w", idx, vector, vfio.ErrNoIRQ)
	}
	v := &t.vecs[idx][vector]
	switch {
	case t.closed || v.trigger < 0:
		t.srv.irqsDropped.Add(1)
	case v.masked:
		v.pending = true
		t.srv.irqsPending.Add(1)
	default:
		t.fire(v.trigger)
	}
	return nil
}

// fire signals an eventfd: adds 1 to its counter. t.mu held. It never
// blocks: an eventfd whose counter is full (the client wrote near 2^64)
// is not writable, and the interrupt is dropped.
func (t *irqTable) fire(fd int) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if n, err := unix.Poll(pfd, 0); err != nil || n == 0 || pfd[0].Revents&unix.POLLOUT == 0 {
		t.srv.irqsDropped.Add(1)
		return
	}
	one := [8]byte{1} // u64 1, little-endian (host order on the hosts we support)
	if _, err := unix.Write(fd, one[:]); err != nil {
		t.srv.irqsDropped.Add(1)
		return
	}
	t.srv.irqs.Add(1)
}

// setMask masks or unmasks a vector; unmasking fires a pending interrupt.
// t.mu held.
func (t *irqTable) setMask(v *irqVector, masked bool) {
	v.masked = masked
	if !masked && v.pending && v.trigger >= 0 {
		v.pending = false
		t.fire(v.trigger)
	}
}

// reset clears pending interrupts and masks (DEVICE_RESET); eventfds stay.
func (t *irqTable) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.vecs {
		for j := range t.vecs[i] {
			t.vecs[i][j].pending, t.vecs[i][j].masked = false, false
		}
	}
}

// release closes what vector v holds. t.mu held; watchers are stopped
// after it is released (they take t.mu), so they are returned.
func (v *irqVector) release() []*fdWatch {
	if v.trigger >= 0 {
		unix.Close(v.trigger)
		v.trigger = -1
	}
	var w []*fdWatch
	if v.mask != nil {
		w = append(w, v.mask)
		v.mask = nil
	}
	if v.unmask != nil {
		w = append(w, v.unmask)
		v.unmask = nil
	}
	return w
}

// close releases every eventfd; later interrupts are dropped.
func (t *irqTable) close() {
	t.mu.Lock()
	t.closed = true
	var stop []*fdWatch
	for i := range t.vecs {
		for j := range t.vecs[i] {
			v := &t.vecs[i][j]
			stop = append(stop, v.release()...)
			v.masked, v.pending = false, false
		}
	}
	t.mu.Unlock()
	for _, w := range stop {
		w.stop()
	}
}

// isEventfd reports whether fd is an eventfd.
func isEventfd(fd int) bool {
	l, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return err == nil && l == "anon_inode:[eventfd]"
}

// set applies a SET_IRQS message, validated as libvfio-user's lib/irq.c
// validates one. Eventfds it keeps are taken from m.
func (t *irqTable) set(q user.IRQSet, m *user.Message) *reqError {
	const (
		dataMask   = user.IRQSetDataNone | user.IRQSetDataBool | user.IRQSetDataEventFD
		actionMask = user.IRQSetActionMask | user.IRQSetActionUnmask | user.IRQSetActionTrigger
	)
	data, action := q.Flags&dataMask, q.Flags&actionMask
	if int(q.Index) >= len(t.vecs) || len(t.vecs[q.Index]) == 0 {
		return failf(unix.EINVAL, "interrupt type %d is not implemented", q.Index)
	}
	n := uint64(len(t.vecs[q.Index]))
	nfds := len(m.FDs)
	switch {
	case nfds > 0 && data != user.IRQSetDataEventFD:
		return failf(unix.EINVAL, "%d descriptors without DATA_EVENTFD", nfds)
	case q.Count == 0 && (data != user.IRQSetDataNone || action != user.IRQSetActionTrigger || q.Start != 0):
		return failf(unix.EINVAL, "count 0 is only DATA_NONE|ACTION_TRIGGER at start 0 (flags %#x, start %d)", uint32(q.Flags), q.Start)
	case uint64(q.Start) >= n || uint64(q.Start)+uint64(q.Count) > n:
		return failf(unix.EINVAL, "vectors %d+%d of interrupt type %d, which has %d", q.Start, q.Count, q.Index, n)
	case (q.Index == vfio.IRQErr || q.Index == vfio.IRQReq) && (action != user.IRQSetActionTrigger || q.Count > 1):
		return failf(unix.EINVAL, "ERR and REQ take only ACTION_TRIGGER with count <= 1")
	case data == user.IRQSetDataEventFD && nfds != 0 && nfds != int(q.Count):
		return failf(unix.EINVAL, "%d eventfds for %d vectors", nfds, q.Count)
	}
	for i, fd := range m.FDs {
		if !isEventfd(fd) {
			return failf(unix.EINVAL, "descriptor %d of %d is not an eventfd", i, nfds)
		}
	}

	t.mu.Lock()
	var stop []*fdWatch
	defer func() {
		t.mu.Unlock()
		for _, w := range stop {
			w.stop()
		}
	}()
	vecs := t.vecs[q.Index]
	if q.Count == 0 { // disable the whole index
		for j := range vecs {
			stop = append(stop, vecs[j].release()...)
			vecs[j].masked, vecs[j].pending = false, false
		}
		return nil
	}
	for k := range q.Count {
		v := &vecs[q.Start+k]
		switch data {
		case user.IRQSetDataEventFD:
			fd := -1
			if nfds > 0 {
				fd = m.TakeFD(int(k))
			}
			switch action {
			case user.IRQSetActionTrigger:
				if v.trigger >= 0 {
					unix.Close(v.trigger)
				}
				v.trigger = fd
				if fd >= 0 && v.pending && !v.masked {
					v.pending = false
					t.fire(fd)
				}
			case user.IRQSetActionMask, user.IRQSetActionUnmask:
				slot := &v.mask
				masked := action == user.IRQSetActionMask
				if !masked {
					slot = &v.unmask
				}
				if *slot != nil {
					stop = append(stop, *slot)
					*slot = nil
				}
				if fd >= 0 {
					w, err := t.watch(fd, q.Index, q.Start+k, masked)
					if err != nil {
						return &reqError{unix.EIO, err}
					}
					*slot = w
				}
			}
		case user.IRQSetDataNone, user.IRQSetDataBool:
			if data == user.IRQSetDataBool && q.Data[k] == 0 {
				continue
			}
			switch action {
			case user.IRQSetActionTrigger:
				if v.trigger >= 0 && !v.masked {
					t.fire(v.trigger)
				} else if v.masked {
					v.pending = true
				}
			case user.IRQSetActionMask:
				t.setMask(v, true)
			case user.IRQSetActionUnmask:
				t.setMask(v, false)
			}
		}
	}
	return nil
}

// fdWatch waits for a client's mask or unmask eventfd and applies it.
type fdWatch struct {
	fd, stopfd int
	done       chan struct{}
}

// watch starts a goroutine that masks (or unmasks) vector of idx each
// time the client signals fd. The watch owns fd.
//
// The fd is switched to non-blocking, so a client that reads its own
// eventfd between our poll and our read cannot make the read, and so the
// connection's teardown, hang. (That flag is shared with the client's copy;
// the client only writes this eventfd, which never blocks short of counter
// overflow.)
func (t *irqTable) watch(fd int, idx vfio.IRQIndex, vector uint32, mask bool) (*fdWatch, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make eventfd non-blocking: %w", err)
	}
	stopfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &fdWatch{fd: fd, stopfd: stopfd, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(stopfd), Events: unix.POLLIN}}
		var buf [8]byte
		for {
			pfd[0].Revents, pfd[1].Revents = 0, 0
			if _, err := unix.Poll(pfd, -1); err != nil {
				if err == unix.EINTR {
					continue
				}
				return
			}
			if pfd[1].Revents != 0 {
				return
			}
			if pfd[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
				return
			}
			if pfd[0].Revents&unix.POLLIN == 0 {
				continue
			}
			if _, err := unix.Read(fd, buf[:]); err != nil && err != unix.EAGAIN && err != unix.EINTR {
				return
			}
			t.mu.Lock()
			if !t.closed && int(idx) < len(t.vecs) && int(vector) < len(t.vecs[idx]) {
				t.setMask(&t.vecs[idx][vector], mask)
			}
			t.mu.Unlock()
		}
	}()
	return w, nil
}

// stop ends the watch and closes its descriptors. Not with t.mu held.
func (w *fdWatch) stop() {
	one := [8]byte{1}
	unix.Write(w.stopfd, one[:])
	<-w.done
	unix.Close(w.fd)
	unix.Close(w.stopfd)
}
