package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/qemu"
)

// usbredirInteropModules are what the interop guest loads: dummy_hcd (a
// software host controller and device controller in one), the loopback
// gadget function, and configfs with libcomposite to build the gadget.
var usbredirInteropModules = []string{"dummy_hcd", "configfs", "libcomposite", "usb_f_ss_lb"}

// usbredirInteropInit is the interop guest's /init.
const usbredirInteropInit = "./internal/usbredirpeer/guestinit"

// TestUsbredirInterop checks usb/redir against usbredir's own usb-host,
// a third-party peer. In the guest, a USB device made by the kernel
// (dummy_hcd with the configfs loopback gadget; no QEMU USB at all) is
// exported by Debian's usbredirect (libusbredirhost) over TCP on the
// guest's loopback interface, and internal/usbredirpeer, a usb-guest built
// on usb/redir, uses it:
//   - hellos: 64-bit ids, device versions, max packet sizes and 32-bit
//     bulk lengths negotiated, and ids above 32 bits in use;
//   - interface_info, ep_info and device_connect decoded and matching
//     the gadget;
//   - device, configuration and string descriptors read with control
//     packets;
//   - set_configuration to 1, 0 and 1 answered, the endpoints announced
//     again; get_configuration, set_alt_setting and get_alt_setting;
//   - 200 rounds of bulk data (1 byte to 128 KiB, so length_high is used)
//     written to the loopback function and read back byte for byte, then
//     4 batches of 16 transfers in flight each way;
//   - reset, with the endpoints working after it;
//   - a pending bulk IN cancelled with cancel_data_packet (status
//     cancelled), the endpoint working after it;
//   - usbredirect exiting cleanly once the usb-guest closes.
//
// usbredirect runs in the guest with this machine's shared libraries, as
// the USB tier's cgo /init does (qemu.SharedLibraries). Without it the
// test skips with the fix; YCQ_REQUIRE=usbredirect makes that a failure.
func TestUsbredirInterop(t *testing.T) {
	bin, err := exec.LookPath("usbredirect")
	if err != nil {
		testenv.Missing(t, "usbredirect", "no usbredirect on this machine (usbredir's usb-host, the interop peer): apt-get install usbredirect")
	}
	env := qemuEnv(t)
	for _, m := range usbredirInteropModules {
		if _, err := env.Modules(m); err != nil {
			testenv.Missing(t, "usbredirect", "the guest kernel lacks a module the interop guest needs: "+err.Error())
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	module, err := filepath.Abs("..") // the test runs in tests/
	require.NoError(t, err)
	initBin, err := qemu.GoBuild(ctx, module, usbredirInteropInit)
	require.NoError(t, err)
	libs, err := qemu.SharedLibraries(bin)
	require.NoError(t, err, "usbredirect's shared libraries")
	modFiles, mods, err := env.ModuleFiles(usbredirInteropModules...)
	require.NoError(t, err)

	files := append(qemu.BaseFiles(),
		qemu.File{Path: "/init", Mode: 0o755, Data: initBin},
		qemu.File{Path: "/usr/bin/usbredirect", Mode: 0o755, Source: bin},
	)
	files = append(files, libs...)
	files = append(files, modFiles...)
	cfg := qemu.BootConfig{Files: files, Append: []string{"ycq.usbredirect=/usr/bin/usbredirect"}}
	if testing.Verbose() {
		cfg.Console = t.Output()
	}
	res, err := env.Boot(ctx, cfg)
	if res != nil && err != nil {
		t.Logf("guest console:\n%s\nQEMU stderr:\n%s", res.Console, res.Stderr)
	}
	require.NoError(t, err)
	line := interopResult(t, res.Console)
	if msg, _ := line["error"].(string); msg != "" {
		t.Logf("guest console:\n%s", res.Console)
		t.Fatalf("interop guest failed: %s", msg)
	}
	require.Contains(t, res.Console, "YCQ-GUEST-EXIT ok")

	require.Equal(t, "usbredir-interop", line["mode"])
	require.Equal(t, float64(len(mods)), line["modules"])
	// The peer is usbredir's: libusbredirhost's hello names usbredirect
	// and advertises, among others, the capabilities we asked for.
	require.Contains(t, line["peer_version"], "usbredir", "the usb-host's hello version")
	require.Equal(t, "{IDs64:true DeviceVersion:true EPMaxPacketSize:true EPMaxStreams:false BulkLength32:true}", line["layout"])

	// What libusbredirhost announced, as usb/redir decoded it.
	require.Equal(t, float64(2), line["speed"], "dummy_hcd runs at high speed (usb_redir_speed_high)")
	require.Equal(t, "1209", line["vendor_id"])
	require.Equal(t, "0001", line["product_id"])
	require.Equal(t, "0107", line["device_bcd"], "device_connect's device_version_bcd")
	require.Equal(t, float64(1), line["interfaces"])
	require.Equal(t, float64(0xff), line["if_class"], "the loopback function is vendor specific")
	require.Equal(t, float64(512), line["max_packet"], "ep_info's max_packet_size of a high-speed bulk endpoint")
	require.NotEmpty(t, line["bulk_in"])
	require.NotEmpty(t, line["bulk_out"])

	// Control packets: the descriptors the gadget was given.
	require.Equal(t, "1209", line["desc_vendor_id"])
	require.Equal(t, "0001", line["desc_product_id"])
	require.Equal(t, float64(9+9+7+7), line["config_len"], "configuration, interface and two endpoint descriptors")
	require.Equal(t, []any{"ycq interop", "ycq loopback gadget", "YCQ-LB-0001"}, line["strings"])

	// set_configuration of the active configuration, of none, and of it
	// again: each answered by a successful configuration_status naming it,
	// and the last one re-announcing the bulk endpoints in ep_info.
	require.Equal(t, float64(0), line["set_config_status"], "configuration_status success")
	require.Equal(t, float64(1), line["set_config_value"])
	require.Equal(t, float64(0), line["set_config0_status"])
	require.Equal(t, float64(0), line["set_config0_value"])
	require.Equal(t, float64(0), line["set_config_again_status"])
	require.Equal(t, float64(1), line["set_config_again_value"])
	require.Equal(t, true, line["reannounced"], "ep_info with both bulk endpoints after configuration 1 again")

	// Bulk packets through the loopback function.
	require.Equal(t, float64(200), line["rounds"])
	require.Equal(t, float64(0), line["mismatches"])
	require.Equal(t, float64(64), line["pipelined"], "4 batches of 16 transfers in flight each way")
	require.Equal(t, float64(1), line["get_config"], "get_configuration")
	require.Equal(t, float64(0), line["set_alt_status"], "set_alt_setting 0")
	require.Equal(t, "0:0/0", line["get_alt"], "get_alt_setting: success, interface 0, alt 0")
	require.Equal(t, true, line["after_reset_ok"], "the endpoints work after usb_redir_reset")
	require.Equal(t, float64(1), line["cancel_status"], "the cancelled bulk IN ends with usb_redir_cancelled")
	require.Equal(t, true, line["after_cancel_ok"])
	require.Equal(t, "ok", line["usbredirect_exit"], "usbredirect exits cleanly when the usb-guest closes")
	t.Logf("guest ran %v; usbredirect %q, %d bytes looped back",
		res.Duration.Round(time.Millisecond), line["peer_version"], int64(line["bytes"].(float64)))
}

// interopResult decodes the console's last YCQ-RESULT line.
func interopResult(t *testing.T, console string) map[string]any {
	t.Helper()
	var line map[string]any
	sc := bufio.NewScanner(strings.NewReader(console))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		if _, after, ok := strings.Cut(sc.Text(), "YCQ-RESULT "); ok {
			var m map[string]any
			if json.Unmarshal([]byte(after), &m) == nil {
				line = m
			}
		}
	}
	require.NotNil(t, line, "no YCQ-RESULT line on the console:\n%s", console)
	return line
}
