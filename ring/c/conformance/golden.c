/* golden.c: replays a golden-vector script (the .txt files in ring/testdata/golden)
 * against the queue the Go test formatted as its "queue" line says, as
 * the queue's one producer and one consumer, and checks every result and
 * every metadata snapshot the script holds. golden_test.go replays the same
 * script through package ring and holds it to the same bytes; the script's
 * own comment explains its grammar.
 *
 *   device golden q=SPEC script=PATH
 *
 * It prints "golden ok: N ops, M snapshots", or a FAIL line for each
 * difference and exits 1. */
#include "device.h"

#include <stdlib.h>
#include <string.h>

#define RUNS 4
#define MAX_TOKENS 16

struct golden {
	struct region q;
	struct ycq_consumer c;
	struct ycq_producer p;
	struct ycq_read_run r[RUNS];
	struct ycq_write_run w[RUNS];
	const char *path;
	int lineno, failures, ops, snapshots;
	uint8_t *want; /* the snapshot being read, meta_len bytes */
	int in_snapshot;
	char snapshot[64];
};

static const char *result(int rc)
{
	switch (rc) {
	case YCQ_OK:
		return "ok";
	case YCQ_EFULL:
		return "full";
	case YCQ_EEMPTY:
		return "empty";
	case YCQ_ECORRUPT:
		return "corrupt";
	case YCQ_EINVAL:
		return "invalid";
	case YCQ_ENOTHELD:
		return "notheld";
	case YCQ_EFRAGMENTED:
		return "fragmented";
	case YCQ_ENOTLAST:
		return "notlast";
	}
	return ycq_strerror(rc);
}

static void failf(struct golden *g, const char *fmt, const char *a, const char *b)
{
	printf("FAIL %s:%d: ", g->path, g->lineno);
	printf(fmt, a, b);
	printf("\n");
	g->failures++;
}

static unsigned long num(struct golden *g, const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 0);
	if (*s == '\0' || *end != '\0')
		die("%s:%d: %s: not a number", g->path, g->lineno, s);
	return v;
}

static int run_index(struct golden *g, const char *s, char kind)
{
	if (s[0] != kind || s[1] < '0' || s[1] >= '0' + RUNS || s[2] != '\0')
		die("%s:%d: %s: want %c0 to %c%d", g->path, g->lineno, s, kind, kind, RUNS - 1);
	return s[1] - '0';
}

static int mode(struct golden *g, const char *s)
{
	if (strcmp(s, "exact") == 0)
		return YCQ_EXACT;
	if (strcmp(s, "upto") == 0)
		return YCQ_UPTO;
	die("%s:%d: %s: want exact or upto", g->path, g->lineno, s);
}

static int line_of(struct golden *g, const char *s)
{
	if (strcmp(s, "items") == 0)
		return YCQ_LINE_ITEMS;
	if (strcmp(s, "space") == 0)
		return YCQ_LINE_SPACE;
	die("%s:%d: %s: want items or space", g->path, g->lineno, s);
}

