// Package usbdev is the ycq device's USB personality: a USB far processor
// served over usbredir (package usb/redir), the usb-host side of the
// protocol, to QEMU's usb-redir device (the usb-guest) or to any peer that
// speaks it. USB.md, beside this file, is the contract a host driver
// relies on: identity and descriptors, one vendor-specific interface with
// a bulk OUT and a bulk IN endpoint per queue pair, the vendor control
// requests (GET_INFO, SET_QUEUE, RESET, GET_COUNTERS, GET_QUEUE), the
// framing of records in bulk transfers, and what cancels, resets,
// configuration changes and replugs do. Package ycqdev/usbproto holds what
// of it both sides share (identity, endpoints, the vendor requests, their
// limits and data layouts); this package adds the standard descriptors
// (desc.go) and the device's behaviour.
//
// # The device is a ring user
//
// Each running queue pair has two rings of package ring in plain Go
// memory: records from OUT transfers are copied into the slots of its
// receive ring (from the usbredir reader's buffer: the one copy on the
// device side, where hardware would DMA), the engine (devicemodel's echo,
// crc32c, sink or source) reads each record in place and writes its
// responses into slots of the transmit ring, and IN requests are completed
// from the transmit ring: the response slots of one completion are
// consecutive, so the usbredir Writer sends them with one writev straight
// from the ring's data region.
//
// # Concurrency
//
// A Device runs two goroutines while Serve runs: the reader (Serve's own
// goroutine), which reads and answers packets one at a time, and the
// engine loop, which moves held OUT transfers into the receive rings, runs
// the engines and completes IN requests. Device.mu guards the device's
// state: configuration, the pairs, the transfers held, counters. Device.wmu
// serialises writes to the connection and is always taken before mu, so a
// decision made under mu reaches the wire in order with every other: a
// RESET's answer follows the cancellations it caused, and no completion of
// a dropped queue can follow it. The engine runs a pair's engine with no
// lock held: only it consumes a receive ring and drives a transmit ring.
// RESET and the like replace a pair's queue rather than reset it in
// place, so an engine loop still busy with the old one touches memory no
// one else uses. Unplug, Plug, Connected, Counters and Close may be called
// from any goroutine.
//
// # Memory
//
// Bounded by the contract's windows: per pair, its two rings (at most
// 512 KiB of slots each), at most usbproto.OutWindow staged OUT transfers
// of at most usbproto.MaxTransferBytes, at most usbproto.InWindow held IN
// requests; per
// connection, the reader's buffer (at most ReadLimit). A peer that sends
// more OUT transfers than the window while the rings are full is not read
// from until there is room (backpressure, never unbounded buffering).
//
// # Hostile input
//
// Every packet is decoded by usb/redir, which refuses malformed ones; the
// device then checks endpoints, directions, lengths against the pair's
// record size, ids against those it holds, and every control request's
// fields. What it refuses it answers with a STALL or usb_redir_inval and
// counts (GET_COUNTERS), and carries on; only a stream that is out of
// step (a packet longer than ReadLimit, a bad first packet) or a broken
// connection ends Serve.
package usbdev
