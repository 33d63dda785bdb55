package ring

import (
	"bytes"
	"fmt"
)

// cHeader renders ycq_ring.h, the C view of the layout for firmware
// authors, from the constants in layout.go. TestCHeader keeps the committed
// file equal to it (go test ./ring -run TestCHeader -update rewrites it).
func cHeader() []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	def := func(name string, v uint64, comment string) {
		p("#define %-30s %-10d /* %s */", name, v, comment)
	}
	hex := func(name string, v uint64, comment string) {
		p("#define %-30s %-10s /* %s */", name, fmt.Sprintf("%#xu", v), comment)
	}
	p("/* ycq_ring.h: the ycq queue metadata layout, version %d.", Version)
	p(" * Generated from ring/layout.go; do not edit. ring/LAYOUT.md explains every")
	p(" * field and the protocol. All fields are little-endian. */")
	p("#ifndef YCQ_RING_H")
	p("#define YCQ_RING_H")
	p("")
	p("#include <stddef.h>")
	p("#include <stdint.h>")
	p("")
	p("#ifdef __cplusplus")
	p("extern \"C\" {")
	p("#endif")
	p("")
	hex("YCQ_MAGIC", Magic, `"YCQ1" as little-endian bytes`)
	def("YCQ_VERSION", Version, "layout version")
	def("YCQ_LINE_SIZE", lineSize, "bytes per line")
	p("")
	p("/* Byte offsets from the start of the metadata region. */")
	for _, f := range cFields {
		def("YCQ_OFF_"+f.name, uint64(f.off), f.comment)
	}
	def("YCQ_OFF_DESCS", OffDescs, "descriptor 0")
	def("YCQ_DESC_SIZE", DescSize, "bytes per descriptor")
	def("YCQ_DESC_OFF_SEQ", DescOffSeq, "u32 stamp, within a descriptor")
	def("YCQ_DESC_OFF_INFO", DescOffInfo, "u32 info word, within a descriptor")
	hex("YCQ_INFO_LEN_MASK", InfoLenMask, "info bits 0-23: payload length")
	def("YCQ_INFO_FLAGS_SHIFT", InfoFlagsShift, "info bits 24-31: flags")
	p("")
	hex("YCQ_FEATURE_SINGLE_PRODUCER", FeatureSingleProducer, "one agent produces")
	hex("YCQ_FEATURE_SINGLE_CONSUMER", FeatureSingleConsumer, "one agent consumes")
	hex("YCQ_FEATURES_INCOMPAT_MASK", FeaturesIncompatMask, "bits an agent must understand")
	hex("YCQ_FEATURE_RESIZABLE", FeatureResizable, "one generation of a resizable queue")
	hex("YCQ_FEATURES_KNOWN", featuresKnown&^FeatureResizable, "the required bits an agent that does not follow resizes knows")
	hex("YCQ_FLAG_ABORTED", FlagAborted, "flags: slot given up by its producer")
	hex("YCQ_INFO_ABORTED", FlagAborted<<InfoFlagsShift, "YCQ_FLAG_ABORTED as it sits in the info word")
	def("YCQ_MIN_SLOTS", MinSlots, "fewest slots; the count is a power of two")
	def("YCQ_MAX_SLOTS", MaxSlots, "most slots")
	def("YCQ_MIN_SLOT_SIZE", slotAlign, "smallest slot; slot sizes are multiples of it")
	def("YCQ_MAX_SLOT_SIZE", MaxSlotSize, "slot size limit; a multiple of 8")
	p("")
	p("#define YCQ_META_SIZE(slots) (YCQ_OFF_DESCS + YCQ_DESC_SIZE * (uint64_t)(slots))")
	p("")
	p("/* The header line as a struct. */")
	p("struct ycq_header {")
	for _, f := range cFields {
		if f.off >= lineSize {
			break
		}
		p("\t%-8s %s;", f.ctype, f.field)
	}
	p("\tuint8_t  reserved[%d];", lineSize-OffGeneration-4)
	p("};")
	p("")
	p("/* One slot descriptor. */")
	p("struct ycq_desc {")
	p("\tuint32_t seq;  /* stamp: position when free, position + 1 when published */")
	p("\tuint32_t info; /* length | flags << YCQ_INFO_FLAGS_SHIFT */")
	p("};")
	p("")
	p("/* Compile-time checks: static_assert in C++11, _Static_assert in C11, a")
	p(" * negative array size before that (C99). */")
	p("#if defined(__cplusplus) && __cplusplus >= 201103L")
	p("#define YCQ_STATIC_ASSERT(e, name) static_assert(e, #name)")
	p("#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L")
	p("#define YCQ_STATIC_ASSERT(e, name) _Static_assert(e, #name)")
	p("#else")
	p("#define YCQ_STATIC_ASSERT(e, name) typedef char ycq_assert_##name[(e) ? 1 : -1]")
	p("#endif")
	for _, f := range cFields {
		if f.off >= lineSize {
			break
		}
		p("YCQ_STATIC_ASSERT(offsetof(struct ycq_header, %s) == YCQ_OFF_%s, off_%s);", f.field, f.name, f.field)
	}
	p("YCQ_STATIC_ASSERT(sizeof(struct ycq_header) == YCQ_LINE_SIZE, sizeof_header);")
	p("YCQ_STATIC_ASSERT(sizeof(struct ycq_desc) == YCQ_DESC_SIZE, sizeof_desc);")
	p("")
	p("#ifdef __cplusplus")
	p("}")
	p("#endif")
	p("")
	p("#endif /* YCQ_RING_H */")
	return b.Bytes()
}

