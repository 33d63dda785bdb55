/* ycq_ring.h: the ycq queue metadata layout, version 1.
 * Generated from ring/layout.go; do not edit. ring/LAYOUT.md explains every
 * field and the protocol. All fields are little-endian. */
#ifndef YCQ_RING_H
#define YCQ_RING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define YCQ_MAGIC                      0x31514359u /* "YCQ1" as little-endian bytes */
#define YCQ_VERSION                    1          /* layout version */
#define YCQ_LINE_SIZE                  64         /* bytes per line */

/* Byte offsets from the start of the metadata region. */
#define YCQ_OFF_MAGIC                  0          /* u32 YCQ_MAGIC */
#define YCQ_OFF_VERSION                4          /* u32 YCQ_VERSION */
#define YCQ_OFF_FEATURES               8          /* u32 YCQ_FEATURE_* bits */
#define YCQ_OFF_DESC_OFFSET            12         /* u32 offset of descriptor 0 */
#define YCQ_OFF_SLOTS                  16         /* u32 slot count N, a power of two */
#define YCQ_OFF_SLOT_SIZE              20         /* u32 bytes per data slot, a multiple of 8 */
#define YCQ_OFF_META_SIZE              24         /* u64 YCQ_META_SIZE(N) */
#define YCQ_OFF_DATA_SIZE              32         /* u64 N * slot_size */
#define YCQ_OFF_DESC_SIZE              40         /* u32 YCQ_DESC_SIZE */
#define YCQ_OFF_GENERATION             44         /* u32 generation of a RESIZABLE queue, from 1 */
#define YCQ_OFF_PROD_CURSOR            64         /* u64 next position a producer reserves */
#define YCQ_OFF_PROD_ROLLED_BACK       72         /* u64 counter: slots given back by moving the cursor back */
#define YCQ_OFF_PROD_SPARE             80         /* u64 zero, ignored on read */
#define YCQ_OFF_PROD_ABORTED           88         /* u64 counter: slots aborted, holes and rolled back */
#define YCQ_OFF_PROD_FULL              96         /* u64 counter: reserves refused as full */
#define YCQ_OFF_PROD_CORRUPT           104        /* u64 counter: corruption seen by producers */
#define YCQ_OFF_PROD_WAKE_SENT         112        /* u64 counter: wakeups sent to consumers */
#define YCQ_OFF_PROD_WAKE_SUPPRESSED   120        /* u64 counter: wakeups not needed */
#define YCQ_OFF_CONS_CURSOR            128        /* u64 next position a consumer reserves */
#define YCQ_OFF_CONS_RETURNED          136        /* u64 counter: records given back unread */
#define YCQ_OFF_CONS_SPARE             144        /* u64 zero, ignored on read */
#define YCQ_OFF_CONS_SKIPPED           152        /* u64 counter: aborted slots passed over, net */
#define YCQ_OFF_CONS_EMPTY             160        /* u64 counter: reserves refused as empty */
#define YCQ_OFF_CONS_CORRUPT           168        /* u64 counter: corruption seen by consumers */
#define YCQ_OFF_CONS_WAKE_SENT         176        /* u64 counter: wakeups sent to producers */
#define YCQ_OFF_CONS_WAKE_SUPPRESSED   184        /* u64 counter: wakeups not needed */
#define YCQ_OFF_ITEMS_FUTEX            192        /* u32 consumers sleep here for records */
#define YCQ_OFF_ITEMS_WAITERS          196        /* u32 consumers asleep */
#define YCQ_OFF_SPACE_FUTEX            256        /* u32 producers sleep here for space */
#define YCQ_OFF_SPACE_WAITERS          260        /* u32 producers asleep */
#define YCQ_OFF_LINK                   320        /* the link line of a RESIZABLE queue; zero otherwise */
#define YCQ_OFF_LINK_NEXT              320        /* u32 generation of the next queue, 0 until named */
#define YCQ_OFF_LINK_SLOTS             324        /* u32 slot count of the next queue */
#define YCQ_OFF_LINK_LEFT              328        /* u32 link_next once consumers moved on */
#define YCQ_OFF_LINK_META_ADDR         336        /* u64 address of the next queue's metadata, or 0 */
#define YCQ_OFF_LINK_DATA_ADDR         344        /* u64 address of the next queue's data, or 0 */
#define YCQ_OFF_DESCS                  384        /* descriptor 0 */
#define YCQ_DESC_SIZE                  8          /* bytes per descriptor */
#define YCQ_DESC_OFF_SEQ               0          /* u32 stamp, within a descriptor */
#define YCQ_DESC_OFF_INFO              4          /* u32 info word, within a descriptor */
#define YCQ_INFO_LEN_MASK              0xffffffu  /* info bits 0-23: payload length */
#define YCQ_INFO_FLAGS_SHIFT           24         /* info bits 24-31: flags */

