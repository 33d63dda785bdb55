package user_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/internal/fdpass"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/user"
)

func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	a, b, err := fdpass.Socketpair()
	require.NoError(t, err)
	return a, b
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

func eventfd(t testing.TB) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	require.NoError(t, err)
	return fd
}

func msg(t testing.TB, h user.Header, payload []byte) []byte {
	t.Helper()
	b, err := user.EncodeMessage(nil, h, payload)
	require.NoError(t, err)
	return b
}

func TestConnFramesAndFDs(t *testing.T) {
	before := openFDs(t)
	a, b := socketPair(t)
	c := user.NewConn(b)
	c.SetRecvLimits(64, 2)
	fd1, fd2, fd3 := eventfd(t), eventfd(t), eventfd(t)

	// Written one byte at a time, the fds on the first: one message.
	m1 := msg(t, user.Header{MsgID: 7, Command: user.CmdDMAMap}, make([]byte, 32))
	go func() {
		fdpass.Send(a, m1[:1], fd1)
		for i := 1; i < len(m1); i++ {
			time.Sleep(100 * time.Microsecond)
			a.Write(m1[i : i+1])
		}
	}()
	m, err := c.Recv()
	require.NoError(t, err)
	require.NoError(t, m.Err)
	require.Equal(t, uint16(7), m.Header.MsgID)
	require.Len(t, m.Payload, 32)
	require.Len(t, m.FDs, 1)
	m.CloseFDs()

	// Three fds where two are allowed: delivered with Err, fds closed,
	// the stream still in step.
	require.NoError(t, fdpass.Send(a, msg(t, user.Header{MsgID: 8, Command: user.CmdDeviceSetIRQs}, make([]byte, 20)), fd1, fd2, fd3))
	m, err = c.Recv()
	require.NoError(t, err)
	require.ErrorIs(t, m.Err, user.ErrMalformed)
	require.Empty(t, m.FDs)
	// An fd on a later byte of the message.
	m2 := msg(t, user.Header{MsgID: 9, Command: user.CmdDMAMap}, make([]byte, 32))
	require.NoError(t, fdpass.Send(a, m2[:20]))
	require.NoError(t, fdpass.Send(a, m2[20:], fd1))
	m, err = c.Recv()
	require.NoError(t, err)
	require.Error(t, m.Err)
	require.Equal(t, uint16(9), m.Header.MsgID)
	require.Empty(t, m.FDs)
	// Still in step.
	require.NoError(t, fdpass.Send(a, msg(t, user.Header{MsgID: 10, Command: user.CmdDeviceReset}, nil)))
	m, err = c.Recv()
	require.NoError(t, err)
	require.Equal(t, uint16(10), m.Header.MsgID)
	require.Nil(t, m.Payload)

	// Over the size limit: the stream ends.
	require.NoError(t, fdpass.Send(a, user.Header{Command: user.CmdRegionWrite, Size: 65}.Encode(nil)))
	_, err = c.Recv()
	require.ErrorIs(t, err, user.ErrTooLarge)

	unix.Close(fd1)
	unix.Close(fd2)
	unix.Close(fd3)
	a.Close()
	c.Close()
	require.Equal(t, before, openFDs(t))
}

func TestConnEnds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes []byte
		want  error
	}{
		{"clean", nil, io.EOF},
		{"mid-header", make([]byte, 5), io.ErrUnexpectedEOF},
		{"mid-payload", user.Header{Command: user.CmdVersion, Size: 40}.Encode(nil), io.ErrUnexpectedEOF},
		{"short msg_size", user.Header{Command: user.CmdVersion, Size: 15}.Encode(nil), user.ErrMalformed},
		{"bad type", user.Header{Command: user.CmdVersion, Size: 16, Flags: 2}.Encode(nil), user.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := socketPair(t)
			c := user.NewConn(b)
			defer c.Close()
			a.Write(tc.bytes)
			a.Close()
			err := c.Run(func(m *user.Message) { t.Errorf("handled %+v", m.Header) })
			require.ErrorIs(t, err, tc.want)
			require.ErrorIs(t, err, user.ErrClosed)
			require.ErrorIs(t, err, vfio.ErrClosed)
			_, err = c.Call(context.Background(), user.CmdDeviceReset, nil, nil)
			require.ErrorIs(t, err, vfio.ErrClosed)
		})
	}
}

