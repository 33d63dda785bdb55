/* ycq_ring.c: the single-agent side of a ycq queue in freestanding C99.
 *
 * Written from ring/LAYOUT.md; ycq_agent.h is the API, ycq_port.h the
 * platform, README.md the porting guide.
 *
 * Invariants:
 *  - The geometry (N, slot size) is read once, at attach, and kept here;
 *    every slot index is p & mask and every data offset is below N times
 *    the slot size, which attach checked against the region lengths.
 *  - The agent is the only writer of its own line (cursor and counters):
 *    it keeps the line in line[] and stores words from there, never
 *    reading them back, so a peer that scribbles on them changes only what
 *    monitors see. Its private cursor line[0] is the truth for it, and the
 *    stored one is updated in the same call that moves it.
 *  - The peer and the agent meet only in the descriptors, each a pair of
 *    32-bit words. The agent reads a stamp with acquire order before
 *    anything the stamp guards (the info word, the payload), and writes the
 *    info word before the stamp, the stamp with release order. Nothing else
 *    needs ordering but the wake protocol's fence.
 *  - Every loop is bounded by N, by a run's length or by 64: nothing here
 *    waits for the peer.
 *  - Following a resize, the agent reads the link line, reaches the next
 *    generation through the caller's hook and checks its header as attach
 *    does; only once all that passed does it write anything (the seal, or
 *    link_left), and it then keeps the next generation's geometry as its
 *    own. It follows only holding nothing: its runs are tagged with the
 *    generation and refused in any other.
 */
#include "ycq_agent.h"
#include "ycq_port.h"

/* The words of an agent's own line, as indices into line[]. The producer's
 * and the consumer's lines have the same shape: cursor, three counters of
 * their own and a spare word, then corrupt, wake sent, wake suppressed. */
#define W_CURSOR          0
#define W_PROD_ROLLED_BACK ((YCQ_OFF_PROD_ROLLED_BACK - YCQ_OFF_PROD_CURSOR) / 8)
#define W_PROD_ABORTED     ((YCQ_OFF_PROD_ABORTED - YCQ_OFF_PROD_CURSOR) / 8)
#define W_PROD_FULL        ((YCQ_OFF_PROD_FULL - YCQ_OFF_PROD_CURSOR) / 8)
#define W_CONS_RETURNED    ((YCQ_OFF_CONS_RETURNED - YCQ_OFF_CONS_CURSOR) / 8)
#define W_CONS_SKIPPED     ((YCQ_OFF_CONS_SKIPPED - YCQ_OFF_CONS_CURSOR) / 8)
#define W_CONS_EMPTY       ((YCQ_OFF_CONS_EMPTY - YCQ_OFF_CONS_CURSOR) / 8)
#define W_CORRUPT          ((YCQ_OFF_PROD_CORRUPT - YCQ_OFF_PROD_CURSOR) / 8)
#define W_WAKE_SENT        ((YCQ_OFF_PROD_WAKE_SENT - YCQ_OFF_PROD_CURSOR) / 8)
#define W_WAKE_SUPPRESSED  ((YCQ_OFF_PROD_WAKE_SUPPRESSED - YCQ_OFF_PROD_CURSOR) / 8)
#define LINE_WORDS         8

YCQ_STATIC_ASSERT(W_CORRUPT == (YCQ_OFF_CONS_CORRUPT - YCQ_OFF_CONS_CURSOR) / 8, same_corrupt_word);
YCQ_STATIC_ASSERT(W_WAKE_SENT == (YCQ_OFF_CONS_WAKE_SENT - YCQ_OFF_CONS_CURSOR) / 8, same_wake_sent_word);
YCQ_STATIC_ASSERT(W_WAKE_SUPPRESSED == (YCQ_OFF_CONS_WAKE_SUPPRESSED - YCQ_OFF_CONS_CURSOR) / 8, same_wake_suppressed_word);
YCQ_STATIC_ASSERT(W_WAKE_SUPPRESSED == LINE_WORDS - 1, line_of_eight_words);
YCQ_STATIC_ASSERT(YCQ_OFF_ITEMS_WAITERS == YCQ_OFF_ITEMS_FUTEX + 4, items_waiters_after_futex);
YCQ_STATIC_ASSERT(YCQ_OFF_SPACE_WAITERS == YCQ_OFF_SPACE_FUTEX + 4, space_waiters_after_futex);
YCQ_STATIC_ASSERT(YCQ_MAX_SLOT_SIZE < YCQ_INFO_ABORTED, lengths_below_flags);

#define PENDING(line) (1u << (line))

/* Byte order: the layout is little-endian. */
static uint32_t le32(uint32_t v)
{
#if YCQ_PORT_BIG_ENDIAN
	return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
#else
	return v;
#endif
}

#if !YCQ_PORT_SPLIT64
static uint64_t le64(uint64_t v)
{
#if YCQ_PORT_BIG_ENDIAN
	return (uint64_t)le32((uint32_t)v) << 32 | le32((uint32_t)(v >> 32));
#else
	return v;
#endif
}
#endif

/* Word access by offset into a metadata region. Offsets are below the
 * metadata size attach checked (the header's, before that check), and
 * aligned to the word's size. */
static uint32_t *mword32(uint8_t *meta, uint32_t off)
{
	return (uint32_t *)(void *)(meta + off);
}

static uint32_t mload32(uint8_t *meta, uint32_t off)
{
	return le32(YCQ_LOAD_ACQUIRE32(mword32(meta, off)));
}

static uint64_t mload64(uint8_t *meta, uint32_t off)
{
#if YCQ_PORT_SPLIT64
	uint64_t lo = mload32(meta, off);
	return (uint64_t)mload32(meta, off + 4) << 32 | lo;
#else
	return le64(YCQ_LOAD_ACQUIRE64((uint64_t *)(void *)(meta + off)));
#endif
}

static uint32_t *word32(const struct ycq_agent *a, uint32_t off)
{
	return mword32(a->meta, off);
}

static uint32_t load32(const struct ycq_agent *a, uint32_t off)
{
	return mload32(a->meta, off);
}

static void store32(const struct ycq_agent *a, uint32_t off, uint32_t v)
{
	YCQ_STORE_RELEASE32(word32(a, off), le32(v));
}

static uint64_t load64(const struct ycq_agent *a, uint32_t off)
{
	return mload64(a->meta, off);
}

/* Split, the low half goes first; both are release stores, so neither
 * passes the stamps stored before it. */
static void store64(const struct ycq_agent *a, uint32_t off, uint64_t v)
{
#if YCQ_PORT_SPLIT64
	store32(a, off, (uint32_t)v);
	store32(a, off + 4, (uint32_t)(v >> 32));
#else
	YCQ_STORE_RELEASE64((uint64_t *)(void *)(a->meta + off), le64(v));
#endif
}

