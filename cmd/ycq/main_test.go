package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBenchRingJSON(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "ring", "-items", "4096", "-rounds", "1", "-latency-records", "1000", "-json"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	seen := map[string]bool{}
	latency := map[string]bool{}
	stalls := map[string]bool{}
	for _, l := range lines {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		require.Greater(t, r["pingpong_round_trip_ns"].(float64), 0.0, "the placement probe is in every row")
		if r["kind"] == "latency" {
			require.Greater(t, r["p50_ns"].(float64), 0.0)
			require.GreaterOrEqual(t, r["p99_ns"].(float64), r["p50_ns"].(float64))
			latency[r["system"].(string)] = true
			continue
		}
		if r["kind"] == "stall" {
			require.Contains(t, r, "waits")
			require.GreaterOrEqual(t, r["max_ns"].(float64), r["p99_ns"].(float64))
			stalls[fmt.Sprintf("%s/%s-%vx%v/%v", r["system"], r["scenario"], r["producers"], r["consumers"], r["batch"])] = true
			continue
		}
		for _, k := range []string{"system", "scenario", "batch", "producers", "consumers", "payload", "items_per_sec", "min_items_per_sec", "max_items_per_sec"} {
			require.Contains(t, r, k)
		}
		require.Greater(t, r["items_per_sec"].(float64), 0.0)
		require.Equal(t, 64.0, r["payload"])
		seen[fmt.Sprintf("%s/%s-%vx%v/%v", r["system"], r["scenario"], r["producers"], r["consumers"], r["batch"])] = true
	}
	require.Equal(t, map[string]bool{
		"ring/spsc-1x1/1": true, "chan/spsc-1x1/1": true, "pool/spsc-1x1/1": true, "ring-cached/spsc-1x1/1": true,
		"ring/spsc-1x1/32": true, "chan-batch/spsc-1x1/32": true, "ring-resize/spsc-1x1/32": true,
		"ring/mpmc-2x2/1": true, "chan/mpmc-2x2/1": true, "pool/mpmc-2x2/1": true, "ring-resize/mpmc-2x2/1": true, "ring-cached/mpmc-2x2/1": true,
		"ring/mpmc-2x2/32": true, "chan-batch/mpmc-2x2/32": true,
		"ring/mpmc-4x4/1": true, "chan/mpmc-4x4/1": true, "pool/mpmc-4x4/1": true, "ring-cached/mpmc-4x4/1": true,
	}, seen)
	require.Equal(t, map[string]bool{"ring": true, "chan": true, "ring-resize": true}, latency)
	require.Equal(t, map[string]bool{
		"ring/spsc-1x1/32": true, "ring-resize/spsc-1x1/32": true,
		"ring/mpmc-2x2/1": true, "ring-resize/mpmc-2x2/1": true,
	}, stalls)
}

// TestBenchRingDPDK: -dpdk runs the harness once a round and reports its
// rows as system dpdk-zc in every scenario; a harness that fails or prints
// something else ends the run with its message. The harness here is a
// script that prints what bench/dpdk prints.
func TestBenchRingDPDK(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755))
		return p
	}
	var rows strings.Builder
	for _, sc := range [][3]int{{1, 1, 1}, {1, 1, 32}, {2, 2, 1}, {2, 2, 32}, {4, 4, 1}} {
		fmt.Fprintf(&rows, `{"scenario":"x","batch":%d,"producers":%d,"consumers":%d,"system":"dpdk-zc","payload":64,"items_per_sec":1000000}`+"\n", sc[2], sc[0], sc[1])
	}
	good := script("good", "cat <<'EOF'\n"+rows.String()+"EOF\n")
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"bench", "ring", "-items", "4096", "-rounds", "2", "-latency-rate", "0", "-dpdk", good, "-json"}, &out, &errb), errb.String())
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		if r["system"] == "dpdk-zc" {
			n++
			require.Equal(t, 1e6, r["items_per_sec"])
			require.Equal(t, 2.0, r["rounds"], "once a round")
		}
	}
	require.Equal(t, 5, n, "one dpdk-zc row a scenario")

	for _, c := range []struct{ name, body, says string }{
		{"fails", "echo 'EAL: cannot init' >&2; exit 1\n", "EAL: cannot init"},
		{"garbage", "echo '{\"system\":\"other\",\"items_per_sec\":1}'\n", "unexpected row"},
		{"missing", "echo '{\"system\":\"dpdk-zc\",\"payload\":64,\"batch\":1,\"producers\":1,\"consumers\":1,\"items_per_sec\":1}'\n", "no result for"},
	} {
		out.Reset()
		errb.Reset()
		code := run([]string{"bench", "ring", "-items", "4096", "-rounds", "1", "-latency-rate", "0", "-dpdk", script(c.name, c.body)}, &out, &errb)
		require.NotEqual(t, 0, code, c.name)
		require.Contains(t, errb.String(), c.name, "the error names the harness")
		require.Contains(t, errb.String(), c.says)
	}
}

