package usbhost

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// TestCheckInfo: limits outside what the driver can run with are refused,
// not trusted.
func TestCheckInfo(t *testing.T) {
	good := newFake(2).info()
	require.NoError(t, checkInfo(good))
	for name, lie := range map[string]func(*usbproto.Info){
		"version 2":               func(in *usbproto.Info) { in.Version = 2 },
		"no pairs":                func(in *usbproto.Info) { in.Pairs = 0 },
		"9 pairs":                 func(in *usbproto.Info) { in.Pairs = usbproto.MaxPairs + 1 },
		"4-byte records":          func(in *usbproto.Info) { in.MaxRecordSize = 4 },
		"1 GiB records":           func(in *usbproto.Info) { in.MaxRecordSize = 1 << 30 },
		"no records a transfer":   func(in *usbproto.Info) { in.MaxRecordsPerTransfer = 0 },
		"1 GiB transfers":         func(in *usbproto.Info) { in.MaxTransferBytes = 1 << 30 },
		"no OUT window":           func(in *usbproto.Info) { in.OutWindow = 0 },
		"no IN window":            func(in *usbproto.Info) { in.InWindow = 0 },
		"millions of records out": func(in *usbproto.Info) { in.MaxRecordsPerTransfer = 1 << 20 },
	} {
		in := good
		lie(&in)
		require.ErrorIs(t, checkInfo(in), ErrProtocol, name)
	}
}

// TestLyingAnswers: a vendor answer that does not fit its layout, or
// whose limits the driver refuses, fails Open (or Counters) with
// ErrProtocol, and with usbproto.ErrLayout where the bytes were wrong.
func TestLyingAnswers(t *testing.T) {
	cut := func(n int) func([]byte) []byte { return func(p []byte) []byte { return p[:n] } }
	poke := func(i int, v byte) func([]byte) []byte {
		return func(p []byte) []byte { p[i] = v; return p }
	}
	for _, c := range []struct {
		name   string
		req    uint8
		mangle func([]byte) []byte
		layout bool
	}{
		{"GET_INFO cut short", usbproto.ReqGetInfo, cut(23), true},
		{"GET_INFO with a reserved byte set", usbproto.ReqGetInfo, poke(3, 1), true},
		{"GET_INFO of 9 pairs", usbproto.ReqGetInfo, poke(2, 9), false},
		{"GET_QUEUE cut short", usbproto.ReqGetQueue, cut(20), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFake(1)
			f.mangle = func(req uint8, p []byte) []byte {
				if req == c.req {
					return c.mangle(p)
				}
				return p
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			d, err := openWith(ctx, Config{RecordSize: 64, Slots: 64, Poll: time.Millisecond}, (&plugs{cur: f}).open)
			if d != nil {
				d.Close()
			}
			require.ErrorIs(t, err, ErrProtocol)
			if c.layout {
				require.ErrorIs(t, err, usbproto.ErrLayout)
			}
		})
	}
	f := newFake(1)
	d, _ := openFake(t, f, Config{})
	c, err := d.Counters()
	require.NoError(t, err)
	require.Len(t, c.Pairs, 1)
	f.mu.Lock()
	f.mangle = func(req uint8, p []byte) []byte { p[13] = 0xFF; return p } // a reserved byte of GET_COUNTERS
	f.mu.Unlock()
	_, err = d.Counters()
	require.ErrorIs(t, err, ErrProtocol)
	require.ErrorIs(t, err, usbproto.ErrLayout)
}
