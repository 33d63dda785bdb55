package usbproto

import (
	"testing"

	"github.com/ycq-dev/ycq/ycqdev"
)

// TestContract pins the identity, the requests and the limits of USB.md
// sections 1 to 3.
func TestContract(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"idVendor", VendorID, 0x1209}, {"idProduct", ProductID, 0x0001}, {"bcdUSB", BCDUSB, 0x0200},
		{"bcdDevice", BCDDevice, 0x0100}, {"bMaxPacketSize0", MaxPacket0, 64}, {"bulk wMaxPacketSize", BulkPacket, 512},
		{"bConfigurationValue", Configuration, 1}, {"bInterfaceNumber", InterfaceNum, 0}, {"bAlternateSetting", AltSetting, 0},
		{"bInterfaceClass", ClassVendor, 0xFF}, {"LANGID", LangEnglishUS, 0x0409},
		{"GET_INFO", ReqGetInfo, 1}, {"SET_QUEUE", ReqSetQueue, 2}, {"RESET", ReqReset, 3},
		{"GET_COUNTERS", ReqGetCounters, 4}, {"GET_QUEUE", ReqGetQueue, 5},
		{"vendor OUT", VendorOut, 0x40}, {"vendor IN", VendorIn, 0xC0},
		{"version", ProtocolVersion, 1}, {"max pairs", MaxPairs, 8}, {"min record", MinRecordSize, 8},
		{"max record", MaxRecordSize, 65536}, {"record align", RecordAlign, 8},
		{"max records a transfer", MaxRecordsPerTransfer, 256}, {"max transfer", MaxTransferBytes, 262144},
		{"OUT window", OutWindow, 4}, {"IN window", InWindow, 64}, {"source responses", MaxSourceResponses, 1 << 20},
		{"running", QueueRunning, 1}, {"OUT halted", QueueOutHalted, 2}, {"IN halted", QueueInHalted, 4}, {"failed", QueueFailed, 8},
	} {
		if c.got != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, c.got, c.want)
		}
	}
	if Manufacturer != "ycq" || Product != "ycq usb far processor" {
		t.Errorf("strings %q, %q", Manufacturer, Product)
	}
	for req, name := range map[uint8]string{ReqGetInfo: "GET_INFO", ReqSetQueue: "SET_QUEUE", ReqReset: "RESET",
		ReqGetCounters: "GET_COUNTERS", ReqGetQueue: "GET_QUEUE", 9: "vendor request 0x09"} {
		if got := RequestName(req); got != name {
			t.Errorf("RequestName(%d) = %q, want %q", req, got, name)
		}
	}
}

// TestEndpoints: pair i's endpoints are 0x01+i and 0x81+i, and
// EndpointPair finds the pair of every one of them and of nothing else.
func TestEndpoints(t *testing.T) {
	if OutEndpoint(0) != 0x01 || InEndpoint(0) != 0x81 || OutEndpoint(7) != 0x08 || InEndpoint(7) != 0x88 {
		t.Fatalf("endpoints %#x %#x %#x %#x", OutEndpoint(0), InEndpoint(0), OutEndpoint(7), InEndpoint(7))
	}
	found := 0
	for ep := range 256 {
		pair, ok := EndpointPair(uint8(ep))
		if !ok {
			continue
		}
		found++
		if uint8(ep) != OutEndpoint(pair) && uint8(ep) != InEndpoint(pair) {
			t.Errorf("endpoint %#02x: pair %d", ep, pair)
		}
	}
	if found != 2*MaxPairs {
		t.Errorf("%d endpoints name a pair, want %d", found, 2*MaxPairs)
	}
}

// TestGeometry pins the per-pair limits USB.md derives from the record
// size, and that a transfer's records always fit a ring.
func TestGeometry(t *testing.T) {
	for _, tc := range []struct{ rec, perTransfer, slots int }{
		{8, 256, 1024}, {64, 256, 1024}, {512, 256, 1024}, {1024, 256, 512}, {4096, 64, 128},
		{16384, 16, 32}, {40000, 6, 8}, {65528, 4, 8}, {65536, 4, 8},
	} {
		if k, s := RecordsPerTransfer(tc.rec), RingSlots(tc.rec); k != tc.perTransfer || s != tc.slots {
			t.Errorf("record size %d: %d a transfer, %d slots; want %d, %d", tc.rec, k, s, tc.perTransfer, tc.slots)
		}
	}
	for r := MinRecordSize; r <= MaxRecordSize; r += RecordAlign {
		if k, s := RecordsPerTransfer(r), RingSlots(r); !ValidRecordSize(r) || k < 1 || k > s || s&(s-1) != 0 || s*r > ringBytes && s != minRingSlots {
			t.Fatalf("record size %d: %d a transfer, %d slots", r, k, s)
		}
	}
	for _, r := range []int{0, 4, 12, 65544, 1 << 31} {
		if ValidRecordSize(r) {
			t.Errorf("record size %d accepted", r)
		}
	}
}

// TestResponses: each engine's response size and how many responses it
// gives a record.
func TestResponses(t *testing.T) {
	rec := func(n uint32) []byte { return le.AppendUint32(nil, n) }
	for _, c := range []struct {
		engine     uint32
		rec        []byte
		size, want int
	}{
		{ycqdev.EngineEcho, rec(7), 4096, 1}, {ycqdev.EngineCRC32C, rec(7), 8, 1}, {ycqdev.EngineSink, rec(7), 0, 0},
		{ycqdev.EngineSource, rec(7), 4096, 7}, {ycqdev.EngineSource, rec(0), 4096, 1},
		{ycqdev.EngineSource, rec(1 << 31), 4096, 1 << 20}, {ycqdev.EngineSource, []byte{9, 0, 0}, 4096, 1},
		{99, rec(7), 4096, 1},
	} {
		if got := ResponseSize(c.engine, 4096); got != c.size {
			t.Errorf("engine %d: responses of %d bytes, want %d", c.engine, got, c.size)
		}
		if got := Responses(c.engine, c.rec); got != c.want {
			t.Errorf("engine %d, record % x: %d responses, want %d", c.engine, c.rec, got, c.want)
		}
	}
}
