package user_test

import (
	"github.com/ycq-dev/ycq/vfio/user"
)

// codec pairs one payload decoder with the encoder that inverts it, so the
// golden, malformed-input and fuzz tests drive every message the same way.
type codec struct {
	name   string
	cmd    user.Command
	decode func(p []byte) (any, error)
	encode func(b []byte, v any) ([]byte, error)
}

func dec[T any](f func([]byte) (T, error)) func([]byte) (any, error) {
	return func(p []byte) (any, error) {
		v, err := f(p)
		if err != nil {
			return nil, err
		}
		return v, nil
	}
}

func decW[T any](f func([]byte, user.DMAWire) (T, error), w user.DMAWire) func([]byte) (any, error) {
	return dec(func(p []byte) (T, error) { return f(p, w) })
}

// enc adapts an infallible method expression such as user.DMAMap.Encode.
func enc[T any](f func(T, []byte) []byte) func([]byte, any) ([]byte, error) {
	return func(b []byte, v any) ([]byte, error) { return f(v.(T), b), nil }
}

// encE adapts a fallible method expression such as user.RegionInfo.Encode.
func encE[T any](f func(T, []byte) ([]byte, error)) func([]byte, any) ([]byte, error) {
	return func(b []byte, v any) ([]byte, error) { return f(v.(T), b) }
}

func encW[T any](f func(T, []byte, user.DMAWire) ([]byte, error), w user.DMAWire) func([]byte, any) ([]byte, error) {
	return func(b []byte, v any) ([]byte, error) { return f(v.(T), b, w) }
}

// codecs lists every payload decoder. The fuzz targets select entries by
// index, so append new entries at the end to keep corpora meaningful.
var codecs = []codec{
	{"Version", user.CmdVersion, dec(user.DecodeVersion), enc(user.Version.Encode)},
	{"DMAMap", user.CmdDMAMap, dec(user.DecodeDMAMap), enc(user.DMAMap.Encode)},
	{"DMAUnmap", user.CmdDMAUnmap, dec(user.DecodeDMAUnmap), enc(user.DMAUnmap.Encode)},
	{"DeviceInfo", user.CmdDeviceGetInfo, dec(user.DecodeDeviceInfo), enc(user.DeviceInfo.Encode)},
	{"RegionInfoRequest", user.CmdDeviceGetRegionInfo, dec(user.DecodeRegionInfoRequest), encE(user.RegionInfo.Encode)},
	{"RegionInfoReply", user.CmdDeviceGetRegionInfo, dec(user.DecodeRegionInfoReply), encE(user.RegionInfo.Encode)},
	{"IRQInfo", user.CmdDeviceGetIRQInfo, dec(user.DecodeIRQInfo), enc(user.IRQInfo.Encode)},
	{"IRQSet", user.CmdDeviceSetIRQs, dec(user.DecodeIRQSet), encE(user.IRQSet.Encode)},
	{"RegionReadRequest", user.CmdRegionRead, dec(user.DecodeRegionReadRequest), enc(user.RegionAccess.Encode)},
	{"RegionReadReply", user.CmdRegionRead, dec(user.DecodeRegionReadReply), encE(user.RegionData.Encode)},
	{"RegionWriteRequest", user.CmdRegionWrite, dec(user.DecodeRegionWriteRequest), encE(user.RegionData.Encode)},
	{"RegionWriteReply", user.CmdRegionWrite, dec(user.DecodeRegionWriteReply), enc(user.RegionAccess.Encode)},
	{"RegionWriteMulti", user.CmdRegionWriteMulti, dec(user.DecodeRegionWriteMulti), enc(user.RegionWriteMulti.Encode)},
	{"RegionWriteMultiReply", user.CmdRegionWriteMulti, dec(user.DecodeRegionWriteMultiReply), enc(user.RegionWriteMultiReply.Encode)},
	{"DMAReadRequest/spec", user.CmdDMARead, decW(user.DecodeDMAReadRequest, user.DMAWireSpec), encW(user.DMAReadRequest.Encode, user.DMAWireSpec)},
	{"DMAReadRequest/qemu", user.CmdDMARead, decW(user.DecodeDMAReadRequest, user.DMAWireQEMU), encW(user.DMAReadRequest.Encode, user.DMAWireQEMU)},
	{"DMAReadReply/spec", user.CmdDMARead, decW(user.DecodeDMAReadReply, user.DMAWireSpec), encW(user.DMAReadReply.Encode, user.DMAWireSpec)},
	{"DMAReadReply/qemu", user.CmdDMARead, decW(user.DecodeDMAReadReply, user.DMAWireQEMU), encW(user.DMAReadReply.Encode, user.DMAWireQEMU)},
	{"DMAWriteRequest/spec", user.CmdDMAWrite, decW(user.DecodeDMAWriteRequest, user.DMAWireSpec), encW(user.DMAWriteRequest.Encode, user.DMAWireSpec)},
	{"DMAWriteRequest/qemu", user.CmdDMAWrite, decW(user.DecodeDMAWriteRequest, user.DMAWireQEMU), encW(user.DMAWriteRequest.Encode, user.DMAWireQEMU)},
	{"DMAWriteReply/spec", user.CmdDMAWrite, decW(user.DecodeDMAWriteReply, user.DMAWireSpec), encW(user.DMAWriteReply.Encode, user.DMAWireSpec)},
	{"DMAWriteReply/qemu", user.CmdDMAWrite, decW(user.DecodeDMAWriteReply, user.DMAWireQEMU), encW(user.DMAWriteReply.Encode, user.DMAWireQEMU)},
	{"DeviceFeature", user.CmdDeviceFeature, dec(user.DecodeDeviceFeature), encE(user.DeviceFeature.Encode)},
	{"MigDataRead", user.CmdMigDataRead, dec(user.DecodeMigDataRead), enc(user.MigDataRead.Encode)},
	{"MigDataReadReply", user.CmdMigDataRead, dec(user.DecodeMigDataReadReply), encE(user.MigData.Encode)},
	{"MigDataWrite", user.CmdMigDataWrite, dec(user.DecodeMigDataWrite), encE(user.MigData.Encode)},
}

// codecIndex returns the index of the named codec; it panics on a typo in a
// test table, which is a bug in the test.
func codecIndex(name string) int {
	for i, c := range codecs {
		if c.name == name {
			return i
		}
	}
	panic("no codec " + name)
}

func codecNamed(name string) codec { return codecs[codecIndex(name)] }
