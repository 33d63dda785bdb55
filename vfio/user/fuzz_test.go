package user_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/ycq-dev/ycq/vfio/user"
)

// checkDecoded is the invariant every decoder is fuzzed against: it
// returns either a *ProtocolError for its command that unwraps to
// ErrMalformed, or a value that re-encodes, without growing, to bytes that
// decode to the same value and re-encode to the same bytes.
func checkDecoded(t *testing.T, c codec, p []byte) {
	t.Helper()
	v, err := c.decode(p)
	if err != nil {
		var pe *user.ProtocolError
		if !errors.As(err, &pe) || !errors.Is(err, user.ErrMalformed) {
			t.Fatalf("%s: error is not a malformed *ProtocolError: %#v", c.name, err)
		}
		if pe.Command != c.cmd || pe.Field == "" || pe.Reason == "" {
			t.Fatalf("%s: error lacks context: %+v", c.name, pe)
		}
		if v != nil {
			t.Fatalf("%s: value %#v returned with an error", c.name, v)
		}
		return
	}
	b, err := c.encode(nil, v)
	if err != nil {
		t.Fatalf("%s: decoded value does not re-encode: %v\nvalue %#v", c.name, err, v)
	}
	if len(b) > len(p) {
		t.Fatalf("%s: re-encoding grew %d bytes to %d\nin  %x\nout %x", c.name, len(p), len(b), p, b)
	}
	v2, err := c.decode(b)
	if err != nil {
		t.Fatalf("%s: re-encoded bytes do not decode: %v\nin  %x\nout %x", c.name, err, p, b)
	}
	if !reflect.DeepEqual(v, v2) {
		t.Fatalf("%s: round trip changed the value\nfirst  %#v\nsecond %#v", c.name, v, v2)
	}
	b2, err := c.encode(nil, v2)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("%s: encoding is not stable: %v\n%x\n%x", c.name, err, b, b2)
	}
}

func addPayloadSeeds(f *testing.F, keep func(codec string) bool) {
	for _, g := range goldens {
		if g.codec != "" && keep(g.codec) {
			f.Add(g.wire[user.HeaderSize:])
		}
	}
	for _, m := range malformedCases {
		if m.codec != "Header" && keep(m.codec) {
			f.Add(m.in)
		}
	}
}

// FuzzDecodeHeader: DecodeHeader refuses with a typed error or returns a
// header that encodes back to exactly the bytes it came from.
func FuzzDecodeHeader(f *testing.F) {
	for _, g := range goldens {
		f.Add(g.wire)
	}
	for _, m := range malformedCases {
		if m.codec == "Header" {
			f.Add(m.in)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := user.DecodeHeader(b)
		if err != nil {
			var pe *user.ProtocolError
			if !errors.As(err, &pe) || !errors.Is(err, user.ErrMalformed) {
				t.Fatalf("error is not a malformed *ProtocolError: %#v", err)
			}
			if h != (user.Header{}) {
				t.Fatalf("header %+v returned with an error", h)
			}
			return
		}
		if got := h.Encode(nil); !bytes.Equal(got, b[:user.HeaderSize]) {
			t.Fatalf("header does not re-encode to its bytes: %x -> %+v -> %x", b[:user.HeaderSize], h, got)
		}
		if h.PayloadLen() < 0 {
			t.Fatalf("negative payload length for %+v", h)
		}
		if err := h.CheckSize(user.DefaultMaxMessageSize); err != nil && !errors.Is(err, user.ErrTooLarge) {
			t.Fatalf("CheckSize: %v", err)
		}
		_ = h.Err()
		_ = h.Command.String()
	})
}

// FuzzDecodePayload runs every input through every payload decoder (all
// messages and both DMA layouts), each under the round-trip invariant.
func FuzzDecodePayload(f *testing.F) {
	addPayloadSeeds(f, func(string) bool { return true })
	f.Fuzz(func(t *testing.T, p []byte) {
		for _, c := range codecs {
			checkDecoded(t, c, p)
		}
	})
}

// FuzzDecodeVersion concentrates on VERSION's JSON capabilities.
func FuzzDecodeVersion(f *testing.F) {
	addPayloadSeeds(f, func(c string) bool { return c == "Version" })
	for _, s := range []string{
		`{"capabilities":{"twin_socket":{"supported":true,"fd_index":0},"write_multiple":false}}`,
		`{"capabilities":{"max_msg_fds":4,"future":{"x":[1,2]}},"other":1}`,
		`{"capabilities":{"migration":{}}}`,
		` { "capabilities" : { "pgsizes" : 4096 } } `,
		`{"capabilities":{"max_msg_fds":1,"max_msg_fds":2}}`,
		`{"capabilities":{"max\u005fmsg_fds":3}}`,
	} {
		f.Add(version(s + "\x00"))
	}
	c := codecNamed("Version")
	f.Fuzz(func(t *testing.T, p []byte) { checkDecoded(t, c, p) })
}

// FuzzDecodeRegionInfo concentrates on the region info capability chain.
func FuzzDecodeRegionInfo(f *testing.F) {
	addPayloadSeeds(f, func(c string) bool { return c == "RegionInfoReply" || c == "RegionInfoRequest" })
	f.Add(cat(regionInfo(72, 32), capHdr(3, 1, 40), sparse(0, 1, 1)))
	f.Add(cat(regionInfo(96, 40), zeros(8), capHdr(user.CapType, 1, 64), zeros(16), sparse(0, 0, 0), zeros(8)))
	f.Add(cat(regionInfo(48, 32), capHdr(user.CapSparseMmap, 2, 0), le32(9), le32(0)))
	req, rep := codecNamed("RegionInfoRequest"), codecNamed("RegionInfoReply")
	f.Fuzz(func(t *testing.T, p []byte) {
		checkDecoded(t, req, p)
		checkDecoded(t, rep, p)
	})
}
