package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBenchRingJSON(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"bench", "ring", "-items", "4096", "-rounds", "1", "-json"}, &out, &errb)
	require.Equal(t, 0, code, errb.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 6, "3 scenarios x 2 systems")
	seen := map[string]bool{}
	for _, l := range lines {
		var r map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		for _, k := range []string{"system", "scenario", "batch", "producers", "consumers", "payload", "items_per_sec"} {
			require.Contains(t, r, k)
		}
		require.Greater(t, r["items_per_sec"].(float64), 0.0)
		require.Equal(t, 64.0, r["payload"])
		seen[r["system"].(string)+"/"+r["scenario"].(string)] = true
	}
	require.Equal(t, map[string]bool{"ring/spsc": true, "chan/spsc": true, "ring/mpmc": true, "chan/mpmc": true}, seen)
}

func TestBenchRingTable(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"bench", "ring", "-items", "4096", "-rounds", "1"}, &out, &errb), errb.String())
	require.Contains(t, out.String(), "ring/chan")
	require.Contains(t, out.String(), "mpmc")
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 2, run([]string{"nonsense"}, &out, &errb))
	require.Contains(t, errb.String(), "bench ring")
	require.Equal(t, 0, run([]string{"help"}, &out, &errb))
	errb.Reset()
	require.Equal(t, 2, run([]string{"bench", "ring", "-items", "1"}, &out, &errb))
	require.Contains(t, errb.String(), "-items")
	require.Equal(t, 2, run([]string{"bench", "ring", "-bogus"}, &out, &errb))
}
