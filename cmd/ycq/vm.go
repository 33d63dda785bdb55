package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/devicemodel/usbdev"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/qemu"
	"github.com/ycq-dev/ycq/vfio/user"
)

// vmRun is `ycq vm run` (`make run-qemu`): the demo with the host driver
// inside a QEMU guest on kernel VFIO, and the device model here behind
// vfio-user-pci; with -mode usb, the same demo over USB: the gousb host
// driver in the guest, the USB device model here behind usb-redir on the
// guest's emulated xHCI.
func vmRun(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq vm run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "demo", "what the guest does: demo, probe or test (PCIe), or usb (the demo over USB)")
	size := fs.String("size", "64MiB", "bytes the demo streams (software emulation: keep it modest)")
	queues := fs.Int("queues", 2, "queue pairs")
	payload := fs.String("payload", "4KiB", "bytes a request")
	engine := fs.String("engine", "crc32c", "echo or crc32c")
	console := fs.Bool("console", false, "show the guest's serial console as it runs")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	total, err := parseSize(*size)
	if err != nil {
		return usagef("-size: %v", err)
	}
	rec, err := parseSize(*payload)
	if err != nil {
		return usagef("-payload: %v", err)
	}
	if _, ok := devicemodel.EngineID(*engine); !ok {
		return usagef("-engine %q", *engine)
	}
	if *mode == "usb" {
		if err := checkUSBDemo(total, rec, *queues, *engine); err != nil {
			return err
		}
	}
	h, done, err := startGuestHost(*timeout, "ycq-vm-", stderr)
	if err != nil {
		return err
	}
	defer done()
	ctx, env, dir, log := h.ctx, h.env, h.dir, h.log
	params := []string{
		fmt.Sprintf("ycq.size=%d", total), fmt.Sprintf("ycq.queues=%d", *queues),
		fmt.Sprintf("ycq.payload=%d", rec), "ycq.engine=" + *engine,
	}
	var consoleW io.Writer
	if *console {
		consoleW = stderr
	}
	if *mode == "usb" {
		return vmRunUSB(ctx, env, dir, *queues, params, consoleW, log, stdout, stderr)
	}

	sock := filepath.Join(dir, "device.sock")
	srv, stopDevice, err := serveVFIOUser(sock, *queues, log)
	if err != nil {
		return err
	}
	defer stopDevice()
	cfg := qemu.VMConfig{Socket: sock, Mode: *mode, Params: params, Console: consoleW}
	fmt.Fprintf(stdout, "booting %s guest (QEMU %s, kernel %s) with the ycq device on vfio-user-pci...\n", *mode, filepath.Base(env.QEMU), env.KernelVersion)
	res, err := env.RunVM(ctx, cfg)
	if res != nil {
		printGuest(stdout, res)
		st := srv.DMAStats()
		fmt.Fprintf(stdout, "guest ran %v; device model: %d DMA_MAP messages\n", res.Duration.Round(time.Millisecond), st.Maps)
	}
	showConsole(stderr, res, err, *console)
	return err
}

// checkUSBDemo checks the USB demo's work: what the USB guest's demo
// takes (echo or crc32c, whole records of a multiple of 8 bytes that hold
// the record header) and the USB device model gives.
func checkUSBDemo(total, rec int64, queues int, engine string) error {
	if engine != "echo" && engine != "crc32c" {
		return usagef("-engine %q: the USB demo runs echo or crc32c", engine)
	}
	if rec < record.PlainSize || rec%8 != 0 || rec > usbdev.MaxRecordSize {
		return usagef("-payload %d: over USB, a multiple of 8 from %d to %d bytes", rec, record.PlainSize, usbdev.MaxRecordSize)
	}
	if queues < 1 || queues > usbdev.MaxPairs {
		return usagef("-queues %d: the USB device has 1 to %d pairs", queues, usbdev.MaxPairs)
	}
	if total < rec {
		return usagef("-size %d: at least one record of %d bytes", total, rec)
	}
	return nil
}

// vmRunUSB is `ycq vm run -mode usb`: the USB device model served here,
// the USB guest's demo mode with params.
func vmRunUSB(ctx context.Context, env *qemu.Env, dir string, queues int, params []string, console io.Writer, log *slog.Logger, stdout, stderr io.Writer) error {
	um, err := serveUSB(filepath.Join(dir, "usbredir.sock"), queues, log)
	if err != nil {
		return err
	}
	defer um.Close()
	cfg := qemu.USBVMConfig{Socket: um.Socket, Mode: "demo", Params: params, Console: console}
	fmt.Fprintf(stdout, "booting USB demo guest (QEMU %s, kernel %s) with the ycq USB device on qemu-xhci + usb-redir...\n",
		filepath.Base(env.QEMU), env.KernelVersion)
	res, err := env.RunUSBVM(ctx, cfg)
	if res != nil {
		printGuest(stdout, res)
		um.Close()
		ctr, served := um.Counters()
		var reqs, resps, bad uint64
		for _, p := range ctr.Pairs {
			reqs, resps, bad = reqs+p.Requests, resps+p.Responses, bad+p.BadTransfers
		}
		fmt.Fprintf(stdout, "guest ran %v; USB device model: %d connection(s), %d requests, %d responses, %d bad transfers, %d resets\n",
			res.Duration.Round(time.Millisecond), served, reqs, resps, bad, ctr.Resets)
	}
	showConsole(stderr, res, err, console != nil)
	return err
}

