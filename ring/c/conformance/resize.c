/* resize.c: the device following the resizes of a Go owner
 * (ring.Resizable), as LAYOUT.md's "Resizing" says a firmware agent does.
 * Both scenarios work in one "space": a memfd standing for the device's
 * address space, mapped whole, byte i at address base + i. Every
 * generation the owner makes is in it, and the device reaches each through
 * ycq_reach_window, as firmware reaches host memory through a window.
 *
 *   device resize space=FD:LEN base=ADDR in=META:DATA out=META:DATA seed=N batch=B
 *
 * consumes queue in (a Go owner produces into it) and echoes every record
 * into queue out (the owner consumes it), following every resize of both:
 * the producer calls ycq_producer_follow once a batch, the consumer calls
 * ycq_consumer_follow when a reserve finds nothing. The records are 16
 * bytes, a sequence number and a checksum of it (the ones
 * ring/agent_resize_test.go writes); the device checks that each is the
 * next in order before it echoes it. Batch sizes, holes and rollbacks in
 * out, give-backs, and the order of publishes and releases are drawn from
 * seed. It says "attached", then works until its stdin closes (the Go side
 * has had every record back) and prints "summary key=value ...".
 *
 *   device link space=FD:LEN base=ADDR
 *
 * reads one command a line and answers each with one line, "<command>
 * key=value ...", for the Go tests that hold the C agent's follows against
 * the Go agent's on the same link words and headers:
 *
 *   attach p|c META DATA   ycq_*_attach_resizable at those addresses
 *   plain p|c META DATA    ycq_*_attach (an agent that does not follow)
 *   follow p|c             ycq_*_follow
 *   reserve p|c N          reserve up to N into the side's run
 *   finish p|c             publish (release) all of the side's run
 *   again p|c              publish (release) slot 0 of that run once more
 *   sleep p|c              one round of sleeping for one slot (record); the
 *                          wait hook only notes that it was called
 *   drained                ycq_consumer_drained
 *   quit
 *
 * Every answer has rc (the call's return), off, next and value (the agent's
 * err_off, err_next and err_value), gen, slots, pos and held (the agent
 * after the call), n (the run's length), waited (sleep), and for a follow
 * the link it found: ngen, nslots, nmeta, ndata, woke. */
#include "device.h"

#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BATCH 64
#define ECHO_LEN 16

static uint64_t get_le64(const uint8_t *b)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

/* The checksum ring/agent_resize_test.go's putEchoed writes. */
static uint64_t echo_sum(uint64_t seq)
{
	return seq * 0x9e3779b97f4a7c15ull ^ 0x5bd1e995u;
}

/* stdin_closed reports whether stdin has reached its end, without
 * blocking. */
static int stdin_closed(void)
{
	struct pollfd p = {0, POLLIN, 0};
	char buf[256];
	if (poll(&p, 1, 0) <= 0)
		return 0;
	return read(0, buf, sizeof buf) <= 0;
}

/* reach_addr gives the regions at meta_addr and data_addr in the window,
 * for the first attach, exactly as a follow's reach hook gives the next
 * generation's. */
static void reach_addr(struct ycq_window *win, uint64_t meta_addr, uint64_t data_addr, struct ycq_next *at)
{
	memset(at, 0, sizeof *at);
	at->meta_addr = meta_addr;
	at->data_addr = data_addr;
	if (ycq_reach_window(win, at) != 0) {
		at->meta = NULL;
		at->meta_len = 0;
		at->data = NULL;
		at->data_len = 0;
	}
}

static void parse_addrs(const char *spec, const char *what, uint64_t *meta, uint64_t *data)
{
	unsigned long long m, d;
	if (spec == NULL || sscanf(spec, "%llu:%llu", &m, &d) != 2)
		die("%s %s: want meta_addr:data_addr", what, spec ? spec : "(none)");
	*meta = m;
	*data = d;
}

static void map_window(int argc, char **argv, struct ycq_window *win)
{
	win->base = map_space(arg(argc, argv, "space", NULL), &win->len);
	win->addr = arg_u64(argc, argv, "base", 0);
}

/* The resize scenario. */

struct follower {
	struct ycq_window win;
	struct ycq_reach_ops reach;
	struct ycq_consumer in;
	struct ycq_producer out;
	struct rng rng;
	uint32_t batch;
	uint64_t next_in; /* the sequence due from in */
	uint64_t echoed, in_follows, out_follows, holes, rolled, given_back, full, idle;
};

