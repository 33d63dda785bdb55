package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ycq-dev/ycq/cmd/internal/demo"
	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/vfio"
	"github.com/ycq-dev/ycq/vfio/kernel"
	"github.com/ycq-dev/ycq/vfio/user"
	"github.com/ycq-dev/ycq/ycqdev"
)

// runDemo is `ycq run` (and `make run`): the device model and the host
// driver, or the host driver and a real device.
func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ycq run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := fs.String("size", "1GiB", "bytes of requests to stream (suffixes KiB, MiB, GiB)")
	queues := fs.Int("queues", 2, "queue pairs")
	engine := fs.String("engine", "crc32c", "echo, crc32c, sink or source")
	payload := fs.String("payload", "4KiB", "bytes a request")
	slots := fs.Int("slots", 256, "slots in each queue")
	pci := fs.String("pci", "", "drive this PCI device (bound to vfio-pci) through kernel VFIO instead of the device model")
	socket := fs.String("socket", "", "drive the device model already serving on this socket instead of starting one")
	bar2 := fs.Bool("bar2", false, "keep queue metadata in the device's BAR2")
	polling := fs.Bool("polling", false, "poll instead of taking interrupts")
	resizeEvery := fs.Duration("resize-every", 0, "resize every queue pair this often while streaming (resizable queues); 0: never")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	total, err := parseSize(*size)
	if err != nil {
		return usagef("-size: %v", err)
	}
	rec, err := parseSize(*payload)
	if err != nil || rec < 16 || rec > 8<<20 {
		return usagef("-payload %q: want 16 bytes to 8 MiB", *payload)
	}
	id, ok := devicemodel.EngineID(*engine)
	if !ok || id == ycqdev.EngineSource || id == ycqdev.EngineSink {
		return usagef("-engine %q: the demo checks responses, so echo or crc32c", *engine)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var dev vfio.Device
	var what string
	switch {
	case *pci != "":
		k, err := kernel.Open(*pci, kernel.Options{})
		if err != nil {
			return err
		}
		dev, what = k, "PCI device "+*pci+" through kernel VFIO"
	default:
		sock := *socket
		if sock == "" {
			var cleanup func()
			sock, cleanup, err = startDeviceModel(*queues, *engine, stderr)
			if err != nil {
				return err
			}
			defer cleanup()
		}
		c, err := user.Dial(sock, nil)
		if err != nil {
			return fmt.Errorf("connect to the device model: %w", err)
		}
		dev, what = c, "the ycq device model over vfio-user ("+sock+")"
	}
	defer dev.Close()
	fmt.Fprintf(stdout, "streaming %s through %d queue pairs of %s with %s, %d-byte requests\n",
		demo.HumanBytes(total), *queues, what, *engine, rec)
	o := demo.Options{Size: total, Queues: *queues, Engine: id, Payload: int(rec), Slots: *slots}
	o.Driver.MetaInBAR2, o.Driver.Polling = *bar2, *polling
	o.ResizeEvery = *resizeEvery
	if isTerminal(stderr) {
		o.Progress = progressBar(stderr)
	}
	res, err := demo.Run(ctx, dev, o)
	if o.Progress != nil {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return err
	}
	res.Table(stdout)
	return nil
}

// startDeviceModel runs `ycq device serve` as a separate process on a
// temporary socket, with extra flags, and returns the socket and how to
// stop it.
// child is a command for a process this one starts and depends on (a
// device model, a benchmark's peer): it is killed if this process dies
// first, so none outlives an interrupted run.
func child(exe string, args ...string) *exec.Cmd {
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func startDeviceModel(queues int, engine string, stderr io.Writer, extra ...string) (string, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "ycq-run-")
	if err != nil {
		return "", nil, err
	}
	sock := filepath.Join(dir, "device.sock")
	cmd := child(exe, append([]string{"device", "serve", "-socket", sock, "-queues", strconv.Itoa(queues), "-engine", engine}, extra...)...)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	cleanup := func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		os.RemoveAll(dir)
	}
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			return sock, cleanup, nil
		}
		if time.Since(start) > 10*time.Second || cmd.ProcessState != nil {
			cleanup()
			return "", nil, fmt.Errorf("the device model did not start: %s", logs.String())
		}
	}
}

// parseSize reads "1GiB", "64KiB", "4096", "2M".
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("size %q: want a positive number with an optional KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

// progressBar returns a Progress function drawing a bar on one line.
func progressBar(w io.Writer) func(done, total int64) {
	start := time.Now()
	return func(done, total int64) {
		const width = 30
		frac := float64(done) / float64(max(total, 1))
		fill := int(frac * width)
		rate := float64(done) / time.Since(start).Seconds() / 1e9
		fmt.Fprintf(w, "\r\033[K[%s%s] %3.0f%% %s of %s, %.2f GB/s", strings.Repeat("#", fill), strings.Repeat(" ", width-fill),
			100*frac, demo.HumanBytes(done), demo.HumanBytes(total), rate)
	}
}
