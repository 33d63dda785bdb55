// Package ycqdev is the ycq device's register map (REGISTERS.md): the
// offsets, bits, error codes and engines that the driver (package
// hostdriver) and the device (package devicemodel) share. It holds
// constants only and imports nothing, so a driver for real hardware links
// no device model.
package ycqdev
