package devicemodel

import (
	"encoding/binary"
	"sync"

	"github.com/ycq-dev/ycq/ycqdev"
)

// The PCI configuration space of the ycq device: a type 0 header, a PCI
// Express capability and an MSI-X capability. This file is its only layout
// definition; offsets are the PCI specification's.
const (
	cfgSize = 4096 // PCI Express: 4 KiB, extended space zero (no extended capabilities)

	cfgVendorID      = 0x00 // u16
	cfgDeviceID      = 0x02 // u16
	cfgCommand       = 0x04 // u16
	cfgStatus        = 0x06 // u16
	cfgRevision      = 0x08 // u8
	cfgClassProgIF   = 0x09 // u8
	cfgClassSub      = 0x0A // u8
	cfgClassBase     = 0x0B // u8
	cfgHeaderType    = 0x0E // u8
	cfgBAR0          = 0x10 // u32 x 6
	cfgSubsysVendor  = 0x2C // u16
	cfgSubsysID      = 0x2E // u16
	cfgROM           = 0x30 // u32
	cfgCapPtr        = 0x34 // u8
	cfgInterruptLine = 0x3C // u8
	cfgInterruptPin  = 0x3D // u8

	capPCIe = 0x40 // PCI Express capability, version 2: 0x3C bytes
	capMSIX = 0x80 // MSI-X capability: 12 bytes

	capIDPCIe = 0x10
	capIDMSIX = 0x11

	// Within the PCI Express capability.
	pcieCaps   = 0x02 // u16 version 2, device/port type 0 (endpoint)
	pcieDevCap = 0x04 // u32
	// Within the MSI-X capability.
	msixControl = 0x02 // u16 table size - 1 (bits 0-10), function mask (14), enable (15)
	msixTable   = 0x04 // u32 table offset | BIR
	msixPBA     = 0x08 // u32 PBA offset | BIR

	statusCapList = 1 << 4

	commandIO           = 1 << 0
	commandMemory       = 1 << 1
	commandBusMaster    = 1 << 2
	commandSERR         = 1 << 8
	commandINTxDisable  = 1 << 10
	commandWritable     = commandIO | commandMemory | commandBusMaster | 1<<6 | commandSERR | commandINTxDisable
	msixControlEnable   = 1 << 15
	msixControlMask     = 1 << 14
	msixControlWritable = msixControlEnable | msixControlMask

	barMem64       = 0b100 // memory BAR, 64-bit
	barPrefetch    = 1 << 3
	headerTypeZero = 0
)

// Identity is what a device says it is in config space.
type Identity struct {
	VendorID, DeviceID   uint16
	SubsysVendor, Subsys uint16
	Class                uint32 // base class, subclass, programming interface: 0xBBSSPP
	Revision             uint8
}

// DefaultIdentity clashes with nothing QEMU emulates: vendor 0x1234 (QEMU's
// own test vendor, whose only other device is the Bochs display 1234:1111),
// device 0x7963 ("yc"), class 0xff0000 (unassigned).
var DefaultIdentity = Identity{VendorID: 0x1234, DeviceID: 0x7963, SubsysVendor: 0x1234, Subsys: 0x0001, Class: 0xff0000, Revision: 1}

// bar describes one BAR the device implements.
type bar struct {
	index  int // 0, 2 or 4; a 64-bit BAR also takes index+1
	size   uint64
	is64   bool
	prefet bool
}

var deviceBARs = []bar{
	{index: 0, size: ycqdev.BAR0Size, is64: true},
	{index: 2, size: ycqdev.BAR2Size, is64: true, prefet: true},
	{index: 4, size: ycqdev.BAR4Size},
}

// configSpace is the emulated config space. Writes go through write, which
// keeps read-only fields read-only and sizes BARs the standard way.
type configSpace struct {
	mu  sync.Mutex
	b   [cfgSize]byte
	id  Identity
	vec int // MSI-X vectors
}

func newConfigSpace(id Identity, vectors int) *configSpace {
	c := &configSpace{id: id, vec: vectors}
	c.reset()
	return c
}

