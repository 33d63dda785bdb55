/*
 * ring_bench: DPDK's rte_ring doing the work of `ycq bench ring`.
 *
 * This harness mirrors internal/ringbench (Run, runRing, fill, sum, Backoff,
 * PingPong) and the round loop of cmd/ycq/bench_ring.go, with rte_ring's
 * zero-copy API in place of the ycq ring, so the two can be measured in the
 * same sitting and compared figure by figure:
 *
 *   - Records are 64 bytes. A producer writes every byte of each record it
 *     reserves (word k of record v is v + 8k, as ringbench's fill does) and
 *     a consumer reads every byte and sums the words (ringbench's sum). The
 *     total written and the total read must agree, or the program exits 1.
 *   - The ring is rte_ring_create_elem(esize 64, count 1024): 1024 slots of
 *     64 bytes, like ring.Config{Slots: 1024, SlotSize: 64}. rte_ring keeps
 *     one slot empty, so it holds 1023 records; -exact asks for
 *     RING_F_EXACT_SZ instead (1024 records, a 2048-slot array).
 *   - 1x1 uses RING_F_SP_ENQ|RING_F_SC_DEQ; shapes with more than one
 *     producer or consumer use RING_F_MP_HTS_ENQ|RING_F_MC_HTS_DEQ, the only
 *     multi-thread mode the zero-copy API supports.
 *   - Each side asks for up to `batch` records per call (the burst form of
 *     the zero-copy start calls, as ReserveUpTo): a producer for
 *     min(batch, records it has left), a consumer for batch.
 *   - A side that gets nothing waits as ringbench.Backoff does: 1, 2, 4 ...
 *     32 PAUSE instructions (rte_pause), doubling per failed try, then
 *     sched_yield() on every further failed try, from the start again after
 *     the next success.
 *   - Consumers stop when every producer has counted itself done and the
 *     ring is still empty on one more try (producers publish before they
 *     count themselves done, so empty after done means drained).
 *   - Each run moves items / producers records per producer (the remainder
 *     is dropped, as ringbench does), and is timed from creating the ring to
 *     joining the last thread, as ringbench.Run times runRing.
 *   - Threads are plain pthreads, not EAL lcores, and are not pinned: 4x4 is
 *     eight threads on however many CPUs there are, scheduled by the kernel
 *     as Go schedules goroutines. The main thread gets back the CPU affinity
 *     it had before rte_eal_init, so nothing inherits EAL's pinning.
 *   - Every round first runs the cache-line ping-pong probe (ringbench
 *     PingPong, 20 ms), and once more after the last round; the median of
 *     those probes is reported, as `ycq bench ring` does.
 *
 * Usage: ring_bench [-items N] [-rounds N] [-json] [-v] [-exact]
 */
#define _GNU_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_common.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_pause.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

/* ringbench.Payload, ringbench.Capacity, ringbench.ChanBatch. */
enum { PAYLOAD = 64, CAPACITY = 1024, CHAN_BATCH = 32 };

#define SYSTEM "dpdk-zc"

/* One shape of traffic, as ringbench.Scenario. */
struct scenario {
	const char *name;
	int producers;
	int consumers;
	int batch;
};

/* ringbench.Scenarios, in order. */
static const struct scenario scenarios[] = {
	{"spsc", 1, 1, 1},
	{"spsc", 1, 1, CHAN_BATCH},
	{"mpmc", 2, 2, 1},
	{"mpmc", 2, 2, CHAN_BATCH},
	{"mpmc", 4, 4, 1},
};
#define NSCENARIOS ((int)(sizeof scenarios / sizeof scenarios[0]))

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* fill writes record number v of a producer: eight words, v + byte offset.
 * fill and sum are meant to be eight 8-byte stores and loads, as Go compiles
 * ringbench's; GCC 12 at -O2 would turn them into 16-byte SSE moves, so the
 * Makefile builds with -fno-tree-vectorize. */
static inline uint64_t fill(void *rec, uint64_t v)
{
	unsigned char *b = rec;
	uint64_t s = 0;
	for (int i = 0; i < PAYLOAD; i += 8) {
		uint64_t w = v + (uint64_t)i;
		memcpy(b + i, &w, sizeof w);
		s += w;
	}
	return s;
}

/* sum reads a record: the sum of its eight words. */
static inline uint64_t sum(const void *rec)
{
	const unsigned char *b = rec;
	uint64_t s = 0;
	for (int i = 0; i < PAYLOAD; i += 8) {
		uint64_t w;
		memcpy(&w, b + i, sizeof w);
		s += w;
	}
	return s;
}

