package vfio

import "encoding/binary"

// Read32 reads a 32-bit little-endian register of a region.
func Read32(d Device, idx RegionIndex, off uint64) (uint32, error) {
	var b [4]byte
	if err := d.ReadRegion(idx, off, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

// Write32 writes a 32-bit little-endian register of a region.
func Write32(d Device, idx RegionIndex, off uint64, v uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return d.WriteRegion(idx, off, b[:])
}

// Read64 reads a 64-bit little-endian register of a region.
func Read64(d Device, idx RegionIndex, off uint64) (uint64, error) {
	var b [8]byte
	if err := d.ReadRegion(idx, off, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// Write64 writes a 64-bit little-endian register of a region.
func Write64(d Device, idx RegionIndex, off uint64, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return d.WriteRegion(idx, off, b[:])
}

// ReadConfig16 reads a 16-bit word of PCI config space.
func ReadConfig16(d Device, off uint64) (uint16, error) {
	var b [2]byte
	if err := d.ReadRegion(ConfigRegion, off, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b[:]), nil
}

// ReadConfig32 reads a 32-bit word of PCI config space. The host driver
// reads config space 16 bits at a time; this completes the set for other
// drivers written against Device (vendor and device id in one read).
func ReadConfig32(d Device, off uint64) (uint32, error) { return Read32(d, ConfigRegion, off) }

// WriteConfig16 writes a 16-bit word of PCI config space.
func WriteConfig16(d Device, off uint64, v uint16) error {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	return d.WriteRegion(ConfigRegion, off, b[:])
}
