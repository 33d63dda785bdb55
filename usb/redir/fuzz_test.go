package redir_test

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/ycq-dev/ycq/usb/redir"
)

// checkDecoded is the invariant every decoder is fuzzed against: a
// *ProtocolError for type t naming a field, or a value of type t that
// re-encodes to exactly p (the format is canonical; for a hello, up to the
// bytes after the version's NUL), whose data aliases p, and that decodes
// back to itself.
func checkDecoded(t *testing.T, typ redir.Type, p []byte, l redir.Layout, from redir.Role) {
	t.Helper()
	v, err := redir.Decode(typ, p, l, from)
	if err != nil {
		var pe *redir.ProtocolError
		if !errors.As(err, &pe) || !errors.Is(err, redir.ErrMalformed) {
			t.Fatalf("%s: error is not a malformed *ProtocolError: %#v", typ, err)
		}
		if pe.Type != typ || pe.Field == "" || pe.Reason == "" {
			t.Fatalf("%s: error lacks context: %+v", typ, pe)
		}
		if v != nil {
			t.Fatalf("%s: value %#v returned with an error", typ, v)
		}
		return
	}
	if v.Type() != typ {
		t.Fatalf("decoding %s gave a %s", typ, v.Type())
	}
	want := p
	if typ == redir.TypeHello {
		want = bytes.Clone(p)
		clear(want[bytes.IndexByte(want[:64], 0):64])
	}
	b := v.Encode(nil, l)
	if !bytes.Equal(b, want) {
		t.Fatalf("%s: re-encoding differs\nin  %x\nout %x", typ, p, b)
	}
	if dp, ok := v.(redir.DataPacket); ok {
		if d := dp.Payload(); len(d) > 0 && &d[0] != &p[len(p)-len(d)] {
			t.Fatalf("%s: data is a copy, not a slice of the input", typ)
		}
	}
	v2, err := redir.Decode(typ, b, l, from)
	if err != nil || !reflect.DeepEqual(v, v2) {
		t.Fatalf("%s: round trip changed the value: %v\nfirst  %#v\nsecond %#v", typ, err, v, v2)
	}
}

// fuzzType fuzzes the decoder of one type: the first byte picks the
// layout, the second the sender, the rest is the body.
func fuzzType(f *testing.F, typ redir.Type) {
	for _, g := range goldens {
		if g.header.Type == typ {
			f.Add(layoutBits(g.layout), byte(g.from), g.wire[redir.HeaderSize(g.layout):])
		}
	}
	for _, m := range malformedCases {
		if m.typ == typ {
			f.Add(layoutBits(m.layout), byte(m.from), m.in)
		}
	}
	f.Fuzz(func(t *testing.T, lb, rb byte, p []byte) {
		from := redir.RoleHost
		if rb&1 == 0 {
			from = redir.RoleGuest
		}
		checkDecoded(t, typ, p, layoutFromBits(lb), from)
	})
}