/* put sets word w of the agent's line, here and in the metadata. */
static void put(struct ycq_agent *a, uint32_t w, uint64_t v)
{
	a->line[w] = v;
	store64(a, a->line_off + 8 * w, v);
}

/* count adds n to counter w of the agent's line (n may be "negative",
 * modulo 2^64, for cons_skipped after a give-back). */
static void count(struct ycq_agent *a, uint32_t w, uint64_t n)
{
	if (n != 0)
		put(a, w, a->line[w] + n);
}

static int fail(struct ycq_agent *a, int code, uint32_t off, uint64_t value)
{
	a->err_off = off;
	a->err_value = value;
	a->err_next = 0;
	return code;
}

static int corrupt(struct ycq_agent *a, uint32_t off, uint64_t value)
{
	count(a, W_CORRUPT, 1);
	return fail(a, YCQ_ECORRUPT, off, value);
}

/* The descriptor of position p. */
static uint32_t desc_off(const struct ycq_agent *a, uint64_t p)
{
	return YCQ_OFF_DESCS + YCQ_DESC_SIZE * (uint32_t)(p & a->mask);
}

/* ahead: a stamp d past the one expected (as a signed 32-bit distance):
 * the slot moved on, which a correct peer does after this agent let it go. */
static int ahead(uint32_t d)
{
	return d != 0 && d < 0x80000000u;
}

/* not_held explains a stamp that is not the one a slot this agent holds
 * must carry: YCQ_ENOTHELD if it is ahead (already finished), corrupt if
 * it is behind, which no agent writes. */
static int not_held(struct ycq_agent *a, uint32_t off, uint32_t seq, uint32_t want)
{
	if (ahead(seq - want))
		return fail(a, YCQ_ENOTHELD, off, seq);
	return corrupt(a, off, seq);
}

/* Bit k of a 64-bit mask, without a variable 64-bit shift (which some
 * 32-bit targets leave to a library routine). */
static uint64_t bit64(uint32_t k)
{
	uint32_t lo = k < 32 ? (uint32_t)1 << k : 0;
	uint32_t hi = k >= 32 && k < 64 ? (uint32_t)1 << (k - 32) : 0;
	return (uint64_t)hi << 32 | lo;
}

static uint32_t popcount64(uint64_t x)
{
	uint32_t n = 0;
	while (x != 0) {
		x &= x - 1;
		n++;
	}
	return n;
}

/* record_offset is where record i of a run with the given holes sits,
 * counted from the run's start: i plus the holes before it. */
static uint32_t record_offset(uint64_t holes, uint32_t i)
{
	uint32_t k, recs = 0;
	uint64_t bit = 1;
	for (k = 0; k < YCQ_HOLE_WINDOW; k++, bit <<= 1) {
		if (holes & bit)
			continue;
		if (recs == i)
			return k;
		recs++;
	}
	return k + (i - recs);
}

/* Slots held: what a follow waits for. Saturating, so that a run used
 * after a re-attach (by a caller that kept it) cannot wrap the count. */
static void hold(struct ycq_agent *a, uint32_t n)
{
	a->held = a->held + n < a->held ? 0xffffffffu : a->held + n;
}

static void unhold(struct ycq_agent *a, uint32_t n)
{
	a->held = n < a->held ? a->held - n : 0;
}

/* Attach. */

/* The header fields attach keeps or checks further, as read. */
struct header {
	uint32_t features, slots, slot_size, generation;
	uint64_t meta_size, data_size;
};

/* region_bytes is slots times slot_size (slots a power of two), by
 * doubling: no 64-bit multiply, a library call on some 32-bit targets. */
static uint64_t region_bytes(uint32_t slots, uint32_t slot_size)
{
	uint64_t n = slot_size;
	uint32_t s;
	for (s = slots; s > 1; s >>= 1)
		n <<= 1;
	return n;
}

static int refuse(uint32_t *off, uint64_t *value, int code, uint32_t o, uint64_t v)
{
	*off = o;
	*value = v;
	return code;
}

/* check_header reads the header at meta once and runs LAYOUT.md's checks 1
 * to 6, in its order, keeping what it read in h. known is the required
 * feature bits this agent drives: RESIZABLE only for one that follows
 * resizes. A refusal returns its code, with the field's offset and the
 * value found in *off and *value. */
static int check_header(uint8_t *meta, uint64_t meta_len, uint32_t known, struct header *h,
                        uint32_t *off, uint64_t *value)
{
	uint32_t magic, version, desc_offset, desc_size;

	/* 1. The header is inside the mapping and aligned, before any load. */
	if (meta == 0 || meta_len < YCQ_LINE_SIZE)
		return refuse(off, value, YCQ_EINVAL, 0, meta_len);
	if (((uintptr_t)meta & 7) != 0)
		return refuse(off, value, YCQ_EINVAL, 0, (uint64_t)(uintptr_t)meta);

	/* Each field is read once: a peer that rewrites the header while we
	 * look can make us refuse it, not check one value and keep another. */
	magic = mload32(meta, YCQ_OFF_MAGIC);
	version = mload32(meta, YCQ_OFF_VERSION);
	h->features = mload32(meta, YCQ_OFF_FEATURES);
	desc_offset = mload32(meta, YCQ_OFF_DESC_OFFSET);
	h->slots = mload32(meta, YCQ_OFF_SLOTS);
	h->slot_size = mload32(meta, YCQ_OFF_SLOT_SIZE);
	h->meta_size = mload64(meta, YCQ_OFF_META_SIZE);
	h->data_size = mload64(meta, YCQ_OFF_DATA_SIZE);
	desc_size = mload32(meta, YCQ_OFF_DESC_SIZE);
	h->generation = mload32(meta, YCQ_OFF_GENERATION);

	/* 2. Magic, then version. 3. No unknown required feature. */
	if (magic != YCQ_MAGIC)
		return refuse(off, value, YCQ_EINCOMPATIBLE, YCQ_OFF_MAGIC, magic);
	if (version != YCQ_VERSION)
		return refuse(off, value, YCQ_EINCOMPATIBLE, YCQ_OFF_VERSION, version);
	if ((h->features & YCQ_FEATURES_INCOMPAT_MASK & ~known) != 0)
		return refuse(off, value, YCQ_EINCOMPATIBLE, YCQ_OFF_FEATURES, h->features);
	/* 4. Descriptor geometry. */
	if (desc_offset != YCQ_OFF_DESCS)
		return refuse(off, value, YCQ_ECORRUPT, YCQ_OFF_DESC_OFFSET, desc_offset);
	if (desc_size != YCQ_DESC_SIZE)
		return refuse(off, value, YCQ_ECORRUPT, YCQ_OFF_DESC_SIZE, desc_size);
	/* A generation of a resizable queue counts from 1; without RESIZABLE
	 * the word is ignored. */
	if ((h->features & YCQ_FEATURE_RESIZABLE) != 0 && h->generation == 0)
		return refuse(off, value, YCQ_ECORRUPT, YCQ_OFF_GENERATION, 0);
	/* 5. Slot count and size. */
	if (h->slots < YCQ_MIN_SLOTS || h->slots > YCQ_MAX_SLOTS || (h->slots & (h->slots - 1)) != 0)
		return refuse(off, value, YCQ_ECORRUPT, YCQ_OFF_SLOTS, h->slots);
	if (h->slot_size < YCQ_MIN_SLOT_SIZE || h->slot_size > YCQ_MAX_SLOT_SIZE || h->slot_size % YCQ_MIN_SLOT_SIZE != 0)
		return refuse(off, value, YCQ_ECORRUPT, YCQ_OFF_SLOT_SIZE, h->slot_size);
	/* 6. The sizes follow from them. */
	if (h->meta_size != YCQ_META_SIZE(h->slots))
		return refuse(off, value, YCQ_ECORRUPT, YCQ_OFF_META_SIZE, h->meta_size);
	if (h->data_size != region_bytes(h->slots, h->slot_size))
		return refuse(off, value, YCQ_ECORRUPT, YCQ_OFF_DATA_SIZE, h->data_size);
	return YCQ_OK;
}

