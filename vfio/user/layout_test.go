package user

import "testing"

// TestLayoutConstants pins every size to the protocol's number and checks
// that each struct's last field ends where the struct does, so an edited
// offset cannot silently overlap its neighbour. The golden tests pin the
// same layouts byte for byte.
func TestLayoutConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"sizeofHeader", sizeofHeader, 16},
		{"header error end", offHeaderError + 4, sizeofHeader},
		{"sizeofVersion", sizeofVersion, 4},
		{"sizeofDMAMap", sizeofDMAMap, 32},
		{"dma map size end", offDMAMapSize + 8, sizeofDMAMap},
		{"sizeofDMAUnmap", sizeofDMAUnmap, 24},
		{"dma unmap size end", offDMAUnmapSize + 8, sizeofDMAUnmap},
		{"sizeofDeviceInfo", sizeofDeviceInfo, 16},
		{"device info num_irqs end", offDeviceInfoNumIRQs + 4, sizeofDeviceInfo},
		{"sizeofRegionInfo", sizeofRegionInfo, 32},
		{"region info offset end", offRegionInfoOffset + 8, sizeofRegionInfo},
		{"sizeofCapHeader", sizeofCapHeader, 8},
		{"cap next end", offCapNext + 4, sizeofCapHeader},
		{"sizeofCapSparseMmap", sizeofCapSparseMmap, 16},
		{"sparse reserved end", offSparseReserved + 4, offSparseAreas},
		{"sizeofSparseArea", sizeofSparseArea, 16},
		{"sizeofCapType", sizeofCapType, 16},
		{"cap type subtype end", offCapTypeSubtype + 4, sizeofCapType},
		{"sizeofIRQInfo", sizeofIRQInfo, 16},
		{"irq info count end", offIRQInfoCount + 4, sizeofIRQInfo},
		{"sizeofIRQSet", sizeofIRQSet, 20},
		{"irq set count end", offIRQSetCount + 4, offIRQSetData},
		{"sizeofRegionAccess", sizeofRegionAccess, 16},
		{"region access count end", offRegionAccessCount + 4, offRegionAccessData},
		{"sizeofWriteMultiEntry", sizeofWriteMultiEntry, 24},
		{"write multi entry data end", offWriteMultiEntData + WriteMultiMaxData, sizeofWriteMultiEntry},
		{"sizeofDMASpec", sizeofDMASpec, 16},
		{"dma spec count end", offDMASpecCount + 8, offDMASpecData},
		{"sizeofDMAQEMU", sizeofDMAQEMU, 16},
		{"dma qemu count end", offDMAQEMUCount + 4, offDMAQEMUData},
		{"sizeofDeviceFeature", sizeofDeviceFeature, 8},
		{"sizeofMigData", sizeofMigData, 8},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}
