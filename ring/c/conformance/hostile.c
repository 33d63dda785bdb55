/* hostile.c: the device against a peer that writes garbage over the
 * metadata while it works. It drives the queue's one producer and one
 * consumer with random operations (random arguments too, some out of
 * range), re-attaches now and then, and counts what each returned. It
 * never checks the records: the peer may have written anything. What it
 * proves is that every call returns, with a known code, and touches nothing
 * outside the regions: the test builds it with AddressSanitizer and
 * UndefinedBehaviorSanitizer, and device.c maps each region between
 * inaccessible pages.
 *
 *   device hostile q=SPEC seed=N
 *
 * It runs until its stdin closes, printing "progress key=count ..." now
 * and then (calls, each return code, attaches made and refused), and at
 * the end "summary" with the same counts. */
#include "device.h"

#include <poll.h>
#include <string.h>
#include <unistd.h>

#define RUNS 4
#define CODES 11 /* YCQ_OK and YCQ_EFULL to YCQ_EBUSY */

struct hostile {
	struct region q;
	struct ycq_consumer c;
	struct ycq_producer p;
	int have_c, have_p;
	struct ycq_read_run r[RUNS];
	struct ycq_write_run w[RUNS];
	struct hooks h;
	struct ycq_wake_ops ops;
	struct rng rng;
	uint64_t ops_done, codes[CODES], attached, refused, sum;
};

static void tally(struct hostile *s, int rc, const char *what)
{
	if (rc > 0 || -rc >= CODES)
		die("%s returned %d, not a YCQ code", what, rc);
	if (strcmp(ycq_strerror(rc), "unknown") == 0)
		die("%s: no name for code %d", what, rc);
	s->codes[-rc]++;
}

/* arg32 is a count or index around the interesting range: mostly small,
 * sometimes just past the end, now and then anything. */
static uint32_t arg32(struct hostile *s, uint32_t around)
{
	switch (rng_below(&s->rng, 32)) {
	case 0:
		return (uint32_t)rng_next(&s->rng);
	case 1:
		return around + 1;
	default:
		return rng_below(&s->rng, around + 1);
	}
}

static void reattach(struct hostile *s)
{
	struct ycq_consumer c;
	struct ycq_producer p;
	int rc = ycq_consumer_attach(&c, s->q.meta, s->q.meta_len, s->q.data, s->q.data_len, &s->ops);
	tally(s, rc, "consumer attach");
	if (rc == YCQ_OK) {
		s->c = c;
		s->have_c = 1;
		s->attached++;
	} else {
		s->refused++;
	}
	rc = ycq_producer_attach(&p, s->q.meta, s->q.meta_len, s->q.data, s->q.data_len, &s->ops);
	tally(s, rc, "producer attach");
	if (rc == YCQ_OK) {
		s->p = p;
		s->have_p = 1;
		s->attached++;
	} else {
		s->refused++;
	}
}

