package ipc_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/ipc"
)

// TestRunLocal: every role runs to the end in one process, records checked
// (sequence and CRC) by the receiving side; a bad request is refused before
// anything is made.
func TestRunLocal(t *testing.T) {
	for _, role := range []string{ipc.RoleProducer, ipc.RoleConsumer, ipc.RoleBoth} {
		t.Run(role, func(t *testing.T) {
			h := ipc.Hello{Role: role, Count: 20000, Payload: 64, Batch: 7, Checksum: true,
				Geometry: ipc.Geometry{Slots: 64, SlotSize: 64}}
			res, err := ipc.RunLocal(context.Background(), h, ipc.Mode{}, dma.Options{})
			require.NoError(t, err)
			require.Equal(t, uint64(20000), res.Records)
			require.Equal(t, role, res.Role)
			require.Positive(t, res.Elapsed)
		})
	}
	_, err := ipc.RunLocal(context.Background(), ipc.Hello{Role: "sideways", Count: 1, Payload: 64, Batch: 1,
		Geometry: ipc.Geometry{Slots: 64, SlotSize: 64}}, ipc.Mode{}, dma.Options{})
	require.ErrorIs(t, err, ipc.ErrProtocol)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = ipc.RunLocal(ctx, ipc.Hello{Role: ipc.RoleBoth, Count: 1 << 30, Payload: 64, Batch: 1,
		Geometry: ipc.Geometry{Slots: 64, SlotSize: 64}}, ipc.Mode{}, dma.Options{})
	require.ErrorIs(t, err, context.Canceled, "a cancelled run stops and says why")
}