/* backoff is ringbench.Backoff: 1, 2, 4 ... 32 PAUSEs, then yield. */
struct backoff {
	int spins;
};

static inline void backoff_wait(struct backoff *b)
{
	if (b->spins < 32) {
		b->spins = b->spins < 1 ? 1 : 2 * b->spins;
		for (int i = 0; i < b->spins; i++)
			rte_pause();
		return;
	}
	sched_yield();
}

static inline void backoff_reset(struct backoff *b) { b->spins = 0; }

/* One run's shared state. */
struct run {
	struct rte_ring *ring;
	int batch;
	int per; /* records per producer */
	_Alignas(64) atomic_int producing;
	_Alignas(64) _Atomic uint64_t wsum;
	_Alignas(64) _Atomic uint64_t rsum;
};

static void *producer(void *arg)
{
	struct run *r = arg;
	struct rte_ring *q = r->ring;
	const unsigned batch = (unsigned)r->batch;
	const unsigned per = (unsigned)r->per;
	uint64_t s = 0;
	struct backoff wait = {0};
	for (unsigned sent = 0; sent < per;) {
		struct rte_ring_zc_data zcd;
		unsigned want = per - sent < batch ? per - sent : batch;
		unsigned n = rte_ring_enqueue_zc_burst_elem_start(q, PAYLOAD, want, &zcd, NULL);
		if (n == 0) {
			backoff_wait(&wait);
			continue;
		}
		backoff_reset(&wait);
		/* The reservation may wrap: n1 slots at ptr1, the rest at ptr2. */
		unsigned char *p = zcd.ptr1;
		for (unsigned i = 0; i < zcd.n1; i++)
			s += fill(p + (size_t)i * PAYLOAD, (uint64_t)(sent + i));
		p = zcd.ptr2;
		for (unsigned i = zcd.n1; i < n; i++)
			s += fill(p + (size_t)(i - zcd.n1) * PAYLOAD, (uint64_t)(sent + i));
		rte_ring_enqueue_zc_elem_finish(q, n);
		sent += n;
	}
	atomic_fetch_add(&r->wsum, s);
	atomic_fetch_sub(&r->producing, 1);
	return NULL;
}

static void *consumer(void *arg)
{
	struct run *r = arg;
	struct rte_ring *q = r->ring;
	const unsigned batch = (unsigned)r->batch;
	uint64_t s = 0;
	struct backoff wait = {0};
	for (;;) {
		struct rte_ring_zc_data zcd;
		unsigned n = rte_ring_dequeue_zc_burst_elem_start(q, PAYLOAD, batch, &zcd, NULL);
		if (n == 0) {
			/* Producers publish before they count themselves done,
			 * so empty after done means drained. */
			if (atomic_load(&r->producing) != 0) {
				backoff_wait(&wait);
				continue;
			}
			n = rte_ring_dequeue_zc_burst_elem_start(q, PAYLOAD, batch, &zcd, NULL);
			if (n == 0)
				break;
		}
		backoff_reset(&wait);
		const unsigned char *p = zcd.ptr1;
		for (unsigned i = 0; i < zcd.n1; i++)
			s += sum(p + (size_t)i * PAYLOAD);
		p = zcd.ptr2;
		for (unsigned i = zcd.n1; i < n; i++)
			s += sum(p + (size_t)(i - zcd.n1) * PAYLOAD);
		rte_ring_dequeue_zc_elem_finish(q, n);
	}
	atomic_fetch_add(&r->rsum, s);
	return NULL;
}

static bool exact_size;

/* run_once is ringbench.Run for one scenario: the rate in records/s, or a
 * negative value after printing why it failed. */
