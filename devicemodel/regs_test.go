package devicemodel

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

func TestRegisterDefaults(t *testing.T) {
	d, err := NewYCQ(Options{Queues: 3})
	require.NoError(t, err)
	defer d.Close()
	for _, r := range []struct {
		reg  uint64
		want uint32
	}{
		{ycqdev.RegID, ycqdev.RegIDValue}, {ycqdev.RegVersion, 1}, {ycqdev.RegFeatures, ycqdev.FeatureMetaInBAR2 | ycqdev.FeatureMSIX | ycqdev.FeatureResize}, {ycqdev.RegMaxQueues, 3},
		{ycqdev.RegControl, 0}, {ycqdev.RegStatus, 0}, {ycqdev.RegErrorCode, 0}, {ycqdev.RegErrorQueue, ycqdev.NoQueue}, {ycqdev.RegEngine, ycqdev.EngineEcho},
		{ycqdev.RegErrorVector, 3}, {ycqdev.RegNumQueues, 3}, {ycqdev.RegBAR2Size, ycqdev.BAR2Size},
		{ycqdev.QueueReg(0, ycqdev.RegQVector), 0}, {ycqdev.QueueReg(2, ycqdev.RegQVector), 2}, {ycqdev.QueueReg(1, ycqdev.RegQDoorbell), 0},
		{ycqdev.QueueReg(1, ycqdev.RegQResize), 0}, {ycqdev.QueueReg(1, ycqdev.RegQResizeAck), 0}, {ycqdev.QueueReg(1, ycqdev.RegQGeneration), 0},
	} {
		require.Equal(t, r.want, reg32(t, d, r.reg), "register %#x", r.reg)
	}
	// Read-only registers ignore writes; queue registers beyond the
	// device's pairs are not there.
	setReg32(t, d, ycqdev.RegID, 0)
	setReg32(t, d, ycqdev.RegMaxQueues, 60)
	setReg64(t, d, ycqdev.QueueReg(5, ycqdev.RegQH2DMeta), 0x1234)
	require.Equal(t, uint32(ycqdev.RegIDValue), reg32(t, d, ycqdev.RegID))
	require.Equal(t, uint32(3), reg32(t, d, ycqdev.RegMaxQueues))
	require.Zero(t, reg64(t, d, ycqdev.QueueReg(5, ycqdev.RegQH2DMeta)))
	// Queue registers take 32-bit halves of 64-bit values.
	setReg32(t, d, ycqdev.QueueReg(1, ycqdev.RegQH2DData), 0xAABBCCDD)
	setReg32(t, d, ycqdev.QueueReg(1, ycqdev.RegQH2DData)+4, 0x11223344)
	require.Equal(t, uint64(0x11223344AABBCCDD), reg64(t, d, ycqdev.QueueReg(1, ycqdev.RegQH2DData)))
	// RESIZE reads back what the host wrote; RESIZE_ACK and GENERATION
	// are the device's (no pair runs to take it up).
	setReg32(t, d, ycqdev.QueueReg(1, ycqdev.RegQResize), 9)
	setReg32(t, d, ycqdev.QueueReg(1, ycqdev.RegQResizeAck), 9)
	require.Equal(t, uint32(9), reg32(t, d, ycqdev.QueueReg(1, ycqdev.RegQResize)))
	require.Zero(t, reg32(t, d, ycqdev.QueueReg(1, ycqdev.RegQResizeAck)))
}

