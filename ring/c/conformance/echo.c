/* echo.c: the conformance scenario. The device consumes queue in (Go
 * producers publish into it) and produces into queue out (Go consumers
 * read it): every record it takes it checks and echoes, in order, and it
 * mixes in records of its own (producer id go_producers), holes and
 * rollbacks. Batches, reserve modes, publish and release order, holes and
 * give-backs are drawn from seed; when nothing moves for spin rounds it
 * sleeps on the line it waits for, through the futex words.
 *
 *   device echo in=SPEC out=SPEC seed=N go_producers=P per_producer=K
 *          own=K batch=B holes=PERMILLE rollbacks=PERMILLE giveback=PERMILLE
 *          spin=N
 *
 * Once it has taken every record it waits for its stdin to close (the Go
 * producers are done), reserves once more to pass any holes they left at
 * the end, and prints "summary key=value ...": what it did, for the Go test
 * to compare with the counters in the metadata. */
#include "device.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PRODUCERS 64
#define MAX_BATCH 64

struct echo {
	struct ycq_consumer in;
	struct ycq_producer out;
	struct hooks hin, hout;
	struct rng rng;
	uint32_t producers, batch, holes, rollbacks, giveback, spin;
	uint64_t per_producer, own_total, go_total;
	uint64_t next_seq[MAX_PRODUCERS];

	/* The run held from in: records [0, rel) released, [rel, next)
	 * echoed and not yet released, [next, r.n) not yet echoed. */
	struct ycq_read_run r;
	uint32_t next, rel;

	/* What this side did. */
	uint64_t taken, own_sent;
	uint64_t released, skipped, returned, empty;
	uint64_t published, aborted, rolled, full;
};

static int pending_work(const struct echo *e)
{
	return e->next < e->r.n || e->own_sent < e->own_total;
}

/* take reserves a run from in; it returns whether anything moved. */
static int take(struct echo *e, int sleep)
{
	uint64_t left = e->go_total - e->taken;
	/* Never ask for more than will come: an exact reserve for them would
	 * wait for ever. */
	uint32_t n = 1 + rng_below(&e->rng, left < e->batch ? (uint32_t)left : e->batch);
	int mode = rng_below(&e->rng, 2) ? YCQ_EXACT : YCQ_UPTO;
	uint64_t before = ycq_consumer_position(&e->in), moved;
	int rc = sleep ? ycq_consumer_sleep(&e->in, n, mode, &e->r) : ycq_consumer_reserve(&e->in, n, mode, &e->r);

	moved = ycq_consumer_position(&e->in) - before;
	if (moved > e->in.a.slots)
		die("in: the consumer moved %llu positions in one reserve of a %u-slot queue",
		    (unsigned long long)moved, e->in.a.slots);
	e->next = e->rel = 0;
	switch (rc) {
	case YCQ_OK:
		break;
	case YCQ_EEMPTY:
	case YCQ_EFRAGMENTED:
		if (rc == YCQ_EEMPTY)
			e->empty++;
		e->skipped += moved; /* holes passed in front */
		return moved > 0;
	default:
		die("in: reserve %u (%s): %s at offset %u", n, mode == YCQ_EXACT ? "exact" : "up to",
		    ycq_strerror(rc), e->in.a.err_off);
	}
	if (e->r.n < 1 || e->r.n > n || (mode == YCQ_EXACT && e->r.n != n))
		die("in: reserve %u gave a run of %u", n, e->r.n);
	e->skipped += moved - e->r.n;
	if (rng_below(&e->rng, 1000) < e->giveback) {
		/* Give some back unread: they come again, in order. */
		uint32_t i = rng_below(&e->rng, e->r.n), had = e->r.n;
		uint64_t at = ycq_consumer_position(&e->in);
		rc = ycq_consumer_give_back(&e->in, &e->r, i);
		if (rc != YCQ_OK)
			die("in: give back from %u of %u: %s", i, had, ycq_strerror(rc));
		if (e->r.n != i)
			die("in: give back from %u left %u records", i, e->r.n);
		e->returned += had - i;
		e->skipped -= (at - ycq_consumer_position(&e->in)) - (had - i);
	}
	return 1;
}

/* echo_one copies record e->next of the held run into slot, after checking
 * it, and returns its length. */
static uint32_t echo_one(struct echo *e, uint8_t *slot)
{
	const uint8_t *b;
	uint32_t len, producer;
	uint64_t seq;
	int rc = ycq_consumer_record(&e->in, &e->r, e->next, &b, &len);

	if (rc != YCQ_OK)
		die("in: record %u: %s", e->next, ycq_strerror(rc));
	if (len > e->out.a.slot_size)
		die("in: a %u-byte record for %u-byte slots", len, e->out.a.slot_size);
	if (record_check(b, len, &producer, &seq) != 0)
		die("in: record at position %llu (%u bytes) fails its checksum",
		    (unsigned long long)ycq_read_run_position(&e->r, e->next), len);
	if (producer >= e->producers)
		die("in: record from producer %u of %u", producer, e->producers);
	if (seq != e->next_seq[producer])
		die("in: producer %u: record %llu where %llu was due", producer,
		    (unsigned long long)seq, (unsigned long long)e->next_seq[producer]);
	e->next_seq[producer]++;
	memcpy(slot, b, len);
	e->next++;
	e->taken++;
	return len;
}