// Concurrent calls with replies in any order; a reply nobody waits for is
// dropped and counted; a call that gives up does not leak the late reply.
func TestConnCallRouting(t *testing.T) {
	before := openFDs(t)
	a, b := socketPair(t)
	peer, c := user.NewConn(a), user.NewConn(b)
	var held []*user.Message
	var mu sync.Mutex
	release := make(chan struct{})
	go peer.Run(func(m *user.Message) {
		mu.Lock()
		held = append(held, m)
		n := len(held)
		mu.Unlock()
		if n == 8 { // answer all eight, last first, then a stray one
			go func() {
				mu.Lock()
				defer mu.Unlock()
				for i := len(held) - 1; i >= 0; i-- {
					h := held[i].Header
					fd := eventfd(t)
					peer.Reply(h, []byte{byte(h.MsgID)}, []int{fd})
					unix.Close(fd)
				}
				peer.Reply(user.Header{MsgID: 999, Command: user.CmdDeviceReset}, nil, nil)
				close(release)
			}()
		}
	})
	go c.Run(func(m *user.Message) { t.Errorf("unexpected command %+v", m.Header) })

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			m, err := c.Call(context.Background(), user.CmdDeviceReset, nil, nil)
			if !assertNoErr(t, err) {
				return
			}
			if len(m.Payload) != 1 || len(m.FDs) != 1 {
				t.Errorf("reply %+v", m)
			}
			m.CloseFDs()
		})
	}
	wg.Wait()
	<-release
	require.Eventually(t, func() bool { return c.StrayReplies() == 1 }, time.Second, time.Millisecond)

	// A call that times out; its reply, arriving later, is dropped with
	// its fd closed.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	mu.Lock()
	held = nil
	mu.Unlock()
	_, err := c.Call(ctx, user.CmdDeviceGetInfo, nil, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	mu.Lock()
	h := held[0].Header
	mu.Unlock()
	fd := eventfd(t)
	require.NoError(t, peer.Reply(h, nil, []int{fd}))
	unix.Close(fd)
	require.Eventually(t, func() bool { return c.StrayReplies() == 2 }, time.Second, time.Millisecond)

	// Close wakes a waiting call.
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), user.CmdDeviceGetInfo, nil, nil)
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	require.ErrorIs(t, <-errc, vfio.ErrClosed)
	peer.Close()
	require.Eventually(t, func() bool { return openFDs(t) == before }, time.Second, time.Millisecond)
}

func assertNoErr(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// A reply naming another command is refused; an error reply becomes a
// *RemoteError with its errno.
func TestConnReplyChecks(t *testing.T) {
	a, b := socketPair(t)
	peer, c := user.NewConn(a), user.NewConn(b)
	defer peer.Close()
	defer c.Close()
	go peer.Run(func(m *user.Message) {
		switch m.Header.Command {
		case user.CmdDeviceReset:
			h := user.ReplyTo(m.Header)
			h.Command = user.CmdDeviceGetInfo
			b, _ := user.EncodeMessage(nil, h, nil)
			peer.Send(b, nil)
		case user.CmdDeviceGetInfo:
			peer.ReplyError(m.Header, unix.EBUSY)
		}
	})
	go c.Run(func(m *user.Message) {})
	_, err := c.Call(context.Background(), user.CmdDeviceReset, nil, nil)
	var pe *user.ProtocolError
	require.ErrorAs(t, err, &pe)
	_, err = c.Call(context.Background(), user.CmdDeviceGetInfo, nil, nil)
	var re *user.RemoteError
	require.ErrorAs(t, err, &re)
	require.ErrorIs(t, err, unix.EBUSY)
	require.False(t, errors.Is(err, vfio.ErrClosed))
}
