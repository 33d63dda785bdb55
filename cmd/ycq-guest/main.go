//go:build linux

// Command ycq-guest is the QEMU guest's /init for the ycq device: it loads
// the VFIO modules, finds the ycq device (a vfio-user-pci device served by
// the Go device model on the host), binds it to vfio-pci with the project's
// own binding code, opens it through kernel VFIO (group/container), and,
// depending on ycq.mode on the kernel command line:
//
//	probe  print the device, its MSI-X capability, bind it, map 2 MiB of DMA
//	demo   run the host driver's demo (ycq.size, ycq.queues, ycq.payload,
//	       ycq.engine) and print its table
//	test   probe, then stream with MSI-X through every queue pair with a
//	       device reset in the middle, then unbind, rebind and stream again;
//	       with ycq.resize=1 the queues are resizable and every pair is
//	       resized once in each stream, before the reset
//
// Every mode ends with one machine-readable line,
// "YCQ-RESULT {json}", and powers off.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ycq-dev/ycq/cmd/internal/demo"
	"github.com/ycq-dev/ycq/cmd/internal/guestbench"
	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/dma"
	"github.com/ycq-dev/ycq/hostdriver"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/qemu/guest"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/kernel"
	"github.com/ycq-dev/ycq/vfio/pci"
	"github.com/ycq-dev/ycq/ycqdev"
)

// result is the YCQ-RESULT line.
type result struct {
	Mode       string  `json:"mode"`
	Device     string  `json:"device,omitempty"`
	MSIX       int     `json:"msix_vectors"`
	Backend    string  `json:"backend,omitempty"`
	DMAMapped  bool    `json:"dma_mapped"`
	Records    int64   `json:"records"`
	Errors     int     `json:"errors"`
	Interrupts uint64  `json:"interrupts"`
	Doorbells  uint64  `json:"doorbells"`
	Resets     int     `json:"resets"`
	Rebinds    int     `json:"rebinds"`
	Resizes    int     `json:"resizes"`
	ResizeUs   float64 `json:"resize_us_max,omitempty"` // the longest resize, in microseconds
	GBps       float64 `json:"gb_per_s,omitempty"`
	Error      string  `json:"error,omitempty"`
}

func main() {
	guest.Main(func() error {
		res := result{Mode: guest.Param("ycq.mode", "probe")}
		err := run(&res)
		if err != nil {
			res.Error = err.Error()
			res.Errors++
		}
		guest.PrintResult(res)
		return err
	})
}

func run(res *result) error {
	fmt.Printf("YCQ-GUEST kernel %s\n", guest.KernelRelease())
	// Reserve huge pages, so the driver's DMA memory is physically
	// contiguous in 2 MiB pieces (QEMU still maps it a 4 KiB page at a
	// time, and the device model coalesces the pages again).
	if err := os.WriteFile("/proc/sys/vm/nr_hugepages", []byte(guest.Param("ycq.hugepages", "64")), 0o644); err != nil {
		fmt.Printf("YCQ-GUEST no huge pages: %v\n", err)
	}
	mods, err := guest.LoadModules(guest.ModuleList)
	for _, m := range mods {
		fmt.Printf("YCQ-GUEST module %s: %v\n", filepath.Base(m.File), errString(m.Err))
	}
	if err != nil {
		return err
	}
	addr, err := guestbench.FindYCQ(pci.DefaultSysRoot, func(format string, args ...any) {
		fmt.Printf("YCQ-GUEST "+format+"\n", args...)
	})
	if err != nil {
		return err
	}
	res.Device = addr
	if res.MSIX, err = msix(addr); err != nil {
		return err
	}
	prev, err := pci.Bind(pci.DefaultSysRoot, addr)
	if err != nil {
		return fmt.Errorf("bind %s: %w", addr, err)
	}
	fmt.Printf("YCQ-GUEST bound %s to vfio-pci (was %q)\n", addr, prev)
	dev, err := kernel.Open(addr, kernel.Options{})
	if err != nil {
		return fmt.Errorf("open %s through VFIO: %w", addr, err)
	}
	defer func() {
		if dev != nil {
			dev.Close()
		}
	}()
	res.Backend = dev.Backend().String()
	fmt.Printf("YCQ-GUEST opened %s: backend %s, IOMMU group %d\n", addr, res.Backend, dev.IOMMUGroup())
	for _, idx := range []vfio.RegionIndex{vfio.BAR0, vfio.BAR2, vfio.BAR4, vfio.ConfigRegion} {
		ri, err := dev.RegionInfo(idx)
		if err != nil {
			return err
		}
		fmt.Printf("YCQ-GUEST region %v: %d bytes, flags %#x, mappable %v\n", idx, ri.Size, uint32(ri.Flags), ri.Mappable())
	}
	if err := probeDMA(dev); err != nil {
		return err
	}
	res.DMAMapped = true

	switch res.Mode {
	case "probe":
		return nil
	case "demo":
		return runDemo(dev, res)
	case "test":
		if err := streamWithReset(dev, res); err != nil {
			return err
		}
		dev.Close()
		dev = nil
		if err := rebind(addr, res); err != nil {
			return err
		}
		if dev, err = kernel.Open(addr, kernel.Options{}); err != nil {
			return fmt.Errorf("reopen after rebind: %w", err)
		}
		return streamWithReset(dev, res)
	}
	return fmt.Errorf("unknown ycq.mode %q", res.Mode)
}

