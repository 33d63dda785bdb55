package user

// DEVICE_GET_INFO (4) and DEVICE_FEATURE (16). DEVICE_RESET (13) has no
// payload either way.
//
// DEVICE_GET_INFO (4): request and reply have the same layout.

import (
	"math"

	"github.com/ycq-dev/ycq/internal/wirebuf"
)

const (
	sizeofDeviceInfo        = 16
	offDeviceInfoArgSz      = 0  // u32 argsz
	offDeviceInfoFlags      = 4  // u32 flags
	offDeviceInfoNumRegions = 8  // u32 num_regions
	offDeviceInfoNumIRQs    = 12 // u32 num_irqs
)

// DeviceFlags are the DEVICE_GET_INFO flags.
type DeviceFlags uint32

const (
	DeviceFlagReset DeviceFlags = 1 << 0 // VFIO_DEVICE_FLAGS_RESET: DEVICE_RESET is supported
	DeviceFlagPCI   DeviceFlags = 1 << 1 // VFIO_DEVICE_FLAGS_PCI
)

// DeviceInfo is the DEVICE_GET_INFO request and reply (struct
// vfio_user_device_info). In the request only ArgSz matters (QEMU sends 16).
type DeviceInfo struct {
	ArgSz      uint32 // argsz; 0 to encode means 16
	Flags      DeviceFlags
	NumRegions uint32 // num_regions: >= 9 for PCI
	NumIRQs    uint32 // num_irqs: 5 for PCI
}

// Encode appends the 16-byte DEVICE_GET_INFO payload.
func (d DeviceInfo) Encode(b []byte) []byte {
	b, s := wirebuf.Grow(b, sizeofDeviceInfo)
	le.PutUint32(s[offDeviceInfoArgSz:], orSize(d.ArgSz, sizeofDeviceInfo))
	le.PutUint32(s[offDeviceInfoFlags:], uint32(d.Flags))
	le.PutUint32(s[offDeviceInfoNumRegions:], d.NumRegions)
	le.PutUint32(s[offDeviceInfoNumIRQs:], d.NumIRQs)
	return b
}

// DecodeDeviceInfo decodes a DEVICE_GET_INFO request or reply: at least 16
// bytes (a longer request, as rust-vmm's 20 bytes, is accepted), argsz >= 16.
func DecodeDeviceInfo(p []byte) (DeviceInfo, error) {
	if err := needArgSz(CmdDeviceGetInfo, p, sizeofDeviceInfo); err != nil {
		return DeviceInfo{}, err
	}
	return DeviceInfo{
		ArgSz:      le.Uint32(p[offDeviceInfoArgSz:]),
		Flags:      DeviceFlags(le.Uint32(p[offDeviceInfoFlags:])),
		NumRegions: le.Uint32(p[offDeviceInfoNumRegions:]),
		NumIRQs:    le.Uint32(p[offDeviceInfoNumIRQs:]),
	}, nil
}

// ---------------------------------------------------------------------------
// DEVICE_FEATURE (16): request and reply have the same layout.

const (
	sizeofDeviceFeature   = 8
	offDeviceFeatureArgSz = 0 // u32 argsz
	offDeviceFeatureFlags = 4 // u32 flags: feature index and GET/SET/PROBE
	offDeviceFeatureData  = 8 // feature data, to the end of the payload
)

// FeatureFlags is the DEVICE_FEATURE flags word.
type FeatureFlags uint32

const (
	FeatureIndexMask FeatureFlags = 0xffff  // VFIO_DEVICE_FEATURE_MASK
	FeatureGet       FeatureFlags = 1 << 16 // VFIO_DEVICE_FEATURE_GET
	FeatureSet       FeatureFlags = 1 << 17 // VFIO_DEVICE_FEATURE_SET
	FeatureProbe     FeatureFlags = 1 << 18 // VFIO_DEVICE_FEATURE_PROBE
)

// Feature indexes vfio-user defines (all for migration).
const (
	FeatureMigration        = 1 // VFIO_DEVICE_FEATURE_MIGRATION
	FeatureMigDeviceState   = 2 // VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE
	FeatureDMALoggingStart  = 6 // VFIO_DEVICE_FEATURE_DMA_LOGGING_START
	FeatureDMALoggingStop   = 7 // VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP
	FeatureDMALoggingReport = 8 // VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT
)

// DeviceFeature is the DEVICE_FEATURE request and reply. The feature data
// is not interpreted here. QEMU 10.1 does not send this command, and
// neither Client nor devicemodel's server uses it (the server answers
// ENOSYS); the codec is here because this package is the whole wire format
// (see Scope in the package doc), decoded and fuzzed like the rest, for a
// peer that implements migration.
type DeviceFeature struct {
	ArgSz uint32 // argsz; 0 to encode means 8+len(Data)
	Flags FeatureFlags
	Data  []byte // aliases the payload when decoded
}

// Feature returns the feature index from Flags.
func (f DeviceFeature) Feature() uint16 { return uint16(f.Flags & FeatureIndexMask) }

// Encode appends the DEVICE_FEATURE payload.
func (f DeviceFeature) Encode(b []byte) ([]byte, error) {
	if uint64(len(f.Data)) > math.MaxUint32-sizeofDeviceFeature {
		return b, invalidf("feature data of %d bytes does not fit argsz", len(f.Data))
	}
	b, s := wirebuf.Grow(b, sizeofDeviceFeature)
	le.PutUint32(s[offDeviceFeatureArgSz:], orSize(f.ArgSz, uint32(sizeofDeviceFeature+len(f.Data))))
	le.PutUint32(s[offDeviceFeatureFlags:], uint32(f.Flags))
	return append(b, f.Data...), nil
}

// DecodeDeviceFeature decodes a DEVICE_FEATURE request or reply: at least 8
// bytes, argsz >= 8; the data is the rest of the payload.
func DecodeDeviceFeature(p []byte) (DeviceFeature, error) {
	if err := needArgSz(CmdDeviceFeature, p, sizeofDeviceFeature); err != nil {
		return DeviceFeature{}, err
	}
	f := DeviceFeature{
		ArgSz: le.Uint32(p[offDeviceFeatureArgSz:]),
		Flags: FeatureFlags(le.Uint32(p[offDeviceFeatureFlags:])),
	}
	if len(p) > offDeviceFeatureData {
		f.Data = p[offDeviceFeatureData:]
	}
	return f, nil
}
