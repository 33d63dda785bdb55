package devicemodel

import (
	"errors"
	"fmt"

	"github.com/ycq-dev/ycq/ring"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/ycqdev"
)

// space is an address space the device reaches queue memory through:
// host memory by IOVA (through the Host), or its own BAR2 memory by offset.
// Its word accesses (ring.Memory) are single, naturally aligned, with
// acquire/release order; package ring drives the queue metadata through
// them.
type space interface {
	ring.Memory
	Read(a uint64, b []byte) error
	Write(a uint64, b []byte) error
	// Slice returns [a, a+n) in place, when the space is directly
	// addressable; ok is false otherwise (use Read and Write).
	Slice(a uint64, n int) (b []byte, ok bool)
}

// hostSpace is host memory through the client's DMA mappings.
type hostSpace struct{ h Host }

func (s hostSpace) Load32(a uint64) (uint32, error)  { return s.h.Load32(vfio.IOVA(a)) }
func (s hostSpace) Store32(a uint64, v uint32) error { return s.h.Store32(vfio.IOVA(a), v) }
func (s hostSpace) Load64(a uint64) (uint64, error)  { return s.h.Load64(vfio.IOVA(a)) }
func (s hostSpace) Store64(a uint64, v uint64) error { return s.h.Store64(vfio.IOVA(a), v) }
func (s hostSpace) Read(a uint64, b []byte) error    { return s.h.Read(vfio.IOVA(a), b) }
func (s hostSpace) Write(a uint64, b []byte) error   { return s.h.Write(vfio.IOVA(a), b) }
func (s hostSpace) Slice(uint64, int) ([]byte, bool) { return nil, false }

// queueError is a device error about one queue: a code for ycqdev.RegErrorCode and
// the address or value for ycqdev.RegErrorAddr.
type queueError struct {
	code   uint32
	addr   uint64
	reason string
}

func (e *queueError) Error() string { return e.reason }

func qerr(code uint32, addr uint64, format string, args ...any) *queueError {
	return &queueError{code: code, addr: addr, reason: fmt.Sprintf(format, args...)}
}

// The device's side of each queue is package ring's single-agent code
// (ring.AgentConsumer for host-to-device, ring.AgentProducer for
// device-to-host) over a space: the device alone consumes or alone
// produces, with plain ordered loads and stores, as LAYOUT.md describes. A
// space is a ring.Memory; its Read, Write and Slice reach the payload.

// farConsumer is the device consuming the host-to-device queue.
type farConsumer struct {
	*ring.AgentConsumer
	data     space
	dataAddr uint64
	releases []func() // give back the pinned views of this generation
}

// slot is the address of the slot at the consumer's position.
func (f *farConsumer) slot() uint64 { return f.dataAddr + f.SlotOffset() }

// farProducer is the device producing into the device-to-host queue.
type farProducer struct {
	*ring.AgentProducer
	data     space
	dataAddr uint64
	releases []func()
}

// slot is the address of the slot at the producer's position.
func (f *farProducer) slot() uint64 { return f.dataAddr + f.SlotOffset() }

// deviceError turns what package ring reports about a queue whose metadata
// starts at metaAddr into the device error the registers show.
func deviceError(err error, metaAddr uint64) error {
	var (
		me *ring.MemoryError
		he *ring.HeaderError
		ce *ring.CorruptError
		qe *queueError
	)
	switch {
	case errors.As(err, &me):
		// Whatever the space said (a BAR2 offset out of range, a view
		// too short), the device could not reach the word: a DMA fault.
		return qerr(ycqdev.CodeDMAFault, me.Addr, "%v", me.Err)
	case errors.As(err, &qe):
		return qe
	case errors.As(err, &he):
		return qerr(ycqdev.CodeBadMetadata, metaAddr+he.Off, "%v", err)
	case errors.As(err, &ce):
		return qerr(ycqdev.CodeCorruptQueue, ce.Addr, "%v", err)
	}
	return qerr(ycqdev.CodeBadConfig, metaAddr, "%v", err)
}