/* 7. The regions are as large as the header says, and addressable here. */
static int check_regions(const struct header *h, uint64_t meta_len, const void *data, uint64_t data_len,
                         uint32_t *off, uint64_t *value)
{
	if (meta_len < h->meta_size || h->meta_size > (uint64_t)SIZE_MAX)
		return refuse(off, value, YCQ_EINVAL, YCQ_OFF_META_SIZE, meta_len);
	if (data == 0 || data_len < h->data_size || h->data_size > (uint64_t)SIZE_MAX)
		return refuse(off, value, YCQ_EINVAL, YCQ_OFF_DATA_SIZE, data_len);
	return YCQ_OK;
}

/* settle makes a the agent of its side of the queue h describes, at meta
 * and data: it keeps the geometry and the generation, reads its line once,
 * and, the producer of a generation already sealed, takes the position
 * without the bit and reserves nothing there. */
static void settle(struct ycq_agent *a, uint8_t *meta, uint8_t *data, const struct header *h)
{
	uint32_t w;

	a->meta = meta;
	a->data = data;
	a->slots = h->slots;
	a->slot_size = h->slot_size;
	a->mask = h->slots - 1;
	a->gen = (h->features & YCQ_FEATURE_RESIZABLE) != 0 ? h->generation : 0;
	a->pending = 0;
	a->held = 0;
	a->sealed = 0;
	for (w = 0; w < LINE_WORDS; w++)
		a->line[w] = load64(a, a->line_off + 8 * w);
	if (a->line_off == YCQ_OFF_PROD_CURSOR && a->gen != 0 && (a->line[W_CURSOR] & YCQ_SEALED) != 0) {
		a->line[W_CURSOR] &= ~YCQ_SEALED;
		a->sealed = 1;
	}
}

static int attach(struct ycq_agent *a, uint32_t line_off, uint32_t feature,
                  void *meta, uint64_t meta_len, void *data, uint64_t data_len,
                  const struct ycq_wake_ops *ops, int follows, const struct ycq_reach_ops *reach)
{
	struct header h;
	uint32_t w, off = 0;
	uint64_t value = 0;
	int rc;

	a->meta = 0;
	a->data = 0;
	a->mask = 0;
	a->slots = 0;
	a->slot_size = 0;
	a->line_off = line_off;
	a->pending = 0;
	for (w = 0; w < LINE_WORDS; w++)
		a->line[w] = 0;
	a->ops.wake = 0;
	a->ops.wait = 0;
	a->ops.ctx = 0;
	a->err_off = 0;
	a->err_value = 0;
	a->err_next = 0;
	a->gen = 0;
	a->held = 0;
	a->follows = 0;
	a->sealed = 0;
	a->reach.reach = 0;
	a->reach.ctx = 0;

	if (follows && (reach == 0 || reach->reach == 0))
		return fail(a, YCQ_EINVAL, 0, 0);
	rc = check_header((uint8_t *)meta, meta_len, YCQ_FEATURES_KNOWN | (follows ? YCQ_FEATURE_RESIZABLE : 0),
	                  &h, &off, &value);
	if (rc == YCQ_OK)
		rc = check_regions(&h, meta_len, data, data_len, &off, &value);
	/* This agent is the one agent of its side. */
	if (rc == YCQ_OK && (h.features & feature) == 0)
		rc = refuse(&off, &value, YCQ_EINCOMPATIBLE, YCQ_OFF_FEATURES, h.features);
	if (rc != YCQ_OK)
		return fail(a, rc, off, value);

	settle(a, (uint8_t *)meta, (uint8_t *)data, &h);
	if (ops != 0)
		a->ops = *ops;
	if (follows) {
		a->reach = *reach;
		a->follows = 1;
	}
	return YCQ_OK;
}

int ycq_consumer_attach(struct ycq_consumer *c, void *meta, uint64_t meta_len,
                        void *data, uint64_t data_len, const struct ycq_wake_ops *ops)
{
	if (c == 0)
		return YCQ_EINVAL;
	return attach(&c->a, YCQ_OFF_CONS_CURSOR, YCQ_FEATURE_SINGLE_CONSUMER, meta, meta_len, data, data_len, ops, 0, 0);
}

int ycq_producer_attach(struct ycq_producer *p, void *meta, uint64_t meta_len,
                        void *data, uint64_t data_len, const struct ycq_wake_ops *ops)
{
	if (p == 0)
		return YCQ_EINVAL;
	return attach(&p->a, YCQ_OFF_PROD_CURSOR, YCQ_FEATURE_SINGLE_PRODUCER, meta, meta_len, data, data_len, ops, 0, 0);
}

int ycq_consumer_attach_resizable(struct ycq_consumer *c, void *meta, uint64_t meta_len,
                                  void *data, uint64_t data_len, const struct ycq_wake_ops *ops,
                                  const struct ycq_reach_ops *reach)
{
	if (c == 0)
		return YCQ_EINVAL;
	return attach(&c->a, YCQ_OFF_CONS_CURSOR, YCQ_FEATURE_SINGLE_CONSUMER, meta, meta_len, data, data_len, ops, 1, reach);
}

