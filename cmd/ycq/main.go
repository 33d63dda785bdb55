// Command ycq is the one command-line tool of the ycq project.
//
//	ycq run [-size 1GiB] [-queues 2] [-engine crc32c] [-payload 4KiB] [-pci ADDR]
//	ycq bench ring [-items N] [-rounds R] [-latency-rate R] [-json]
//	ycq bench ipc [-json]
//	ycq bench device [-payload 64,4KiB,64KiB] [-min-time 2s] [-rounds 5] [-cpus A,B] [-dpdk-vhost BIN] [-json]
//	ycq bench usb [-rounds 5] [-json]
//	ycq device serve [-socket PATH] [-engine E] [-queues N] [-loops N] [-cpus LIST]
//	ycq host list | bind ADDR | unbind ADDR
//	ycq ipc serve [-socket PATH] [-shm NAME] [-block] [-resize-every D]
//	ycq ipc connect [-socket PATH] [-by-name] [-role R] [-count N] [-payload B] [-batch K] [-block] [-resizable]
//	ycq ipc resize [-socket PATH] [-session N] [-queue up|down] -slots K
//	ycq usb serve [-socket PATH] [-pairs N] [-serial S] [-v]
//	ycq stat -socket PATH | -shm NAME | -file PATH | -pid PID [-json] [-watch 1s [-count N]]
//	ycq vm run [-mode demo|probe|test|usb]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
)

// command is one subcommand: its words ("bench ring"), a one-line summary,
// and what runs it with the remaining arguments. A child command is one
// that ycq starts in a process of its own (a benchmark's peer): callable,
// but not listed.
type command struct {
	words []string
	usage string
	run   func(args []string, stdout, stderr io.Writer) error
	child bool
}

var commands = []command{
	{[]string{"run"}, "the main job: stream data through the ycq device with the host driver", runDemo, false},
	{[]string{"vm", "run"}, "the main job inside a QEMU guest: host driver on kernel VFIO, device model behind vfio-user-pci", vmRun, false},
	{[]string{"bench", "ring"}, "measure the ring against a Go channel in one process", benchRing, false},
	{[]string{"bench", "ipc"}, "measure the ring between two processes against a UNIX socket", benchIPC, false},
	{[]string{"bench", "ipc-socket-peer"}, "(the consuming child of bench ipc, socket system)", benchIPCSocketPeer, true},
	{[]string{"bench", "ipc-idle-peer"}, "(the idle child of bench ipc)", benchIPCIdlePeer, true},
	{[]string{"bench", "device"}, "measure request/response through the device model against a UNIX socket", benchDevice, false},
	{[]string{"bench", "device-socket-peer"}, "(the echoing child of bench device, socket system)", benchDeviceSocketPeer, true},
	{[]string{"bench", "usb"}, "in one QEMU guest, the USB path (gousb over the emulated xHCI) against the PCIe path (kernel VFIO)", benchUSB, false},
	{[]string{"device", "serve"}, "serve the ycq device model over vfio-user on a UNIX socket", deviceServe, false},
	{[]string{"host", "list"}, "list PCI devices, their drivers and IOMMU groups, and whether VFIO can take them", hostList, false},
	{[]string{"host", "bind"}, "bind a PCI device to vfio-pci", hostBind, false},
	{[]string{"host", "unbind"}, "give a PCI device back to its own driver", hostUnbind, false},
	{[]string{"ipc", "serve"}, "serve queue pairs in shared memory on a UNIX socket", ipcServe, false},
	{[]string{"ipc", "connect"}, "join a server's queue pair and move records through it", ipcConnect, false},
	{[]string{"ipc", "resize"}, "grow or shrink a queue of a running resizable session", ipcResize, false},
	{[]string{"usb", "serve"}, "serve the ycq USB far processor over usbredir on a UNIX socket (for QEMU's usb-redir)", usbServe, false},
	{[]string{"stat"}, "show live queues' header, cursors, fill and counters without joining them", stat, false},
}

func main() {
	// YCQ_CPUPROFILE=FILE writes a CPU profile of the whole run, for
	// looking into a benchmark; the processes it starts (a device model, a
	// benchmark's peer) write theirs to FILE.child.
	if path := os.Getenv("YCQ_CPUPROFILE"); path != "" {
		os.Setenv("YCQ_CPUPROFILE", path+".child")
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			code := run(os.Args[1:], os.Stdout, os.Stderr)
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(code)
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	for _, c := range commands {
		if len(args) >= len(c.words) && equal(args[:len(c.words)], c.words) {
			err := c.run(args[len(c.words):], stdout, stderr)
			var ue usageError
			switch {
			case err == nil, errors.Is(err, flag.ErrHelp):
				return 0
			case errors.As(err, &ue):
				fmt.Fprintf(stderr, "ycq %s: %v\n", strings.Join(c.words, " "), err)
				return 2
			default:
				fmt.Fprintf(stderr, "ycq %s: %v\n", strings.Join(c.words, " "), err)
				return 1
			}
		}
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "ycq: unknown command %q\n", strings.Join(args, " "))
	usage(stderr)
	return 2
}

// usage lists the user's commands, one line each; child commands are left
// out.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ycq COMMAND [flags]   (ycq COMMAND -h for its flags)")
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		if !c.child {
			fmt.Fprintf(w, "  %-16s %s\n", strings.Join(c.words, " "), c.usage)
		}
	}
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// parseFlags parses args into fs; any mistake is a usageError.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	return nil
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
