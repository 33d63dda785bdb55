package usbdev

// The standard USB layouts the device answers with (USB 2.0 chapter 9):
// the setup packet's codes, and the device, configuration, interface,
// endpoint, string and device qualifier descriptors. This file owns them
// (only the device builds them; a host reads them through libusb);
// desc_test.go pins each against literal bytes. What they carry, the
// identity of USB.md section 1, is package usbproto's.

import (
	"encoding/binary"
	"unicode/utf16"

	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

var le = binary.LittleEndian

// What the descriptors say beyond the identity of USB.md section 1
// (usbproto's).
const (
	DefaultSerial = "0001" // string 3, iSerialNumber, when Options.Serial is ""

	maxPowerUnits = 50   // bMaxPower, in 2 mA units: 100 mA
	attrBusPower  = 0x80 // bmAttributes: reserved bit 7 set, bus powered, no remote wakeup
)

// String descriptor indices.
const (
	strLangIDs      = 0
	strManufacturer = 1
	strProduct      = 2
	strSerial       = 3
)

// Setup packet: bmRequestType bits and standard bRequest codes.
const (
	reqDirIn       = 0x80 // bit 7: device to host
	reqTypeMask    = 0x60 // bits 6..5
	reqTypeStd     = 0x00
	reqTypeVendor  = 0x40
	reqRecipMask   = 0x1F // bits 4..0
	reqRecipDevice = 0x00
	reqRecipIface  = 0x01
	reqRecipEP     = 0x02

	reqGetStatus        = 0x00
	reqClearFeature     = 0x01
	reqSetFeature       = 0x03
	reqSetAddress       = 0x05
	reqGetDescriptor    = 0x06
	reqGetConfiguration = 0x08
	reqSetConfiguration = 0x09
	reqGetInterface     = 0x0A
	reqSetInterface     = 0x0B

	featureEndpointHalt = 0
)

// Descriptor types.
const (
	dtDevice          = 1
	dtConfiguration   = 2
	dtString          = 3
	dtInterface       = 4
	dtEndpoint        = 5
	dtDeviceQualifier = 6
)

// Endpoint attributes (the addresses are usbproto's).
const (
	epBulk = 0x02 // bmAttributes: bulk
)

// Device descriptor (18 bytes).
const (
	offDevLength        = 0  // u8 bLength
	offDevType          = 1  // u8 bDescriptorType
	offDevBCDUSB        = 2  // u16 bcdUSB
	offDevClass         = 4  // u8 bDeviceClass
	offDevSubClass      = 5  // u8 bDeviceSubClass
	offDevProtocol      = 6  // u8 bDeviceProtocol
	offDevMaxPacket0    = 7  // u8 bMaxPacketSize0
	offDevVendor        = 8  // u16 idVendor
	offDevProduct       = 10 // u16 idProduct
	offDevBCDDevice     = 12 // u16 bcdDevice
	offDevManufacturer  = 14 // u8 iManufacturer
	offDevProductStr    = 15 // u8 iProduct
	offDevSerial        = 16 // u8 iSerialNumber
	offDevNumConfigs    = 17 // u8 bNumConfigurations
	sizeofDeviceDesc    = 18
	offQualLength       = 0 // u8 bLength
	offQualType         = 1 // u8 bDescriptorType
	offQualBCDUSB       = 2 // u16 bcdUSB
	offQualClass        = 4 // u8 bDeviceClass
	offQualSubClass     = 5 // u8 bDeviceSubClass
	offQualProtocol     = 6 // u8 bDeviceProtocol
	offQualMaxPacket0   = 7 // u8 bMaxPacketSize0
	offQualNumConfigs   = 8 // u8 bNumConfigurations
	offQualReserved     = 9 // u8 bReserved
	sizeofQualifierDesc = 10
)

// Configuration descriptor (9 bytes), then the interface (9) and its
// endpoints (7 each).
const (
	offCfgLength       = 0 // u8 bLength
	offCfgType         = 1 // u8 bDescriptorType
	offCfgTotalLength  = 2 // u16 wTotalLength
	offCfgNumIfaces    = 4 // u8 bNumInterfaces
	offCfgValue        = 5 // u8 bConfigurationValue
	offCfgString       = 6 // u8 iConfiguration
	offCfgAttributes   = 7 // u8 bmAttributes
	offCfgMaxPower     = 8 // u8 bMaxPower
	sizeofConfigDesc   = 9
	offIfLength        = 0 // u8 bLength
	offIfType          = 1 // u8 bDescriptorType
	offIfNumber        = 2 // u8 bInterfaceNumber
	offIfAlt           = 3 // u8 bAlternateSetting
	offIfNumEndpoints  = 4 // u8 bNumEndpoints
	offIfClass         = 5 // u8 bInterfaceClass
	offIfSubClass      = 6 // u8 bInterfaceSubClass
	offIfProtocol      = 7 // u8 bInterfaceProtocol
	offIfString        = 8 // u8 iInterface
	sizeofIfaceDesc    = 9
	offEPLength        = 0 // u8 bLength
	offEPType          = 1 // u8 bDescriptorType
	offEPAddress       = 2 // u8 bEndpointAddress
	offEPAttributes    = 3 // u8 bmAttributes
	offEPMaxPacket     = 4 // u16 wMaxPacketSize
	offEPInterval      = 6 // u8 bInterval
	sizeofEndpointDesc = 7
	offStrLength       = 0 // u8 bLength
	offStrType         = 1 // u8 bDescriptorType
	offStrData         = 2 // UTF-16LE code units, or LANGIDs for index 0
	maxStringUnits     = (255 - offStrData) / 2
)

// configTotalLength is wTotalLength for a device of pairs queue pairs.
func configTotalLength(pairs int) int {
	return sizeofConfigDesc + sizeofIfaceDesc + 2*pairs*sizeofEndpointDesc
}

// deviceDescriptor is the device descriptor.
func deviceDescriptor() []byte {
	b := make([]byte, sizeofDeviceDesc)
	b[offDevLength] = sizeofDeviceDesc
	b[offDevType] = dtDevice
	le.PutUint16(b[offDevBCDUSB:], usbproto.BCDUSB)
	b[offDevClass], b[offDevSubClass], b[offDevProtocol] = 0, 0, 0
	b[offDevMaxPacket0] = usbproto.MaxPacket0
	le.PutUint16(b[offDevVendor:], usbproto.VendorID)
	le.PutUint16(b[offDevProduct:], usbproto.ProductID)
	le.PutUint16(b[offDevBCDDevice:], usbproto.BCDDevice)
	b[offDevManufacturer] = strManufacturer
	b[offDevProductStr] = strProduct
	b[offDevSerial] = strSerial
	b[offDevNumConfigs] = 1
	return b
}

// qualifierDescriptor is the device qualifier descriptor.
func qualifierDescriptor() []byte {
	b := make([]byte, sizeofQualifierDesc)
	b[offQualLength] = sizeofQualifierDesc
	b[offQualType] = dtDeviceQualifier
	le.PutUint16(b[offQualBCDUSB:], usbproto.BCDUSB)
	b[offQualClass], b[offQualSubClass], b[offQualProtocol] = 0, 0, 0
	b[offQualMaxPacket0] = usbproto.MaxPacket0
	b[offQualNumConfigs] = 1
	b[offQualReserved] = 0
	return b
}

// configDescriptor is the configuration descriptor with its interface and
// endpoint descriptors, for pairs queue pairs.
func configDescriptor(pairs int) []byte {
	total := configTotalLength(pairs)
	b := make([]byte, total)
	c := b[:sizeofConfigDesc]
	c[offCfgLength] = sizeofConfigDesc
	c[offCfgType] = dtConfiguration
	le.PutUint16(c[offCfgTotalLength:], uint16(total))
	c[offCfgNumIfaces] = 1
	c[offCfgValue] = usbproto.Configuration
	c[offCfgString] = 0
	c[offCfgAttributes] = attrBusPower
	c[offCfgMaxPower] = maxPowerUnits
	f := b[sizeofConfigDesc:][:sizeofIfaceDesc]
	f[offIfLength] = sizeofIfaceDesc
	f[offIfType] = dtInterface
	f[offIfNumber] = usbproto.InterfaceNum
	f[offIfAlt] = usbproto.AltSetting
	f[offIfNumEndpoints] = uint8(2 * pairs)
	f[offIfClass], f[offIfSubClass], f[offIfProtocol] = usbproto.ClassVendor, 0, 0
	f[offIfString] = 0
	at := sizeofConfigDesc + sizeofIfaceDesc
	for i := range pairs {
		for _, addr := range []uint8{usbproto.OutEndpoint(i), usbproto.InEndpoint(i)} {
			e := b[at:][:sizeofEndpointDesc]
			e[offEPLength] = sizeofEndpointDesc
			e[offEPType] = dtEndpoint
			e[offEPAddress] = addr
			e[offEPAttributes] = epBulk
			le.PutUint16(e[offEPMaxPacket:], usbproto.BulkPacket)
			e[offEPInterval] = 0
			at += sizeofEndpointDesc
		}
	}
	return b
}

// stringDescriptor is string descriptor index (0: the LANGID list), or
// false for an index the device does not have.
func stringDescriptor(index uint8, serial string) ([]byte, bool) {
	var units []uint16
	switch index {
	case strLangIDs:
		units = []uint16{usbproto.LangEnglishUS}
	case strManufacturer:
		units = utf16.Encode([]rune(usbproto.Manufacturer))
	case strProduct:
		units = utf16.Encode([]rune(usbproto.Product))
	case strSerial:
		units = utf16.Encode([]rune(serial))
	default:
		return nil, false
	}
	units = units[:min(len(units), maxStringUnits)]
	b := make([]byte, offStrData+2*len(units))
	b[offStrLength] = uint8(len(b))
	b[offStrType] = dtString
	for i, u := range units {
		le.PutUint16(b[offStrData+2*i:], u)
	}
	return b, true
}
