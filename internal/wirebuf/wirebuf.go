// Package wirebuf holds the two byte-slice helpers the wire-protocol
// packages (vfio/user, usb/redir) encode and decode with.
package wirebuf

import "slices"

// Grow extends b by n zero bytes and returns it with the new bytes.
func Grow(b []byte, n int) ([]byte, []byte) {
	b = slices.Grow(b, n)
	l := len(b)
	b = b[:l+n]
	clear(b[l:])
	return b, b[l:]
}

// NilIfEmpty returns nil for an empty slice, so decoded values compare
// equal to literals that leave a byte field unset.
func NilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