static double run_once(const struct scenario *sc, int items)
{
	static unsigned seq;
	char name[RTE_RING_NAMESIZE];
	snprintf(name, sizeof name, "ycqbench%u", seq++);
	unsigned flags = sc->producers == 1 ? RING_F_SP_ENQ : RING_F_MP_HTS_ENQ;
	flags |= sc->consumers == 1 ? RING_F_SC_DEQ : RING_F_MC_HTS_DEQ;
	if (exact_size)
		flags |= RING_F_EXACT_SZ;

	struct run *r = aligned_alloc(64, sizeof *r);
	if (r == NULL) {
		fprintf(stderr, "ring_bench: out of memory\n");
		return -1;
	}
	memset(r, 0, sizeof *r);
	r->batch = sc->batch;
	r->per = items / sc->producers;
	atomic_init(&r->producing, sc->producers);
	atomic_init(&r->wsum, 0);
	atomic_init(&r->rsum, 0);
	int nthreads = sc->producers + sc->consumers;
	pthread_t th[nthreads];

	double start = now_ns();
	r->ring = rte_ring_create_elem(name, PAYLOAD, CAPACITY, (int)SOCKET_ID_ANY, flags);
	if (r->ring == NULL) {
		fprintf(stderr, "ring_bench: rte_ring_create_elem: %s\n", rte_strerror(rte_errno));
		free(r);
		return -1;
	}
	for (int i = 0; i < nthreads; i++) {
		int err = pthread_create(&th[i], NULL, i < sc->producers ? producer : consumer, r);
		if (err != 0) {
			fprintf(stderr, "ring_bench: pthread_create: %s\n", strerror(err));
			exit(1);
		}
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	double elapsed = now_ns() - start;
	rte_ring_free(r->ring);

	/* ringbench checks read against written; check written against the
	 * closed form as well: each producer writes records 0 .. per-1, and
	 * record v sums to 8v + (0+8+...+56) = 8v + 224. */
	uint64_t per = (uint64_t)r->per;
	uint64_t want = (uint64_t)sc->producers * (4 * per * (per - 1) + 224 * per);
	uint64_t written = atomic_load(&r->wsum), read = atomic_load(&r->rsum);
	free(r);
	if (written != read || written != want) {
		fprintf(stderr, "ring_bench: %s %s %dx%d batch %d: payload sum read %" PRIu64
			", written %" PRIu64 ", expected %" PRIu64 "\n",
			SYSTEM, sc->name, sc->producers, sc->consumers, sc->batch, read, written, want);
		return -1;
	}
	return (double)(per * (uint64_t)sc->producers) / (elapsed / 1e9);
}

/* ringbench.PingPong: two unpinned threads hand a counter back and forth
 * for about d_ns; the mean round trip in ns. */
static _Atomic uint64_t ball;
static atomic_bool stop;

static void *pong(void *arg)
{
	(void)arg;
	for (uint64_t v = 1; !atomic_load(&stop);) {
		if (atomic_load(&ball) == v) {
			atomic_store(&ball, v + 1);
			v += 2;
		}
	}
	return NULL;
}

static double ping_pong(double d_ns)
{
	pthread_t t;
	atomic_store(&ball, 0);
	atomic_store(&stop, false);
	if (pthread_create(&t, NULL, pong, NULL) != 0) {
		fprintf(stderr, "ring_bench: pthread_create failed\n");
		exit(1);
	}
	double start = now_ns();
	uint64_t trips = 0;
	for (uint64_t v = 0;; trips++) {
		atomic_store(&ball, v + 1);
		while (atomic_load(&ball) != v + 2) {
			if (now_ns() - start > 10 * d_ns) {
				/* The other side got no CPU: say so with a large
				 * value. */
				double e = now_ns() - start;
				atomic_store(&stop, true);
				pthread_join(t, NULL);
				return e / (double)(trips > 0 ? trips : 1);
			}
		}
		v += 2;
		if (trips % 1024 == 1023 && now_ns() - start > d_ns)
			break;
	}
	double elapsed = now_ns() - start;
	atomic_store(&stop, true);
	pthread_join(t, NULL);
	return elapsed / (double)(trips + 1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void usage(void)
{
	fprintf(stderr, "usage: ring_bench [-items N] [-rounds N] [-json] [-v] [-exact]\n"
		"  -items N   records per run (default 5000000, at least 1024)\n"
		"  -rounds N  runs of each scenario; the median is reported (default 5)\n"
		"  -json      one JSON object per scenario instead of a table\n"
		"  -v         print every run on stderr\n"
		"  -exact     RING_F_EXACT_SZ: hold exactly 1024 records (2048 slots)\n");
	exit(2);
}

/* int_flag parses the value of -name N or -name=N; Go's flag package takes
 * one or two dashes, so this does too. */
static bool int_flag(int argc, char **argv, int *i, const char *name, long *out)
{
	const char *a = argv[*i];
	a += a[1] == '-' ? 2 : 1;
	size_t n = strlen(name);
	if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '='))
		return false;
	const char *val;
	if (a[n] == '=')
		val = a + n + 1;
	else if (*i + 1 < argc)
		val = argv[++*i];
	else
		usage();
	char *end;
	errno = 0;
	*out = strtol(val, &end, 10);
	if (errno != 0 || *val == '\0' || *end != '\0')
		usage();
	return true;
}

int main(int argc, char **argv)
{
	long items = 5000000, rounds = 5;
	bool json = false, verbose = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || a[1] == '\0')
			usage();
		const char *f = a + (a[1] == '-' ? 2 : 1);
		if (int_flag(argc, argv, &i, "items", &items) || int_flag(argc, argv, &i, "rounds", &rounds))
			continue;
		if (strcmp(f, "json") == 0)
			json = true;
		else if (strcmp(f, "v") == 0)
			verbose = true;
		else if (strcmp(f, "exact") == 0)
			exact_size = true;
		else
			usage();
	}
	if (items < 1024 || items > INT32_MAX || rounds < 1 || rounds > 10000) {
		fprintf(stderr, "ring_bench: -items must be at least 1024, -rounds at least 1\n");
		return 2;
	}

	/* EAL without hugepages, devices, shared config files or telemetry
	 * (--in-memory is refused: --no-huge implies legacy memory mode):
	 * all the ring needs is its memzone allocator. It pins the calling
	 * thread to lcore 0; the affinity saved here is put back after. */
	cpu_set_t cpus;
	if (sched_getaffinity(0, sizeof cpus, &cpus) != 0) {
		perror("ring_bench: sched_getaffinity");
		return 1;
	}
	char *eal_argv[] = {
		argv[0], "-l", "0", "--no-huge", "-m", "64", "--no-pci", "--no-shconf",
		"--no-telemetry", "--log-level=*:error", NULL,
	};
	int eal_argc = (int)(sizeof eal_argv / sizeof eal_argv[0]) - 1;
	if (rte_eal_init(eal_argc, eal_argv) < 0) {
		fprintf(stderr, "ring_bench: rte_eal_init: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	if (sched_setaffinity(0, sizeof cpus, &cpus) != 0) {
		perror("ring_bench: sched_setaffinity");
		return 1;
	}

	double *rates = calloc((size_t)(NSCENARIOS * rounds), sizeof *rates);
	double *probes = calloc((size_t)rounds + 1, sizeof *probes);
	if (rates == NULL || probes == NULL) {
		fprintf(stderr, "ring_bench: out of memory\n");
		return 1;
	}
	int status = 0;
	for (long round = 0; round < rounds && status == 0; round++) {
		probes[round] = ping_pong(20e6);
		for (int i = 0; i < NSCENARIOS; i++) {
			const struct scenario *sc = &scenarios[i];
			double rate = run_once(sc, (int)items);
			if (rate < 0) {
				status = 1;
				break;
			}
			rates[i * rounds + round] = rate;
			if (verbose)
				fprintf(stderr, "round %ld: %-10s %s %dx%d batch %-2d %7.2f M items/s\n", round,
					SYSTEM, sc->name, sc->producers, sc->consumers, sc->batch, rate / 1e6);
		}
	}
	if (status != 0) {
		rte_eal_cleanup();
		return status;
	}
	probes[rounds] = ping_pong(20e6);
	qsort(probes, (size_t)rounds + 1, sizeof *probes, cmp_double);
	double probe = probes[(rounds + 1) / 2];

	if (!json)
		printf("cache-line round trip between the two CPUs (ping-pong): %.0fns median, %.0fns to %.0fns over the run\n",
		       probe, probes[0], probes[rounds]);
	for (int i = 0; i < NSCENARIOS; i++) {
		const struct scenario *sc = &scenarios[i];
		double *rs = &rates[i * rounds];
		qsort(rs, (size_t)rounds, sizeof *rs, cmp_double);
		double med = rs[rounds / 2], lo = rs[0], hi = rs[rounds - 1];
		long per = items / sc->producers;
		if (json)
			printf("{\"scenario\":\"%s\",\"batch\":%d,\"producers\":%d,\"consumers\":%d,"
			       "\"system\":\"%s\",\"payload\":%d,\"items\":%ld,\"rounds\":%ld,"
			       "\"items_per_sec\":%.0f,\"min\":%.0f,\"max\":%.0f,\"probe_ns\":%.0f}\n",
			       sc->name, sc->batch, sc->producers, sc->consumers, SYSTEM, PAYLOAD,
			       per * sc->producers, rounds, med, lo, hi, probe);
		else
			printf("%s %dx%d batch %-2d  %s  %7.2fM  (%.1f-%.1fM)\n", sc->name, sc->producers,
			       sc->consumers, sc->batch, SYSTEM, med / 1e6, lo / 1e6, hi / 1e6);
	}
	if (!json)
		printf("%d-byte records written and read in full, ring of %d slots (%s), median of %ld runs of %ld records each\n"
		       "dpdk-zc: rte_ring zero-copy burst API, SP/SC for 1x1, HTS for MP/MC; a waiting side spins 1, 2, 4 ... 32 PAUSE steps, then yields\n",
		       PAYLOAD, CAPACITY, exact_size ? "RING_F_EXACT_SZ, holds 1024" : "holds 1023",
		       rounds, items);
	free(rates);
	free(probes);
	rte_eal_cleanup();
	return 0;
}
