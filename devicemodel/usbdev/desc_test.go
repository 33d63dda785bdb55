package usbdev

import (
	"bytes"
	"testing"

	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// cat joins byte slices.
func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// TestDeviceDescriptorGolden pins the device descriptor, byte for byte.
func TestDeviceDescriptorGolden(t *testing.T) {
	want := []byte{
		18,         // bLength
		1,          // bDescriptorType: device
		0x00, 0x02, // bcdUSB 0x0200
		0x00,       // bDeviceClass: per interface
		0x00,       // bDeviceSubClass
		0x00,       // bDeviceProtocol
		64,         // bMaxPacketSize0
		0x09, 0x12, // idVendor 0x1209
		0x01, 0x00, // idProduct 0x0001
		0x00, 0x01, // bcdDevice 0x0100
		1, // iManufacturer
		2, // iProduct
		3, // iSerialNumber
		1, // bNumConfigurations
	}
	if got := deviceDescriptor(); !bytes.Equal(got, want) {
		t.Fatalf("device descriptor\n got % x\nwant % x", got, want)
	}
}

// TestQualifierDescriptorGolden pins the device qualifier descriptor.
func TestQualifierDescriptorGolden(t *testing.T) {
	want := []byte{
		10,         // bLength
		6,          // bDescriptorType: device qualifier
		0x00, 0x02, // bcdUSB 0x0200
		0x00, // bDeviceClass
		0x00, // bDeviceSubClass
		0x00, // bDeviceProtocol
		64,   // bMaxPacketSize0
		1,    // bNumConfigurations
		0,    // bReserved
	}
	if got := qualifierDescriptor(); !bytes.Equal(got, want) {
		t.Fatalf("qualifier descriptor\n got % x\nwant % x", got, want)
	}
}

// TestConfigDescriptorGolden pins the configuration descriptor of a
// two-pair device with its interface and four endpoints.
func TestConfigDescriptorGolden(t *testing.T) {
	want := cat(
		[]byte{
			9,        // bLength
			2,        // bDescriptorType: configuration
			46, 0x00, // wTotalLength 9 + 9 + 4*7
			1,    // bNumInterfaces
			1,    // bConfigurationValue
			0,    // iConfiguration
			0x80, // bmAttributes: bus powered
			50,   // bMaxPower: 100 mA
		},
		[]byte{
			9,    // bLength
			4,    // bDescriptorType: interface
			0,    // bInterfaceNumber
			0,    // bAlternateSetting
			4,    // bNumEndpoints: 2 per pair
			0xFF, // bInterfaceClass: vendor specific
			0x00, // bInterfaceSubClass
			0x00, // bInterfaceProtocol
			0,    // iInterface
		},
		[]byte{7, 5, 0x01, 0x02, 0x00, 0x02, 0}, // bLength, endpoint, pair 0 OUT 0x01, bulk, wMaxPacketSize 512, bInterval 0
		[]byte{7, 5, 0x81, 0x02, 0x00, 0x02, 0}, // pair 0 IN 0x81
		[]byte{7, 5, 0x02, 0x02, 0x00, 0x02, 0}, // pair 1 OUT 0x02
		[]byte{7, 5, 0x82, 0x02, 0x00, 0x02, 0}, // pair 1 IN 0x82
	)
	if got := configDescriptor(2); !bytes.Equal(got, want) {
		t.Fatalf("configuration descriptor\n got % x\nwant % x", got, want)
	}
	if n := len(configDescriptor(usbproto.MaxPairs)); n != configTotalLength(usbproto.MaxPairs) || n != 9+9+16*7 {
		t.Fatalf("%d-pair configuration: %d bytes", usbproto.MaxPairs, n)
	}
}

// TestStringDescriptorsGolden pins the string descriptors.
func TestStringDescriptorsGolden(t *testing.T) {
	for _, tc := range []struct {
		index uint8
		want  []byte
	}{
		{0, []byte{4, 3, 0x09, 0x04}},                      // bLength, string, LANGID 0x0409
		{1, []byte{8, 3, 'y', 0, 'c', 0, 'q', 0}},          // "ycq", UTF-16LE
		{3, []byte{10, 3, '0', 0, '0', 0, '0', 0, '1', 0}}, // the default serial "0001"
	} {
		got, ok := stringDescriptor(tc.index, DefaultSerial)
		if !ok || !bytes.Equal(got, tc.want) {
			t.Errorf("string %d\n got % x\nwant % x", tc.index, got, tc.want)
		}
	}
	if b, ok := stringDescriptor(strProduct, ""); !ok || len(b) != 2+2*len(usbproto.Product) || decodeString(b) != usbproto.Product {
		t.Errorf("product string % x", b)
	}
	if _, ok := stringDescriptor(4, DefaultSerial); ok {
		t.Error("string 4 exists")
	}
	long := string(bytes.Repeat([]byte{'x'}, 300))
	if b, _ := stringDescriptor(strSerial, long); len(b) != 254 || int(b[0]) != len(b) {
		t.Errorf("a 300-character serial: a %d-byte descriptor claiming %d", len(b), b[0])
	}
}