func errString(err error) string {
	if err == nil {
		return "loaded"
	}
	return err.Error()
}

// msix reads the device's MSI-X capability from sysfs config space.
func msix(addr string) (int, error) {
	cfg, err := os.ReadFile(filepath.Join(pci.DefaultSysRoot, "bus/pci/devices", addr, "config"))
	if err != nil {
		return 0, err
	}
	for p, n := int(cfg[0x34]), 0; p != 0 && p+12 <= len(cfg) && n < 48; p, n = int(cfg[p+1]), n+1 {
		if cfg[p] == 0x11 {
			ctl := binary.LittleEndian.Uint16(cfg[p+2:])
			table := binary.LittleEndian.Uint32(cfg[p+4:])
			pba := binary.LittleEndian.Uint32(cfg[p+8:])
			vectors := int(ctl&0x7FF) + 1
			fmt.Printf("YCQ-GUEST MSI-X capability at %#x: %d vectors, table BAR%d+%#x, PBA BAR%d+%#x\n",
				p, vectors, table&7, table&^7, pba&7, pba&^7)
			return vectors, nil
		}
	}
	return 0, errors.New("no MSI-X capability in config space")
}

// probeDMA maps 2 MiB through the IOMMU and unmaps it.
func probeDMA(dev vfio.Device) error {
	r, err := dma.Anonymous(dma.HugePageSize, dma.Options{Huge: true})
	if err != nil {
		return err
	}
	defer r.Close()
	const iova = 1 << 32
	if err := dev.MapDMA(iova, r, 0, uint64(r.Size()), vfio.DMARead|vfio.DMAWrite); err != nil {
		return fmt.Errorf("map 2 MiB of DMA: %w", err)
	}
	if err := dev.UnmapDMA(iova, uint64(r.Size())); err != nil {
		return fmt.Errorf("unmap: %w", err)
	}
	fmt.Printf("YCQ-GUEST mapped and unmapped %d bytes at IOVA %#x through the IOMMU (%s)\n", r.Size(), iova, r)
	return nil
}