func (c *configSpace) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.b[:])
	le := binary.LittleEndian
	le.PutUint16(c.b[cfgVendorID:], c.id.VendorID)
	le.PutUint16(c.b[cfgDeviceID:], c.id.DeviceID)
	le.PutUint16(c.b[cfgStatus:], statusCapList)
	c.b[cfgRevision] = c.id.Revision
	c.b[cfgClassProgIF] = byte(c.id.Class)
	c.b[cfgClassSub] = byte(c.id.Class >> 8)
	c.b[cfgClassBase] = byte(c.id.Class >> 16)
	c.b[cfgHeaderType] = headerTypeZero
	for _, b := range deviceBARs {
		le.PutUint32(c.b[cfgBAR0+4*b.index:], b.typeBits())
	}
	le.PutUint16(c.b[cfgSubsysVendor:], c.id.SubsysVendor)
	le.PutUint16(c.b[cfgSubsysID:], c.id.Subsys)
	c.b[cfgCapPtr] = capPCIe
	c.b[cfgInterruptPin] = 1 // INTA

	c.b[capPCIe] = capIDPCIe
	c.b[capPCIe+1] = capMSIX
	le.PutUint16(c.b[capPCIe+pcieCaps:], 0x0002)   // version 2, endpoint
	le.PutUint32(c.b[capPCIe+pcieDevCap:], 0x0000) // max payload 128 bytes

	c.b[capMSIX] = capIDMSIX
	c.b[capMSIX+1] = 0 // last capability
	le.PutUint16(c.b[capMSIX+msixControl:], uint16(c.vec-1))
	le.PutUint32(c.b[capMSIX+msixTable:], ycqdev.MSIXTableOff|4)
	le.PutUint32(c.b[capMSIX+msixPBA:], ycqdev.MSIXPBAOff|4)
}

func (b bar) typeBits() uint32 {
	var t uint32
	if b.is64 {
		t |= barMem64
	}
	if b.prefet {
		t |= barPrefetch
	}
	return t
}

func (c *configSpace) read(off uint64, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	copy(p, c.b[off:])
}

// write applies a config write byte by byte through the write masks.
func (c *configSpace) write(off uint64, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range p {
		c.writeByte(int(off)+i, v)
	}
}

func (c *configSpace) writeByte(o int, v byte) {
	switch {
	case o == cfgCommand || o == cfgCommand+1:
		mask := byte(uint16(commandWritable) >> (8 * (o - cfgCommand)))
		c.b[o] = c.b[o]&^mask | v&mask
	case o == cfgStatus+1:
		// Error bits are write-one-to-clear; none are ever set here.
	case o >= cfgBAR0 && o < cfgBAR0+24:
		c.writeBAR(o, v)
	case o == cfgInterruptLine:
		c.b[o] = v
	case o == capMSIX+msixControl+1:
		mask := byte(msixControlWritable >> 8)
		c.b[o] = c.b[o]&^mask | v&mask
	case o == cfgROM, o == cfgROM+1, o == cfgROM+2, o == cfgROM+3:
		// No expansion ROM: reads stay zero, also after sizing.
	}
}

// writeBAR stores one byte of a BAR register, keeping the type bits and the
// address bits below the BAR's size zero, so that writing all ones reads
// back the size mask.
func (c *configSpace) writeBAR(o int, v byte) {
	reg := (o - cfgBAR0) / 4
	for _, b := range deviceBARs {
		var mask uint64
		switch reg {
		case b.index:
			mask = ^(b.size - 1) & 0xFFFFFFF0
			if !b.is64 {
				mask &= 0xFFFFFFFF
			}
		case b.index + 1:
			if !b.is64 {
				continue
			}
			mask = (^(b.size - 1)) >> 32
		default:
			continue
		}
		shift := 8 * ((o - cfgBAR0) % 4)
		m := byte(mask >> shift)
		c.b[o] = c.b[o]&^m | v&m
		return
	}
	// Not an implemented BAR: reads zero.
}

// busMaster reports whether the host let the device do DMA.
func (c *configSpace) busMaster() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.LittleEndian.Uint16(c.b[cfgCommand:])&commandBusMaster != 0
}