// cFields lists the named words of the layout in offset order, with their C
// spelling.
var cFields = []struct {
	name, field, ctype string
	off                int
	comment            string
}{
	{"MAGIC", "magic", "uint32_t", OffMagic, "u32 YCQ_MAGIC"},
	{"VERSION", "version", "uint32_t", OffVersion, "u32 YCQ_VERSION"},
	{"FEATURES", "features", "uint32_t", OffFeatures, "u32 YCQ_FEATURE_* bits"},
	{"DESC_OFFSET", "desc_offset", "uint32_t", OffDescOffset, "u32 offset of descriptor 0"},
	{"SLOTS", "slots", "uint32_t", OffSlots, "u32 slot count N, a power of two"},
	{"SLOT_SIZE", "slot_size", "uint32_t", OffSlotSize, "u32 bytes per data slot, a multiple of 8"},
	{"META_SIZE", "meta_size", "uint64_t", OffMetaSize, "u64 YCQ_META_SIZE(N)"},
	{"DATA_SIZE", "data_size", "uint64_t", OffDataSize, "u64 N * slot_size"},
	{"DESC_SIZE", "desc_size", "uint32_t", OffDescSize, "u32 YCQ_DESC_SIZE"},
	{"GENERATION", "generation", "uint32_t", OffGeneration, "u32 generation of a RESIZABLE queue, from 1"},
	{"PROD_CURSOR", "", "", OffProdCursor, "u64 next position a producer reserves"},
	{"PROD_ROLLED_BACK", "", "", OffProdRolledBack, "u64 counter: slots given back by moving the cursor back"},
	{"PROD_SPARE", "", "", OffProdSpare, "u64 zero, ignored on read"},
	{"PROD_ABORTED", "", "", OffProdAborted, "u64 counter: slots aborted, holes and rolled back"},
	{"PROD_FULL", "", "", OffProdFull, "u64 counter: reserves refused as full"},
	{"PROD_CORRUPT", "", "", OffProdCorrupt, "u64 counter: corruption seen by producers"},
	{"PROD_WAKE_SENT", "", "", OffProdWakeSent, "u64 counter: wakeups sent to consumers"},
	{"PROD_WAKE_SUPPRESSED", "", "", OffProdWakeSuppressed, "u64 counter: wakeups not needed"},
	{"CONS_CURSOR", "", "", OffConsCursor, "u64 next position a consumer reserves"},
	{"CONS_RETURNED", "", "", OffConsReturned, "u64 counter: records given back unread"},
	{"CONS_SPARE", "", "", OffConsSpare, "u64 zero, ignored on read"},
	{"CONS_SKIPPED", "", "", OffConsSkipped, "u64 counter: aborted slots passed over, net"},
	{"CONS_EMPTY", "", "", OffConsEmpty, "u64 counter: reserves refused as empty"},
	{"CONS_CORRUPT", "", "", OffConsCorrupt, "u64 counter: corruption seen by consumers"},
	{"CONS_WAKE_SENT", "", "", OffConsWakeSent, "u64 counter: wakeups sent to producers"},
	{"CONS_WAKE_SUPPRESSED", "", "", OffConsWakeSuppressed, "u64 counter: wakeups not needed"},
	{"ITEMS_FUTEX", "", "", OffItemsFutex, "u32 consumers sleep here for records"},
	{"ITEMS_WAITERS", "", "", OffItemsWaiters, "u32 consumers asleep"},
	{"SPACE_FUTEX", "", "", OffSpaceFutex, "u32 producers sleep here for space"},
	{"SPACE_WAITERS", "", "", OffSpaceWaiters, "u32 producers asleep"},
	{"LINK", "", "", OffLink, "the link line of a RESIZABLE queue; zero otherwise"},
	{"LINK_NEXT", "", "", OffLinkNext, "u32 generation of the next queue, 0 until named"},
	{"LINK_SLOTS", "", "", OffLinkSlots, "u32 slot count of the next queue"},
	{"LINK_LEFT", "", "", OffLinkLeft, "u32 link_next once consumers moved on"},
	{"LINK_META_ADDR", "", "", OffLinkMetaAddr, "u64 address of the next queue's metadata, or 0"},
	{"LINK_DATA_ADDR", "", "", OffLinkDataAddr, "u64 address of the next queue's data, or 0"},
}