/* check_run checks that the records of r are the next ones in order. */
static void check_run(struct follower *f, const struct ycq_read_run *r)
{
	for (uint32_t i = 0; i < r->n; i++) {
		const uint8_t *b;
		uint32_t len;
		uint64_t seq, want = f->next_in + i;
		int rc = ycq_consumer_record(&f->in, r, i, &b, &len);
		if (rc != YCQ_OK)
			die("in: record %u of %u: %s at offset %u", i, r->n, ycq_strerror(rc), f->in.a.err_off);
		if (len != ECHO_LEN)
			die("in: generation %u position %llu: a %u-byte record", f->in.a.gen,
			    (unsigned long long)ycq_read_run_position(r, i), len);
		seq = get_le64(b);
		if (get_le64(b + 8) != echo_sum(seq))
			die("in: generation %u position %llu: record %llu fails its checksum", f->in.a.gen,
			    (unsigned long long)ycq_read_run_position(r, i), (unsigned long long)seq);
		if (seq != want)
			die("in: generation %u position %llu: record %llu where %llu was due (lost, duplicated or reordered)",
			    f->in.a.gen, (unsigned long long)ycq_read_run_position(r, i), (unsigned long long)seq,
			    (unsigned long long)want);
	}
}

/* echo_batch takes a run from in and echoes what fits into out; it returns
 * whether anything moved. */
static int echo_batch(struct follower *f)
{
	struct ycq_read_run r;
	struct ycq_write_run w;
	struct ycq_next next;
	uint32_t want = 1 + rng_below(&f->rng, f->batch), m, k = 0, j, n, nrec = 0;
	int record_of[MAX_BATCH + 1], rollback, rc;
	uint32_t order[MAX_BATCH + 1];

	if (want > f->in.a.slots)
		want = f->in.a.slots;
	rc = ycq_consumer_reserve(&f->in, want, YCQ_UPTO, &r);
	if (rc == YCQ_EEMPTY) {
		/* Nothing to take: the generation may be drained. */
		rc = ycq_consumer_follow(&f->in, &next);
		if (rc == YCQ_MOVED) {
			if (next.generation != f->in.a.gen || f->in.a.slots != next.slots)
				die("in: moved to generation %u of %u slots, the link said %u of %u", f->in.a.gen,
				    f->in.a.slots, next.generation, next.slots);
			f->in_follows++;
			return 1;
		}
		if (rc != YCQ_OK)
			die("in: follow from generation %u: %s at offset %u (next %u) value %llu", f->in.a.gen,
			    ycq_strerror(rc), f->in.a.err_off, f->in.a.err_next, (unsigned long long)f->in.a.err_value);
		return 0;
	}
	if (rc != YCQ_OK)
		die("in: reserve %u: %s at offset %u", want, ycq_strerror(rc), f->in.a.err_off);
	check_run(f, &r);

	/* As many slots, now and then one more for a hole. */
	m = r.n + (rng_below(&f->rng, 8) == 0);
	if (m > f->out.a.slots)
		m = f->out.a.slots;
	rc = ycq_producer_reserve(&f->out, m, YCQ_UPTO, &w);
	if (rc == YCQ_EFULL) {
		/* No room: give the whole run back, to come again in order. */
		if ((rc = ycq_consumer_give_back(&f->in, &r, 0)) != YCQ_OK)
			die("in: give back: %s", ycq_strerror(rc));
		f->full++;
		return 0;
	}
	if (rc != YCQ_OK)
		die("out: reserve %u: %s at offset %u", m, ycq_strerror(rc), f->out.a.err_off);

	/* Each slot carries the next record or is a hole; a rollback leaves
	 * the holes unfinished for abort_all, which moves the cursor back over
	 * those at the end and aborts the others. */
	rollback = rng_below(&f->rng, 6) == 0;
	for (j = 0; j < w.n; j++) {
		record_of[j] = -1;
		if (k < r.n && rng_below(&f->rng, 12) != 0) {
			const uint8_t *b;
			uint32_t len;
			if ((rc = ycq_consumer_record(&f->in, &r, k, &b, &len)) != YCQ_OK)
				die("in: record %u: %s", k, ycq_strerror(rc));
			memcpy(ycq_producer_slot(&f->out, &w, j), b, len);
			record_of[j] = (int)k++;
			order[nrec++] = j;
		}
	}
	shuffle(&f->rng, order, nrec);
	for (j = 0; j < nrec; j++)
		if ((rc = ycq_producer_publish(&f->out, &w, order[j], ECHO_LEN)) != YCQ_OK)
			die("out: publish %u: %s", order[j], ycq_strerror(rc));
	if (rollback) {
		n = w.n;
		if ((rc = ycq_producer_abort_all(&f->out, &w)) != YCQ_OK)
			die("out: abort all: %s", ycq_strerror(rc));
		f->rolled += n - w.n;
		f->holes += w.n - nrec;
	} else {
		for (j = 0; j < w.n; j++)
			if (record_of[j] < 0) {
				if ((rc = ycq_producer_abort(&f->out, &w, j)) != YCQ_OK)
					die("out: abort %u: %s", j, ycq_strerror(rc));
				f->holes++;
			}
	}

	/* What was not echoed goes back; what was is released, in any order. */
	if (k < r.n) {
		f->given_back += r.n - k;
		if ((rc = ycq_consumer_give_back(&f->in, &r, k)) != YCQ_OK)
			die("in: give back from %u: %s", k, ycq_strerror(rc));
	}
	if (rng_below(&f->rng, 2) == 0) {
		if ((rc = ycq_consumer_release_all(&f->in, &r)) != YCQ_OK)
			die("in: release all: %s", ycq_strerror(rc));
	} else {
		for (j = 0; j < r.n; j++)
			order[j] = j;
		shuffle(&f->rng, order, r.n);
		for (j = 0; j < r.n; j++)
			if ((rc = ycq_consumer_release(&f->in, &r, order[j])) != YCQ_OK)
				die("in: release %u: %s", order[j], ycq_strerror(rc));
	}
	ycq_consumer_wake(&f->in);
	ycq_producer_wake(&f->out);
	f->next_in += k;
	f->echoed += k;
	return 1;
}

