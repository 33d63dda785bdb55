package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestBenchDeviceJSON(t *testing.T) {
	exe := buildYCQ(t)
	cmd := exec.Command(exe, "bench", "device", "-min-time", "50ms", "-rounds", "1", "-json")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	require.NoError(t, err, errb.String())
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 6, "3 record sizes x 2 systems")
	seen := map[string]bool{}
	for _, l := range lines {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &r), l)
		for _, k := range []string{"system", "scenario", "batch", "producers", "consumers", "payload", "rounds"} {
			require.Contains(t, r, k)
		}
		require.Equal(t, "device", r["scenario"])
		require.Equal(t, 32.0, r["batch"])
		require.Equal(t, 2.0, r["producers"])
		require.Equal(t, 2.0, r["consumers"])
		require.Equal(t, 1.0, r["rounds"])
		positive := []string{"items_per_sec", "min_items_per_sec", "max_items_per_sec", "seconds", "cpu_seconds",
			"records_per_cpu_second", "cpus_busy", "pingpong_before_ns", "pingpong_after_ns"}
		sys := r["system"].(string)
		switch sys {
		case "ycq":
			for _, k := range []string{"doorbells_per_record", "interrupts_per_record"} {
				require.Contains(t, r, k)
				require.GreaterOrEqual(t, r[k].(float64), 0.0)
			}
			positive = append(positive, "ratio_vs_socket", "min_ratio_vs_socket", "max_ratio_vs_socket")
		case "socket":
			require.NotContains(t, r, "doorbells_per_record")
			require.NotContains(t, r, "ratio_vs_socket")
		default:
			t.Fatalf("system %q", sys)
		}
		for _, k := range positive {
			require.Contains(t, r, k, l)
			require.Greater(t, r[k].(float64), 0.0, "%s: %s", k, l)
		}
		require.LessOrEqual(t, r["min_items_per_sec"], r["items_per_sec"], l)
		require.LessOrEqual(t, r["items_per_sec"], r["max_items_per_sec"], l)
		// One run: its records over its CPU time.
		require.InEpsilon(t, r["items_per_sec"].(float64)*r["seconds"].(float64)/r["cpu_seconds"].(float64),
			r["records_per_cpu_second"], 1e-6, l)
		seen[fmt.Sprintf("%s/%v", sys, r["payload"])] = true
	}
	require.Equal(t, map[string]bool{"ycq/64": true, "socket/64": true, "ycq/4096": true, "socket/4096": true,
		"ycq/65536": true, "socket/65536": true}, seen)
}

func TestBenchDeviceUsage(t *testing.T) {
	for _, args := range [][]string{{"-payload", "8"}, {"-payload", "64,lots"}, {"-rounds", "0"}, {"-batch", "0"},
		{"-min-time", "0"}, {"-count", "300"}, {"-bogus"}, {"-cpus", "0"}, {"-cpus", "1,1"}, {"-cpus", "0,1,2"},
		{"-cpus", "0,1023"}, {"-cpus", "x,y"}} {
		var out, errb bytes.Buffer
		require.Equal(t, 2, run(append([]string{"bench", "device"}, args...), &out, &errb), "%v", args)
		require.NotEmpty(t, errb.String(), "%v", args)
		require.Empty(t, out.String(), "%v: refused before any run", args)
	}
}

// TestDeviceWindow walks the window through a stream's end: the receiver
// waits while nothing is owed and stops once the sender is done and every
// response is in.
func TestDeviceWindow(t *testing.T) {
	w := newWindow(4)
	require.Equal(t, 4, w.take(8))
	w.send(4, 3) // one credit back unused
	require.True(t, w.give(0, 0), "3 sent, none received")
	require.Equal(t, 1, w.take(8))

	woke := make(chan bool)
	go func() { woke <- w.give(3, 3) }() // all 3 in: waits for a send
	w.send(1, 1)
	require.True(t, <-woke, "a fourth sent")
	go func() { woke <- w.give(1, 4) }()
	w.finish()
	require.False(t, <-woke, "done after 4, 4 received")
	require.False(t, w.give(0, 4), "stays done")
	require.Equal(t, 4, w.take(8), "all credit back")

	w.close()
	require.Equal(t, 0, w.take(1), "closed")
}

