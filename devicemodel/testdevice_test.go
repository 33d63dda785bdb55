package devicemodel_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/vfio"
)

// testDevice is a small PCI function for the server tests:
//
//	config  256 bytes, the first 16 read-only
//	BAR0    4 KiB: scratch [0, 0x800), control registers from 0x800
//	BAR2    64 KiB at offset 64 KiB of a 128 KiB memfd, mappable in two
//	        sparse areas [0, 16 KiB) and [32 KiB, 64 KiB)
//	INTx 1, MSI-X 4, ERR 1, REQ 1; resettable
//
// The control registers let a client (in another process too) make the
// device use its Host: DMA between the scratch area and host memory, and
// interrupts.
type testDevice struct {
	mem *dma.Region // BAR2's backing

	mu       sync.Mutex
	cfg      [256]byte
	bar0     [4096]byte
	host     devicemodel.Host
	attaches int
	detaches int
	resets   int
}

const (
	bar0Size    = 4096
	bar2Size    = 64 << 10
	bar2FileOff = 64 << 10

	regDMAAddr = 0x800 // u64 IOVA
	regDMALen  = 0x808 // u32 bytes, at most 0x800
	regDMACmd  = 0x80c // u32 write: dmaCmd*
	regStatus  = 0x810 // u32 RO: status*
	regIRQ     = 0x814 // u32 write: index<<16 | vector
	regResets  = 0x818 // u32 RO: resets so far
	regFDs     = 0x81c // u32 RO: open descriptors of the device's process

	dmaCmdToHost   = 1 // Host.Write(addr, scratch[:len])
	dmaCmdFromHost = 2 // Host.Read(addr, scratch[:len])
	dmaCmdStore64  = 3 // Host.Store64(addr, scratch[0:8])
	dmaCmdLoad64   = 4 // scratch[0:8] = Host.Load64(addr)

	statusOK     = 0
	statusFault  = 1
	statusError  = 2
	statusNoHost = 3
)

var bar2Areas = []vfio.Area{{Offset: 0, Size: 16 << 10}, {Offset: 32 << 10, Size: 32 << 10}}

func newTestDevice() (*testDevice, error) {
	mem, err := dma.Memfd("test-bar2", bar2FileOff+bar2Size, dma.Options{})
	if err != nil {
		return nil, err
	}
	d := &testDevice{mem: mem}
	binary.LittleEndian.PutUint16(d.cfg[0:], 0x1234) // vendor
	binary.LittleEndian.PutUint16(d.cfg[2:], 0xabcd) // device
	d.cfg[0x0e] = 0                                  // header type 0
	d.cfg[0x3d] = 1                                  // INTA
	return d, nil
}

func (d *testDevice) Close() error { return d.mem.Close() }

func (d *testDevice) Info() vfio.DeviceInfo {
	return vfio.DeviceInfo{Reset: true, PCI: true, NumRegions: uint32(vfio.NumPCIRegions), NumIRQs: uint32(vfio.NumPCIIRQs)}
}

func (d *testDevice) Region(idx vfio.RegionIndex) devicemodel.Region {
	rw := vfio.RegionRead | vfio.RegionWrite
	switch idx {
	case vfio.ConfigRegion:
		return devicemodel.Region{Info: vfio.RegionInfo{Index: idx, Flags: rw, Size: 256}, FD: -1}
	case vfio.BAR0:
		return devicemodel.Region{Info: vfio.RegionInfo{Index: idx, Flags: rw, Size: bar0Size}, FD: -1}
	case vfio.BAR2:
		return devicemodel.Region{Info: vfio.RegionInfo{Index: idx, Flags: rw | vfio.RegionMmap, Size: bar2Size, Areas: bar2Areas},
			FD: d.mem.FD(), MmapOffset: bar2FileOff}
	}
	return devicemodel.Region{Info: vfio.RegionInfo{Index: idx}, FD: -1}
}

func (d *testDevice) IRQ(idx vfio.IRQIndex) vfio.IRQInfo {
	switch idx {
	case vfio.IRQINTx:
		return vfio.IRQInfo{Index: idx, Flags: vfio.IRQEventfd | vfio.IRQMaskable | vfio.IRQAutomasked, Count: 1}
	case vfio.IRQMSIX:
		return vfio.IRQInfo{Index: idx, Flags: vfio.IRQEventfd | vfio.IRQNoResize, Count: 4}
	case vfio.IRQErr, vfio.IRQReq:
		return vfio.IRQInfo{Index: idx, Flags: vfio.IRQEventfd, Count: 1}
	}
	return vfio.IRQInfo{Index: idx}
}