func runDemo(dev vfio.Device, res *result) error {
	size, _ := strconv.ParseInt(guest.Param("ycq.size", "67108864"), 10, 64)
	queues, _ := strconv.Atoi(guest.Param("ycq.queues", "2"))
	payload, _ := strconv.Atoi(guest.Param("ycq.payload", "4096"))
	engine, ok := devicemodel.EngineID(guest.Param("ycq.engine", "crc32c"))
	if !ok {
		return errors.New("bad ycq.engine")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r, err := demo.Run(ctx, dev, demo.Options{Size: size, Queues: queues, Engine: engine, Payload: payload,
		Driver: hostdriver.Config{Huge: true}})
	if err != nil {
		return err
	}
	fmt.Println("YCQ-TABLE-BEGIN")
	r.Table(os.Stdout)
	fmt.Println("YCQ-TABLE-END")
	res.Records += r.Records
	res.Interrupts += r.Interrupts
	res.Doorbells += r.Doorbells
	res.GBps = float64(r.Bytes) / r.Elapsed.Seconds() / 1e9
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// streamWithReset sends 6000 requests through every queue pair with the
// crc32c engine, checking every response, with a driver reset in the
// middle of the traffic.
func streamWithReset(dev vfio.Device, res *result) error {
	resizable := guest.Param("ycq.resize", "0") == "1"
	drv, err := hostdriver.Open(dev, hostdriver.Config{Engine: ycqdev.EngineCRC32C, Slots: 512, SlotSize: 4096, Huge: true,
		Resizable: resizable, ResizeDeadline: time.Minute})
	if err != nil {
		return err
	}
	defer drv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 6000
	var wg sync.WaitGroup
	errs := make([]error, len(drv.Pairs()))
	counts := make([]int64, len(drv.Pairs()))
	var resetOnce, resizeOnce sync.Once
	var resizer sync.WaitGroup
	var resizeErr error
	var resized atomic.Bool // the reset waits for the resize: Reset excludes it, and it waits for this pair's responses
	resized.Store(!resizable)
	for i, p := range drv.Pairs() {
		wg.Go(func() {
			counts[i], errs[i] = stream(ctx, drv, p, n, func(got int64) {
				if resizable && i == 0 && got >= n/4 {
					// Resize every pair while they stream, from another
					// goroutine: a resize waits for the responses this
					// one takes.
					resizeOnce.Do(func() {
						resizer.Go(func() {
							defer resized.Store(true)
							resizeErr = resizeAll(ctx, drv, 256, res)
						})
					})
				}
				if i == 0 && got >= n/2 && resized.Load() {
					resetOnce.Do(func() {
						if err := drv.Reset(); err != nil {
							errs[i] = fmt.Errorf("reset: %w", err)
						}
						res.Resets++
						fmt.Printf("YCQ-GUEST device reset after %d responses on pair 0\n", got)
					})
				}
			})
		})
	}
	wg.Wait()
	resizer.Wait()
	errs = append(errs, resizeErr)
	for i, p := range drv.Pairs() {
		st := p.Stats()
		res.Records += counts[i]
		res.Interrupts += st.Interrupts
		res.Doorbells += st.Doorbells
		fmt.Printf("YCQ-GUEST pair %d: %d records checked, %d interrupts, %d doorbells\n", i, counts[i], st.Interrupts, st.Doorbells)
	}
	return errors.Join(errs...)
}

// resizeAll resizes every pair of drv to slots slots and reports it.
func resizeAll(ctx context.Context, drv *hostdriver.Driver, slots int, res *result) error {
	for _, p := range drv.Pairs() {
		start := time.Now()
		if err := p.Resize(ctx, slots); err != nil {
			return fmt.Errorf("resize pair %d: %w", p.Index(), err)
		}
		took := time.Since(start)
		st := p.ResizeStats()
		res.Resizes++
		res.ResizeUs = max(res.ResizeUs, float64(took.Microseconds()))
		fmt.Printf("YCQ-GUEST pair %d resized to generation %d of %d slots in %v\n", p.Index(), st.Generation, st.Slots, took.Round(time.Microsecond))
	}
	return nil
}

// stream sends n 200-byte requests (the demo's request records) on p and
// checks each CRC response in order; after each response it calls
// at(count).
func stream(ctx context.Context, drv *hostdriver.Driver, p *hostdriver.Pair, n int64, at func(int64)) (int64, error) {
	req := func(b []byte, seq int64) {
		demo.Requests.Fill(b, record.Header{Seq: uint64(seq), Producer: uint32(p.Index())})
	}
	var sendErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		for seq := int64(0); seq < n; seq++ {
			r, err := p.Reserve(ctx, 1)
			if err == nil {
				req(r.Slot(0)[:200], seq)
				err = r.Publish(0, 200)
			}
			if err != nil {
				sendErr = err
				return
			}
		}
	})
	want := make([]byte, 200)
	var got int64
	for got < n {
		r, err := p.Receive(ctx, 16)
		if err != nil {
			wg.Wait()
			return got, errors.Join(fmt.Errorf("pair %d after %d responses: %w", p.Index(), got, err), sendErr)
		}
		for i := range r.Len() {
			b, err := r.Slot(i)
			req(want, got)
			if err != nil || len(b) != 8 || binary.LittleEndian.Uint32(b) != crc32.Checksum(want, castagnoli) {
				wg.Wait()
				return got, fmt.Errorf("pair %d: response %d wrong (%v)", p.Index(), got, err)
			}
			got++
		}
		if err := r.ReleaseAll(); err != nil {
			wg.Wait()
			return got, err
		}
		at(got)
	}
	wg.Wait()
	return got, sendErr
}

// rebind gives the device back to no driver and binds it to vfio-pci again.
func rebind(addr string, res *result) error {
	now, err := pci.Unbind(pci.DefaultSysRoot, addr)
	if err != nil {
		return fmt.Errorf("unbind: %w", err)
	}
	fmt.Printf("YCQ-GUEST unbound %s from vfio-pci (now %q)\n", addr, now)
	prev, err := pci.Bind(pci.DefaultSysRoot, addr)
	if err != nil {
		return fmt.Errorf("rebind: %w", err)
	}
	fmt.Printf("YCQ-GUEST rebound %s to vfio-pci (was %q)\n", addr, prev)
	res.Rebinds++
	return nil
}