/* op runs one operation and writes its result into got. */
static void op(struct golden *g, char **t, int n, char *got, size_t size)
{
	int rc;
	const char *o = t[0];
#define NEED(k) \
	if (n != (k)) \
	die("%s:%d: %s takes %d arguments", g->path, g->lineno, o, (k) - 1)
	if (strcmp(o, "preserve") == 0) {
		NEED(4);
		struct ycq_write_run *w = &g->w[run_index(g, t[1], 'w')];
		rc = ycq_producer_reserve(&g->p, (uint32_t)num(g, t[3]), mode(g, t[2]), w);
		if (rc == YCQ_OK) {
			snprintf(got, size, "ok %u", w->n);
			return;
		}
	} else if (strcmp(o, "publish") == 0) {
		NEED(4);
		rc = ycq_producer_publish(&g->p, &g->w[run_index(g, t[1], 'w')], (uint32_t)num(g, t[2]), (uint32_t)num(g, t[3]));
	} else if (strcmp(o, "publish-all") == 0) {
		NEED(3);
		rc = ycq_producer_publish_all(&g->p, &g->w[run_index(g, t[1], 'w')], (uint32_t)num(g, t[2]));
	} else if (strcmp(o, "abort") == 0) {
		NEED(3);
		rc = ycq_producer_abort(&g->p, &g->w[run_index(g, t[1], 'w')], (uint32_t)num(g, t[2]));
	} else if (strcmp(o, "abort-all") == 0) {
		NEED(2);
		rc = ycq_producer_abort_all(&g->p, &g->w[run_index(g, t[1], 'w')]);
	} else if (strcmp(o, "creserve") == 0) {
		NEED(4);
		struct ycq_read_run *r = &g->r[run_index(g, t[1], 'r')];
		rc = ycq_consumer_reserve(&g->c, (uint32_t)num(g, t[3]), mode(g, t[2]), r);
		if (rc == YCQ_OK) {
			snprintf(got, size, "ok %u", r->n);
			return;
		}
	} else if (strcmp(o, "read") == 0) {
		NEED(3);
		const uint8_t *b;
		uint32_t len;
		rc = ycq_consumer_record(&g->c, &g->r[run_index(g, t[1], 'r')], (uint32_t)num(g, t[2]), &b, &len);
		if (rc == YCQ_OK) {
			if (b < g->q.data || b + len > g->q.data + g->q.data_len)
				die("%s:%d: a record outside the data region", g->path, g->lineno);
			snprintf(got, size, "ok %u", len);
			return;
		}
	} else if (strcmp(o, "release") == 0) {
		NEED(3);
		rc = ycq_consumer_release(&g->c, &g->r[run_index(g, t[1], 'r')], (uint32_t)num(g, t[2]));
	} else if (strcmp(o, "release-all") == 0) {
		NEED(2);
		rc = ycq_consumer_release_all(&g->c, &g->r[run_index(g, t[1], 'r')]);
	} else if (strcmp(o, "give-back") == 0) {
		NEED(3);
		rc = ycq_consumer_give_back(&g->c, &g->r[run_index(g, t[1], 'r')], (uint32_t)num(g, t[2]));
	} else if (strcmp(o, "pwake") == 0 || strcmp(o, "cwake") == 0) {
		NEED(2);
		rc = o[0] == 'p' ? ycq_producer_wake_line(&g->p, line_of(g, t[1]))
		                 : ycq_consumer_wake_line(&g->c, line_of(g, t[1]));
		if (rc >= 0) {
			snprintf(got, size, "%s", rc ? "sent" : "quiet");
			return;
		}
	} else {
		die("%s:%d: unknown operation %s", g->path, g->lineno, o);
	}
#undef NEED
	snprintf(got, size, "%s", result(rc));
}

static void poke(struct golden *g, char **t, int n)
{
	unsigned long off, v;
	if (n != 3)
		die("%s:%d: poke OFFSET VALUE", g->path, g->lineno);
	off = num(g, t[1]);
	v = num(g, t[2]);
	if (off % 4 != 0 || off + 4 > g->q.meta_len)
		die("%s:%d: poke at %lu: outside the metadata or unaligned", g->path, g->lineno, off);
	for (int i = 0; i < 4; i++)
		g->q.meta[off + (unsigned long)i] = (uint8_t)(v >> (8 * i));
}

/* dump_line reads "OFFSET  16 hex bytes" into the snapshot. */
static void dump_line(struct golden *g, const char *s)
{
	char *end;
	unsigned long off = strtoul(s, &end, 16);
	if (off % 16 != 0 || off + 16 > g->q.meta_len)
		die("%s:%d: snapshot line at %#lx: outside the metadata", g->path, g->lineno, off);
	for (int i = 0; i < 16; i++) {
		unsigned long b = strtoul(end, &end, 16);
		if (b > 0xff)
			die("%s:%d: not a byte", g->path, g->lineno);
		g->want[off + (unsigned long)i] = (uint8_t)b;
	}
}