int ycq_producer_attach_resizable(struct ycq_producer *p, void *meta, uint64_t meta_len,
                                  void *data, uint64_t data_len, const struct ycq_wake_ops *ops,
                                  const struct ycq_reach_ops *reach)
{
	if (p == 0)
		return YCQ_EINVAL;
	return attach(&p->a, YCQ_OFF_PROD_CURSOR, YCQ_FEATURE_SINGLE_PRODUCER, meta, meta_len, data, data_len, ops, 1, reach);
}

uint64_t ycq_consumer_position(const struct ycq_consumer *c) { return c->a.line[W_CURSOR]; }
uint64_t ycq_producer_position(const struct ycq_producer *p) { return p->a.line[W_CURSOR]; }

/* Consumer. */

/* free_slot hands the slot of position p, which the consumer holds, back
 * to producers: info cleared, then stamp p + N with release order, after
 * the consumer's reads of the payload. */
static void free_slot(struct ycq_agent *a, uint64_t p)
{
	uint32_t off = desc_off(a, p);
	store32(a, off + YCQ_DESC_OFF_INFO, 0);
	store32(a, off + YCQ_DESC_OFF_SEQ, (uint32_t)(p + a->slots));
}

static void free_slots(struct ycq_agent *a, uint64_t p, uint32_t n)
{
	uint32_t i;
	for (i = 0; i < n; i++)
		free_slot(a, p + i);
}

/* A run is the caller's: one longer than the queue did not come from a
 * reserve, and would make the loops over it long; one of another
 * generation holds positions of a queue the agent has left. */
static int bad_read_run(const struct ycq_agent *a, const struct ycq_read_run *r)
{
	return r == 0 || a->meta == 0 || r->n > a->slots || r->gen != a->gen;
}

static int bad_write_run(const struct ycq_agent *a, const struct ycq_write_run *w)
{
	return w == 0 || a->meta == 0 || w->n > a->slots || w->gen != a->gen;
}

static void empty_read_run(const struct ycq_agent *a, struct ycq_read_run *r)
{
	r->start = 0;
	r->holes = 0;
	r->n = 0;
	r->gen = a->gen;
}

int ycq_consumer_reserve(struct ycq_consumer *c, uint32_t n, int mode, struct ycq_read_run *r)
{
	struct ycq_agent *a = &c->a;
	uint64_t pos, holes = 0, bit = 1;
	uint32_t lead = 0, span = 0, recs = 0;
	int fragmented = 0;

	if (r == 0)
		return fail(a, YCQ_EINVAL, 0, 0);
	empty_read_run(a, r);
	if (a->meta == 0 || n < 1 || n > a->slots || (mode != YCQ_UPTO && mode != YCQ_EXACT))
		return fail(a, YCQ_EINVAL, 0, n);
	pos = a->line[W_CURSOR];
	/* lead counts holes before the first record; span the positions
	 * from the first record on (records, and holes among them). */
	while (recs < n && lead + span < a->slots) {
		uint64_t p = pos + lead + span;
		uint32_t off = desc_off(a, p);
		/* Pairs with the producer's release store of stamp p + 1: seeing
		 * it, the info word and payload written before it are seen. */
		uint32_t seq = load32(a, off + YCQ_DESC_OFF_SEQ);
		if (seq == (uint32_t)(p + 1)) {
			uint32_t info = load32(a, off + YCQ_DESC_OFF_INFO);
			if (info <= a->slot_size) {
				/* No flags and a length that fits: a record. */
				recs++;
				span++;
				bit <<= 1;
				continue;
			}
			if (info >> YCQ_INFO_FLAGS_SHIFT != YCQ_FLAG_ABORTED)
				return corrupt(a, off + YCQ_DESC_OFF_INFO, info);
			/* A hole; whatever length it carries means nothing. */
			if (recs == 0) {
				lead++;
				continue;
			}
			if (span >= YCQ_HOLE_WINDOW) {
				fragmented = 1;
				break;
			}
			holes |= bit;
			span++;
			bit <<= 1;
			continue;
		}
		/* p: not published yet. p + 1 - N: the slot still holds a record
		 * of the previous lap this consumer has not released. */
		if (seq == (uint32_t)p || seq == (uint32_t)(p + 1 - a->slots))
			break;
		/* The cursor is this agent's own: no other consumer moved it, so
		 * any other stamp is corruption. */
		return corrupt(a, off + YCQ_DESC_OFF_SEQ, seq);
	}
	if (recs == 0 || (mode == YCQ_EXACT && recs < n)) {
		if (lead > 0) {
			/* The holes in front are passed over even so. */
			free_slots(a, pos, lead);
			put(a, W_CURSOR, pos + lead);
			count(a, W_CONS_SKIPPED, lead);
			a->pending |= PENDING(YCQ_LINE_SPACE);
		}
		if (fragmented && recs > 0)
			return fail(a, YCQ_EFRAGMENTED, desc_off(a, pos + lead + span), recs);
		count(a, W_CONS_EMPTY, 1);
		return YCQ_EEMPTY;
	}
	free_slots(a, pos, lead);
	put(a, W_CURSOR, pos + lead + span);
	count(a, W_CONS_SKIPPED, lead + popcount64(holes));
	if (lead > 0)
		a->pending |= PENDING(YCQ_LINE_SPACE);
	r->start = pos + lead;
	r->holes = holes;
	r->n = recs;
	hold(a, recs);
	return YCQ_OK;
}

uint64_t ycq_read_run_position(const struct ycq_read_run *r, uint32_t i)
{
	return r->start + record_offset(r->holes, i);
}

int ycq_consumer_record(struct ycq_consumer *c, const struct ycq_read_run *r, uint32_t i,
                        const uint8_t **payload, uint32_t *length)
{
	struct ycq_agent *a = &c->a;
	uint64_t p;
	uint32_t off, seq, info;

	if (bad_read_run(a, r) || payload == 0 || length == 0 || i >= r->n)
		return fail(a, YCQ_EINVAL, 0, i);
	*payload = 0;
	*length = 0;
	p = r->start + record_offset(r->holes, i);
	off = desc_off(a, p);
	/* The descriptor is shared: check it again before trusting its length. */
	seq = load32(a, off + YCQ_DESC_OFF_SEQ);
	if (seq != (uint32_t)(p + 1))
		return not_held(a, off + YCQ_DESC_OFF_SEQ, seq, (uint32_t)(p + 1));
	info = load32(a, off + YCQ_DESC_OFF_INFO);
	if (info > a->slot_size)
		return corrupt(a, off + YCQ_DESC_OFF_INFO, info);
	*payload = a->data + (size_t)(p & a->mask) * a->slot_size;
	*length = info;
	return YCQ_OK;
}

/* release_at releases the record at offset o of r, and the holes right
 * after it, if the consumer still holds it. */
