package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/qemu"
	"github.com/ycq-dev/ycq/vfio/user"
)

// vmRun is `ycq vm run` (`make run-qemu`): the demo with the host driver
// inside a QEMU guest on kernel VFIO, and the device model here behind
// vfio-user-pci.
func vmRun(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq vm run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "demo", "what the guest does: demo, probe or test")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	env, err := qemu.Find(ctx, true, stderr) // provisions on first use
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ycq-vm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "device.sock")
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dev, err := devicemodel.NewYCQ(devicemodel.Options{Queues: *queues, Log: log})
	if err != nil {
		return err
	}
	defer dev.Close()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return err
	}
	srv := devicemodel.NewServer(dev, &devicemodel.ServerOptions{Logger: log, DMAWire: user.DMAWireQEMU})
	served := make(chan error, 1)
	sctx, scancel := context.WithCancel(context.Background())
	go func() { served <- srv.Serve(sctx, l) }()
	defer func() { scancel(); <-served }()

	cfg := qemu.VMConfig{Socket: sock, Mode: *mode, Params: []string{
		fmt.Sprintf("ycq.size=%d", total), fmt.Sprintf("ycq.queues=%d", *queues),
		fmt.Sprintf("ycq.payload=%d", rec), "ycq.engine=" + *engine,
	}}
	if *console {
		cfg.Console = stderr
	}
	fmt.Fprintf(stdout, "booting %s guest (QEMU %s, kernel %s) with the ycq device on vfio-user-pci...\n", *mode, filepath.Base(env.QEMU), env.KernelVersion)
	res, err := env.RunVM(ctx, cfg)
	if res != nil {
		if res.Table != "" {
			fmt.Fprint(stdout, res.Table)
		}
		if res.Line != nil {
			b, _ := json.Marshal(res.Line)
			fmt.Fprintf(stdout, "guest result: %s\n", b)
		}
		st := srv.DMAStats()
		fmt.Fprintf(stdout, "guest ran %v; device model: %d DMA_MAP messages\n", res.Duration.Round(time.Millisecond), st.Maps)
	}
	if err != nil && res != nil && !*console {
		fmt.Fprintf(stderr, "guest console:\n%s\n", res.Console)
	}
	return err
}