static void compare_snapshot(struct golden *g)
{
	char a[64], b[64];
	g->snapshots++;
	for (uint64_t off = 0; off < g->q.meta_len; off += 16) {
		if (memcmp(g->q.meta + off, g->want + off, 16) == 0)
			continue;
		for (int i = 0; i < 16; i++) {
			snprintf(a + 3 * i, 4, "%02x ", g->q.meta[off + (uint64_t)i]);
			snprintf(b + 3 * i, 4, "%02x ", g->want[off + (uint64_t)i]);
		}
		printf("FAIL %s:%d: snapshot %s at %04llx: got %s want %s\n", g->path, g->lineno, g->snapshot,
		       (unsigned long long)off, a, b);
		g->failures++;
	}
}

int run_golden(int argc, char **argv)
{
	static struct golden g;
	char line[512];
	FILE *f;
	int rc;

	map_queue(arg(argc, argv, "q", NULL), &g.q);
	g.path = arg(argc, argv, "script", NULL);
	if (g.path == NULL || (f = fopen(g.path, "r")) == NULL)
		die("script=%s: cannot open", g.path ? g.path : "(none)");
	if ((g.want = malloc(g.q.meta_len)) == NULL)
		die("out of memory");
	if ((rc = ycq_producer_attach(&g.p, g.q.meta, g.q.meta_len, g.q.data, g.q.data_len, NULL)) != YCQ_OK)
		die("attach producer: %s", ycq_strerror(rc));
	if ((rc = ycq_consumer_attach(&g.c, g.q.meta, g.q.meta_len, g.q.data, g.q.data_len, NULL)) != YCQ_OK)
		die("attach consumer: %s", ycq_strerror(rc));

	while (fgets(line, sizeof line, f) != NULL) {
		char *t[MAX_TOKENS], *hash, *s = line, *want = NULL, got[64], expect[64];
		int n = 0;
		g.lineno++;
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		if (g.in_snapshot) {
			if (strncmp(s, "end", 3) == 0) {
				g.in_snapshot = 0;
				compare_snapshot(&g);
			} else if (*s != '\n' && *s != '\0') {
				dump_line(&g, s);
			}
			continue;
		}
		for (char *tok = strtok(s, " \t\n"); tok != NULL; tok = strtok(NULL, " \t\n")) {
			if (strcmp(tok, "=") == 0) {
				want = strtok(NULL, "\n");
				break;
			}
			if (n == MAX_TOKENS)
				die("%s:%d: too many words", g.path, g.lineno);
			t[n++] = tok;
		}
		if (n == 0)
			continue;
		if (strcmp(t[0], "queue") == 0) {
			char want_geo[64], got_geo[64];
			snprintf(got_geo, sizeof got_geo, "slots=%u slot_size=%u", g.c.a.slots, g.c.a.slot_size);
			snprintf(want_geo, sizeof want_geo, "%s %s", n > 1 ? t[1] : "", n > 2 ? t[2] : "");
			if (strcmp(got_geo, want_geo) != 0)
				failf(&g, "queue: attached %s, the script says %s", got_geo, want_geo);
			continue;
		}
		if (strcmp(t[0], "snapshot") == 0) {
			if (n != 2)
				die("%s:%d: snapshot NAME", g.path, g.lineno);
			snprintf(g.snapshot, sizeof g.snapshot, "%s", t[1]);
			memset(g.want, 0, g.q.meta_len);
			g.in_snapshot = 1;
			continue;
		}
		if (strcmp(t[0], "poke") == 0) {
			poke(&g, t, n);
			continue;
		}
		if (want == NULL)
			die("%s:%d: %s: no \"= result\"", g.path, g.lineno, t[0]);
		while (*want == ' ')
			want++;
		snprintf(expect, sizeof expect, "%s", want);
		for (size_t k = strlen(expect); k > 0 && (expect[k - 1] == ' ' || expect[k - 1] == '\t'); k--)
			expect[k - 1] = '\0';
		op(&g, t, n, got, sizeof got);
		g.ops++;
		if (strcmp(got, expect) != 0)
			failf(&g, "got %s, want %s", got, expect);
	}
	fclose(f);
	if (g.in_snapshot)
		die("%s: snapshot %s has no end", g.path, g.snapshot);
	if (g.failures > 0)
		die("%d differences", g.failures);
	say("golden ok: %d ops, %d snapshots", g.ops, g.snapshots);
	return 0;
}
