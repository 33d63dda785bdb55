// Package fdpass sends and receives file descriptors with data over a UNIX
// socket (SCM_RIGHTS), the way ycq passes shared memory and eventfds between
// processes. It treats the peer as untrusted: a truncated control message,
// more descriptors than the caller allows, or ancillary data of an unknown
// kind is an error, and every descriptor received with it is closed, so
// nothing leaks.
package fdpass

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// MaxFDs is the most descriptors one message may carry, as in the kernel
// (SCM_MAX_FD).
const MaxFDs = 253

// ErrTooManyFDs: the peer passed more descriptors than the receiver allows.
var ErrTooManyFDs = errors.New("fdpass: too many file descriptors")

// Send writes all of b to c, with fds attached to its first byte. The
// descriptors stay owned by the caller.
func Send(c *net.UnixConn, b []byte, fds ...int) error {
	if len(fds) > MaxFDs {
		return fmt.Errorf("fdpass: send %d descriptors: %w", len(fds), ErrTooManyFDs)
	}
	if len(b) == 0 && len(fds) > 0 {
		return errors.New("fdpass: descriptors need at least one byte of data to travel with")
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for len(b) > 0 || oob != nil {
		n, _, err := c.WriteMsgUnix(b, oob, nil)
		if err != nil {
			return fmt.Errorf("fdpass: send: %w", err)
		}
		b, oob = b[n:], nil
	}
	return nil
}

// Recv reads up to len(buf) bytes from c and the descriptors sent with
// them, at most maxFDs of them. The caller owns the descriptors returned,
// which are close-on-exec. On error no descriptor is returned and any that
// arrived are closed.
func Recv(c *net.UnixConn, buf []byte, maxFDs int) (n int, fds []int, err error) {
	maxFDs = min(max(maxFDs, 0), MaxFDs)
	var oob []byte
	if maxFDs > 0 {
		oob = make([]byte, unix.CmsgSpace(4*maxFDs))
	} else {
		// Room for one descriptor, so that a peer that sends any is
		// caught and its descriptor closed rather than silently lost.
		oob = make([]byte, unix.CmsgSpace(4))
	}
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	got, perr := parseRights(oob[:oobn])
	switch {
	case err != nil:
	case perr != nil:
		err = perr
	case flags&unix.MSG_CTRUNC != 0:
		// The kernel closed what did not fit.
		err = fmt.Errorf("fdpass: received more descriptors than the %d allowed (control message truncated): %w", maxFDs, ErrTooManyFDs)
	case len(got) > maxFDs:
		err = fmt.Errorf("fdpass: received %d descriptors, allowed %d: %w", len(got), maxFDs, ErrTooManyFDs)
	}
	if err != nil {
		CloseAll(got)
		return n, nil, err
	}
	return n, got, nil
}

// parseRights returns every descriptor in the ancillary data; an unknown
// control message is an error, but its descriptors are still returned so
// they can be closed.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("fdpass: control message: %w", err)
	}
	var fds []int
	var bad error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("fdpass: unexpected control message level %d type %d", m.Header.Level, m.Header.Type)
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = fmt.Errorf("fdpass: rights: %w", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}

// CloseAll closes every descriptor in fds.
func CloseAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Socketpair returns the two ends of a connected UNIX stream socket, for a
// peer in the same process (a device model served in-process, a test).
func Socketpair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("fdpass: socketpair: %w", err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f) // duplicates fd
		f.Close()
		if err != nil {
			if i == 0 {
				unix.Close(fds[1])
			} else {
				conns[0].Close()
			}
			return nil, nil, fmt.Errorf("fdpass: socketpair: %w", err)
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1], nil
}
