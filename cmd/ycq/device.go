package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/internal/cpupin"
	"github.com/ycq-dev/ycq/vfio/user"
	"github.com/ycq-dev/ycq/ycqdev"
)

func deviceServe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq device serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "/tmp/ycq-device.sock", "UNIX socket to serve vfio-user on")
	engine := fs.String("engine", "crc32c", "what the device does with each record: echo, crc32c, sink or source (the host may change it)")
	queues := fs.Int("queues", 2, fmt.Sprintf("queue pairs, 1 to %d", ycqdev.MaxQueuePairs))
	loops := fs.Int("loops", 1, "polling loops (busy threads) serving the queue pairs: one per CPU the device may use")
	cpus := fs.String("cpus", "", "pin the polling loops, loop l to the l-th CPU of this list mod its length (e.g. 1 or 2-3); empty: unpinned")
	vendor := fs.String("vendor", "0x1234", "PCI vendor id")
	device := fs.String("device", "0x7963", "PCI device id")
	qemu := fs.Bool("qemu", false, "use QEMU's layout of DMA_READ/DMA_WRITE messages (only needed for guest memory without a descriptor)")
	verbose := fs.Bool("v", false, "log every connection and device event, not only problems")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *loops < 1 {
		return usagef("-loops %d: want at least 1", *loops)
	}
	pinned, err := cpupin.Parse(*cpus)
	if err != nil {
		return usagef("-cpus: %v", err)
	}
	id, ok := devicemodel.EngineID(*engine)
	if !ok {
		return usagef("-engine %q: want echo, crc32c, sink or source", *engine)
	}
	ident := devicemodel.DefaultIdentity
	for _, f := range []struct {
		s   string
		dst *uint16
		n   string
	}{{*vendor, &ident.VendorID, "-vendor"}, {*device, &ident.DeviceID, "-device"}} {
		v, err := strconv.ParseUint(f.s, 0, 16)
		if err != nil {
			return usagef("%s %q: want a 16-bit number", f.n, f.s)
		}
		*f.dst = uint16(v)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	dev, err := devicemodel.NewYCQ(devicemodel.Options{Queues: *queues, Loops: *loops, CPUs: pinned, Engine: id, Identity: ident, Log: log})
	if err != nil {
		return usageError{err}
	}
	defer dev.Close()
	l, err := listenUnix(*socket)
	if err != nil {
		return err
	}
	defer os.Remove(*socket)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := &devicemodel.ServerOptions{Logger: log}
	if *qemu {
		opts.DMAWire = user.DMAWireQEMU
	}
	log.Info("serving the ycq device", "socket", *socket, "queue_pairs", *queues, "engine", *engine,
		"id", fmt.Sprintf("%04x:%04x", ident.VendorID, ident.DeviceID))
	err = devicemodel.Serve(ctx, l, dev, opts)
	if ctx.Err() != nil {
		log.Info("stopped by signal")
		return nil
	}
	return err
}