func TestCPUClock(t *testing.T) {
	// MAKE_PROCESS_CPUCLOCK(1, CPUCLOCK_SCHED): ~1 << 3 | 2.
	require.Equal(t, int32(-14), processCPUClock(1))
	// Our own clock by pid is the clock CLOCK_PROCESS_CPUTIME_ID reads.
	a, err := cpuClock(os.Getpid())
	require.NoError(t, err)
	var ts unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts))
	c, err := cpuClock(os.Getpid())
	require.NoError(t, err)
	require.Positive(t, a)
	require.LessOrEqual(t, a, time.Duration(ts.Nano()))
	require.LessOrEqual(t, time.Duration(ts.Nano()), c)

	// A child's clock reads while it lives, and not once it is gone.
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	got, err := cpuClock(cmd.Process.Pid)
	require.NoError(t, err)
	require.GreaterOrEqual(t, got, time.Duration(0))
	cmd.Process.Kill()
	cmd.Wait()
	_, err = cpuClock(cmd.Process.Pid)
	require.Error(t, err)
}

func TestPeerPID(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	require.NoError(t, err)
	defer l.Close()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	require.NoError(t, err)
	defer c.Close()
	pid, err := peerPID(c)
	require.NoError(t, err)
	require.Equal(t, os.Getpid(), pid)
}

func TestDeviceRecords(t *testing.T) {
	recs := newRecords(100)
	b := make([]byte, 100)
	recs.fill(b, 1, 7)
	require.NoError(t, recs.check(b, 1, 7))
	require.ErrorContains(t, recs.check(b, 1, 8), "is record 7")
	require.ErrorContains(t, recs.check(b, 0, 7), "of stream 1")
	require.ErrorContains(t, recs.check(b[:99], 1, 7), "99 bytes")
	b[50] ^= 1
	require.ErrorContains(t, recs.check(b, 1, 7), "does not echo")
	other := make([]byte, 100)
	recs.fill(other, 1, 8)
	require.NotEqual(t, b[minDeviceRecord:], other[minDeviceRecord:], "records differ beyond their header")

	// readRecords completes a record cut across reads, and no more.
	stream := bytes.NewReader(make([]byte, 250))
	buf := make([]byte, 300)
	n, err := readRecords(onebyte{stream}, buf, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// onebyte reads a byte at a time, the worst a stream can split records.
type onebyte struct{ r *bytes.Reader }

func (o onebyte) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

// TestBenchDeviceDPDKVhostFlag checks -dpdk-vhost before any run: a
// missing or non-executable file, or a shape vhost_bench.c does not take,
// is a usage error that names the flag.
func TestBenchDeviceDPDKVhostFlag(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "dpdk-vhost-bench")
	var out, errb bytes.Buffer
	require.Equal(t, 2, run([]string{"bench", "device", "-dpdk-vhost", missing}, &out, &errb))
	require.Contains(t, errb.String(), "-dpdk-vhost")
	require.Contains(t, errb.String(), "no such file")
	require.Empty(t, out.String(), "refused before any run")

	plain := filepath.Join(dir, "plain")
	require.NoError(t, os.WriteFile(plain, nil, 0o644))
	require.ErrorContains(t, checkDPDKVhost(plain, []int{64}, 2, 256, 32), "not an executable file")
	require.ErrorContains(t, checkDPDKVhost(dir, []int{64}, 2, 256, 32), "not an executable file")

	exe := filepath.Join(dir, "exe")
	require.NoError(t, os.WriteFile(exe, nil, 0o755))
	require.NoError(t, checkDPDKVhost(exe, []int{64, 4096, 65536}, 2, 256, 32))
	require.ErrorContains(t, checkDPDKVhost(exe, []int{64, 1 << 20}, 2, 256, 32), "1048576 bytes")
	require.NoError(t, checkDPDKVhost(exe, []int{dpdkVhostMaxRecord}, 2, 256, 32))
	for _, shape := range [][3]int{{9, 256, 32}, {2, 100, 32}, {2, 65536, 32}, {2, 256, 513}} {
		err := checkDPDKVhost(exe, []int{64}, shape[0], shape[1], shape[2])
		require.ErrorContains(t, err, "-dpdk-vhost", "%v", shape)
		var u usageError
		require.ErrorAs(t, err, &u, "%v", shape)
	}
}