/* give fills a run of out with echoed records, records of its own and
 * holes, publishes it in a random order, and sometimes gives up its end;
 * it returns whether anything moved. */
static int give(struct echo *e, int sleep)
{
	struct ycq_write_run w;
	uint32_t held = e->r.n - e->next, extra = e->own_sent < e->own_total ? 1 + rng_below(&e->rng, 2) : 0;
	uint32_t want = held + extra, n, k, i;
	uint32_t order[MAX_BATCH], len[MAX_BATCH];
	int hole[MAX_BATCH];
	int mode = rng_below(&e->rng, 2) ? YCQ_EXACT : YCQ_UPTO;
	int rc;

	if (want == 0)
		return 0;
	n = want < e->out.a.slots ? want : e->out.a.slots;
	if (n > MAX_BATCH)
		n = MAX_BATCH;
	rc = sleep ? ycq_producer_sleep(&e->out, n, mode, &w) : ycq_producer_reserve(&e->out, n, mode, &w);
	if (rc == YCQ_EFULL) {
		e->full++;
		return 0;
	}
	if (rc != YCQ_OK)
		die("out: reserve %u: %s at offset %u", n, ycq_strerror(rc), e->out.a.err_off);
	if (w.n < 1 || w.n > n || w.start != ycq_producer_position(&e->out) - w.n)
		die("out: reserve %u gave %u slots at %llu", n, w.n, (unsigned long long)w.start);
	/* Fill k slots; the rest is given back by moving the cursor back. */
	k = w.n;
	if (rng_below(&e->rng, 1000) < e->rollbacks)
		k = rng_below(&e->rng, w.n);
	for (i = 0; i < k; i++) {
		uint8_t *slot = ycq_producer_slot(&e->out, &w, i);
		int own = e->own_sent < e->own_total && (e->next == e->r.n || rng_below(&e->rng, 4) == 0);
		if (slot == NULL)
			die("out: no slot %u in a run of %u", i, w.n);
		hole[i] = rng_below(&e->rng, 1000) < e->holes || (!own && e->next == e->r.n);
		if (hole[i]) {
			memset(slot, 0xa5, e->out.a.slot_size); /* never read */
			len[i] = 0;
		} else if (own) {
			len[i] = REC_HEADER + rng_below(&e->rng, e->out.a.slot_size - REC_HEADER + 1);
			record_fill(slot, len[i], e->producers, e->own_sent++);
		} else {
			len[i] = echo_one(e, slot);
		}
		order[i] = i;
	}
	shuffle(&e->rng, order, k);
	for (i = 0; i < k; i++) {
		uint32_t s = order[i];
		rc = hole[s] ? ycq_producer_abort(&e->out, &w, s) : ycq_producer_publish(&e->out, &w, s, len[s]);
		if (rc != YCQ_OK)
			die("out: %s slot %u of %u: %s", hole[s] ? "abort" : "publish", s, w.n, ycq_strerror(rc));
		if (hole[s])
			e->aborted++;
		else
			e->published++;
	}
	if (k < w.n) {
		uint32_t had = w.n;
		rc = ycq_producer_abort_all(&e->out, &w);
		if (rc != YCQ_OK || w.n != k)
			die("out: abort_all of %u unpublished slots after %u: %s, %u left", had - k, k, ycq_strerror(rc), w.n);
		e->rolled += had - k;
		e->aborted += had - k;
	}
	return 1;
}

/* release_echoed releases what was echoed, in a random order. */
static void release_echoed(struct echo *e)
{
	uint32_t order[MAX_BATCH], n = 0, i;
	int rc;

	if (e->rel == 0 && e->next == e->r.n && e->r.n > 0 && rng_below(&e->rng, 2) == 0) {
		rc = ycq_consumer_release_all(&e->in, &e->r);
		if (rc != YCQ_OK)
			die("in: release all: %s", ycq_strerror(rc));
		e->released += e->r.n;
		e->rel = e->r.n;
		return;
	}
	for (i = e->rel; i < e->next; i++)
		order[n++] = i;
	shuffle(&e->rng, order, n);
	for (i = 0; i < n; i++) {
		rc = ycq_consumer_release(&e->in, &e->r, order[i]);
		if (rc != YCQ_OK)
			die("in: release %u: %s", order[i], ycq_strerror(rc));
		e->released++;
	}
	/* A second release of the same record is refused and changes nothing. */
	if (n > 0 && (rc = ycq_consumer_release(&e->in, &e->r, order[0])) != YCQ_ENOTHELD)
		die("in: release %u twice: %s", order[0], ycq_strerror(rc));
	e->rel = e->next;
}

