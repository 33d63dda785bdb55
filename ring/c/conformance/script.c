/* script.c: the sleeping and waking scenario, step by step. The Go test
 * sends one command a line on stdin and this side answers "done <command>"
 * when it has finished it; while it sleeps it says "asleep <queue>
 * <line>" (after its second look), so that the Go side wakes a sleeper for
 * certain and every wake counter comes out exact.
 *
 *   device script in=SPEC out=SPEC
 *
 *   take K   consume K records from in, one reserve each, sleeping while
 *            in is empty; release each, waking after each release
 *   drain K  reserve exactly K records from in (they must be there),
 *            release them all, wake once
 *   give K   publish K records of its own into out (there must be room),
 *            waking after each
 *   fill K   publish K records into out, sleeping while out is full,
 *            waking after each
 *   quit     print the summary and exit
 *
 * The records from in come from Go producer 0, in order; the records this
 * side publishes are producer 1's, from sequence 0. */
#include "device.h"

#include <string.h>

struct script {
	struct ycq_consumer in;
	struct ycq_producer out;
	struct hooks hin, hout;
	uint64_t next_in, next_out;
	uint64_t empty, full;
};

static void check_record(struct script *s, const struct ycq_read_run *r, uint32_t i)
{
	const uint8_t *b;
	uint32_t len, producer;
	uint64_t seq;
	int rc = ycq_consumer_record(&s->in, r, i, &b, &len);
	if (rc != YCQ_OK)
		die("in: record %u: %s", i, ycq_strerror(rc));
	if (record_check(b, len, &producer, &seq) != 0 || producer != 0 || seq != s->next_in)
		die("in: record %u: want producer 0's record %llu", i, (unsigned long long)s->next_in);
	s->next_in++;
}

static void take(struct script *s, uint32_t k)
{
	struct ycq_read_run r;
	for (uint32_t i = 0; i < k; i++) {
		int rc;
		while ((rc = ycq_consumer_reserve(&s->in, 1, YCQ_UPTO, &r)) == YCQ_EEMPTY) {
			s->empty++;
			rc = ycq_consumer_sleep(&s->in, 1, YCQ_UPTO, &r);
			if (rc != YCQ_EEMPTY)
				break;
			s->empty++;
		}
		if (rc != YCQ_OK)
			die("in: take: %s", ycq_strerror(rc));
		check_record(s, &r, 0);
		if ((rc = ycq_consumer_release(&s->in, &r, 0)) != YCQ_OK)
			die("in: release: %s", ycq_strerror(rc));
		ycq_consumer_wake(&s->in);
	}
}

static void drain(struct script *s, uint32_t k)
{
	struct ycq_read_run r;
	int rc = ycq_consumer_reserve(&s->in, k, YCQ_EXACT, &r);
	if (rc != YCQ_OK)
		die("in: drain %u: %s", k, ycq_strerror(rc));
	for (uint32_t i = 0; i < k; i++)
		check_record(s, &r, i);
	if ((rc = ycq_consumer_release_all(&s->in, &r)) != YCQ_OK)
		die("in: release all: %s", ycq_strerror(rc));
	ycq_consumer_wake(&s->in);
}

static void publish_own(struct script *s, struct ycq_write_run *w)
{
	uint32_t len = s->out.a.slot_size;
	int rc;
	record_fill(ycq_producer_slot(&s->out, w, 0), len, 1, s->next_out++);
	if ((rc = ycq_producer_publish(&s->out, w, 0, len)) != YCQ_OK)
		die("out: publish: %s", ycq_strerror(rc));
	ycq_producer_wake(&s->out);
}

static void give(struct script *s, uint32_t k, int may_sleep)
{
	struct ycq_write_run w;
	for (uint32_t i = 0; i < k; i++) {
		int rc;
		while ((rc = ycq_producer_reserve(&s->out, 1, YCQ_UPTO, &w)) == YCQ_EFULL && may_sleep) {
			s->full++;
			rc = ycq_producer_sleep(&s->out, 1, YCQ_UPTO, &w);
			if (rc != YCQ_EFULL)
				break;
			s->full++;
		}
		if (rc != YCQ_OK)
			die("out: give: %s", ycq_strerror(rc));
		publish_own(s, &w);
	}
}

int run_script(int argc, char **argv)
{
	static struct script s;
	struct region in, out;
	struct ycq_wake_ops oin, oout;
	char line[128], cmd[32];
	unsigned k;
	int rc;

	map_queue(arg(argc, argv, "in", NULL), &in);
	map_queue(arg(argc, argv, "out", NULL), &out);
	hooks_init(&s.hin, "in", &oin);
	hooks_init(&s.hout, "out", &oout);
	s.hin.announce = s.hout.announce = 1;
	if ((rc = ycq_consumer_attach(&s.in, in.meta, in.meta_len, in.data, in.data_len, &oin)) != YCQ_OK)
		die("attach in: %s", ycq_strerror(rc));
	if ((rc = ycq_producer_attach(&s.out, out.meta, out.meta_len, out.data, out.data_len, &oout)) != YCQ_OK)
		die("attach out: %s", ycq_strerror(rc));
	if (s.out.a.slot_size < REC_HEADER)
		die("out's slots are too small for a record");
	say("ready");
	while (fgets(line, sizeof line, stdin) != NULL) {
		if (sscanf(line, "%31s %u", cmd, &k) < 1)
			continue;
		if (strcmp(cmd, "quit") == 0)
			break;
		if (strcmp(cmd, "take") == 0)
			take(&s, k);
		else if (strcmp(cmd, "drain") == 0)
			drain(&s, k);
		else if (strcmp(cmd, "give") == 0)
			give(&s, k, 0);
		else if (strcmp(cmd, "fill") == 0)
			give(&s, k, 1);
		else
			die("unknown command %s", cmd);
		say("done %s", cmd);
	}
	say("summary taken=%llu given=%llu empty=%llu full=%llu in_wakes=%llu out_wakes=%llu in_sleeps=%llu out_sleeps=%llu",
	    (unsigned long long)s.next_in, (unsigned long long)s.next_out, (unsigned long long)s.empty,
	    (unsigned long long)s.full, (unsigned long long)s.hin.wakes, (unsigned long long)s.hout.wakes,
	    (unsigned long long)s.hin.waits, (unsigned long long)s.hout.waits);
	return 0;
}
