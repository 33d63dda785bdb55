package ring

import "unsafe"

// slotAs views the start of a slot as a *T. NewTyped checked that T is
// plain data, fits in a slot, and that every slot is aligned for T; b holds
// at least sizeof(T) bytes (a full slot, or a record of exactly that size).
func slotAs[T any](b []byte) *T {
	return (*T)(unsafe.Pointer(&b[:unsafe.Sizeof(*new(T))][0]))
}