#define YCQ_FEATURE_SINGLE_PRODUCER    0x1u       /* one agent produces */
#define YCQ_FEATURE_SINGLE_CONSUMER    0x2u       /* one agent consumes */
#define YCQ_FEATURES_INCOMPAT_MASK     0xffffu    /* bits an agent must understand */
#define YCQ_FEATURE_RESIZABLE          0x4u       /* one generation of a resizable queue */
#define YCQ_FEATURES_KNOWN             0x3u       /* the required bits an agent that does not follow resizes knows */
#define YCQ_FLAG_ABORTED               0x1u       /* flags: slot given up by its producer */
#define YCQ_INFO_ABORTED               0x1000000u /* YCQ_FLAG_ABORTED as it sits in the info word */
#define YCQ_MIN_SLOTS                  2          /* fewest slots; the count is a power of two */
#define YCQ_MAX_SLOTS                  16777216   /* most slots */
#define YCQ_MIN_SLOT_SIZE              8          /* smallest slot; slot sizes are multiples of it */
#define YCQ_MAX_SLOT_SIZE              8388608    /* slot size limit; a multiple of 8 */

#define YCQ_META_SIZE(slots) (YCQ_OFF_DESCS + YCQ_DESC_SIZE * (uint64_t)(slots))

/* The header line as a struct. */
struct ycq_header {
	uint32_t magic;
	uint32_t version;
	uint32_t features;
	uint32_t desc_offset;
	uint32_t slots;
	uint32_t slot_size;
	uint64_t meta_size;
	uint64_t data_size;
	uint32_t desc_size;
	uint32_t generation;
	uint8_t  reserved[16];
};

/* One slot descriptor. */
struct ycq_desc {
	uint32_t seq;  /* stamp: position when free, position + 1 when published */
	uint32_t info; /* length | flags << YCQ_INFO_FLAGS_SHIFT */
};

/* Compile-time checks: static_assert in C++11, _Static_assert in C11, a
 * negative array size before that (C99). */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define YCQ_STATIC_ASSERT(e, name) static_assert(e, #name)
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define YCQ_STATIC_ASSERT(e, name) _Static_assert(e, #name)
#else
#define YCQ_STATIC_ASSERT(e, name) typedef char ycq_assert_##name[(e) ? 1 : -1]
#endif
YCQ_STATIC_ASSERT(offsetof(struct ycq_header, magic) == YCQ_OFF_MAGIC, off_magic);
YCQ_STATIC_ASSERT(offsetof(struct ycq_header, version) == YCQ_OFF_VERSION, off_version);
YCQ_STATIC_ASSERT(offsetof(struct ycq_header, features) == YCQ_OFF_FEATURES, off_features);
YCQ_STATIC_ASSERT(offsetof(struct ycq_header, desc_offset) == YCQ_OFF_DESC_OFFSET, off_desc_offset);
YCQ_STATIC_ASSERT(offsetof(struct ycq_header, slots) == YCQ_OFF_SLOTS, off_slots);
YCQ_STATIC_ASSERT(offsetof(struct ycq_header, slot_size) == YCQ_OFF_SLOT_SIZE, off_slot_size);
YCQ_STATIC_ASSERT(offsetof(struct ycq_header, meta_size) == YCQ_OFF_META_SIZE, off_meta_size);
YCQ_STATIC_ASSERT(offsetof(struct ycq_header, data_size) == YCQ_OFF_DATA_SIZE, off_data_size);
YCQ_STATIC_ASSERT(offsetof(struct ycq_header, desc_size) == YCQ_OFF_DESC_SIZE, off_desc_size);
YCQ_STATIC_ASSERT(offsetof(struct ycq_header, generation) == YCQ_OFF_GENERATION, off_generation);
YCQ_STATIC_ASSERT(sizeof(struct ycq_header) == YCQ_LINE_SIZE, sizeof_header);
YCQ_STATIC_ASSERT(sizeof(struct ycq_desc) == YCQ_DESC_SIZE, sizeof_desc);

#ifdef __cplusplus
}
#endif

#endif /* YCQ_RING_H */
