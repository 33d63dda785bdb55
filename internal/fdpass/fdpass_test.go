package fdpass

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/internal/testenv"
)

func pair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	a, b, err := Socketpair()
	require.NoError(t, err)
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func memfd(t *testing.T, content string) int {
	t.Helper()
	fd, err := unix.MemfdCreate("fdpass-test", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	_, err = unix.Write(fd, []byte(content))
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestSendRecv(t *testing.T) {
	a, b := pair(t)
	before := testenv.OpenFDs(t)
	f1, f2 := memfd(t, "one"), memfd(t, "two")
	require.NoError(t, Send(a, []byte("hello"), f1, f2))
	buf := make([]byte, 16)
	n, fds, err := Recv(b, buf, 4)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))
	require.Len(t, fds, 2)
	for i, want := range []string{"one", "two"} {
		got := make([]byte, 8)
		k, err := unix.Pread(fds[i], got, 0)
		require.NoError(t, err)
		require.Equal(t, want, string(got[:k]))
		flags, err := unix.FcntlInt(uintptr(fds[i]), unix.F_GETFD, 0)
		require.NoError(t, err)
		require.NotZero(t, flags&unix.FD_CLOEXEC, "received descriptors are close-on-exec")
	}
	CloseAll(fds)
	require.Equal(t, before+2, testenv.OpenFDs(t), "only the two memfds of the test remain")
}

func TestRecvRefusesTooMany(t *testing.T) {
	a, b := pair(t)
	before := testenv.OpenFDs(t)
	fds := []int{memfd(t, "1"), memfd(t, "2"), memfd(t, "3")}
	require.NoError(t, Send(a, []byte("x"), fds...))
	_, got, err := Recv(b, make([]byte, 4), 2)
	require.ErrorIs(t, err, ErrTooManyFDs)
	require.Nil(t, got)
	require.Equal(t, before+3, testenv.OpenFDs(t), "the refused descriptors were closed")

	// A receiver that wants none still closes what it is sent.
	require.NoError(t, Send(a, []byte("y"), fds[0]))
	_, got, err = Recv(b, make([]byte, 4), 0)
	require.Error(t, err)
	require.Nil(t, got)
	require.Equal(t, before+3, testenv.OpenFDs(t))
}

func TestSendArguments(t *testing.T) {
	a, _ := pair(t)
	require.Error(t, Send(a, nil, 1))
	require.ErrorIs(t, Send(a, []byte("x"), make([]int, MaxFDs+1)...), ErrTooManyFDs)
	require.NoError(t, Send(a, nil))
}
