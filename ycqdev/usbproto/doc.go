// Package usbproto is the contract of the ycq USB far processor
// (devicemodel/usbdev/USB.md, version 1) that both of its sides share:
// the device's identity and endpoint numbering, the vendor control
// requests (bRequest codes and bmRequestType values), the limits of the
// contract and the per-pair limits that follow from a record size, and the
// byte layout of each vendor request's data (GET_INFO, SET_QUEUE,
// GET_QUEUE, GET_COUNTERS) with its Encode and Decode. It is to the USB
// device what package ycqdev is to the PCIe device's register map: the
// host driver (hostdriver/usbhost) and the device model
// (devicemodel/usbdev) both import it, and neither defines these bytes
// again. It imports nothing of the module but ycqdev (its engine ids), so
// a host driver links no device model.
//
// The standard USB descriptors (device, configuration, interface,
// endpoint, string) are not here: only the device builds them (the host
// reads them through libusb), and devicemodel/usbdev owns their layouts.
//
// # Layouts
//
// layout.go owns every vendor request's layout, with named offsets and
// sizes; layout_test.go pins each against literal bytes, one comment per
// field. Every multi-byte field is little-endian.
//
// # Concurrency and ownership
//
// The package holds constants, value types and pure functions: everything
// is safe for concurrent use. Encode appends to the slice it is given and
// returns it; Decode reads its argument and keeps no reference to it.
//
// # Hostile input
//
// Each side decodes what the other sent: the device SET_QUEUE's data, the
// host the device's answers. Decode checks the length of its input (for
// GET_COUNTERS, against the pairs its header names, at most MaxPairs) and
// that reserved fields are 0, and refuses anything else with a
// *LayoutError wrapping ErrLayout, never a panic; what it accepts encodes
// back to the same bytes (FuzzDecode). Whether the values make sense (a
// record size the device takes, limits a host can live with) is each
// side's check.
package usbproto