int run_echo(int argc, char **argv)
{
	static struct echo e;
	struct region in, out;
	struct ycq_wake_ops oin, oout;
	uint32_t idle = 0;
	int blocked_out = 0, rc;
	char buf[64];

	map_queue(arg(argc, argv, "in", NULL), &in);
	map_queue(arg(argc, argv, "out", NULL), &out);
	rng_seed(&e.rng, arg_u64(argc, argv, "seed", 1));
	e.producers = (uint32_t)arg_u64(argc, argv, "go_producers", 1);
	e.per_producer = arg_u64(argc, argv, "per_producer", 1000);
	e.own_total = arg_u64(argc, argv, "own", 0);
	e.batch = (uint32_t)arg_u64(argc, argv, "batch", 8);
	e.holes = (uint32_t)arg_u64(argc, argv, "holes", 0);
	e.rollbacks = (uint32_t)arg_u64(argc, argv, "rollbacks", 0);
	e.giveback = (uint32_t)arg_u64(argc, argv, "giveback", 0);
	e.spin = (uint32_t)arg_u64(argc, argv, "spin", 64);
	if (e.producers < 1 || e.producers > MAX_PRODUCERS || e.batch < 1 || e.batch > MAX_BATCH)
		die("go_producers 1 to %d, batch 1 to %d", MAX_PRODUCERS, MAX_BATCH);
	e.go_total = e.producers * e.per_producer;

	hooks_init(&e.hin, "in", &oin);
	hooks_init(&e.hout, "out", &oout);
	if ((rc = ycq_consumer_attach(&e.in, in.meta, in.meta_len, in.data, in.data_len, &oin)) != YCQ_OK)
		die("attach in: %s (offset %u value %llu)", ycq_strerror(rc), e.in.a.err_off, (unsigned long long)e.in.a.err_value);
	if ((rc = ycq_producer_attach(&e.out, out.meta, out.meta_len, out.data, out.data_len, &oout)) != YCQ_OK)
		die("attach out: %s (offset %u value %llu)", ycq_strerror(rc), e.out.a.err_off, (unsigned long long)e.out.a.err_value);
	if (e.in.a.slot_size > e.out.a.slot_size || e.out.a.slot_size < REC_HEADER)
		die("out's slots (%u bytes) must hold in's (%u)", e.out.a.slot_size, e.in.a.slot_size);
	say("attached in at %llu, out at %llu", (unsigned long long)ycq_consumer_position(&e.in),
	    (unsigned long long)ycq_producer_position(&e.out));

	while (e.taken < e.go_total || e.own_sent < e.own_total || e.rel < e.r.n) {
		/* After spin rounds without progress, sleep on what blocked the
		 * last round: room in out if it was full, else records in in. */
		int sleep = idle >= e.spin, moved = 0;
		int sleep_out = sleep && blocked_out, sleep_in = sleep && !blocked_out;
		if (e.next == e.r.n && e.rel == e.r.n && e.taken < e.go_total)
			moved |= take(&e, sleep_in);
		blocked_out = 0;
		if (pending_work(&e)) {
			int gave = give(&e, sleep_out);
			moved |= gave;
			blocked_out = !gave;
		}
		if (e.rel < e.next) {
			release_echoed(&e);
			moved = 1;
		}
		ycq_consumer_wake(&e.in);
		ycq_producer_wake(&e.out);
		idle = moved || sleep ? 0 : idle + 1;
	}

	/* The Go producers may leave holes after their last record: once they
	 * are done (stdin closes), pass them, and find nothing else. */
	while (fgets(buf, sizeof buf, stdin) != NULL)
		;
	{
		uint64_t before = ycq_consumer_position(&e.in);
		rc = ycq_consumer_reserve(&e.in, 1, YCQ_UPTO, &e.r);
		if (rc != YCQ_EEMPTY)
			die("in: a record after the last: %s", ycq_strerror(rc));
		e.empty++;
		e.skipped += ycq_consumer_position(&e.in) - before;
	}
	ycq_consumer_wake(&e.in);
	ycq_producer_wake(&e.out);
	say("summary taken=%llu own=%llu released=%llu skipped=%llu returned=%llu empty=%llu"
	    " published=%llu aborted=%llu rolled=%llu full=%llu in_pos=%llu out_pos=%llu"
	    " in_wakes=%llu out_wakes=%llu in_sleeps=%llu out_sleeps=%llu"
	    " in_wake_checks=%llu out_wake_checks=%llu",
	    (unsigned long long)e.taken, (unsigned long long)e.own_sent, (unsigned long long)e.released,
	    (unsigned long long)e.skipped, (unsigned long long)e.returned, (unsigned long long)e.empty,
	    (unsigned long long)e.published, (unsigned long long)e.aborted, (unsigned long long)e.rolled,
	    (unsigned long long)e.full, (unsigned long long)ycq_consumer_position(&e.in),
	    (unsigned long long)ycq_producer_position(&e.out), (unsigned long long)e.hin.wakes,
	    (unsigned long long)e.hout.wakes, (unsigned long long)e.hin.waits, (unsigned long long)e.hout.waits,
	    (unsigned long long)(e.in.a.line[6] + e.in.a.line[7]), (unsigned long long)(e.out.a.line[6] + e.out.a.line[7]));
	return 0;
}
