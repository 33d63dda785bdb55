package usbdev

import "github.com/ycq-dev/ycq/ycqdev/usbproto"

// DefaultPairs is the number of queue pairs when Options.Pairs is 0.
const DefaultPairs = 2

// The parts of the contract (package usbproto, USB.md) that callers of the
// device model name through it, for its Options and what it reports; the
// device itself uses usbproto's.
const (
	VendorID      = usbproto.VendorID
	ProductID     = usbproto.ProductID
	Manufacturer  = usbproto.Manufacturer
	Product       = usbproto.Product
	MaxPairs      = usbproto.MaxPairs      // Options.Pairs' most
	MaxRecordSize = usbproto.MaxRecordSize // the largest record SET_QUEUE takes
)

// Counters is GET_COUNTERS' answer, as Device.Counters reports it.
type Counters = usbproto.Counters
