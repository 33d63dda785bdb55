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
package devicemodel
