package ipc

import (
	"context"
	"sync"

	"github.com/ycq-dev/ycq/dma"
)

// RunLocal plays both sides of the session h in this process: the client's
// role and the server's complement of it, each in its own goroutine, over a
// pair made the way a server makes one (shm says how). Everything but the
// process boundary and the control socket is what a session between two
// processes runs, so the two can be compared like for like. It returns the
// client's result, as Client.Run does.
func RunLocal(ctx context.Context, h Hello, mode Mode, shm dma.Options) (Result, error) {
	h.Version = ProtocolVersion
	if err := h.Validate(); err != nil {
		return Result{}, err
	}
	pair, err := CreatePair(h.Geometry, "", shm)
	if err != nil {
		return Result{}, err
	}
	defer pair.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	side := func() *session {
		return &session{pair: pair, hello: h, mode: mode, ctx: ctx, cancel: cancel}
	}
	client, server := side(), side()
	var serverErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, serverErr = server.run(false); serverErr != nil {
			cancel(serverErr)
		}
	})
	res, err := client.run(true)
	if err != nil {
		cancel(err)
	}
	wg.Wait()
	if err == nil {
		err = serverErr
	}
	return res, err
}
