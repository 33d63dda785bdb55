package redir

import "github.com/ycq-dev/ycq/internal/wirebuf"

// The header that starts every packet (struct usb_redir_header). Its id is
// 32 bits until both sides have advertised usb_redir_cap_64bits_ids in
// their hellos, 64 bits from then on; the hellos themselves always have a
// 32-bit id, since neither side knows the other's capabilities yet.

// Header layout.
const (
	offHeaderType   = 0  // u32 type
	offHeaderLength = 4  // u32 length: the bytes after the header
	offHeaderID     = 8  // u32 or u64 id
	sizeofHeader32  = 12 // with a 32-bit id (struct usb_redir_header_32bit_id)
	sizeofHeader64  = 16 // with a 64-bit id (struct usb_redir_header)
)

// Header sizes, for callers that frame packets themselves.
const (
	HeaderSize32 = sizeofHeader32
	HeaderSize64 = sizeofHeader64
)

// HeaderSize is the size of the header in layout l.
func HeaderSize(l Layout) int {
	if l.IDs64 {
		return sizeofHeader64
	}
	return sizeofHeader32
}

// Header starts every packet (struct usb_redir_header).
type Header struct {
	Type Type
	// Length counts the bytes after the header: the type specific header
	// and any data.
	Length uint32
	// ID is chosen by the usb-guest and echoed in the usb-host's answer;
	// 0 in unsolicited packets; a running count in the packets the host
	// sends once receiving has started (interrupt, iso, buffered bulk).
	ID uint64
}

// Encode appends the header in layout l. In a 32-bit-id layout only the
// low 32 bits of ID are written.
func (h Header) Encode(b []byte, l Layout) []byte {
	b, s := wirebuf.Grow(b, HeaderSize(l))
	le.PutUint32(s[offHeaderType:], uint32(h.Type))
	le.PutUint32(s[offHeaderLength:], h.Length)
	if l.IDs64 {
		le.PutUint64(s[offHeaderID:], h.ID)
	} else {
		le.PutUint32(s[offHeaderID:], uint32(h.ID))
	}
	return b
}

// DecodeHeader decodes the header at the start of b in layout l. It
// refuses only a short b: the type and length are checked by the Reader
// (against its limit) and by the decoders (against the type).
func DecodeHeader(b []byte, l Layout) (Header, error) {
	n := HeaderSize(l)
	if len(b) < n {
		var t Type
		if len(b) >= offHeaderType+4 {
			t = Type(le.Uint32(b[offHeaderType:]))
		}
		return Header{}, malformed(t, "header", "%d bytes, need %d", len(b), n)
	}
	h := Header{
		Type:   Type(le.Uint32(b[offHeaderType:])),
		Length: le.Uint32(b[offHeaderLength:]),
	}
	if l.IDs64 {
		h.ID = le.Uint64(b[offHeaderID:])
	} else {
		h.ID = uint64(le.Uint32(b[offHeaderID:]))
	}
	return h, nil
}