func (d *testDevice) ReadRegion(idx vfio.RegionIndex, off uint64, b []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch idx {
	case vfio.ConfigRegion:
		copy(b, d.cfg[off:])
	case vfio.BAR0:
		if off >= regDMAAddr {
			binary.LittleEndian.PutUint32(d.bar0[regResets:], uint32(d.resets))
			if n, err := testenv.CountFDs(); err == nil {
				binary.LittleEndian.PutUint32(d.bar0[regFDs:], uint32(n))
			}
		}
		copy(b, d.bar0[off:])
	case vfio.BAR2:
		copy(b, d.mem.Bytes()[bar2FileOff+off:])
	default:
		return fmt.Errorf("test device: read of region %v", idx)
	}
	return nil
}

func (d *testDevice) WriteRegion(idx vfio.RegionIndex, off uint64, b []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch idx {
	case vfio.ConfigRegion:
		if off < 16 {
			return nil // read-only header
		}
		copy(d.cfg[off:], b)
	case vfio.BAR0:
		copy(d.bar0[off:], b)
		if off <= regDMACmd && off+uint64(len(b)) >= regDMACmd+4 {
			d.dmaCommand(binary.LittleEndian.Uint32(d.bar0[regDMACmd:]))
		}
		if off <= regIRQ && off+uint64(len(b)) >= regIRQ+4 {
			v := binary.LittleEndian.Uint32(d.bar0[regIRQ:])
			d.setStatus(d.interrupt(vfio.IRQIndex(v>>16), v&0xffff))
		}
	case vfio.BAR2:
		copy(d.mem.Bytes()[bar2FileOff+off:], b)
	default:
		return fmt.Errorf("test device: write of region %v", idx)
	}
	return nil
}

// dmaCommand runs a DMA register command; d.mu held. It runs on the
// server's dispatcher goroutine, so message DMA from here proves the
// server keeps reading while a command waits for a DMA reply.
func (d *testDevice) dmaCommand(cmd uint32) {
	h := d.host
	if h == nil {
		binary.LittleEndian.PutUint32(d.bar0[regStatus:], statusNoHost)
		return
	}
	addr := vfio.IOVA(binary.LittleEndian.Uint64(d.bar0[regDMAAddr:]))
	n := min(binary.LittleEndian.Uint32(d.bar0[regDMALen:]), regDMAAddr)
	var err error
	switch cmd {
	case dmaCmdToHost:
		err = h.Write(addr, d.bar0[:n])
	case dmaCmdFromHost:
		err = h.Read(addr, d.bar0[:n])
	case dmaCmdStore64:
		err = h.Store64(addr, binary.LittleEndian.Uint64(d.bar0[:]))
	case dmaCmdLoad64:
		var v uint64
		v, err = h.Load64(addr)
		if err == nil {
			binary.LittleEndian.PutUint64(d.bar0[:], v)
		}
	default:
		err = fmt.Errorf("unknown DMA command %d", cmd)
	}
	d.setStatus(err)
}

func (d *testDevice) setStatus(err error) {
	s := uint32(statusOK)
	switch {
	case errors.Is(err, devicemodel.ErrDMAFault):
		s = statusFault
	case err != nil:
		s = statusError
	}
	binary.LittleEndian.PutUint32(d.bar0[regStatus:], s)
}

func (d *testDevice) interrupt(idx vfio.IRQIndex, vector uint32) error {
	if d.host == nil {
		return errors.New("no host")
	}
	return d.host.Interrupt(idx, vector)
}

func (d *testDevice) Reset() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.bar0 = [4096]byte{}
	d.resets++
	return nil
}

func (d *testDevice) Attach(h devicemodel.Host) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.host = h
	d.attaches++
}

func (d *testDevice) Detach() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.host = nil
	d.detaches++
}

// Host returns the attached host, for tests in this process.
func (d *testDevice) Host() devicemodel.Host {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.host
}

func (d *testDevice) counts() (attaches, detaches, resets int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attaches, d.detaches, d.resets
}
