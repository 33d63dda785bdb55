package devicemodel

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/vfio"
)

// TestRegisterMap pins every register offset and value of REGISTERS.md.
func TestRegisterMap(t *testing.T) {
	for _, r := range []struct {
		name      string
		got, want uint64
	}{
		{"ID", RegID, 0x00}, {"VERSION", RegVersion, 0x04}, {"FEATURES", RegFeatures, 0x08},
		{"MAX_QUEUES", RegMaxQueues, 0x0C}, {"CONTROL", RegControl, 0x10}, {"STATUS", RegStatus, 0x14},
		{"ERROR_CODE", RegErrorCode, 0x18}, {"ERROR_QUEUE", RegErrorQueue, 0x1C}, {"ERROR_ADDR", RegErrorAddr, 0x20},
		{"ENGINE", RegEngine, 0x28}, {"ERROR_VECTOR", RegErrorVector, 0x2C}, {"NUM_QUEUES", RegNumQueues, 0x30},
		{"BAR2_SIZE", RegBAR2Size, 0x34}, {"RECORDS_IN", RegRecordsIn, 0x40}, {"RECORDS_OUT", RegRecordsOut, 0x48},
		{"DOORBELLS", RegDoorbells, 0x50}, {"INTERRUPTS", RegInterrupts, 0x58}, {"DMA_ERRORS", RegDMAErrors, 0x60},
		{"WAKEUPS", RegWakeups, 0x68}, {"QUEUE_BASE", QueueBase, 0x100}, {"QUEUE_STRIDE", QueueStride, 0x80},
		{"Q_H2D_META", RegQH2DMeta, 0x00}, {"Q_H2D_DATA", RegQH2DData, 0x08}, {"Q_D2H_META", RegQD2HMeta, 0x10},
		{"Q_D2H_DATA", RegQD2HData, 0x18}, {"Q_SLOTS", RegQSlots, 0x20}, {"Q_SLOT_SIZE", RegQSlotSize, 0x24},
		{"Q_FLAGS", RegQFlags, 0x28}, {"Q_VECTOR", RegQVector, 0x2C}, {"Q_DOORBELL", RegQDoorbell, 0x30},
		{"Q_STATUS", RegQStatus, 0x34}, {"Q_RECORDS", RegQRecords, 0x38},
		{"queue 3 doorbell", queueReg(3, RegQDoorbell), 0x100 + 3*0x80 + 0x30},
		{"ID value", RegIDValue, 0x44514359}, {"BAR0 size", bar0Size, 16384}, {"BAR2 size", bar2Size, 1 << 20},
		{"BAR4 size", bar4Size, 4096}, {"MSI-X PBA", msixPBAOff, 2048}, {"max queue pairs", MaxQueuePairs, 64},
		{"engine echo", EngineEcho, 1}, {"engine crc32c", EngineCRC32C, 2}, {"engine sink", EngineSink, 3}, {"engine source", EngineSource, 4},
		{"code bad config", CodeBadConfig, 1}, {"code bad metadata", CodeBadMetadata, 2}, {"code DMA fault", CodeDMAFault, 3},
		{"code corrupt queue", CodeCorruptQueue, 4}, {"code bad record", CodeBadRecord, 5},
		{"control enable", ControlEnable, 1}, {"control reset", ControlReset, 2},
		{"status enabled", StatusEnabled, 1}, {"status error", StatusError, 2},
		{"qflag meta in BAR2", QFlagMetaInBAR2, 1},
	} {
		require.Equal(t, r.want, r.got, r.name)
	}
	require.LessOrEqual(t, uint64(QueueBase+MaxQueuePairs*QueueStride), uint64(bar0Size), "every queue block fits in BAR0")
	require.LessOrEqual(t, uint64((MaxQueuePairs+1)*sizeofMSIXEntry), uint64(msixPBAOff), "the MSI-X table fits before the PBA")
}

func TestRegisterDefaults(t *testing.T) {
	d, err := NewYCQ(Options{Queues: 3})
	require.NoError(t, err)
	defer d.Close()
	for _, r := range []struct {
		reg  uint64
		want uint32
	}{
		{RegID, RegIDValue}, {RegVersion, 1}, {RegFeatures, FeatureMetaInBAR2 | FeatureMSIX}, {RegMaxQueues, 3},
		{RegControl, 0}, {RegStatus, 0}, {RegErrorCode, 0}, {RegErrorQueue, NoQueue}, {RegEngine, EngineEcho},
		{RegErrorVector, 3}, {RegNumQueues, 3}, {RegBAR2Size, bar2Size},
		{queueReg(0, RegQVector), 0}, {queueReg(2, RegQVector), 2}, {queueReg(1, RegQDoorbell), 0},
	} {
		require.Equal(t, r.want, reg32(t, d, r.reg), "register %#x", r.reg)
	}
	// Read-only registers ignore writes; queue registers beyond the
	// device's pairs are not there.
	setReg32(t, d, RegID, 0)
	setReg32(t, d, RegMaxQueues, 60)
	setReg64(t, d, queueReg(5, RegQH2DMeta), 0x1234)
	require.Equal(t, uint32(RegIDValue), reg32(t, d, RegID))
	require.Equal(t, uint32(3), reg32(t, d, RegMaxQueues))
	require.Zero(t, reg64(t, d, queueReg(5, RegQH2DMeta)))
	// Queue registers take 32-bit halves of 64-bit values.
	setReg32(t, d, queueReg(1, RegQH2DData), 0xAABBCCDD)
	setReg32(t, d, queueReg(1, RegQH2DData)+4, 0x11223344)
	require.Equal(t, uint64(0x11223344AABBCCDD), reg64(t, d, queueReg(1, RegQH2DData)))
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
	require.Equal(t, uint64(bar0Size), d.Region(vfio.BAR0).Info.Size)
	require.Equal(t, vfio.RegionRead|vfio.RegionWrite|vfio.RegionMmap, d.Region(vfio.BAR2).Info.Flags)
	require.GreaterOrEqual(t, d.Region(vfio.BAR2).FD, 0)
	require.Zero(t, d.Region(vfio.ROMRegion).Info.Size)
	require.Equal(t, uint32(3), d.IRQ(vfio.IRQMSIX).Count)
	require.Zero(t, d.IRQ(vfio.IRQMSI).Count)
}