int run_resize(int argc, char **argv)
{
	static struct follower f;
	struct ycq_next at, next;
	uint64_t meta, data;
	int rc;

	map_window(argc, argv, &f.win);
	f.reach.reach = ycq_reach_window;
	f.reach.ctx = &f.win;
	rng_seed(&f.rng, arg_u64(argc, argv, "seed", 1));
	f.batch = (uint32_t)arg_u64(argc, argv, "batch", 8);
	if (f.batch < 1 || f.batch > MAX_BATCH)
		die("batch=%u: want 1 to %d", f.batch, MAX_BATCH);

	parse_addrs(arg(argc, argv, "in", NULL), "in", &meta, &data);
	reach_addr(&f.win, meta, data, &at);
	if ((rc = ycq_consumer_attach_resizable(&f.in, at.meta, at.meta_len, at.data, at.data_len, NULL, &f.reach)) != YCQ_OK)
		die("in: attach: %s at offset %u", ycq_strerror(rc), f.in.a.err_off);
	parse_addrs(arg(argc, argv, "out", NULL), "out", &meta, &data);
	reach_addr(&f.win, meta, data, &at);
	if ((rc = ycq_producer_attach_resizable(&f.out, at.meta, at.meta_len, at.data, at.data_len, NULL, &f.reach)) != YCQ_OK)
		die("out: attach: %s at offset %u", ycq_strerror(rc), f.out.a.err_off);
	say("attached in_gen=%u out_gen=%u", f.in.a.gen, f.out.a.gen);

	for (uint64_t iter = 0;; iter++) {
		if (iter % 64 == 0 && stdin_closed())
			break;
		/* Once a batch, before it: has a resize named the next out? */
		rc = ycq_producer_follow(&f.out, &next);
		if (rc == YCQ_MOVED) {
			if (next.generation != f.out.a.gen || f.out.a.slots != next.slots)
				die("out: moved to generation %u of %u slots, the link said %u of %u", f.out.a.gen,
				    f.out.a.slots, next.generation, next.slots);
			f.out_follows++;
		} else if (rc != YCQ_OK) {
			die("out: follow from generation %u: %s at offset %u (next %u) value %llu", f.out.a.gen,
			    ycq_strerror(rc), f.out.a.err_off, f.out.a.err_next, (unsigned long long)f.out.a.err_value);
		}
		if (!echo_batch(&f)) {
			f.idle++;
			sched_yield();
		}
	}
	say("summary echoed=%llu in_follows=%llu out_follows=%llu in_gen=%u out_gen=%u holes=%llu rolled=%llu"
	    " given_back=%llu full=%llu idle=%llu",
	    (unsigned long long)f.echoed, (unsigned long long)f.in_follows, (unsigned long long)f.out_follows,
	    f.in.a.gen, f.out.a.gen, (unsigned long long)f.holes, (unsigned long long)f.rolled,
	    (unsigned long long)f.given_back, (unsigned long long)f.full, (unsigned long long)f.idle);
	return 0;
}

/* The link scenario. */

struct linker {
	struct ycq_window win;
	struct ycq_reach_ops reach;
	struct ycq_wake_ops ops;
	struct ycq_consumer c;
	struct ycq_producer p;
	struct ycq_read_run r;
	struct ycq_write_run w;
	int waited;
};

/* note_wait is the wait hook: it only notes that the agent would sleep. */
static void note_wait(void *ctx, int line, uint32_t *futex_word, uint32_t seen)
{
	struct linker *l = ctx;
	(void)line;
	(void)futex_word;
	(void)seen;
	l->waited = 1;
}