static int release_at(struct ycq_agent *a, const struct ycq_read_run *r, uint32_t o)
{
	uint64_t p = r->start + o;
	uint32_t off = desc_off(a, p), k;
	uint32_t seq = load32(a, off + YCQ_DESC_OFF_SEQ);

	if (seq != (uint32_t)(p + 1))
		return not_held(a, off + YCQ_DESC_OFF_SEQ, seq, (uint32_t)(p + 1));
	free_slot(a, p);
	for (k = o + 1; k < YCQ_HOLE_WINDOW && (r->holes & bit64(k)) != 0; k++)
		free_slot(a, r->start + k);
	return YCQ_OK;
}

int ycq_consumer_release(struct ycq_consumer *c, const struct ycq_read_run *r, uint32_t i)
{
	struct ycq_agent *a = &c->a;
	int rc;

	if (bad_read_run(a, r) || i >= r->n)
		return fail(a, YCQ_EINVAL, 0, i);
	rc = release_at(a, r, record_offset(r->holes, i));
	if (rc != YCQ_OK)
		return rc;
	unhold(a, 1);
	a->pending |= PENDING(YCQ_LINE_SPACE);
	return YCQ_OK;
}

int ycq_consumer_release_all(struct ycq_consumer *c, const struct ycq_read_run *r)
{
	struct ycq_agent *a = &c->a;
	uint32_t i, done = 0;
	int first = YCQ_OK;

	if (bad_read_run(a, r))
		return fail(a, YCQ_EINVAL, 0, 0);
	/* Last first: a producer waiting at the first slot then finds the
	 * whole run free at once. */
	for (i = r->n; i > 0; i--) {
		int rc = release_at(a, r, record_offset(r->holes, i - 1));
		if (rc == YCQ_OK)
			done++;
		else if (rc != YCQ_ENOTHELD && first == YCQ_OK)
			first = rc;
	}
	unhold(a, done);
	if (done > 0)
		a->pending |= PENDING(YCQ_LINE_SPACE);
	return first;
}

int ycq_consumer_give_back(struct ycq_consumer *c, struct ycq_read_run *r, uint32_t i)
{
	struct ycq_agent *a = &c->a;
	uint32_t j, o, k, dropped = 0;
	uint64_t end, below = 0;

	if (bad_read_run(a, r) || i > r->n)
		return fail(a, YCQ_EINVAL, 0, i);
	if (i == r->n)
		return YCQ_OK;
	for (j = i; j < r->n; j++) {
		uint64_t p = r->start + record_offset(r->holes, j);
		uint32_t off = desc_off(a, p);
		uint32_t seq = load32(a, off + YCQ_DESC_OFF_SEQ);
		if (seq != (uint32_t)(p + 1))
			return not_held(a, off + YCQ_DESC_OFF_SEQ, seq, (uint32_t)(p + 1));
	}
	o = record_offset(r->holes, i);
	end = r->start + r->n + popcount64(r->holes);
	if (a->line[W_CURSOR] != end)
		return fail(a, YCQ_ENOTLAST, c->a.line_off, a->line[W_CURSOR]);
	put(a, W_CURSOR, r->start + o);
	count(a, W_CONS_RETURNED, r->n - i);
	/* The holes from record i on will be passed over, and counted, again. */
	for (k = 0; k < YCQ_HOLE_WINDOW && k < o; k++)
		below |= bit64(k);
	dropped = popcount64(r->holes & ~below);
	r->holes &= below;
	count(a, W_CONS_SKIPPED, (uint64_t)0 - dropped);
	unhold(a, r->n - i);
	r->n = i;
	a->pending |= PENDING(YCQ_LINE_ITEMS);
	return YCQ_OK;
}

/* Producer. */

int ycq_producer_reserve(struct ycq_producer *pr, uint32_t n, int mode, struct ycq_write_run *w)
{
	struct ycq_agent *a = &pr->a;
	uint64_t pos;
	uint32_t m = 0;

	if (w == 0)
		return fail(a, YCQ_EINVAL, 0, 0);
	pos = a->line[W_CURSOR];
	w->start = pos;
	w->n = 0;
	w->gen = a->gen;
	if (a->meta == 0 || n < 1 || n > a->slots || (mode != YCQ_UPTO && mode != YCQ_EXACT))
		return fail(a, YCQ_EINVAL, 0, n);
	/* A sealed generation takes nothing more: follow. */
	if (a->sealed)
		return YCQ_EFULL;
	while (m < n) {
		uint64_t p = pos + m;
		uint32_t off = desc_off(a, p);
		/* Pairs with the consumer's release store of stamp p: seeing
		 * it, the consumer is done with the payload. */
		uint32_t seq = load32(a, off + YCQ_DESC_OFF_SEQ);
		if (seq == (uint32_t)p) {
			m++;
			continue;
		}
		/* p - N: reserved a lap ago and not yet published (by this
		 * producer); p - N + 1: published and not yet released. */
		if (seq == (uint32_t)(p - a->slots) || seq == (uint32_t)(p - a->slots + 1))
			break;
		return corrupt(a, off + YCQ_DESC_OFF_SEQ, seq);
	}
	if (m == 0 || (mode == YCQ_EXACT && m < n)) {
		count(a, W_PROD_FULL, 1);
		return YCQ_EFULL;
	}
	put(a, W_CURSOR, pos + m);
	w->n = m;
	hold(a, m);
	return YCQ_OK;
}

uint8_t *ycq_producer_slot(struct ycq_producer *pr, const struct ycq_write_run *w, uint32_t i)
{
	struct ycq_agent *a = &pr->a;
	if (bad_write_run(a, w) || i >= w->n)
		return 0;
	return a->data + (size_t)((w->start + i) & a->mask) * a->slot_size;
}

/* finish writes the descriptor of position p, which the producer holds:
 * info first, then stamp p + 1 with release order, after the payload. */
static int finish(struct ycq_agent *a, uint64_t p, uint32_t info)
{
	uint32_t off = desc_off(a, p);
	uint32_t seq = load32(a, off + YCQ_DESC_OFF_SEQ);
	if (seq != (uint32_t)p)
		return not_held(a, off + YCQ_DESC_OFF_SEQ, seq, (uint32_t)p);
	store32(a, off + YCQ_DESC_OFF_INFO, info);
	store32(a, off + YCQ_DESC_OFF_SEQ, (uint32_t)(p + 1));
	return YCQ_OK;
}

