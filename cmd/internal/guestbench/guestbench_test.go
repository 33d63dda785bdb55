package guestbench

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/hostdriver"
	"github.com/ycq-dev/ycq/hostdriver/usbhost"
	"github.com/ycq-dev/ycq/internal/fdpass"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/vfio/user"
	"github.com/ycq-dev/ycq/ycqdev"
)

// Both transports' pairs fit Echo: this compiles only while they do.
var (
	_ = Echo[*hostdriver.Pair, hostdriver.Request, hostdriver.Response]
	_ = Echo[*usbhost.Pair, usbhost.Request, usbhost.Response]
)

// TestEchoOverHostdriver runs Echo over the PCIe host driver against an
// in-process device model (vfio-user over a socketpair) with the echo
// engine, at a small and a large record size.
func TestEchoOverHostdriver(t *testing.T) {
	dev, err := devicemodel.NewYCQ(devicemodel.Options{Queues: 2})
	require.NoError(t, err)
	defer dev.Close()
	s, cl, err := fdpass.Socketpair()
	require.NoError(t, err)
	srv := devicemodel.NewServer(dev, nil)
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(context.Background(), s) }()
	client, err := user.NewClient(cl, nil)
	require.NoError(t, err)
	defer func() { client.Close(); <-done }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, size := range []int{64, 16 << 10} {
		drv, err := hostdriver.Open(client, hostdriver.Config{Queues: 2, Engine: ycqdev.EngineEcho, Slots: 64, SlotSize: size})
		require.NoError(t, err)
		got := make([]int64, 2)
		errs := make([]error, 2)
		done := make(chan struct{}, 2)
		for i, p := range drv.Pairs() {
			go func() {
				got[i], errs[i] = Echo[*hostdriver.Pair, hostdriver.Request, hostdriver.Response](ctx, p, 1000, size, 16)
				done <- struct{}{}
			}()
		}
		<-done
		<-done
		require.NoError(t, errors.Join(errs...), "%d-byte records", size)
		require.Equal(t, []int64{1000, 1000}, got)
		require.NoError(t, drv.Close())
	}
}

// fakePair echoes what is published, through a channel, after bend.
type fakePair struct {
	size int
	q    chan []byte
	bend func(seq int, b []byte) []byte
	n    int
}

type fakeReq struct {
	p     *fakePair
	slots [][]byte
}

func (r *fakeReq) Len() int          { return len(r.slots) }
func (r *fakeReq) Slot(i int) []byte { return r.slots[i] }
func (r *fakeReq) PublishAll(length int) error {
	for _, s := range r.slots {
		r.p.q <- r.p.bend(r.p.n, bytes.Clone(s[:length]))
		r.p.n++
	}
	return nil
}

type fakeResp struct{ slots [][]byte }

func (r *fakeResp) Len() int                   { return len(r.slots) }
func (r *fakeResp) Slot(i int) ([]byte, error) { return r.slots[i], nil }
func (r *fakeResp) ReleaseAll() error          { return nil }

func (p *fakePair) Index() int { return 3 }
func (p *fakePair) ReserveUpTo(ctx context.Context, n int) (fakeReq, error) {
	r := fakeReq{p: p}
	for range n {
		r.slots = append(r.slots, make([]byte, p.size))
	}
	return r, nil
}
func (p *fakePair) Receive(ctx context.Context, n int) (fakeResp, error) {
	select {
	case b := <-p.q:
		return fakeResp{slots: [][]byte{b}}, nil
	case <-ctx.Done():
		return fakeResp{}, ctx.Err()
	}
}

// TestEchoCatchesBadResponses: a flipped byte anywhere in the record, a
// short response and another record in its place are each ErrMismatch,
// at the record where it happened; a faithful echo passes.
func TestEchoCatchesBadResponses(t *testing.T) {
	for _, c := range []struct {
		name string
		bend func(b []byte) []byte
	}{
		{"faithful", nil},
		{"a byte of the fill", func(b []byte) []byte { b[200] ^= 1; return b }},
		{"short", func(b []byte) []byte { return b[:248] }},
		{"another record", func(b []byte) []byte {
			Records.Fill(b, record.Header{Seq: 6, Producer: 3})
			return b
		}},
	} {
		p := &fakePair{size: 256, q: make(chan []byte, 100), bend: func(seq int, b []byte) []byte {
			if seq == 5 && c.bend != nil {
				return c.bend(b)
			}
			return b
		}}
		got, err := Echo[*fakePair, fakeReq, fakeResp](t.Context(), p, 20, 256, 4)
		if c.bend == nil {
			require.NoError(t, err)
			require.Equal(t, int64(20), got)
			continue
		}
		require.ErrorIs(t, err, ErrMismatch, c.name)
		require.Equal(t, int64(5), got, "%s: the first five were good", c.name)
	}
}
