// Package devicemodel is a software PCI device served over the vfio-user
// protocol: a server that speaks vfio-user to QEMU's vfio-user-pci or to
// the Go client in package vfio/user, and the ycq device behind it, which
// plays the far processor of ycq queues.
//
// The server (Server) owns the socket, the DMA table built from the
// client's DMA_MAP messages, and the interrupt eventfds; the device (Device)
// owns its registers and state and reaches host memory only through the
// Host the server gives it, with bounds-checked accesses. Everything the
// client sends is untrusted.
//
// Concurrency: a Server serves one client at a time. Per connection a
// reader goroutine frames messages and a dispatcher calls the Device's
// methods one at a time, in message order; the device runs goroutines of
// its own (the ycq device: one polling loop for all its queue pairs, or
// Options.Loops of them), which use the Host from any
// goroutine. DMA_MAP and DMA_UNMAP take the DMA table exclusively, device
// accesses share it, so an unmap completes only after the accesses to its
// range. When the client goes, the server detaches the device (which
// resets it) before it serves the next.
//
// The ycq device follows resizes of RESIZABLE queues (ycqdev/REGISTERS.md,
// "Resizing a queue pair"): its loop takes up the RESIZE register between
// batches, follows the link lines as package ring's single agent does,
// pins each new generation's memory and gives back the old pins before it
// shows the new GENERATION, so the host may unmap the old memory then.
package devicemodel