int ycq_producer_publish(struct ycq_producer *pr, const struct ycq_write_run *w, uint32_t i, uint32_t length)
{
	struct ycq_agent *a = &pr->a;
	int rc;

	if (bad_write_run(a, w) || i >= w->n)
		return fail(a, YCQ_EINVAL, 0, i);
	if (length > a->slot_size)
		return fail(a, YCQ_EINVAL, 0, length);
	rc = finish(a, w->start + i, length);
	if (rc != YCQ_OK)
		return rc;
	unhold(a, 1);
	a->pending |= PENDING(YCQ_LINE_ITEMS);
	return YCQ_OK;
}

int ycq_producer_publish_all(struct ycq_producer *pr, const struct ycq_write_run *w, uint32_t length)
{
	struct ycq_agent *a = &pr->a;
	uint32_t i, done = 0;
	int first = YCQ_OK;

	if (bad_write_run(a, w))
		return fail(a, YCQ_EINVAL, 0, 0);
	if (length > a->slot_size)
		return fail(a, YCQ_EINVAL, 0, length);
	/* Last first: a consumer waiting at the first slot then finds the
	 * whole run ready at once. */
	for (i = w->n; i > 0; i--) {
		int rc = finish(a, w->start + i - 1, length);
		if (rc == YCQ_OK)
			done++;
		else if (rc != YCQ_ENOTHELD && first == YCQ_OK)
			first = rc;
	}
	unhold(a, done);
	if (done > 0)
		a->pending |= PENDING(YCQ_LINE_ITEMS);
	return first;
}

int ycq_producer_abort(struct ycq_producer *pr, const struct ycq_write_run *w, uint32_t i)
{
	struct ycq_agent *a = &pr->a;
	int rc;

	if (bad_write_run(a, w) || i >= w->n)
		return fail(a, YCQ_EINVAL, 0, i);
	rc = finish(a, w->start + i, YCQ_INFO_ABORTED);
	if (rc != YCQ_OK)
		return rc;
	unhold(a, 1);
	count(a, W_PROD_ABORTED, 1);
	a->pending |= PENDING(YCQ_LINE_ITEMS);
	return YCQ_OK;
}

int ycq_producer_abort_all(struct ycq_producer *pr, struct ycq_write_run *w)
{
	struct ycq_agent *a = &pr->a;
	uint32_t k, i, rolled = 0, holes = 0;
	int first = YCQ_OK;

	if (bad_write_run(a, w))
		return fail(a, YCQ_EINVAL, 0, 0);
	/* The unpublished suffix [k, n): stamps still p. */
	for (k = w->n; k > 0; k--) {
		uint64_t p = w->start + k - 1;
		if (load32(a, desc_off(a, p) + YCQ_DESC_OFF_SEQ) != (uint32_t)p)
			break;
	}
	if (k < w->n && !a->sealed && a->line[W_CURSOR] == w->start + w->n) {
		/* Nothing was reserved after it: move the cursor back, and the
		 * positions are free again, with no hole. (Never once sealed:
		 * the stored cursor is final.) */
		rolled = w->n - k;
		put(a, W_CURSOR, w->start + k);
		count(a, W_PROD_ROLLED_BACK, rolled);
		w->n = k;
		a->pending |= PENDING(YCQ_LINE_SPACE);
	}
	for (i = 0; i < w->n; i++) {
		int rc = finish(a, w->start + i, YCQ_INFO_ABORTED);
		if (rc == YCQ_OK)
			holes++;
		else if (rc != YCQ_ENOTHELD && first == YCQ_OK)
			first = rc;
	}
	count(a, W_PROD_ABORTED, (uint64_t)rolled + holes);
	unhold(a, rolled + holes);
	if (holes > 0)
		a->pending |= PENDING(YCQ_LINE_ITEMS);
	return first;
}

/* Resizing: what the follows and the sleeps share. */

/* The number of the generation after gen: counting up, never 0 (which
 * would mean not resizable). */
static uint32_t next_generation(uint32_t gen)
{
	return gen == 0xffffffffu ? 1 : gen + 1;
}

/* prod_cursor loads the producer cursor for a consumer's drained test.
 * Split in two 32-bit loads, the high half, which holds the sealed bit,
 * goes first: once it shows the seal the cursor never changes again, so
 * the low half read after it is the final position's. (Low half first, a
 * cursor that moved on and was then sealed between the two loads would
 * give a final position it never had.) Unsealed, the value means nothing
 * to the caller. */
static uint64_t prod_cursor(const struct ycq_agent *a)
{
#if YCQ_PORT_SPLIT64
	uint64_t hi = load32(a, YCQ_OFF_PROD_CURSOR + 4);
	return hi << 32 | load32(a, YCQ_OFF_PROD_CURSOR);
#else
	return load64(a, YCQ_OFF_PROD_CURSOR);
#endif
}

/* drained: 1 if the consumer's generation is sealed and the consumer is at
 * its final position, 0 if not, corrupt if the final position is behind
 * it (no producer reserved what the consumer passed). */
static int drained(struct ycq_agent *a)
{
	uint64_t cur, final;

	if (!a->follows || a->gen == 0)
		return 0;
	cur = prod_cursor(a);
	if ((cur & YCQ_SEALED) == 0)
		return 0;
	final = cur & ~YCQ_SEALED;
	if (a->line[W_CURSOR] < final)
		return 0; /* a slot before it is not published yet */
	if (a->line[W_CURSOR] > final)
		return corrupt(a, YCQ_OFF_PROD_CURSOR, cur);
	return 1;
}

/* follow_due: the agent should follow rather than sleep. A consumer: its
 * generation is sealed and it has taken everything up to the final
 * position (nothing more will be published for it there). A producer: its
 * generation is sealed, or names the next one. Called after the sleeper's
 * fence, it pairs with the fence of the agent that seals or links: either
 * that one sees the sleeper registered and wakes it, or this sees the
 * seal or the link. */
static int follow_due(const struct ycq_agent *a)
{
	uint64_t cur;

	if (!a->follows || a->gen == 0)
		return 0;
	if (a->line_off == YCQ_OFF_PROD_CURSOR)
		return a->sealed || load32(a, YCQ_OFF_LINK_NEXT) != 0;
	cur = prod_cursor(a);
	return (cur & YCQ_SEALED) != 0 && a->line[W_CURSOR] >= (cur & ~YCQ_SEALED);
}

/* Waking and sleeping. */

static uint32_t futex_off(int line)
{
	return line == YCQ_LINE_ITEMS ? YCQ_OFF_ITEMS_FUTEX : YCQ_OFF_SPACE_FUTEX;
}

/* wake_line wakes the agents asleep on line, if any. The fence orders the
 * stores that let them go on (stamps) before the load of the waiters word;
 * the sleeper's fence after registering is its pair, so either this load
 * sees the sleeper or the sleeper's second look sees the stamps. The futex
 * word is bumped with a load and a store: another waker of the same line
 * (a consumer that gives records back, a context cancelled in Go) may bump
 * it at the same moment and one increment be lost, but the word still moves
 * past every value a registered sleeper read, which is all a sleeper
 * checks. */