static void answer(const char *cmd, int rc, const struct ycq_agent *a, uint64_t pos, uint32_t n,
                   int waited, const struct ycq_next *next)
{
	static const struct ycq_next none;
	if (next == NULL)
		next = &none;
	say("%s rc=%d off=%u next=%u value=%llu gen=%u slots=%u pos=%llu held=%u n=%u waited=%d"
	    " ngen=%u nslots=%u nmeta=%llu ndata=%llu woke=%d",
	    cmd, rc, a->err_off, a->err_next, (unsigned long long)a->err_value, a->gen, a->slots,
	    (unsigned long long)pos, a->held, n, waited, next->generation, next->slots,
	    (unsigned long long)next->meta_addr, (unsigned long long)next->data_addr, next->woke);
}

int run_link(int argc, char **argv)
{
	static struct linker l;
	char line[512];

	map_window(argc, argv, &l.win);
	l.reach.reach = ycq_reach_window;
	l.reach.ctx = &l.win;
	l.ops.wait = note_wait;
	l.ops.ctx = &l;
	say("ready");
	while (fgets(line, sizeof line, stdin) != NULL) {
		char cmd[32], side = 0;
		unsigned long long x = 0, y = 0;
		int k = sscanf(line, "%31s %c %llu %llu", cmd, &side, &x, &y), prod = side == 'p', rc;
		struct ycq_agent *a = prod ? &l.p.a : &l.c.a;
		struct ycq_next next, at;

		if (k < 1)
			continue;
		if (strcmp(cmd, "quit") == 0)
			break;
		if (strcmp(cmd, "drained") == 0) {
			rc = ycq_consumer_drained(&l.c);
			answer(cmd, rc, &l.c.a, ycq_consumer_position(&l.c), 0, 0, NULL);
			continue;
		}
		if (k < 2 || (side != 'p' && side != 'c'))
			die("%s: want a side, p or c", cmd);
		l.waited = 0;
		memset(&next, 0, sizeof next);
		if (strcmp(cmd, "attach") == 0 || strcmp(cmd, "plain") == 0) {
			int follows = cmd[0] == 'a';
			if (k != 4)
				die("%s: want a side and two addresses", cmd);
			reach_addr(&l.win, x, y, &at);
			if (prod)
				rc = follows ? ycq_producer_attach_resizable(&l.p, at.meta, at.meta_len, at.data, at.data_len, &l.ops, &l.reach)
				             : ycq_producer_attach(&l.p, at.meta, at.meta_len, at.data, at.data_len, &l.ops);
			else
				rc = follows ? ycq_consumer_attach_resizable(&l.c, at.meta, at.meta_len, at.data, at.data_len, &l.ops, &l.reach)
				             : ycq_consumer_attach(&l.c, at.meta, at.meta_len, at.data, at.data_len, &l.ops);
			memset(prod ? (void *)&l.w : (void *)&l.r, 0, prod ? sizeof l.w : sizeof l.r);
		} else if (strcmp(cmd, "follow") == 0) {
			rc = prod ? ycq_producer_follow(&l.p, &next) : ycq_consumer_follow(&l.c, &next);
		} else if (strcmp(cmd, "reserve") == 0) {
			if (k != 3)
				die("reserve: want a side and a count");
			rc = prod ? ycq_producer_reserve(&l.p, (uint32_t)x, YCQ_UPTO, &l.w)
			          : ycq_consumer_reserve(&l.c, (uint32_t)x, YCQ_UPTO, &l.r);
		} else if (strcmp(cmd, "finish") == 0) {
			rc = prod ? ycq_producer_publish_all(&l.p, &l.w, 0) : ycq_consumer_release_all(&l.c, &l.r);
		} else if (strcmp(cmd, "again") == 0) {
			rc = prod ? ycq_producer_publish(&l.p, &l.w, 0, 0) : ycq_consumer_release(&l.c, &l.r, 0);
		} else if (strcmp(cmd, "sleep") == 0) {
			struct ycq_write_run w;
			struct ycq_read_run r;
			rc = prod ? ycq_producer_sleep(&l.p, 1, YCQ_UPTO, &w) : ycq_consumer_sleep(&l.c, 1, YCQ_UPTO, &r);
			/* Something was there after all: finish it at once. */
			if (rc == YCQ_OK && prod)
				ycq_producer_publish_all(&l.p, &w, 0);
			else if (rc == YCQ_OK)
				ycq_consumer_release_all(&l.c, &r);
		} else {
			die("unknown command %s", cmd);
		}
		answer(cmd, rc, a, prod ? ycq_producer_position(&l.p) : ycq_consumer_position(&l.c),
		       prod ? l.w.n : l.r.n, l.waited, &next);
	}
	return 0;
}