func TestBenchRingTable(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"bench", "ring", "-items", "4096", "-rounds", "1", "-latency-records", "1000"}, &out, &errb), errb.String())
	for _, s := range []string{"ping-pong", "ring/system", "chan-batch", "mpmc 4x4", "p99", "ring-resize/ring", "producer waits", "ring-cached/chan"} {
		require.Contains(t, out.String(), s)
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 2, run([]string{"nonsense"}, &out, &errb))
	require.Contains(t, errb.String(), "bench ring")
	require.Contains(t, errb.String(), `unknown command "nonsense"`)
	for _, args := range [][]string{nil, {"help"}} {
		out.Reset()
		require.Equal(t, 0, run(args, &out, &errb))
		for _, c := range commands {
			line := "  " + strings.Join(c.words, " ") + " "
			if c.child {
				require.NotContains(t, out.String(), line, "a child command is not listed")
			} else {
				require.Contains(t, out.String(), line)
			}
		}
		require.NotContains(t, out.String(), "peer")
	}
	errb.Reset()
	require.Equal(t, 2, run([]string{"bench", "ring", "-items", "1"}, &out, &errb))
	require.Contains(t, errb.String(), "-items")
	require.Equal(t, 2, run([]string{"bench", "ring", "-bogus"}, &out, &errb))
}

// buildYCQ builds this command into a temporary directory, for tests that
// need it as a separate process.
func buildYCQ(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "ycq")
	out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return exe
}

func TestBenchIPCJSON(t *testing.T) {
	exe := buildYCQ(t)
	out, err := exec.Command(exe, "bench", "ipc", "-count-small", "3000", "-count-large", "300",
		"-rounds", "1", "-idle", "200ms", "-json").Output()
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 24)
	systems := map[string]int{}
	for _, l := range lines[:22] {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		require.Greater(t, r["pingpong_round_trip_ns"].(float64), 0.0, "the placement probe is in every row")
		if r["scenario"] == "ipc-echo" {
			systems[r["system"].(string)+"-echo"]++
			require.Greater(t, r["items_per_sec"].(float64), 0.0)
			continue
		}
		require.Equal(t, "ipc", r["scenario"])
		for _, k := range []string{"system", "batch", "producers", "consumers", "payload", "items_per_sec"} {
			require.Contains(t, r, k)
		}
		require.Greater(t, r["items_per_sec"].(float64), 0.0)
		systems[r["system"].(string)]++
	}
	require.Equal(t, map[string]int{"ring": 4, "socket": 4, "ring-local": 4, "ring-block": 2, "ring-spin": 2, "ring-echo": 2, "ring-block-echo": 2, "socket-echo": 2}, systems)
	var idle map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[22]), &idle))
	require.Equal(t, "ipc-idle", idle["scenario"])
	require.Equal(t, "ring", idle["system"], "the default mode")
	require.Less(t, idle["cpu_seconds"].(float64), 0.2, "by default an idle consumer spins briefly, then sleeps")
}

func TestIPCServeConnect(t *testing.T) {
	exe := buildYCQ(t)
	sock := filepath.Join(t.TempDir(), "s.sock")
	serve := exec.Command(exe, "ipc", "serve", "-socket", sock, "-shm", "ycq-cmd-test", "-block")
	var logs bytes.Buffer
	serve.Stderr = &logs
	require.NoError(t, serve.Start())
	defer func() {
		serve.Process.Signal(os.Interrupt)
		serve.Wait()
		_, err := os.Stat(sock)
		require.True(t, os.IsNotExist(err), "serve removed its socket")
	}()
	var out []byte
	var err error
	for range 100 {
		if out, err = exec.Command(exe, "ipc", "connect", "-socket", sock, "-role", "both", "-count", "20000", "-payload", "100").CombinedOutput(); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // the server is still starting
	}
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "both: 20000 records of 100 bytes")
	require.Contains(t, string(out), "round-trip latency p50")
	out, err = exec.Command(exe, "ipc", "connect", "-socket", sock, "-by-name", "-role", "consumer", "-count", "5000", "-block").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "one-way latency")
	out, err = exec.Command(exe, "ipc", "connect", "-socket", sock, "-role", "sideways").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "role")
}

// TestMain lets the test binary play a parent that starts a device model
// with child and then waits to be killed (see TestChildDiesWithParent).
func TestMain(m *testing.M) {
	if exe := os.Getenv("YCQ_TEST_PARENT_OF"); exe != "" {
		cmd := child(exe, "device", "serve", "-socket", os.Getenv("YCQ_TEST_SOCKET"))
		if err := cmd.Start(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(cmd.Process.Pid)
		select {}
	}
	os.Exit(m.Run())
}

// TestChildDiesWithParent kills a process that started a device model the
// way `ycq run` does, and checks that the device model goes too. The device
// model's output goes nowhere, so only the kernel's parent-death signal can
// end it.
func TestChildDiesWithParent(t *testing.T) {
	exe := buildYCQ(t)
	parent := exec.Command(os.Args[0])
	parent.Env = append(os.Environ(), "YCQ_TEST_PARENT_OF="+exe, "YCQ_TEST_SOCKET="+filepath.Join(t.TempDir(), "d.sock"))
	out, err := parent.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, parent.Start())
	var pid int
	_, err = fmt.Fscan(out, &pid)
	require.NoError(t, err, "the parent did not start a device model")
	require.NoError(t, parent.Process.Kill())
	parent.Wait()
	// Wait for it to be gone (reaped by init, or a zombie); the bound only
	// keeps a failure from hanging the test run.
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Fatalf("the device model (pid %d) outlived its parent", pid)
}