static int wake_line(struct ycq_agent *a, int line)
{
	uint32_t off = futex_off(line);

	a->pending &= ~PENDING(line);
	YCQ_FENCE();
	if (load32(a, off + 4) == 0) {
		count(a, W_WAKE_SUPPRESSED, 1);
		return 0;
	}
	store32(a, off, load32(a, off) + 1);
	if (a->ops.wake != 0)
		a->ops.wake(a->ops.ctx, line, word32(a, off));
	count(a, W_WAKE_SENT, 1);
	return 1;
}

static int wake_pending(struct ycq_agent *a)
{
	int sent = 0;
	if (a->meta == 0)
		return 0;
	if (a->pending & PENDING(YCQ_LINE_ITEMS))
		sent += wake_line(a, YCQ_LINE_ITEMS);
	if (a->pending & PENDING(YCQ_LINE_SPACE))
		sent += wake_line(a, YCQ_LINE_SPACE);
	return sent;
}

int ycq_consumer_wake(struct ycq_consumer *c) { return wake_pending(&c->a); }
int ycq_producer_wake(struct ycq_producer *p) { return wake_pending(&p->a); }

static int wake_one(struct ycq_agent *a, int line)
{
	if (a->meta == 0 || (line != YCQ_LINE_ITEMS && line != YCQ_LINE_SPACE))
		return fail(a, YCQ_EINVAL, 0, (uint64_t)(uint32_t)line);
	return wake_line(a, line);
}

int ycq_consumer_wake_line(struct ycq_consumer *c, int line) { return wake_one(&c->a, line); }
int ycq_producer_wake_line(struct ycq_producer *p, int line) { return wake_one(&p->a, line); }

/* register_sleeper adds d to the waiters word of line. The agent is the one
 * agent of its side, the only one that sleeps on its line, so a load and a
 * store do; the fence after registering is the full barrier the waker's
 * pairs with. */
static void register_sleeper(struct ycq_agent *a, int line, uint32_t d)
{
	uint32_t off = futex_off(line) + 4;
	store32(a, off, load32(a, off) + d);
}

static uint32_t seen_futex(const struct ycq_agent *a, int line)
{
	return YCQ_LOAD_ACQUIRE32(word32(a, futex_off(line)));
}

int ycq_consumer_sleep(struct ycq_consumer *c, uint32_t n, int mode, struct ycq_read_run *r)
{
	struct ycq_agent *a = &c->a;
	uint32_t seen;
	int rc;

	if (a->meta == 0)
		return fail(a, YCQ_EINVAL, 0, 0);
	wake_pending(a);
	seen = seen_futex(a, YCQ_LINE_ITEMS);
	register_sleeper(a, YCQ_LINE_ITEMS, 1);
	YCQ_FENCE();
	rc = ycq_consumer_reserve(c, n, mode, r);
	if (rc == YCQ_EEMPTY) {
		/* Holes passed on the way freed slots: producers may sleep
		 * for exactly those. */
		wake_pending(a);
		if (a->ops.wait != 0 && !follow_due(a))
			a->ops.wait(a->ops.ctx, YCQ_LINE_ITEMS, word32(a, futex_off(YCQ_LINE_ITEMS)), seen);
	}
	register_sleeper(a, YCQ_LINE_ITEMS, (uint32_t)0 - 1);
	return rc;
}

int ycq_producer_sleep(struct ycq_producer *pr, uint32_t n, int mode, struct ycq_write_run *w)
{
	struct ycq_agent *a = &pr->a;
	uint32_t seen;
	int rc;

	if (a->meta == 0)
		return fail(a, YCQ_EINVAL, 0, 0);
	wake_pending(a);
	seen = seen_futex(a, YCQ_LINE_SPACE);
	register_sleeper(a, YCQ_LINE_SPACE, 1);
	YCQ_FENCE();
	rc = ycq_producer_reserve(pr, n, mode, w);
	if (rc == YCQ_EFULL && a->ops.wait != 0 && !follow_due(a))
		a->ops.wait(a->ops.ctx, YCQ_LINE_SPACE, word32(a, futex_off(YCQ_LINE_SPACE)), seen);
	register_sleeper(a, YCQ_LINE_SPACE, (uint32_t)0 - 1);
	return rc;
}

/* Following resizes. */

static void clear_next(struct ycq_next *next)
{
	next->generation = 0;
	next->slots = 0;
	next->meta_addr = 0;
	next->data_addr = 0;
	next->meta_size = 0;
	next->data_size = 0;
	next->meta = 0;
	next->meta_len = 0;
	next->data = 0;
	next->data_len = 0;
	next->woke = 0;
}

/* read_link reads the link line: 1 and next's link words once a resize has
 * named the next generation, 0 while none is. link_next is loaded first,
 * with acquire order, pairing with the owner's release store of it; then
 * the words it publishes, which the owner wrote before it and never
 * changes. A link that names anything but the generation after this one,
 * a slot count out of range or misaligned metadata is corruption; the rest
 * is checked when the agent attaches there. */
static int read_link(struct ycq_agent *a, struct ycq_next *next)
{
	uint32_t n = load32(a, YCQ_OFF_LINK_NEXT), slots;
	uint64_t meta, data;

	if (n == 0)
		return 0;
	if (n != next_generation(a->gen))
		return corrupt(a, YCQ_OFF_LINK_NEXT, n);
	slots = load32(a, YCQ_OFF_LINK_SLOTS);
	meta = load64(a, YCQ_OFF_LINK_META_ADDR);
	data = load64(a, YCQ_OFF_LINK_DATA_ADDR);
	if (slots < YCQ_MIN_SLOTS || slots > YCQ_MAX_SLOTS || (slots & (slots - 1)) != 0)
		return corrupt(a, YCQ_OFF_LINK_SLOTS, slots);
	if ((meta & 7) != 0)
		return corrupt(a, YCQ_OFF_LINK_META_ADDR, meta);
	next->generation = n;
	next->slots = slots;
	next->meta_addr = meta;
	next->data_addr = data;
	next->meta_size = YCQ_META_SIZE(slots);
	next->data_size = region_bytes(slots, a->slot_size);
	return 1;
}

/* reach_next reaches the generation next names through the reach hook and
 * checks it: attach's checks, in attach's order, plus what the link
 * promised (link_slots slots, this slot size, RESIZABLE and generation
 * link_next), then this side's SINGLE_* bit, then the region lengths the
 * hook gave against the sizes its own header says. On success h holds that
 * header; the agent is unchanged but for a refusal's err_* (err_next 1 for
 * a word of the next header) and, for corruption, its corrupt counter. */
