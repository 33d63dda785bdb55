package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBenchDeviceJSON(t *testing.T) {
	exe := buildYCQ(t)
	cmd := exec.Command(exe, "bench", "device", "-count", "300", "-size", "1MiB", "-rounds", "1", "-json")
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
		for _, k := range []string{"system", "scenario", "batch", "producers", "consumers", "payload", "items_per_sec"} {
			require.Contains(t, r, k)
		}
		require.Equal(t, "device", r["scenario"])
		require.Greater(t, r["items_per_sec"].(float64), 0.0)
		require.Equal(t, 32.0, r["batch"])
		require.Equal(t, 2.0, r["producers"])
		require.Equal(t, 2.0, r["consumers"])
		sys := r["system"].(string)
		switch sys {
		case "ycq":
			for _, k := range []string{"doorbells_per_record", "interrupts_per_record"} {
				require.Contains(t, r, k)
				require.GreaterOrEqual(t, r[k].(float64), 0.0)
			}
		case "socket":
			require.NotContains(t, r, "doorbells_per_record")
		default:
			t.Fatalf("system %q", sys)
		}
		seen[fmt.Sprintf("%s/%v", sys, r["payload"])] = true
	}
	require.Equal(t, map[string]bool{"ycq/64": true, "socket/64": true, "ycq/4096": true, "socket/4096": true,
		"ycq/65536": true, "socket/65536": true}, seen)
}

func TestBenchDeviceUsage(t *testing.T) {
	for _, args := range [][]string{{"-payload", "8"}, {"-payload", "64,lots"}, {"-rounds", "0"}, {"-batch", "0"}, {"-bogus"}} {
		var out, errb bytes.Buffer
		require.Equal(t, 2, run(append([]string{"bench", "device"}, args...), &out, &errb), "%v", args)
		require.NotEmpty(t, errb.String())
	}
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