static void one_op(struct hostile *s)
{
	struct ycq_agent *ca = &s->c.a, *pa = &s->p.a;
	struct ycq_write_run *w = &s->w[rng_below(&s->rng, RUNS)];
	struct ycq_read_run *r = &s->r[rng_below(&s->rng, RUNS)];
	int mode = rng_below(&s->rng, 16) == 0 ? 7 : (int)rng_below(&s->rng, 2);
	int rc;

	switch (rng_below(&s->rng, 64)) {
	case 0:
		reattach(s);
		return;
	case 1:
		tally(s, ycq_consumer_sleep(&s->c, arg32(s, ca->slots), mode, r), "consumer sleep");
		return;
	case 2:
		tally(s, ycq_producer_sleep(&s->p, arg32(s, pa->slots), mode, w), "producer sleep");
		return;
	case 3:
		rc = ycq_consumer_wake_line(&s->c, (int)rng_below(&s->rng, 3));
		tally(s, rc > 0 ? 0 : rc, "consumer wake line");
		return;
	case 4:
		rc = ycq_producer_wake(&s->p);
		tally(s, rc > 0 ? 0 : rc, "producer wake");
		return;
	case 5:
	case 6:
	case 7:
	case 28:
	case 29:
	case 30:
	case 31:
	case 32:
	case 33:
		tally(s, ycq_producer_reserve(&s->p, arg32(s, pa->slots), mode, w), "producer reserve");
		return;
	case 8:
	case 9:
	case 10:
	case 34:
	case 35:
	case 36:
	case 37:
	case 38:
	case 39: {
		/* Write the whole slot, as a producer does. */
		uint8_t *b = ycq_producer_slot(&s->p, w, arg32(s, w->n));
		if (b != NULL)
			memset(b, (int)s->ops_done, pa->slot_size);
		rc = ycq_producer_publish(&s->p, w, arg32(s, w->n), arg32(s, pa->slot_size));
		tally(s, rc, "publish");
		return;
	}
	case 11:
	case 58:
	case 59:
		tally(s, ycq_producer_publish_all(&s->p, w, arg32(s, pa->slot_size)), "publish all");
		return;
	case 12:
	case 13:
		tally(s, ycq_producer_abort(&s->p, w, arg32(s, w->n)), "abort");
		return;
	case 14:
	case 60:
		tally(s, ycq_producer_abort_all(&s->p, w), "abort all");
		return;
	case 15:
	case 16:
	case 17:
	case 40:
	case 41:
	case 42:
	case 43:
	case 44:
	case 45:
		tally(s, ycq_consumer_reserve(&s->c, arg32(s, ca->slots), mode, r), "consumer reserve");
		return;
	case 18:
	case 19:
	case 20:
	case 46:
	case 47:
	case 48:
	case 49: {
		/* Read the whole record, as a consumer does. */
		const uint8_t *b;
		uint32_t len;
		rc = ycq_consumer_record(&s->c, r, arg32(s, r->n), &b, &len);
		tally(s, rc, "record");
		if (rc == YCQ_OK) {
			if (len > ca->slot_size)
				die("a %u-byte record in a %u-byte slot", len, ca->slot_size);
			for (uint32_t i = 0; i < len; i++)
				s->sum += b[i];
		}
		return;
	}
	case 21:
	case 22:
	case 23:
	case 50:
	case 51:
	case 52:
	case 53:
	case 54:
	case 55:
		tally(s, ycq_consumer_release(&s->c, r, arg32(s, r->n)), "release");
		return;
	case 24:
	case 56:
	case 57:
		tally(s, ycq_consumer_release_all(&s->c, r), "release all");
		return;
	case 25:
	case 61:
		tally(s, ycq_consumer_give_back(&s->c, r, arg32(s, r->n)), "give back");
		return;
	case 26:
		rc = ycq_consumer_wake(&s->c);
		tally(s, rc > 0 ? 0 : rc, "consumer wake");
		return;
	case 27:
		rc = ycq_producer_wake_line(&s->p, (int)rng_below(&s->rng, 3));
		tally(s, rc > 0 ? 0 : rc, "producer wake line");
		return;
	default: {
		/* A run the caller garbled: the calls refuse what is out of range. */
		struct ycq_read_run bad = {rng_next(&s->rng), rng_next(&s->rng), (uint32_t)rng_next(&s->rng),
		                           rng_below(&s->rng, 4) == 0 ? (uint32_t)rng_next(&s->rng) : ca->gen};
		struct ycq_write_run badw = {rng_next(&s->rng), (uint32_t)rng_next(&s->rng),
		                             rng_below(&s->rng, 4) == 0 ? (uint32_t)rng_next(&s->rng) : pa->gen};
		tally(s, ycq_consumer_release_all(&s->c, &bad), "release all of a garbled run");
		tally(s, ycq_consumer_give_back(&s->c, &bad, arg32(s, bad.n)), "give back of a garbled run");
		tally(s, ycq_producer_abort_all(&s->p, &badw), "abort all of a garbled run");
		tally(s, ycq_producer_publish_all(&s->p, &badw, 0), "publish all of a garbled run");
		return;
	}
	}
}

static int stopped(void)
{
	struct pollfd p = {0, POLLIN, 0};
	char buf[256];
	if (poll(&p, 1, 0) <= 0)
		return 0;
	return read(0, buf, sizeof buf) <= 0;
}

static void report(const struct hostile *s, const char *what);

int run_hostile(int argc, char **argv)
{
	static struct hostile s;

	map_queue(arg(argc, argv, "q", NULL), &s.q);
	rng_seed(&s.rng, arg_u64(argc, argv, "seed", 1));
	hooks_init(&s.h, "q", &s.ops);
	s.h.timeout_ms = 1;
	while (!s.have_c || !s.have_p) {
		reattach(&s);
		if (stopped())
			die("stopped before the queue could be attached");
	}
	say("ready");
	for (;;) {
		one_op(&s);
		s.ops_done++;
		if (s.ops_done % 256 == 0 && stopped())
			break;
		if (s.ops_done % 16384 == 0)
			report(&s, "progress");
	}
	report(&s, "summary");
	return 0;
}

static void report(const struct hostile *s, const char *what)
{
	say("%s ops=%llu ok=%llu full=%llu empty=%llu corrupt=%llu incompatible=%llu invalid=%llu"
	    " notheld=%llu fragmented=%llu notlast=%llu attached=%llu refused=%llu sleeps=%llu wakes=%llu",
	    what, (unsigned long long)s->ops_done, (unsigned long long)s->codes[0], (unsigned long long)s->codes[-YCQ_EFULL],
	    (unsigned long long)s->codes[-YCQ_EEMPTY], (unsigned long long)s->codes[-YCQ_ECORRUPT],
	    (unsigned long long)s->codes[-YCQ_EINCOMPATIBLE], (unsigned long long)s->codes[-YCQ_EINVAL],
	    (unsigned long long)s->codes[-YCQ_ENOTHELD], (unsigned long long)s->codes[-YCQ_EFRAGMENTED],
	    (unsigned long long)s->codes[-YCQ_ENOTLAST], (unsigned long long)s->attached,
	    (unsigned long long)s->refused, (unsigned long long)s->h.waits, (unsigned long long)s->h.wakes);
}