static int reach_next(struct ycq_agent *a, struct ycq_next *next, uint32_t feature, struct header *h)
{
	uint32_t off = 0;
	uint64_t value = 0;
	int rc;

	if (a->reach.reach(a->reach.ctx, next) != 0) {
		if (next->meta == 0)
			return fail(a, YCQ_EFAULT, YCQ_OFF_LINK_META_ADDR, next->meta_addr);
		return fail(a, YCQ_EFAULT, YCQ_OFF_LINK_DATA_ADDR, next->data_addr);
	}
	rc = check_header((uint8_t *)next->meta, next->meta_len, YCQ_FEATURES_KNOWN | YCQ_FEATURE_RESIZABLE,
	                  h, &off, &value);
	if (rc == YCQ_OK && h->slots != next->slots)
		rc = refuse(&off, &value, YCQ_EINCOMPATIBLE, YCQ_OFF_SLOTS, h->slots);
	if (rc == YCQ_OK && h->slot_size != a->slot_size)
		rc = refuse(&off, &value, YCQ_EINCOMPATIBLE, YCQ_OFF_SLOT_SIZE, h->slot_size);
	if (rc == YCQ_OK && ((h->features & YCQ_FEATURE_RESIZABLE) == 0 || h->generation != next->generation))
		rc = refuse(&off, &value, YCQ_ECORRUPT, YCQ_OFF_GENERATION,
		            (h->features & YCQ_FEATURE_RESIZABLE) != 0 ? h->generation : 0);
	if (rc == YCQ_OK && (h->features & feature) == 0)
		rc = refuse(&off, &value, YCQ_EINCOMPATIBLE, YCQ_OFF_FEATURES, h->features);
	if (rc == YCQ_OK)
		rc = check_regions(h, next->meta_len, next->data, next->data_len, &off, &value);
	if (rc == YCQ_EINVAL)
		rc = YCQ_EFAULT; /* what the hook gave is not the queue's regions */
	if (rc != YCQ_OK) {
		if (rc == YCQ_ECORRUPT)
			count(a, W_CORRUPT, 1);
		fail(a, rc, off, value);
		a->err_next = 1;
		return rc;
	}
	return YCQ_OK;
}

int ycq_producer_follow(struct ycq_producer *pr, struct ycq_next *next)
{
	struct ycq_agent *a = &pr->a;
	struct header h;
	int rc;

	if (next == 0 || a->meta == 0)
		return fail(a, YCQ_EINVAL, 0, 0);
	clear_next(next);
	if (!a->follows || a->gen == 0)
		return YCQ_OK;
	rc = read_link(a, next);
	if (rc <= 0)
		return rc;
	if (a->held != 0)
		return fail(a, YCQ_EBUSY, YCQ_OFF_PROD_CURSOR, a->held);
	rc = reach_next(a, next, YCQ_FEATURE_SINGLE_PRODUCER, &h);
	if (rc != YCQ_OK)
		return rc;
	/* The seal: a plain store, this agent being the only producer, of the
	 * position it last stored with the bit, which makes it final. Split,
	 * the low half stored first is the one already there. */
	if (!a->sealed)
		store64(a, YCQ_OFF_PROD_CURSOR, a->line[W_CURSOR] | YCQ_SEALED);
	/* Then the wakes owed here, and this generation's sleeping consumers,
	 * which must move on: wake_line fences first, so the seal is visible
	 * before the waiters word is read. */
	if (a->pending & PENDING(YCQ_LINE_SPACE))
		wake_line(a, YCQ_LINE_SPACE);
	next->woke = wake_line(a, YCQ_LINE_ITEMS);
	settle(a, (uint8_t *)next->meta, (uint8_t *)next->data, &h);
	return YCQ_MOVED;
}

int ycq_consumer_follow(struct ycq_consumer *c, struct ycq_next *next)
{
	struct ycq_agent *a = &c->a;
	struct header h;
	int rc;

	if (next == 0 || a->meta == 0)
		return fail(a, YCQ_EINVAL, 0, 0);
	clear_next(next);
	rc = drained(a);
	if (rc <= 0)
		return rc;
	if (a->held != 0)
		return fail(a, YCQ_EBUSY, YCQ_OFF_CONS_CURSOR, a->held);
	rc = read_link(a, next);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return corrupt(a, YCQ_OFF_LINK_NEXT, 0); /* sealed, and names no next generation */
	rc = reach_next(a, next, YCQ_FEATURE_SINGLE_CONSUMER, &h);
	if (rc != YCQ_OK)
		return rc;
	/* Its cursor is stored already (every call that moves it stores it).
	 * The wakes owed here, then link_left: the last access to this
	 * generation, which the owner may take back after it. */
	wake_pending(a);
	store32(a, YCQ_OFF_LINK_LEFT, next->generation);
	settle(a, (uint8_t *)next->meta, (uint8_t *)next->data, &h);
	return YCQ_MOVED;
}

int ycq_consumer_drained(struct ycq_consumer *c)
{
	if (c->a.meta == 0)
		return fail(&c->a, YCQ_EINVAL, 0, 0);
	return drained(&c->a);
}

int ycq_reach_window(void *window, struct ycq_next *next)
{
	const struct ycq_window *w = (const struct ycq_window *)window;
	uint64_t o;

	if (w == 0 || next == 0 || w->base == 0 || w->len > (uint64_t)SIZE_MAX)
		return -1;
	if (next->meta_addr < w->addr || next->meta_addr - w->addr >= w->len)
		return -1;
	o = next->meta_addr - w->addr;
	next->meta = w->base + (size_t)o;
	next->meta_len = w->len - o;
	if (next->data_addr < w->addr || next->data_addr - w->addr >= w->len)
		return -1;
	o = next->data_addr - w->addr;
	next->data = w->base + (size_t)o;
	next->data_len = w->len - o;
	return 0;
}

const char *ycq_strerror(int code)
{
	switch (code) {
	case YCQ_OK:
		return "ok";
	case YCQ_EFULL:
		return "full";
	case YCQ_EEMPTY:
		return "empty";
	case YCQ_ECORRUPT:
		return "corrupt";
	case YCQ_EINCOMPATIBLE:
		return "incompatible";
	case YCQ_EINVAL:
		return "invalid";
	case YCQ_ENOTHELD:
		return "not held";
	case YCQ_EFRAGMENTED:
		return "fragmented";
	case YCQ_ENOTLAST:
		return "not last";
	case YCQ_EFAULT:
		return "fault";
	case YCQ_EBUSY:
		return "busy";
	case YCQ_MOVED:
		return "moved";
	}
	return "unknown";
}
