package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/ycq-dev/ycq/devicemodel/usbdev"
)

// usbServe is `ycq usb serve`: the USB far processor (devicemodel/usbdev)
// served over usbredir on a UNIX socket, one connection at a time, for
// QEMU's `-chardev socket,id=ur,path=PATH -device usb-redir,chardev=ur`
// (QEMU connects; a reconnect gets a fresh device). SIGUSR1 unplugs the
// device from the current connection, or plugs it back in.
func usbServe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq usb serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "/tmp/ycq-usb.sock", "UNIX socket to serve usbredir on")
	pairs := fs.Int("pairs", usbdev.DefaultPairs, fmt.Sprintf("queue pairs (bulk endpoint pairs), 1 to %d", usbdev.MaxPairs))
	serial := fs.String("serial", usbdev.DefaultSerial, "iSerialNumber string")
	verbose := fs.Bool("v", false, "log refused packets and requests, not only connections")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *pairs < 1 || *pairs > usbdev.MaxPairs {
		return usagef("-pairs %d: want 1 to %d", *pairs, usbdev.MaxPairs)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	opt := usbdev.Options{Pairs: *pairs, Serial: *serial}
	if *verbose {
		opt.Logf = func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) }
	}
	l, err := listenUnix(*socket)
	if err != nil {
		return err
	}
	defer os.Remove(*socket)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	toggle := make(chan os.Signal, 1)
	signal.Notify(toggle, syscall.SIGUSR1)
	defer signal.Stop(toggle)

	var mu sync.Mutex
	var current *usbdev.Device
	go func() {
		<-ctx.Done()
		l.Close()
		mu.Lock()
		if current != nil {
			current.Close()
		}
		mu.Unlock()
	}()
	go func() {
		for range toggle {
			mu.Lock()
			d := current
			mu.Unlock()
			if d == nil {
				continue
			}
			if d.Connected() {
				log.Info("unplugging the device", "err", d.Unplug())
			} else {
				log.Info("plugging the device in", "err", d.Plug())
			}
		}
	}()
	log.Info("serving the ycq USB far processor over usbredir", "socket", *socket, "queue_pairs", *pairs,
		"id", fmt.Sprintf("%04x:%04x", usbdev.VendorID, usbdev.ProductID))
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				log.Info("stopped by signal")
				return nil
			}
			return err
		}
		d, err := usbdev.New(c, opt)
		if err != nil {
			c.Close()
			return err
		}
		mu.Lock()
		current = d
		mu.Unlock()
		log.Info("usbredir peer connected")
		err = d.Serve()
		mu.Lock()
		current = nil
		mu.Unlock()
		d.Close()
		ctr := d.Counters()
		if err != nil && !errors.Is(err, usbdev.ErrClosed) && !errors.Is(err, net.ErrClosed) {
			log.Warn("usbredir connection ended", "err", err)
		} else {
			log.Info("usbredir peer disconnected")
		}
		for i, p := range ctr.Pairs {
			log.Info("queue pair", "pair", i, "requests", p.Requests, "responses", p.Responses,
				"out_bytes", p.OutBytes, "in_bytes", p.InBytes, "bad_transfers", p.BadTransfers)
		}
		log.Info("device", "resets", ctr.Resets, "bad_control", ctr.BadControl, "bad_packets", ctr.BadPackets)
		if ctx.Err() != nil {
			return nil
		}
	}
}
