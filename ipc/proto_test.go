package ipc

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/ring"
)

func FuzzHello(f *testing.F) {
	good, _ := json.Marshal(Hello{Version: 1, Role: RoleBoth, Count: 10, Payload: 64, Batch: 4,
		Geometry: Geometry{Slots: 16, SlotSize: 64}})
	f.Add(good)
	f.Add([]byte(`{"version":1,"role":"producer","count":1,"payload":24,"batch":1,"geometry":{"slots":2,"slot_size":24}}`))
	f.Add([]byte(`{"version":1,"role":12}`))
	f.Add([]byte(`{"version":1} {}`))
	f.Add([]byte(`{"geometry":{"slots":-8,"slot_size":9223372036854775807}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var h Hello
		if err := decodeMsg(body, &h); err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if err := h.Validate(); err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// A valid hello asks for something the server can build.
		g := h.Geometry
		if 2*(ring.MetaSize(g.Slots)+g.Slots*g.SlotSize) > MaxPairBytes+2*ring.MetaSize(MaxSlots) {
			t.Fatalf("valid hello asks for too much: %+v", h)
		}
		again, err := json.Marshal(h)
		require.NoError(t, err)
		var h2 Hello
		require.NoError(t, decodeMsg(again, &h2))
		require.Equal(t, h, h2)
	})
}

func FuzzWelcomeAndDone(f *testing.F) {
	f.Add([]byte(`{"version":1,"geometry":{"slots":16,"slot_size":64},"name":"x.1"}`))
	f.Add([]byte(`{"records":5,"error":"boom"}`))
	f.Add([]byte(`{"ok":true}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&Welcome{}, &Done{}, &Joined{}} {
			if err := decodeMsg(body, v); err != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("untyped error %v", err)
			}
		}
	})
}

// TestJoinPairRefuses: wrong counts, kinds and sizes of descriptors are
// refused, and every descriptor handed over is closed.
func TestJoinPairRefuses(t *testing.T) {
	g := Geometry{Slots: 8, SlotSize: 64}
	before := testenv.OpenFDs(t)
	memfd := func(size int) int {
		r, err := dma.Memfd("t", size, dma.Options{})
		require.NoError(t, err)
		fd, err := unix.Dup(r.FD())
		require.NoError(t, err)
		require.NoError(t, r.Close())
		return fd
	}
	pipe := func() int {
		var p [2]int
		require.NoError(t, unix.Pipe2(p[:], unix.O_CLOEXEC))
		unix.Close(p[1])
		return p[0]
	}
	meta, data := g.config().MetaSize(), g.config().DataSize()
	cases := map[string][]int{
		"three descriptors": {memfd(meta), memfd(data), memfd(meta)},
		"a pipe":            {memfd(meta), pipe(), memfd(meta), memfd(data)},
		"too small":         {memfd(meta), memfd(data), memfd(meta), memfd(data - 1)},
		"not formatted":     {memfd(meta), memfd(data), memfd(meta), memfd(data)},
	}
	for name, fds := range cases {
		_, err := JoinPair(fds, g)
		require.Error(t, err, name)
	}
	_, err := JoinPair([]int{memfd(4096)}, Geometry{Slots: 3, SlotSize: 64})
	require.ErrorIs(t, err, ring.ErrInvalid)

	// A pair whose queues do not match the agreed geometry is refused.
	p, err := CreatePair(Geometry{Slots: 16, SlotSize: 64}, "", dma.Options{})
	require.NoError(t, err)
	var fds []int
	for _, fd := range p.FDs() {
		d, err := unix.Dup(fd)
		require.NoError(t, err)
		fds = append(fds, d)
	}
	_, err = JoinPair(fds, Geometry{Slots: 8, SlotSize: 64})
	require.Error(t, err)
	require.NoError(t, p.Close())
	require.Equal(t, before, testenv.OpenFDs(t), "no descriptor leaked")
}