// TestConfigSpace walks config space as a PCI core would.
func TestConfigSpace(t *testing.T) {
	d, err := NewYCQ(Options{Queues: 2})
	require.NoError(t, err)
	defer d.Close()
	cfg := make([]byte, 256)
	require.NoError(t, d.ReadRegion(vfio.ConfigRegion, 0, cfg))
	le := binary.LittleEndian
	require.Equal(t, uint16(0x1234), le.Uint16(cfg[0x00:]), "vendor")
	require.Equal(t, uint16(0x7963), le.Uint16(cfg[0x02:]), "device")
	require.Equal(t, []byte{0x00, 0x00, 0xff}, cfg[0x09:0x0C], "class ff0000")
	require.NotZero(t, le.Uint16(cfg[0x06:])&statusCapList, "capability list")
	require.Equal(t, uint8(1), cfg[0x3D], "interrupt pin INTA")

	// Capability chain: PCI Express, then MSI-X with one vector a pair
	// plus one for errors, its table and PBA in BAR4.
	var ids []byte
	for p := cfg[0x34]; p != 0; p = cfg[p+1] {
		require.Less(t, len(ids), 8, "capability loop")
		ids = append(ids, cfg[p])
		if cfg[p] == capIDMSIX {
			require.Equal(t, uint16(2), le.Uint16(cfg[p+2:])&0x7FF, "table size - 1")
			require.Equal(t, uint32(4), le.Uint32(cfg[p+4:]), "table: BIR 4, offset 0")
			require.Equal(t, uint32(2048|4), le.Uint32(cfg[p+8:]), "PBA: BIR 4, offset 2048")
		}
	}
	require.Equal(t, []byte{capIDPCIe, capIDMSIX}, ids)

	// BAR sizing: write all ones, read the size mask; type bits stay.
	ones := []byte{0xff, 0xff, 0xff, 0xff}
	bar := func(i int) uint32 {
		var b [4]byte
		require.NoError(t, d.ReadRegion(vfio.ConfigRegion, uint64(0x10+4*i), b[:]))
		return le.Uint32(b[:])
	}
	for i := range 6 {
		require.NoError(t, d.WriteRegion(vfio.ConfigRegion, uint64(0x10+4*i), ones))
	}
	require.Equal(t, uint32(0xFFFFC000|barMem64), bar(0), "BAR0: 16 KiB, 64-bit")
	require.Equal(t, uint32(0xFFFFFFFF), bar(1), "BAR0 upper half")
	require.Equal(t, uint32(0xFFF00000|barMem64|barPrefetch), bar(2), "BAR2: 1 MiB, 64-bit, prefetchable")
	require.Equal(t, uint32(0xFFFFF000), bar(4), "BAR4: 4 KiB, 32-bit")
	require.Zero(t, bar(5), "BAR5 not implemented")
	require.NoError(t, d.WriteRegion(vfio.ConfigRegion, 0x30, ones))
	var rom [4]byte
	require.NoError(t, d.ReadRegion(vfio.ConfigRegion, 0x30, rom[:]))
	require.Zero(t, le.Uint32(rom[:]), "no expansion ROM")

	// Read-only fields stay; the command register takes its writable bits.
	require.NoError(t, d.WriteRegion(vfio.ConfigRegion, 0, []byte{0, 0, 0, 0}))
	require.NoError(t, d.WriteRegion(vfio.ConfigRegion, cfgCommand, []byte{0xff, 0xff}))
	require.NoError(t, d.ReadRegion(vfio.ConfigRegion, 0, cfg))
	require.Equal(t, uint16(0x1234), le.Uint16(cfg[0x00:]))
	require.Equal(t, uint16(commandWritable), le.Uint16(cfg[cfgCommand:]))
	require.True(t, d.cfg.busMaster())

	// Regions and interrupts as a client sees them.
	require.Equal(t, uint64(ycqdev.BAR0Size), d.Region(vfio.BAR0).Info.Size)
	require.Equal(t, vfio.RegionRead|vfio.RegionWrite|vfio.RegionMmap, d.Region(vfio.BAR2).Info.Flags)
	require.GreaterOrEqual(t, d.Region(vfio.BAR2).FD, 0)
	require.Zero(t, d.Region(vfio.ROMRegion).Info.Size)
	require.Equal(t, uint32(3), d.IRQ(vfio.IRQMSIX).Count)
	require.Zero(t, d.IRQ(vfio.IRQMSI).Count)
}
