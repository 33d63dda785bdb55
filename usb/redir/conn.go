package redir

// The framing: a Reader that takes one packet at a time off a byte
// stream, and a Writer that puts one on. usbredir has no framing beyond
// the header's length, so a stream that loses a byte is lost for good: a
// Reader error other than a *ProtocolError with ErrMalformed means the
// connection must be closed.

import (
	"errors"
	"io"
	"math"
	"net"
)

// Packet is one packet as the Reader read it.
type Packet struct {
	Header Header
	// Body is the Header.Length bytes after the header. It aliases the
	// Reader's buffer: valid until the next call to Next.
	Body []byte
}

// readChunk is how far the Reader's buffer grows ahead of the bytes that
// have arrived, so a header that lies about its length costs memory only
// for the bytes actually sent.
const readChunk = 64 << 10

// Reader reads packets from a stream, one at a time, into one buffer it
// reuses.
//
// Concurrency: one goroutine at a time.
type Reader struct {
	r      io.Reader
	max    uint32
	layout Layout
	hdr    [sizeofHeader64]byte
	buf    []byte
}

// NewReader returns a Reader that refuses packets whose length exceeds
// maxLength bytes (after the header); 0 means DefaultMaxLength. It reads
// in the zero Layout (32-bit ids) until SetLayout.
func NewReader(r io.Reader, maxLength uint32) *Reader {
	if maxLength == 0 {
		maxLength = DefaultMaxLength
	}
	return &Reader{r: r, max: maxLength}
}

// SetLayout sets the layout of the packets read from now on: call it after
// reading the peer's hello, once Negotiate can say.
func (r *Reader) SetLayout(l Layout) { r.layout = l }

// Layout returns the layout the Reader reads in.
func (r *Reader) Layout() Layout { return r.layout }

// Next reads one packet. It returns:
//   - io.EOF if the stream ended cleanly between packets, and
//     io.ErrUnexpectedEOF if it ended inside one;
//   - a *ProtocolError with ErrTooLarge if the header's length exceeds the
//     limit (the body is left unread: the stream is out of step);
//   - a *ProtocolError with ErrMalformed, together with the packet, if the
//     type is unknown or the length cannot be right for the type in the
//     Reader's layout. The whole packet was read, so the stream is still
//     in step and a caller may answer or skip it;
//   - any other read error as it is.
//
// The body is not decoded; pass it to the decoder for its type, or to
// Decode.
func (r *Reader) Next() (Packet, error) {
	hs := HeaderSize(r.layout)
	if _, err := io.ReadFull(r.r, r.hdr[:hs]); err != nil {
		return Packet{}, err
	}
	h, err := DecodeHeader(r.hdr[:hs], r.layout)
	if err != nil {
		return Packet{}, err // unreachable: the header is whole
	}
	if h.Length > r.max {
		return Packet{Header: h}, &ProtocolError{Type: h.Type, Field: "length",
			Reason: itoa(uint64(h.Length)) + " exceeds the limit of " + itoa(uint64(r.max)), Err: ErrTooLarge}
	}
	body, err := r.readBody(int(h.Length))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Packet{}, err
	}
	p := Packet{Header: h, Body: body}
	if _, err := checkBody(h.Type, len(body), r.layout, 0); err != nil {
		return p, err
	}
	return p, nil
}

// readBody reads n bytes into r.buf, growing it no further than readChunk
// ahead of what has arrived.
func (r *Reader) readBody(n int) ([]byte, error) {
	if n <= cap(r.buf) {
		r.buf = r.buf[:n]
		_, err := io.ReadFull(r.r, r.buf)
		return r.buf, err
	}
	got := 0
	r.buf = r.buf[:0]
	for got < n {
		want := min(n, max(got+readChunk, 2*got))
		if want > cap(r.buf) {
			nb := make([]byte, want)
			copy(nb, r.buf[:got])
			r.buf = nb
		}
		r.buf = r.buf[:want]
		m, err := io.ReadFull(r.r, r.buf[got:want])
		got += m
		if err != nil {
			return nil, err
		}
	}
	return r.buf[:n], nil
}

// Writer writes packets to a stream, each with one write (two for a data
// packet with data: the headers, then the data straight from the caller's
// slice).
//
// Concurrency: one goroutine at a time; a caller that sends from several
// serialises them itself.
type Writer struct {
	w      io.Writer
	layout Layout
	buf    []byte
	bufs   net.Buffers // headers and data; its backing array is reused
	vec    net.Buffers // what WriteTo consumes (it reslices its receiver)
}

// NewWriter returns a Writer that writes in the zero Layout (32-bit ids,
// which the hello needs) until SetLayout.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// SetLayout sets the layout of the packets written from now on: call it
// after the hello has been sent and the peer's received.
func (w *Writer) SetLayout(l Layout) { w.layout = l }

// Layout returns the layout the Writer writes in.
func (w *Writer) Layout() Layout { return w.layout }

// Send writes one packet with this id and body. It fails with ErrInvalid
// if the body does not fit the u32 length, or with the write's error (the
// stream is then out of step if part was written).
func (w *Writer) Send(id uint64, body Body) error {
	hs := HeaderSize(w.layout)
	b := Header{Type: body.Type(), ID: id}.Encode(w.buf[:0], w.layout)
	var data []byte
	if dp, ok := body.(DataPacket); ok {
		b = dp.EncodeHeader(b, w.layout)
		data = dp.Payload()
	} else {
		b = body.Encode(b, w.layout)
	}
	w.buf = b
	n := uint64(len(b)-hs) + uint64(len(data))
	if n > math.MaxUint32 {
		return invalidf("%s body of %d bytes does not fit the length field", body.Type(), n)
	}
	le.PutUint32(b[offHeaderLength:], uint32(n))
	if len(data) == 0 {
		_, err := w.w.Write(b)
		return err
	}
	w.bufs = append(w.bufs[:0], b, data)
	w.vec = w.bufs
	_, err := w.vec.WriteTo(w.w) // writev on a net.Conn
	clear(w.bufs)                // drop the reference to the caller's data
	w.vec = nil
	return err
}
