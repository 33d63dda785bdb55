package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBenchUSBUsage: bench usb's mistakes are usage errors (exit 2, the
// flag named) found before any guest boots; -h shows its flags.
func TestBenchUSBUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-payload", "12"}, "-payload"},          // shorter than the record header
		{[]string{"-payload", "100"}, "-payload"},         // not a multiple of 8
		{[]string{"-payload", "128KiB"}, "-payload"},      // above the USB device's largest record
		{[]string{"-payload", "64,x"}, "-payload"},        // not a size
		{[]string{"-records", "0"}, "-records"},           // not positive
		{[]string{"-records", "1,2,3"}, "3 counts for 2"}, // neither one nor one a size
		{[]string{"-rounds", "0"}, "-rounds"},
		{[]string{"-pairs", "0"}, "-pairs"},
		{[]string{"-pairs", "9"}, "-pairs"},
		{[]string{"-nonesuch"}, "nonesuch"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"bench", "usb"}, c.args...), &out, &errb)
		require.Equal(t, 2, code, "%v: %s", c.args, errb.String())
		require.Contains(t, errb.String(), c.want, "%v", c.args)
		require.Empty(t, out.String(), "%v: nothing booted", c.args)
	}
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"bench", "usb", "-h"}, &out, &errb))
	for _, f := range []string{"-payload", "-records", "-rounds", "-pairs", "-devmem", "-json"} {
		require.Contains(t, errb.String(), f)
	}
	out.Reset()
	require.Equal(t, 0, run([]string{"help"}, &out, &errb))
	require.Contains(t, out.String(), "bench usb")
}

// TestBenchUSBParams: the flags become the guest's bench parameters, one
// record count spread over every size.
func TestBenchUSBParams(t *testing.T) {
	b, err := parseUSBBench("64, 16KiB", "500", 2, 1, true)
	require.NoError(t, err)
	require.Equal(t, []string{"ycq.sizes=64,16384", "ycq.brecords=500,500", "ycq.rounds=2", "ycq.pairs=1", "ycq.devmem=1"}, b.params())
	b, err = parseUSBBench("4KiB,64KiB", "30,20", 1, 8, false)
	require.NoError(t, err)
	require.Equal(t, "ycq.sizes=4096,65536 ycq.brecords=30,20 ycq.rounds=1 ycq.pairs=8 ycq.devmem=0", strings.Join(b.params(), " "))
}

// TestVMRunUSBUsage: -mode usb takes only what the USB demo can run.
func TestVMRunUSBUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-engine", "sink"}, "echo or crc32c"},
		{[]string{"-payload", "100"}, "-payload"},
		{[]string{"-payload", "128KiB"}, "-payload"},
		{[]string{"-queues", "9"}, "-queues"},
		{[]string{"-size", "1KiB"}, "-size"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"vm", "run", "-mode", "usb"}, c.args...), &out, &errb)
		require.Equal(t, 2, code, "%v: %s", c.args, errb.String())
		require.Contains(t, errb.String(), c.want, "%v", c.args)
		require.Empty(t, out.String())
	}
}
