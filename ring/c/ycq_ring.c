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

/* Word access by offset into the metadata region. Offsets are below the
 * metadata size attach checked, and aligned to the word's size. */
static uint32_t *word32(const struct ycq_agent *a, uint32_t off)
{
	return (uint32_t *)(void *)(a->meta + off);
}

static uint32_t load32(const struct ycq_agent *a, uint32_t off)
{
	return le32(YCQ_LOAD_ACQUIRE32(word32(a, off)));
}

static void store32(const struct ycq_agent *a, uint32_t off, uint32_t v)
{
	YCQ_STORE_RELEASE32(word32(a, off), le32(v));
}

static uint64_t load64(const struct ycq_agent *a, uint32_t off)
{
#if YCQ_PORT_SPLIT64
	uint64_t lo = load32(a, off);
	return (uint64_t)load32(a, off + 4) << 32 | lo;
#else
	return le64(YCQ_LOAD_ACQUIRE64((uint64_t *)(void *)(a->meta + off)));
#endif
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

/* Attach. */

static int attach(struct ycq_agent *a, uint32_t line_off, uint32_t feature,
                  void *meta, uint64_t meta_len, void *data, uint64_t data_len,
                  const struct ycq_wake_ops *ops)
{
	uint32_t magic, version, features, desc_offset, desc_size, slots, slot_size, w, s;
	uint64_t meta_size, data_size;

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

	/* 1. The header is inside the mapping and aligned, before any load. */
	if (meta == 0 || meta_len < YCQ_LINE_SIZE)
		return fail(a, YCQ_EINVAL, 0, meta_len);
	if (((uintptr_t)meta & 7) != 0)
		return fail(a, YCQ_EINVAL, 0, (uint64_t)(uintptr_t)meta);
	a->meta = (uint8_t *)meta;

	/* Each field is read once: a peer that rewrites the header while we
	 * look can make us refuse it, not check one value and keep another. */
	magic = load32(a, YCQ_OFF_MAGIC);
	version = load32(a, YCQ_OFF_VERSION);
	features = load32(a, YCQ_OFF_FEATURES);
	desc_offset = load32(a, YCQ_OFF_DESC_OFFSET);
	slots = load32(a, YCQ_OFF_SLOTS);
	slot_size = load32(a, YCQ_OFF_SLOT_SIZE);
	meta_size = load64(a, YCQ_OFF_META_SIZE);
	data_size = load64(a, YCQ_OFF_DATA_SIZE);
	desc_size = load32(a, YCQ_OFF_DESC_SIZE);
	a->meta = 0;

	/* 2. Magic, then version. 3. No unknown required feature. */
	if (magic != YCQ_MAGIC)
		return fail(a, YCQ_EINCOMPATIBLE, YCQ_OFF_MAGIC, magic);
	if (version != YCQ_VERSION)
		return fail(a, YCQ_EINCOMPATIBLE, YCQ_OFF_VERSION, version);
	if ((features & YCQ_FEATURES_INCOMPAT_MASK & ~YCQ_FEATURES_KNOWN) != 0)
		return fail(a, YCQ_EINCOMPATIBLE, YCQ_OFF_FEATURES, features);
	/* 4. Descriptor geometry. */
	if (desc_offset != YCQ_OFF_DESCS)
		return fail(a, YCQ_ECORRUPT, YCQ_OFF_DESC_OFFSET, desc_offset);
	if (desc_size != YCQ_DESC_SIZE)
		return fail(a, YCQ_ECORRUPT, YCQ_OFF_DESC_SIZE, desc_size);
	/* 5. Slot count and size. */
	if (slots < YCQ_MIN_SLOTS || slots > YCQ_MAX_SLOTS || (slots & (slots - 1)) != 0)
		return fail(a, YCQ_ECORRUPT, YCQ_OFF_SLOTS, slots);
	if (slot_size < YCQ_MIN_SLOT_SIZE || slot_size > YCQ_MAX_SLOT_SIZE || slot_size % YCQ_MIN_SLOT_SIZE != 0)
		return fail(a, YCQ_ECORRUPT, YCQ_OFF_SLOT_SIZE, slot_size);
	/* 6. The sizes follow from them. N * slot_size by doubling, with no
	 * 64-bit multiply (a library call on some 32-bit targets). */
	if (meta_size != YCQ_META_SIZE(slots))
		return fail(a, YCQ_ECORRUPT, YCQ_OFF_META_SIZE, meta_size);
	{
		uint64_t want = slot_size;
		for (s = slots; s > 1; s >>= 1)
			want <<= 1;
		if (data_size != want)
			return fail(a, YCQ_ECORRUPT, YCQ_OFF_DATA_SIZE, data_size);
	}
	/* 7. The regions are that large, and addressable here. */
	if (meta_len < meta_size || meta_size > (uint64_t)SIZE_MAX)
		return fail(a, YCQ_EINVAL, YCQ_OFF_META_SIZE, meta_len);
	if (data == 0 || data_len < data_size || data_size > (uint64_t)SIZE_MAX)
		return fail(a, YCQ_EINVAL, YCQ_OFF_DATA_SIZE, data_len);
	/* This agent is the one agent of its side. */
	if ((features & feature) == 0)
		return fail(a, YCQ_EINCOMPATIBLE, YCQ_OFF_FEATURES, features);

	a->meta = (uint8_t *)meta;
	a->data = (uint8_t *)data;
	a->slots = slots;
	a->slot_size = slot_size;
	a->mask = slots - 1;
	for (w = 0; w < LINE_WORDS; w++)
		a->line[w] = load64(a, line_off + 8 * w);
	if (ops != 0)
		a->ops = *ops;
	return YCQ_OK;
}

int ycq_consumer_attach(struct ycq_consumer *c, void *meta, uint64_t meta_len,
                        void *data, uint64_t data_len, const struct ycq_wake_ops *ops)
{
	if (c == 0)
		return YCQ_EINVAL;
	return attach(&c->a, YCQ_OFF_CONS_CURSOR, YCQ_FEATURE_SINGLE_CONSUMER, meta, meta_len, data, data_len, ops);
}

int ycq_producer_attach(struct ycq_producer *p, void *meta, uint64_t meta_len,
                        void *data, uint64_t data_len, const struct ycq_wake_ops *ops)
{
	if (p == 0)
		return YCQ_EINVAL;
	return attach(&p->a, YCQ_OFF_PROD_CURSOR, YCQ_FEATURE_SINGLE_PRODUCER, meta, meta_len, data, data_len, ops);
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
 * reserve, and would make the loops over it long. */
static int bad_read_run(const struct ycq_agent *a, const struct ycq_read_run *r)
{
	return r == 0 || a->meta == 0 || r->n > a->slots;
}

static int bad_write_run(const struct ycq_agent *a, const struct ycq_write_run *w)
{
	return w == 0 || a->meta == 0 || w->n > a->slots;
}

static void empty_read_run(struct ycq_read_run *r)
{
	r->start = 0;
	r->holes = 0;
	r->n = 0;
}

int ycq_consumer_reserve(struct ycq_consumer *c, uint32_t n, int mode, struct ycq_read_run *r)
{
	struct ycq_agent *a = &c->a;
	uint64_t pos, holes = 0, bit = 1;
	uint32_t lead = 0, span = 0, recs = 0;
	int fragmented = 0;

	if (r == 0)
		return fail(a, YCQ_EINVAL, 0, 0);
	empty_read_run(r);
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
	if (a->meta == 0 || n < 1 || n > a->slots || (mode != YCQ_UPTO && mode != YCQ_EXACT))
		return fail(a, YCQ_EINVAL, 0, n);
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
	if (k < w->n && a->line[W_CURSOR] == w->start + w->n) {
		/* Nothing was reserved after it: move the cursor back, and the
		 * positions are free again, with no hole. */
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
	if (holes > 0)
		a->pending |= PENDING(YCQ_LINE_ITEMS);
	return first;
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
		if (a->ops.wait != 0)
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
	if (rc == YCQ_EFULL && a->ops.wait != 0)
		a->ops.wait(a->ops.ctx, YCQ_LINE_SPACE, word32(a, futex_off(YCQ_LINE_SPACE)), seen);
	register_sleeper(a, YCQ_LINE_SPACE, (uint32_t)0 - 1);
	return rc;
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
	}
	return "unknown";
}
