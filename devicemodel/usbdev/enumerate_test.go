package usbdev

import (
	"bytes"
	"testing"

	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// enumerate does what a guest kernel does when the device appears: reads
// the device descriptor (8 bytes first, as Linux does), the configuration
// (9 bytes, then wTotalLength), the strings, and sets configuration 1 as
// QEMU forwards it (its own set_configuration packet).
func enumerate(t *testing.T, g *guest, pairs int) {
	t.Helper()
	if b := g.controlIn(0, reqGetDescriptor, dtDevice<<8, 0, 8); !bytes.Equal(b, deviceDescriptor()[:8]) {
		t.Fatalf("first 8 bytes of the device descriptor: % x", b)
	}
	dev := g.controlIn(0, reqGetDescriptor, dtDevice<<8, 0, 18)
	if len(dev) != sizeofDeviceDesc || le.Uint16(dev[offDevVendor:]) != usbproto.VendorID || le.Uint16(dev[offDevProduct:]) != usbproto.ProductID {
		t.Fatalf("device descriptor % x", dev)
	}
	head := g.controlIn(0, reqGetDescriptor, dtConfiguration<<8, 0, sizeofConfigDesc)
	total := le.Uint16(head[offCfgTotalLength:])
	if int(total) != configTotalLength(pairs) {
		t.Fatalf("wTotalLength %d, want %d", total, configTotalLength(pairs))
	}
	cfg := g.controlIn(0, reqGetDescriptor, dtConfiguration<<8, 0, total)
	if len(cfg) != int(total) || cfg[sizeofConfigDesc+offIfClass] != usbproto.ClassVendor || int(cfg[sizeofConfigDesc+offIfNumEndpoints]) != 2*pairs {
		t.Fatalf("configuration descriptor % x", cfg)
	}
	langs := g.controlIn(0, reqGetDescriptor, dtString<<8, 0, 255)
	if !bytes.Equal(langs, []byte{4, dtString, 0x09, 0x04}) {
		t.Fatalf("LANGID string % x", langs)
	}
	for i, want := range []string{usbproto.Manufacturer, usbproto.Product, DefaultSerial} {
		b := g.controlIn(0, reqGetDescriptor, dtString<<8|uint16(i+1), usbproto.LangEnglishUS, 255)
		if got := decodeString(b); got != want {
			t.Fatalf("string %d: %q, want %q", i+1, got, want)
		}
	}
	g.setConfiguration(usbproto.Configuration)
}

func decodeString(b []byte) string {
	if len(b) < 2 || int(b[0]) != len(b) || b[1] != dtString {
		return "<bad string descriptor>"
	}
	var r []rune
	for i := offStrData; i+1 < len(b); i += 2 {
		r = append(r, rune(le.Uint16(b[i:])))
	}
	return string(r)
}

// TestEnumerate: the device's hello advertises what QEMU needs on an xHCI
// port; it attaches with interface_info, ep_info (every bulk endpoint of
// every pair, 512-byte packets) and device_connect, in that order; its
// descriptors read as a guest reads them; GET_INFO, GET_QUEUE and the
// configuration and alternate setting packets answer as USB.md says.
func TestEnumerate(t *testing.T) {
	checkLeaks(t)
	a, b := socketpair(t)
	d, err := New(a, Options{Pairs: 3, Serial: "sn-7"})
	if err != nil {
		t.Fatal(err)
	}
	errc := served(d)
	g := newGuest(t, b, guestCaps)
	defer func() {
		d.Close()
		g.close()
		<-errc
	}()
	h := g.handshake()
	for _, c := range []redir.Cap{redir.CapEPInfoMaxPacketSize, redir.Cap32BitBulkLength, redir.Cap64BitIDs, redir.CapConnectDeviceVersion} {
		if !h.Caps.Has(c) {
			t.Errorf("the device's hello lacks capability %d", c)
		}
	}
	for _, c := range []redir.Cap{redir.CapBulkReceiving, redir.CapBulkStreams, redir.CapFilter} {
		if h.Caps.Has(c) {
			t.Errorf("the device's hello has capability %d", c)
		}
	}
	ep := g.attach()
	for i := range redir.MaxEndpoints {
		want := redir.EPInvalid
		addr := uint8(i&0x0f) | uint8(i&0x10)<<3
		switch {
		case addr&0x0f == 0:
			want = redir.EPControl
		case addr&0x0f <= 3:
			want = redir.EPBulk
		}
		if ep.EPType[i] != want {
			t.Errorf("ep_info endpoint %#02x: type %d, want %d", addr, ep.EPType[i], want)
		}
		if want == redir.EPBulk && ep.MaxPacketSize[i] != usbproto.BulkPacket {
			t.Errorf("ep_info endpoint %#02x: max packet size %d", addr, ep.MaxPacketSize[i])
		}
	}
	// Serial and strings.
	if got := decodeString(g.controlIn(0, reqGetDescriptor, dtString<<8|strSerial, usbproto.LangEnglishUS, 255)); got != "sn-7" {
		t.Errorf("serial %q", got)
	}
	// A descriptor read shorter than it is comes back truncated.
	if b := g.controlIn(0, reqGetDescriptor, dtConfiguration<<8, 0, 4); len(b) != 4 {
		t.Errorf("4-byte configuration read: %d bytes", len(b))
	}
	if b := g.controlIn(0, reqGetDescriptor, dtDeviceQualifier<<8, 0, 64); !bytes.Equal(b, qualifierDescriptor()) {
		t.Errorf("device qualifier % x", b)
	}
	// GET_INFO.
	info, err := usbproto.DecodeInfo(g.controlIn(usbproto.VendorIn, usbproto.ReqGetInfo, 0, 0, 64))
	if err != nil {
		t.Fatal(err)
	}
	wantInfo := usbproto.Info{Version: usbproto.ProtocolVersion, Pairs: 3, MaxRecordSize: usbproto.MaxRecordSize, MaxRecordsPerTransfer: usbproto.MaxRecordsPerTransfer,
		MaxTransferBytes: usbproto.MaxTransferBytes, OutWindow: usbproto.OutWindow, InWindow: usbproto.InWindow, Engines: 1<<1 | 1<<2 | 1<<3 | 1<<4}
	if info != wantInfo {
		t.Errorf("GET_INFO %+v, want %+v", info, wantInfo)
	}
	// get_configuration, set_configuration 0 and back, alt settings.
	if err := g.send(g.id(), redir.GetConfiguration{}); err != nil {
		t.Fatal(err)
	}
	if cs := g.wait(g.ctrl, "configuration_status").body.(redir.ConfigurationStatus); cs.Configuration != 1 || cs.Status != redir.StatusSuccess {
		t.Errorf("get_configuration: %+v", cs)
	}
	g.setConfiguration(0)
	if st := g.controlOut(usbproto.VendorOut, usbproto.ReqSetQueue, 0, 0, usbproto.QueueSetup{Engine: ycqdev.EngineEcho, RecordSize: 64}.Encode(nil)); st != redir.StatusStall {
		t.Errorf("SET_QUEUE unconfigured: status %d, want a stall", st)
	}
	g.setConfiguration(1)
	for _, tc := range []struct {
		iface, alt uint8
		want       redir.Status
	}{{0, 0, redir.StatusSuccess}, {0, 1, redir.StatusStall}, {1, 0, redir.StatusStall}} {
		if err := g.send(g.id(), redir.SetAltSetting{Interface: tc.iface, Alt: tc.alt}); err != nil {
			t.Fatal(err)
		}
		if as := g.wait(g.ctrl, "alt_setting_status").body.(redir.AltSettingStatus); as.Status != tc.want {
			t.Errorf("set_alt_setting %d %d: %+v, want status %d", tc.iface, tc.alt, as, tc.want)
		}
	}
	// GET_QUEUE before and after SET_QUEUE.
	if s := g.queueState(2); s != (usbproto.QueueState{}) {
		t.Errorf("GET_QUEUE of a stopped pair: %+v", s)
	}
	g.setQueue(2, ycqdev.EngineCRC32C, 4096)
	want := usbproto.QueueState{Engine: ycqdev.EngineCRC32C, RecordSize: 4096, ResponseSize: 8, RecordsPerTransfer: 64, RingSlots: 128, State: usbproto.QueueRunning}
	if s := g.queueState(2); s != want {
		t.Errorf("GET_QUEUE %+v, want %+v", s, want)
	}
	if st := g.controlOut(usbproto.VendorOut, usbproto.ReqSetQueue, 0, 2, usbproto.QueueSetup{Engine: ycqdev.EngineEcho, RecordSize: 64}.Encode(nil)); st != redir.StatusStall {
		t.Errorf("SET_QUEUE on a running pair: status %d, want a stall", st)
	}
	if c := d.Counters(); c.BadControl != 4 {
		t.Errorf("bad_control %d, want 4 (SET_QUEUE unconfigured, two alternate settings, SET_QUEUE on a running pair)", c.BadControl)
	}
}
