package usbhost

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/hostdriver"
)

// The application's side of a queue pair, as both transports give it:
// an application written against these runs on either.
type (
	requestRun interface {
		Len() int
		Slot(i int) []byte
		Publish(i, length int) error
		PublishAll(length int) error
		Abort(i int) error
		AbortAll() error
	}
	responseRun interface {
		Len() int
		Slot(i int) ([]byte, error)
		Release(i int) error
		ReleaseAll() error
	}
	queuePair[Req, Resp any] interface {
		Index() int
		SlotSize() int
		Reserve(ctx context.Context, n int) (Req, error)
		ReserveUpTo(ctx context.Context, n int) (Req, error)
		Receive(ctx context.Context, n int) (Resp, error)
		Send(ctx context.Context, b []byte) error
		Recv(ctx context.Context, b []byte) (int, error)
	}
)

// echoLoop is an application's loop, written once: n requests out through
// reserve, fill, publish; their echoes back through receive, read,
// release.
func echoLoop[P queuePair[Req, Resp], Req, Resp any, PReq interface {
	*Req
	requestRun
}, PResp interface {
	*Resp
	responseRun
}](ctx context.Context, p P, n int) error {
	for i := range n {
		req, err := p.Reserve(ctx, 1)
		if err != nil {
			return err
		}
		r := PReq(&req)
		k := copy(r.Slot(0), fmt.Sprintf("request %d", i))
		if err := r.Publish(0, k); err != nil {
			return err
		}
		resp, err := p.Receive(ctx, 1)
		if err != nil {
			return err
		}
		s := PResp(&resp)
		b, err := s.Slot(0)
		if err != nil {
			return err
		}
		if want := fmt.Sprintf("request %d", i); string(b[:len(want)]) != want {
			return fmt.Errorf("response %d is %q", i, b)
		}
		if err := s.ReleaseAll(); err != nil {
			return err
		}
	}
	return nil
}

// Both transports' pairs fit the loop: this compiles only while the USB
// transport mirrors the PCIe one.
var (
	_ = echoLoop[*Pair, Request, Response]
	_ = echoLoop[*hostdriver.Pair, hostdriver.Request, hostdriver.Response]
)

// TestSameAPIAsHostdriver runs the loop written for either transport over
// this one.
func TestSameAPIAsHostdriver(t *testing.T) {
	d, _ := openFake(t, newFake(1), Config{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.NoError(t, echoLoop[*Pair, Request, Response](ctx, d.Pairs()[0], 100))
}
