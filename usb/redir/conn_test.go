package redir_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/usb/redir"
)

// TestPipeHelloAndConnect plays both sides over net.Pipe: each sends its
// hello in the zero layout, reads the other's, switches to the negotiated
// layout; then the host announces a device and the guest answers a
// control request with a 64-bit id.
func TestPipeHelloAndConnect(t *testing.T) {
	hostConn, guestConn := net.Pipe()
	defer hostConn.Close()
	defer guestConn.Close()

	type result struct {
		connect redir.DeviceConnect
		reply   redir.ControlPacket
		id      uint64
		err     error
	}
	done := make(chan result, 1)
	go func() { // the guest, QEMU's part
		var res result
		defer func() { done <- res }()
		w, r := redir.NewWriter(guestConn), redir.NewReader(guestConn, 0)
		if res.err = w.Send(0, redir.Hello{Version: qemuVersion, Caps: qemuCaps}); res.err != nil {
			return
		}
		p, err := r.Next()
		if res.err = err; err != nil {
			return
		}
		hello, err := redir.DecodeHello(p.Body)
		if res.err = err; err != nil {
			return
		}
		l := redir.Negotiate(qemuCaps, hello.Caps)
		r.SetLayout(l)
		w.SetLayout(l)
		if p, res.err = r.Next(); res.err != nil {
			return
		}
		if res.connect, res.err = redir.DecodeDeviceConnect(p.Body, l); res.err != nil {
			return
		}
		req := redir.ControlPacket{Endpoint: 0x80, Request: 6, RequestType: 0x80, Value: 0x0100, Length: 18}
		if res.err = w.Send(1<<40, req); res.err != nil {
			return
		}
		if p, res.err = r.Next(); res.err != nil {
			return
		}
		res.id = p.Header.ID
		res.reply, res.err = redir.DecodeControlPacket(p.Body, redir.RoleHost)
		res.reply.Data = bytes.Clone(res.reply.Data)
	}()

	// The host, the device model's part.
	w, r := redir.NewWriter(hostConn), redir.NewReader(hostConn, 0)
	sent := make(chan error, 1)
	go func() { sent <- w.Send(0, redir.Hello{Version: "ycq test", Caps: ourCaps}) }()
	p, err := r.Next()
	require.NoError(t, err)
	require.Equal(t, redir.TypeHello, p.Header.Type)
	hello, err := redir.DecodeHello(p.Body)
	require.NoError(t, err)
	require.Equal(t, qemuVersion, hello.Version)
	require.NoError(t, <-sent)
	l := redir.Negotiate(ourCaps, hello.Caps)
	require.Equal(t, layoutQEMU, l)
	r.SetLayout(l)
	w.SetLayout(l)

	connect := redir.DeviceConnect{Speed: redir.SpeedHigh, Class: 0xff, VendorID: 0x1d6b, ProductID: 0x0104, DeviceVersionBCD: 0x0100}
	require.NoError(t, w.Send(0, connect))
	p, err = r.Next()
	require.NoError(t, err)
	require.Equal(t, uint64(1<<40), p.Header.ID)
	req, err := redir.DecodeControlPacket(p.Body, redir.RoleGuest)
	require.NoError(t, err)
	require.Nil(t, req.Data)
	desc := []byte{18, 1, 0, 2, 0xff, 0, 0, 64, 0x6b, 0x1d, 0x04, 0x01, 0, 1, 0, 0, 0, 1}
	req.Length, req.Data = uint16(len(desc)), desc
	require.NoError(t, w.Send(p.Header.ID, req))

	res := <-done
	require.NoError(t, res.err)
	require.Equal(t, connect, res.connect)
	require.Equal(t, uint64(1<<40), res.id)
	require.Equal(t, desc, res.reply.Data)
}

func TestReaderTooLarge(t *testing.T) {
	r := redir.NewReader(bytes.NewReader(cat(le32(101), le32(1025), le32(0))), 1024)
	_, err := r.Next()
	require.ErrorIs(t, err, redir.ErrTooLarge)
	var pe *redir.ProtocolError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "length", pe.Field)
	require.Equal(t, redir.TypeBulkPacket, pe.Type)
}

func TestReaderEOF(t *testing.T) {
	_, err := redir.NewReader(bytes.NewReader(nil), 0).Next()
	require.ErrorIs(t, err, io.EOF)
	_, err = redir.NewReader(bytes.NewReader(zeros(5)), 0).Next()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "inside the header")
	// A length of 100 MiB with 3 bytes sent: the body ends early, and the
	// buffer did not grow to 100 MiB.
	_, err = redir.NewReader(bytes.NewReader(cat(le32(101), le32(100<<20), le32(0), []byte{1, 2, 3})), 0).Next()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF, "inside the body")
}

// TestReaderStaysInStep: a malformed packet is returned whole with its
// error, and the next one is read.
func TestReaderStaysInStep(t *testing.T) {
	in := cat(
		le32(77), le32(3), le32(5), []byte{1, 2, 3}, // unknown type 77
		le32(6), le32(2), le32(6), []byte{1, 2}, // set_configuration with 2 bytes
		le32(3), le32(0), le32(7), // reset
	)
	r := redir.NewReader(bytes.NewReader(in), 0)
	p, err := r.Next()
	require.ErrorIs(t, err, redir.ErrMalformed)
	require.Contains(t, err.Error(), "unknown packet type 77")
	require.Equal(t, []byte{1, 2, 3}, p.Body)
	p, err = r.Next()
	require.ErrorIs(t, err, redir.ErrMalformed)
	require.Contains(t, err.Error(), "set_configuration: length: 2 bytes, want exactly 1")
	require.Equal(t, uint64(6), p.Header.ID)
	p, err = r.Next()
	require.NoError(t, err)
	require.Equal(t, redir.Header{Type: redir.TypeReset, ID: 7}, p.Header)
	_, err = r.Next()
	require.ErrorIs(t, err, io.EOF)
}

// loop is an endless stream of one packet.
type loop struct {
	b   []byte
	off int
}

func (l *loop) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

// TestReaderWriterNoAllocs: once warm, reading and decoding a bulk packet,
// and writing one, allocate nothing.
func TestReaderWriterNoAllocs(t *testing.T) {
	data := make([]byte, 16<<10)
	var wire bytes.Buffer
	w := redir.NewWriter(&wire)
	w.SetLayout(layoutQEMU)
	require.NoError(t, w.Send(1, redir.BulkPacket{Endpoint: 0x01, Length: uint32(len(data)), Data: data}))
	r := redir.NewReader(&loop{b: bytes.Clone(wire.Bytes())}, 0)
	r.SetLayout(layoutQEMU)
	allocs := testing.AllocsPerRun(100, func() {
		p, err := r.Next()
		if err != nil {
			panic(err)
		}
		if _, err := redir.DecodeBulkPacket(p.Body, layoutQEMU, redir.RoleGuest); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs, "Reader.Next + DecodeBulkPacket")

	reply := redir.BulkPacket{Endpoint: 0x81, Length: uint32(len(data)), Data: data}
	var body redir.Body = reply // box once, outside the measurement
	w = redir.NewWriter(io.Discard)
	w.SetLayout(layoutQEMU)
	allocs = testing.AllocsPerRun(100, func() {
		if err := w.Send(2, body); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs, "Writer.Send")
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("boom") }

func TestWriterError(t *testing.T) {
	w := redir.NewWriter(failWriter{})
	require.ErrorContains(t, w.Send(0, redir.Reset{}), "boom")
	require.ErrorContains(t, w.Send(0, redir.BulkPacket{Endpoint: 1, Length: 1, Data: []byte{1}}), "boom")
}
