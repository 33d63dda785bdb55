package ycqdev

import (
	"testing"

	"github.com/stretchr/testify/require"
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
		{"WAKEUPS", RegWakeups, 0x68}, {"QUEUE_BASE", QueueBase, 0x100}, {"QUEUE_STRIDE", QueueStride, 0x80}, {"max slots", MaxSlots, 1 << 16},
		{"Q_H2D_META", RegQH2DMeta, 0x00}, {"Q_H2D_DATA", RegQH2DData, 0x08}, {"Q_D2H_META", RegQD2HMeta, 0x10},
		{"Q_D2H_DATA", RegQD2HData, 0x18}, {"Q_SLOTS", RegQSlots, 0x20}, {"Q_SLOT_SIZE", RegQSlotSize, 0x24},
		{"Q_FLAGS", RegQFlags, 0x28}, {"Q_VECTOR", RegQVector, 0x2C}, {"Q_DOORBELL", RegQDoorbell, 0x30},
		{"Q_STATUS", RegQStatus, 0x34}, {"Q_RECORDS", RegQRecords, 0x38},
		{"Q_RESIZE", RegQResize, 0x40}, {"Q_RESIZE_ACK", RegQResizeAck, 0x44}, {"Q_GENERATION", RegQGeneration, 0x48},
		{"feature meta in BAR2", FeatureMetaInBAR2, 1}, {"feature MSI-X", FeatureMSIX, 2}, {"feature resize", FeatureResize, 4},
		{"queue 3 doorbell", QueueReg(3, RegQDoorbell), 0x100 + 3*0x80 + 0x30},
		{"ID value", RegIDValue, 0x44514359}, {"BAR0 size", BAR0Size, 16384}, {"BAR2 size", BAR2Size, 1 << 20},
		{"BAR4 size", BAR4Size, 4096}, {"MSI-X PBA", MSIXPBAOff, 2048}, {"max queue pairs", MaxQueuePairs, 64},
		{"engine echo", EngineEcho, 1}, {"engine crc32c", EngineCRC32C, 2}, {"engine sink", EngineSink, 3}, {"engine source", EngineSource, 4},
		{"code bad config", CodeBadConfig, 1}, {"code bad metadata", CodeBadMetadata, 2}, {"code DMA fault", CodeDMAFault, 3},
		{"code corrupt queue", CodeCorruptQueue, 4}, {"code bad record", CodeBadRecord, 5},
		{"control enable", ControlEnable, 1}, {"control reset", ControlReset, 2},
		{"status enabled", StatusEnabled, 1}, {"status error", StatusError, 2},
		{"qflag meta in BAR2", QFlagMetaInBAR2, 1},
	} {
		require.Equal(t, r.want, r.got, r.name)
	}
	require.LessOrEqual(t, uint64(QueueBase+MaxQueuePairs*QueueStride), uint64(BAR0Size), "every queue block fits in BAR0")
	require.Less(t, uint64(RegQGeneration+4), uint64(QueueStride), "a queue block's registers fit in its stride")
	require.LessOrEqual(t, uint64((MaxQueuePairs+1)*SizeofMSIXEntry), uint64(MSIXPBAOff), "the MSI-X table fits before the PBA")
}
