package devicemodel

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/ycq-dev/ycq/ycqdev"
)

// Engine is what the device does with each record the host sends it: a
// request becomes zero, one or more responses, each written straight into a
// slot of the device-to-host queue.
type Engine interface {
	// Responses says how many responses request in asks for.
	Responses(in []byte) int
	// Respond writes response k of request in into out (a whole slot of the
	// device-to-host queue) and returns its length. An error stops the
	// queue pair with ycqdev.CodeBadRecord.
	Respond(in []byte, k int, out []byte) (int, error)
}

// Engines returns the built-in engines by ycqdev.RegEngine id.
func Engines() map[uint32]Engine {
	return map[uint32]Engine{
		ycqdev.EngineEcho:   echoEngine{},
		ycqdev.EngineCRC32C: crcEngine{},
		ycqdev.EngineSink:   sinkEngine{},
		ycqdev.EngineSource: sourceEngine{},
	}
}

// EngineName names a ycqdev.RegEngine id.
func EngineName(id uint32) string {
	switch id {
	case ycqdev.EngineEcho:
		return "echo"
	case ycqdev.EngineCRC32C:
		return "crc32c"
	case ycqdev.EngineSink:
		return "sink"
	case ycqdev.EngineSource:
		return "source"
	}
	return fmt.Sprintf("engine %d", id)
}

// EngineID is the ycqdev.RegEngine id of a built-in engine's name.
func EngineID(name string) (uint32, bool) {
	for _, id := range []uint32{ycqdev.EngineEcho, ycqdev.EngineCRC32C, ycqdev.EngineSink, ycqdev.EngineSource} {
		if EngineName(id) == name {
			return id, true
		}
	}
	return 0, false
}

type echoEngine struct{}

func (echoEngine) Responses([]byte) int { return 1 }
func (echoEngine) Respond(in []byte, _ int, out []byte) (int, error) {
	if len(in) > len(out) {
		return 0, fmt.Errorf("echo: %d-byte request, %d-byte response slot", len(in), len(out))
	}
	return copy(out, in), nil
}

// CRCResponseSize is the crc32c engine's response: the CRC-32C (Castagnoli)
// of the request, then the request's length, both u32 little-endian.
const CRCResponseSize = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type crcEngine struct{}

func (crcEngine) Responses([]byte) int { return 1 }
func (crcEngine) Respond(in []byte, _ int, out []byte) (int, error) {
	if len(out) < CRCResponseSize {
		return 0, fmt.Errorf("crc32c: %d-byte response slot, %d needed", len(out), CRCResponseSize)
	}
	binary.LittleEndian.PutUint32(out[0:], crc32.Checksum(in, castagnoli))
	binary.LittleEndian.PutUint32(out[4:], uint32(len(in)))
	return CRCResponseSize, nil
}

type sinkEngine struct{}

func (sinkEngine) Responses([]byte) int                     { return 0 }
func (sinkEngine) Respond([]byte, int, []byte) (int, error) { return 0, nil }

// SourceMax bounds the responses one source request may ask for.
const SourceMax = 1 << 20

type sourceEngine struct{}

// Responses reads the request's first u32; a shorter request, or 0, asks
// for one.
func (sourceEngine) Responses(in []byte) int {
	if len(in) < 4 {
		return 1
	}
	return int(min(max(binary.LittleEndian.Uint32(in), 1), SourceMax))
}

// Respond fills a whole slot: response k as a u64 at offset 0, then a
// pattern derived from it, so the host can check every byte.
func (sourceEngine) Respond(_ []byte, k int, out []byte) (int, error) {
	SourcePattern(out, uint64(k))
	return len(out), nil
}

// SourcePattern writes the source engine's response number k into b.
func SourcePattern(b []byte, k uint64) {
	x := k*0x9E3779B97F4A7C15 + 1
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], x)
		x = x*6364136223846793005 + 1442695040888963407
	}
	if len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, k)
	}
}