// guestHost is what a command that runs a QEMU guest sets up here: a
// context that ends on SIGINT, SIGTERM or the timeout, the QEMU
// environment (provisioned on first use), a temporary directory for the
// device models' sockets, and a logger of warnings for them.
type guestHost struct {
	ctx context.Context
	env *qemu.Env
	dir string
	log *slog.Logger
}

// startGuestHost sets up a guestHost, its directory named from dirPrefix;
// done removes the directory and ends the context.
func startGuestHost(timeout time.Duration, dirPrefix string, stderr io.Writer) (h guestHost, done func(), err error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	end := func() { cancel(); stop() }
	env, err := qemu.Find(ctx, true, stderr) // provisions on first use
	if err != nil {
		end()
		return guestHost{}, nil, err
	}
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		end()
		return guestHost{}, nil, err
	}
	h = guestHost{ctx: ctx, env: env, dir: dir,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	return h, func() { os.RemoveAll(dir); end() }, nil
}

// showConsole prints the guest's serial console to stderr when the guest
// failed (err) and its console was not already shown as it ran (shown).
func showConsole(stderr io.Writer, res *qemu.VMResult, err error, shown bool) {
	if err != nil && res != nil && !shown {
		fmt.Fprintf(stderr, "guest console:\n%s\n", res.Console)
	}
}

// printGuest prints the guest's table and its result line.
func printGuest(stdout io.Writer, res *qemu.VMResult) {
	if res.Table != "" {
		fmt.Fprint(stdout, res.Table)
	}
	if res.Line != nil {
		b, _ := json.Marshal(res.Line)
		fmt.Fprintf(stdout, "guest result: %s\n", b)
	}
}

// serveVFIOUser serves the ycq device model with queues pairs over
// vfio-user on a UNIX socket at sock, as QEMU's vfio-user-pci speaks it,
// until stop.
func serveVFIOUser(sock string, queues int, log *slog.Logger) (srv *devicemodel.Server, stop func(), err error) {
	dev, err := devicemodel.NewYCQ(devicemodel.Options{Queues: queues, Log: log})
	if err != nil {
		return nil, nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		dev.Close()
		return nil, nil, err
	}
	srv = devicemodel.NewServer(dev, &devicemodel.ServerOptions{Logger: log, DMAWire: user.DMAWireQEMU})
	served := make(chan error, 1)
	sctx, scancel := context.WithCancel(context.Background())
	go func() { served <- srv.Serve(sctx, l) }()
	return srv, func() { scancel(); <-served; dev.Close() }, nil
}

// usbModel serves the ycq USB device (devicemodel/usbdev) over usbredir
// on a UNIX socket, to each QEMU that connects, one at a time.
type usbModel struct {
	Socket string
	l      net.Listener
	wg     sync.WaitGroup
	once   sync.Once

	mu     sync.Mutex
	dev    *usbdev.Device // the connection being served
	last   usbdev.Counters
	served int
	closed bool
}

// serveUSB starts serving the USB device model with pairs queue pairs on
// sock.
func serveUSB(sock string, pairs int, log *slog.Logger) (*usbModel, error) {
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	m := &usbModel{Socket: sock, l: l}
	m.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			dev, err := usbdev.New(c, usbdev.Options{Pairs: pairs})
			if err != nil {
				log.Warn("usbdev", "err", err)
				c.Close()
				continue
			}
			m.mu.Lock()
			if m.closed {
				m.mu.Unlock()
				dev.Close()
				return
			}
			m.dev = dev
			m.served++
			m.mu.Unlock()
			if err := dev.Serve(); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, usbdev.ErrClosed) {
				log.Warn("usbredir connection ended", "err", err)
			}
			dev.Close()
			m.mu.Lock()
			m.last, m.dev = dev.Counters(), nil
			m.mu.Unlock()
		}
	})
	return m, nil
}

// Counters are the device's counters on its last connection, and how
// many connections it served.
func (m *usbModel) Counters() (usbdev.Counters, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dev != nil {
		return m.dev.Counters(), m.served
	}
	return m.last, m.served
}

// Close stops serving and waits for the connection being served to end.
func (m *usbModel) Close() {
	m.once.Do(func() {
		m.l.Close()
		m.mu.Lock()
		m.closed = true
		if m.dev != nil {
			m.dev.Close()
		}
		m.mu.Unlock()
		m.wg.Wait()
	})
}