func FuzzDecodeHello(f *testing.F)            { fuzzType(f, redir.TypeHello) }
func FuzzDecodeDeviceConnect(f *testing.F)    { fuzzType(f, redir.TypeDeviceConnect) }
func FuzzDecodeDeviceDisconnect(f *testing.F) { fuzzType(f, redir.TypeDeviceDisconnect) }
func FuzzDecodeReset(f *testing.F)            { fuzzType(f, redir.TypeReset) }
func FuzzDecodeInterfaceInfo(f *testing.F)    { fuzzType(f, redir.TypeInterfaceInfo) }
func FuzzDecodeEPInfo(f *testing.F)           { fuzzType(f, redir.TypeEPInfo) }
func FuzzDecodeSetConfiguration(f *testing.F) { fuzzType(f, redir.TypeSetConfiguration) }
func FuzzDecodeGetConfiguration(f *testing.F) { fuzzType(f, redir.TypeGetConfiguration) }
func FuzzDecodeConfigurationStatus(f *testing.F) {
	fuzzType(f, redir.TypeConfigurationStatus)
}
func FuzzDecodeSetAltSetting(f *testing.F)    { fuzzType(f, redir.TypeSetAltSetting) }
func FuzzDecodeGetAltSetting(f *testing.F)    { fuzzType(f, redir.TypeGetAltSetting) }
func FuzzDecodeAltSettingStatus(f *testing.F) { fuzzType(f, redir.TypeAltSettingStatus) }
func FuzzDecodeStartISOStream(f *testing.F)   { fuzzType(f, redir.TypeStartISOStream) }
func FuzzDecodeStopISOStream(f *testing.F)    { fuzzType(f, redir.TypeStopISOStream) }
func FuzzDecodeISOStreamStatus(f *testing.F)  { fuzzType(f, redir.TypeISOStreamStatus) }
func FuzzDecodeStartInterruptReceiving(f *testing.F) {
	fuzzType(f, redir.TypeStartInterruptReceiving)
}
func FuzzDecodeStopInterruptReceiving(f *testing.F) {
	fuzzType(f, redir.TypeStopInterruptReceiving)
}
func FuzzDecodeInterruptReceivingStatus(f *testing.F) {
	fuzzType(f, redir.TypeInterruptReceivingStatus)
}
func FuzzDecodeAllocBulkStreams(f *testing.F)  { fuzzType(f, redir.TypeAllocBulkStreams) }
func FuzzDecodeFreeBulkStreams(f *testing.F)   { fuzzType(f, redir.TypeFreeBulkStreams) }
func FuzzDecodeBulkStreamsStatus(f *testing.F) { fuzzType(f, redir.TypeBulkStreamsStatus) }
func FuzzDecodeCancelDataPacket(f *testing.F)  { fuzzType(f, redir.TypeCancelDataPacket) }
func FuzzDecodeFilterReject(f *testing.F)      { fuzzType(f, redir.TypeFilterReject) }
func FuzzDecodeFilterFilter(f *testing.F)      { fuzzType(f, redir.TypeFilterFilter) }
func FuzzDecodeDeviceDisconnectAck(f *testing.F) {
	fuzzType(f, redir.TypeDeviceDisconnectAck)
}
func FuzzDecodeStartBulkReceiving(f *testing.F)  { fuzzType(f, redir.TypeStartBulkReceiving) }
func FuzzDecodeStopBulkReceiving(f *testing.F)   { fuzzType(f, redir.TypeStopBulkReceiving) }
func FuzzDecodeBulkReceivingStatus(f *testing.F) { fuzzType(f, redir.TypeBulkReceivingStatus) }
func FuzzDecodeControlPacket(f *testing.F)       { fuzzType(f, redir.TypeControlPacket) }
func FuzzDecodeBulkPacket(f *testing.F)          { fuzzType(f, redir.TypeBulkPacket) }
func FuzzDecodeISOPacket(f *testing.F)           { fuzzType(f, redir.TypeISOPacket) }
func FuzzDecodeInterruptPacket(f *testing.F)     { fuzzType(f, redir.TypeInterruptPacket) }
func FuzzDecodeBufferedBulkPacket(f *testing.F)  { fuzzType(f, redir.TypeBufferedBulkPacket) }

// FuzzDecodeHeader: DecodeHeader refuses only short input, and a header it
// accepts encodes back to exactly its bytes.
func FuzzDecodeHeader(f *testing.F) {
	for _, g := range goldens {
		f.Add(layoutBits(g.layout), g.wire)
	}
	f.Fuzz(func(t *testing.T, lb byte, b []byte) {
		l := layoutFromBits(lb)
		h, err := redir.DecodeHeader(b, l)
		n := redir.HeaderSize(l)
		if err != nil {
			if len(b) >= n || !errors.Is(err, redir.ErrMalformed) {
				t.Fatalf("refused %d bytes (header %d): %v", len(b), n, err)
			}
			return
		}
		if got := h.Encode(nil, l); !bytes.Equal(got, b[:n]) {
			t.Fatalf("re-encoding differs\nin  %x\nout %x", b[:n], got)
		}
	})
}

// FuzzReader: a Reader fed any stream returns packets whose bodies have
// their header's length, typed errors that name a field, or a read error,
// and never panics or loops; every packet it accepts and Decode accepts
// satisfies checkDecoded.
func FuzzReader(f *testing.F) {
	var stream []byte
	for _, g := range goldens {
		if g.layout == layoutQEMU {
			stream = append(stream, g.wire...)
		}
		f.Add(layoutBits(g.layout), byte(g.from), g.wire)
	}
	f.Add(layoutBits(layoutQEMU), byte(redir.RoleHost), stream)
	f.Fuzz(func(t *testing.T, lb, rb byte, in []byte) {
		from := redir.RoleHost
		if rb&1 == 0 {
			from = redir.RoleGuest
		}
		l := layoutFromBits(lb)
		r := redir.NewReader(bytes.NewReader(in), 4096)
		r.SetLayout(l)
		for range len(in) + 1 {
			p, err := r.Next()
			var pe *redir.ProtocolError
			switch {
			case err == nil:
				if uint32(len(p.Body)) != p.Header.Length {
					t.Fatalf("body %d bytes, header says %d", len(p.Body), p.Header.Length)
				}
				checkDecoded(t, p.Header.Type, p.Body, l, from)
			case errors.As(err, &pe):
				if pe.Field == "" || pe.Type != p.Header.Type {
					t.Fatalf("error lacks context: %+v", pe)
				}
				if errors.Is(err, redir.ErrTooLarge) {
					return
				}
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				return
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		t.Fatalf("more packets than bytes")
	})
}
