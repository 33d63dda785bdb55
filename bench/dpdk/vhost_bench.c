/*
 * vhost_bench: DPDK's virtio-user PMD (a driver process) against DPDK's
 * vhost-user library (a device process), doing the work of `ycq bench
 * device`, so that DPDK's software device path can be measured beside the
 * ycq host driver and device model in the same run.
 *
 * One binary, two roles:
 *
 *   -role device -sock PATH ...   listens on PATH as a vhost-user backend
 *       (rte_vhost, server mode) and echoes every record: for each queue
 *       pair, rte_vhost_dequeue_burst from the driver's Tx ring into its own
 *       mbufs (a copy), then rte_vhost_enqueue_burst into the driver's Rx
 *       buffers (a second copy), then frees the mbufs. It serves one driver
 *       and exits when that driver goes.
 *   -role driver -sock PATH ...   connects to PATH with the virtio-user PMD
 *       (--vdev net_virtio_user0), writes every byte of each record into
 *       mbufs, sends bursts with rte_eth_tx_burst, receives the echoes with
 *       rte_eth_rx_burst and checks every byte and the sequence of each.
 *
 * The workload is cmd/ycq/bench_device.go's:
 *
 *   - A record of queue pair q and sequence k is a 16-byte header (k as a
 *     little-endian u64, q as a u32, a zero u32: internal/record's Plain
 *     header without a checksum) and then a run of a fixed pseudo-random
 *     pattern starting at offset k mod 4093, as `records` in
 *     bench_device.go (whose pattern comes from ChaCha8; this one from
 *     splitmix64: the same kind, other bytes). A response to the wrong
 *     record, queue pair or offset, cut short or garbled, fails the check.
 *   - Each queue pair keeps at most -window records in flight (sent or
 *     built, and not yet checked) and sends bursts of up to -batch.
 *   - A run sends for -seconds, then stops sending and drains; it counts
 *     every echo it checked, and is timed from the first send to the last
 *     echo. Before it, one record a queue pair goes through (not counted),
 *     so that the run starts with the device attached.
 *   - One thread in each process serves every queue pair, as the ycq host
 *     driver and device model each do.
 *
 * Records larger than a segment (-seg, 16 KiB by default; a mbuf's data_len
 * is 16-bit) are chains of segments allocated with rte_pktmbuf_alloc_bulk;
 * the driver's Rx side receives them into mergeable Rx buffers
 * (VIRTIO_NET_F_MRG_RXBUF) of a segment each, and the device dequeues them
 * into chains of its own mbufs of the same size. 16 KiB segments moved 64
 * KiB records about 1.6 times as fast as 4 KiB ones here (a record is 4
 * descriptors on each ring instead of 16, so a 256-entry ring holds 64
 * records, not 16); 32 KiB ones were slower again. The vhost library drops
 * a record (and logs "failed to allocate memory for mbuf") when the
 * device's pool runs dry; the driver then reports the loss.
 *
 * Memory: virtio-user shares all of the driver's DPDK memory with the
 * backend over the vhost-user socket (SET_MEM_TABLE with the fds of the
 * memory segments). With --no-huge, DPDK 22.11's EAL backs its memory with
 * one memfd mapped MAP_SHARED, which it hands over like a hugepage file, so
 * no hugepages are needed; -huge uses hugepages instead (the caller must have
 * reserved and mounted them).
 *
 * EAL pins the thread that calls rte_eal_init to lcore 0; each role gives
 * it back the CPU affinity it had before, as ring_bench.c does, so that the
 * two processes are scheduled by the kernel as the Go processes of ycq are.
 * -lcore N keeps it pinned instead, to CPU N, the way DPDK is usually run,
 * for comparing with a pinned ycq.
 *
 * The driver writes "start" on a line of its own to stdout when the timed
 * run begins (so that its caller can read the device's CPU clock then) and
 * one JSON object when it ends: records, seconds, and its own CPU time
 * (user+system of all its threads, CLOCK_PROCESS_CPUTIME_ID).
 *
 * Usage: vhost_bench -role device|driver -sock PATH [-payload N] [-pairs N]
 *        [-slots N] [-batch N] [-window N] [-seconds S] [-seg N]
 *        [-virtio DEVARGS] [-huge] [-lcore N] [-v]
 */
#define _GNU_SOURCE

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_vhost.h>

#define SYSTEM "dpdk-vhost"

/* The record header: bench_device.go's deviceRecord (internal/record
 * Plain): sequence u64 at 0, producer (queue pair) u32 at 8, checksum u32
 * at 12, left zero. */
enum {
	OFF_SEQ = 0,
	OFF_PRODUCER = 8,
	OFF_SUM = 12,
	HEADER = 16,
};

/* PATTERN_SHIFT is bench_device.go's patternShift: how many different
 * offsets into the pattern records use. */
enum { PATTERN_SHIFT = 4093 };

/* MAX_BATCH bounds -batch (a burst's array lives on the stack);
 * MAX_PAIRS is virtio's limit of queue pairs. */
enum { MAX_BATCH = 512, MAX_PAIRS = 8 };

/* The run's shape, from the flags; both roles take the same ones. */
static struct {
	const char *role;
	const char *sock;
	long payload, pairs, slots, batch, window, seg;
	long lcore; /* -1: unpinned */
	double seconds;
	const char *virtio; /* extra virtio-user devargs */
	bool huge, verbose;
} opt = {
	.payload = 64,
	.pairs = 2,
	.slots = 256,
	.batch = 32,
	.window = 0,
	.seg = 16384,
	.lcore = -1,
	.seconds = 2,
	.virtio = "mrg_rxbuf=1,in_order=1,packed_vq=0",
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "vhost_bench: %s: ", opt.role != NULL ? opt.role : "setup");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* seg_room is the data room of every mbuf, both roles: a record that fits
 * in DPDK's default 2 KiB is one mbuf of that size, a larger one is
 * segments of -seg bytes (one when the record is no larger). */
static uint16_t seg_room(void)
{
	long room = opt.payload < opt.seg ? opt.payload : opt.seg;
	if (room < RTE_MBUF_DEFAULT_DATAROOM)
		room = RTE_MBUF_DEFAULT_DATAROOM;
	return (uint16_t)room;
}

/* segs_per_record is how many segments the driver builds a record of. */
static unsigned segs_per_record(void)
{
	unsigned room = seg_room();
	return (unsigned)((opt.payload + room - 1) / room);
}

/* pool_create makes a pool of at least n mbufs of seg_room() bytes: a
 * power of two less one, which the ring under the mempool holds best. */
static struct rte_mempool *pool_create(const char *name, unsigned n)
{
	unsigned size = 1023;
	while (size < n)
		size = 2 * size + 1;
	unsigned cache = 256;
	struct rte_mempool *mp = rte_pktmbuf_pool_create(name, size, cache, 0,
		(uint16_t)(seg_room() + RTE_PKTMBUF_HEADROOM), (int)rte_socket_id());
	if (mp == NULL)
		die("rte_pktmbuf_pool_create(%u mbufs of %u bytes): %s", size, seg_room(),
		    rte_strerror(rte_errno));
	return mp;
}

/* eal_init starts EAL as the role needs: no PCI, no shared config, no
 * telemetry, memory from one memfd (--no-huge) unless -huge, a file prefix
 * of this process's own, and vdev if not NULL; then gives the calling
 * thread back the affinity EAL took from it, unless -lcore asked for the
 * pinning. */
static void eal_init(const char *argv0, const char *vdev)
{
	cpu_set_t cpus;
	if (sched_getaffinity(0, sizeof cpus, &cpus) != 0)
		die("sched_getaffinity: %s", strerror(errno));
	char prefix[64];
	snprintf(prefix, sizeof prefix, "ycq-%s-%d", opt.role, (int)getpid());
	char *eal_argv[32];
	int n = 0;
	eal_argv[n++] = (char *)argv0;
	char lcore[24];
	snprintf(lcore, sizeof lcore, "%ld", opt.lcore < 0 ? 0 : opt.lcore);
	eal_argv[n++] = "-l";
	eal_argv[n++] = lcore;
	if (!opt.huge) {
		eal_argv[n++] = "--no-huge";
	} else {
		eal_argv[n++] = "--in-memory";
		eal_argv[n++] = "--single-file-segments";
	}
	eal_argv[n++] = "-m";
	eal_argv[n++] = "1024";
	eal_argv[n++] = "--no-pci";
	if (!opt.huge)
		eal_argv[n++] = "--no-shconf"; /* --in-memory implies it */
	eal_argv[n++] = "--no-telemetry";
	eal_argv[n++] = "--file-prefix";
	eal_argv[n++] = prefix;
	/* A log type registered after the options (a PMD loaded as a plugin)
	 * takes the level of the first pattern it matches. */
	if (opt.verbose) {
		eal_argv[n++] = "--log-level=pmd.net.virtio.*:info";
		eal_argv[n++] = "--log-level=lib.vhost.*:info";
	}
	eal_argv[n++] = "--log-level=*:error";
	if (vdev != NULL) {
		eal_argv[n++] = "--vdev";
		eal_argv[n++] = (char *)vdev;
	}
	eal_argv[n] = NULL;
	if (rte_eal_init(n, eal_argv) < 0)
		die("rte_eal_init: %s", rte_strerror(rte_errno));
	if (opt.lcore < 0 && sched_setaffinity(0, sizeof cpus, &cpus) != 0)
		die("sched_setaffinity: %s", strerror(errno));
}

/* ---------------------------------------------------------------- device */

/* The device the vhost library attached, and the handshake that detaches
 * it: destroy_device (on the library's thread) asks, the polling loop
 * answers once it has stopped touching the device. */
static _Atomic int dev_vid = -1;     /* set by new_device, cleared by the loop */
static atomic_bool dev_stop_req;     /* destroy_device asks the loop to let go */
static atomic_bool dev_stop_ack;     /* the loop has let go */
static atomic_bool dev_conn_gone;    /* the driver's connection closed */

static atomic_uint dev_quiet;        /* vrings to quiet, a bit each, for the loop */

/* quiet_vrings asks the driver not to kick the device's eventfds for the
 * vrings in mask (VRING_USED_F_NO_NOTIFY): the device polls, as the
 * driver's PMD does, which asks for no interrupts itself. The polling loop
 * calls it: the vhost library calls vring_state_changed with the vrings'
 * locks held, which rte_vhost_enable_guest_notification takes. */
static void quiet_vrings(int vid, unsigned mask)
{
	for (uint16_t i = 0; i < 32; i++)
		if (mask & 1u << i)
			rte_vhost_enable_guest_notification(vid, i, 0);
}

static int new_device(int vid)
{
	atomic_fetch_or(&dev_quiet, ~0u);
	atomic_store_explicit(&dev_vid, vid, memory_order_release);
	return 0;
}

static void destroy_device(int vid)
{
	(void)vid;
	atomic_store(&dev_stop_req, true);
	while (!atomic_load(&dev_stop_ack))
		usleep(10);
	atomic_store(&dev_stop_ack, false);
}

static int vring_state_changed(int vid, uint16_t queue_id, int enable)
{
	(void)vid;
	if (enable && queue_id < 32)
		atomic_fetch_or(&dev_quiet, 1u << queue_id);
	return 0;
}

static void destroy_connection(int vid)
{
	(void)vid;
	atomic_store(&dev_conn_gone, true);
}

static const struct rte_vhost_device_ops device_ops = {
	.new_device = new_device,
	.destroy_device = destroy_device,
	.vring_state_changed = vring_state_changed,
	.destroy_connection = destroy_connection,
};

/* A queue pair's records dequeued but not yet enqueued back: the driver's
 * Rx ring was full. No more are dequeued until they are all back. */
struct pending {
	struct rte_mbuf *m[MAX_BATCH];
	uint16_t off, n;
};

static int run_device(const char *argv0)
{
	eal_init(argv0, NULL);
	/* Mbufs in the device's hands: a burst a queue pair, and the
	 * mempool's per-lcore cache. */
	struct rte_mempool *pool = pool_create("vhost_dev",
		(unsigned)(opt.pairs * opt.batch * segs_per_record() * 2) + 1024);

	unlink(opt.sock);
	if (rte_vhost_driver_register(opt.sock, 0) != 0)
		die("rte_vhost_driver_register(%s) failed", opt.sock);
	if (rte_vhost_driver_callback_register(opt.sock, &device_ops) != 0)
		die("rte_vhost_driver_callback_register failed");
	if (rte_vhost_driver_start(opt.sock) != 0)
		die("rte_vhost_driver_start(%s) failed", opt.sock);

	static struct pending pend[MAX_PAIRS];
	const uint16_t batch = (uint16_t)opt.batch;
	for (;;) {
		if (atomic_load(&dev_stop_req)) {
			for (long q = 0; q < opt.pairs; q++) {
				rte_pktmbuf_free_bulk(pend[q].m + pend[q].off, pend[q].n);
				pend[q].n = 0;
			}
			atomic_store(&dev_vid, -1);
			atomic_store(&dev_stop_req, false);
			atomic_store(&dev_stop_ack, true);
		}
		int vid = atomic_load_explicit(&dev_vid, memory_order_acquire);
		if (vid < 0) {
			if (atomic_load(&dev_conn_gone))
				break;
			usleep(100); /* nothing attached yet: do not burn a CPU */
			continue;
		}
		if (atomic_load_explicit(&dev_quiet, memory_order_relaxed) != 0) {
			unsigned mask = atomic_exchange(&dev_quiet, 0);
			quiet_vrings(vid, mask & ((1u << (2 * opt.pairs)) - 1));
		}
		for (long q = 0; q < opt.pairs; q++) {
			struct pending *p = &pend[q];
			if (p->n == 0) {
				/* Guest Tx of pair q is vring 2q+1, its Rx 2q. */
				p->n = rte_vhost_dequeue_burst(vid, (uint16_t)(2 * q + 1), pool, p->m, batch);
				p->off = 0;
			}
			if (p->n != 0) {
				uint16_t sent = rte_vhost_enqueue_burst(vid, (uint16_t)(2 * q), p->m + p->off, p->n);
				rte_pktmbuf_free_bulk(p->m + p->off, sent);
				p->off += sent;
				p->n -= sent;
			}
		}
	}
	rte_vhost_driver_unregister(opt.sock);
	rte_eal_cleanup();
	return 0;
}

/* ---------------------------------------------------------------- driver */

/* The pattern records carry after their header; made once, so that
 * writing and checking a record is a copy and a compare, as in
 * bench_device.go. */
static uint8_t *pattern;

static void make_pattern(void)
{
	size_t n = (size_t)opt.payload + PATTERN_SHIFT;
	pattern = malloc(n + 8);
	if (pattern == NULL)
		die("out of memory");
	uint64_t x = 0x796371; /* splitmix64 from "ycq" */
	for (size_t i = 0; i < n; i += 8) {
		uint64_t z = (x += 0x9E3779B97F4A7C15);
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
		z ^= z >> 31;
		memcpy(pattern + i, &z, 8);
	}
}

/* A record's bytes: its header, and where its body starts in pattern. */
struct record {
	uint8_t header[HEADER];
	const uint8_t *body; /* payload - HEADER bytes */
};

static struct record record_of(long q, uint64_t k)
{
	struct record r;
	uint32_t producer = (uint32_t)q, sum = 0;
	memset(r.header, 0, sizeof r.header);
	/* Little-endian, as Go's binary.LittleEndian: x86 stores it so. */
	memcpy(r.header + OFF_SEQ, &k, 8);
	memcpy(r.header + OFF_PRODUCER, &producer, 4);
	memcpy(r.header + OFF_SUM, &sum, 4);
	r.body = pattern + k % PATTERN_SHIFT;
	return r;
}

/* put writes bytes [pos, pos+len) of record r to dst. */
static void put(const struct record *r, size_t pos, uint8_t *dst, size_t len)
{
	if (pos < HEADER) {
		size_t h = RTE_MIN(len, (size_t)HEADER - pos);
		memcpy(dst, r->header + pos, h);
		dst += h, pos += h, len -= h;
	}
	memcpy(dst, r->body + (pos - HEADER), len);
}

/* same compares bytes [pos, pos+len) of record r with src. */
static bool same(const struct record *r, size_t pos, const uint8_t *src, size_t len)
{
	if (pos < HEADER) {
		size_t h = RTE_MIN(len, (size_t)HEADER - pos);
		if (memcmp(src, r->header + pos, h) != 0)
			return false;
		src += h, pos += h, len -= h;
	}
	return memcmp(src, r->body + (pos - HEADER), len) == 0;
}

/* build makes n records of pair q, from sequence k on, into out: each a
 * chain of nseg segments taken in one rte_pktmbuf_alloc_bulk, every byte
 * written. false if the pool is empty for now. */
static bool build(struct rte_mempool *pool, long q, uint64_t k, unsigned n, struct rte_mbuf **out)
{
	const unsigned nseg = segs_per_record();
	const size_t room = seg_room(), size = (size_t)opt.payload;
	struct rte_mbuf *segs[MAX_BATCH * 32]; /* main() allows 32 segments a record */
	if (n * nseg > RTE_DIM(segs))
		die("a burst of %u records of %u segments is too many", n, nseg);
	if (rte_pktmbuf_alloc_bulk(pool, segs, n * nseg) != 0)
		return false;
	for (unsigned i = 0; i < n; i++) {
		struct record r = record_of(q, k + i);
		struct rte_mbuf **s = segs + (size_t)i * nseg;
		size_t pos = 0;
		for (unsigned j = 0; j < nseg; j++) {
			size_t len = RTE_MIN(room, size - pos);
			put(&r, pos, rte_pktmbuf_mtod(s[j], uint8_t *), len);
			s[j]->data_len = (uint16_t)len;
			if (j + 1 < nseg)
				s[j]->next = s[j + 1];
			pos += len;
		}
		s[0]->nb_segs = (uint16_t)nseg;
		s[0]->pkt_len = (uint32_t)size;
		out[i] = s[0];
	}
	return true;
}

/* check compares echo m with record k of pair q, every segment, whatever
 * the segments' sizes; dies on the first difference. */
static void check(const struct rte_mbuf *m, long q, uint64_t k)
{
	if (m->pkt_len != (uint32_t)opt.payload)
		die("queue pair %ld: echo %" PRIu64 " has %" PRIu32 " bytes, not %ld", q, k, m->pkt_len,
		    opt.payload);
	struct record r = record_of(q, k);
	size_t pos = 0;
	for (const struct rte_mbuf *s = m; s != NULL; s = s->next) {
		size_t len = s->data_len;
		if (pos + len > (size_t)opt.payload)
			die("queue pair %ld: echo %" PRIu64 "'s segments hold more than its %" PRIu32 " bytes", q,
			    k, m->pkt_len);
		const uint8_t *b = rte_pktmbuf_mtod(s, const uint8_t *);
		if (!same(&r, pos, b, len)) {
			if (pos == 0 && len >= HEADER && memcmp(b, r.header, HEADER) != 0) {
				uint64_t seq;
				uint32_t producer;
				memcpy(&seq, b + OFF_SEQ, 8);
				memcpy(&producer, b + OFF_PRODUCER, 4);
				die("queue pair %ld: echo %" PRIu64 " is record %" PRIu64 " of queue pair %" PRIu32,
				    q, k, seq, producer);
			}
			die("queue pair %ld: echo %" PRIu64 " does not echo its request (bytes %zu to %zu)", q, k,
			    pos, pos + len);
		}
		pos += len;
	}
	if (pos != (size_t)opt.payload)
		die("queue pair %ld: echo %" PRIu64 "'s segments hold %zu of its %ld bytes", q, k, pos,
		    opt.payload);
}

/* A queue pair's side of the driver. */
struct pair {
	uint64_t built;              /* records made, the next one's sequence */
	uint64_t got;                /* echoes checked */
	struct rte_mbuf *tx[MAX_BATCH]; /* built, not yet taken by tx_burst */
	uint16_t off, n;
};

/* pump does one round over the pairs: build a burst where the window has
 * room and the last one is gone (if sending), hand what is built to
 * tx_burst, receive and check a burst. It returns the echoes checked. */
static unsigned pump(struct rte_mempool *pool, struct pair *pairs, bool sending, uint64_t limit)
{
	unsigned got = 0;
	for (long q = 0; q < opt.pairs; q++) {
		struct pair *p = &pairs[q];
		if (sending && p->n == 0 && p->built < limit) {
			uint64_t room = (uint64_t)opt.window - (p->built - p->got);
			unsigned n = (unsigned)RTE_MIN(RTE_MIN(room, (uint64_t)opt.batch), limit - p->built);
			if (n > 0 && build(pool, q, p->built, n, p->tx)) {
				p->off = 0;
				p->n = (uint16_t)n;
				p->built += n;
			}
		}
		if (p->n != 0) {
			uint16_t sent = rte_eth_tx_burst(0, (uint16_t)q, p->tx + p->off, p->n);
			p->off += sent;
			p->n -= sent;
		}
		struct rte_mbuf *rx[MAX_BATCH];
		uint16_t nrx = rte_eth_rx_burst(0, (uint16_t)q, rx, (uint16_t)opt.batch);
		for (uint16_t i = 0; i < nrx; i++) {
			if (p->got >= p->built - p->n)
				die("queue pair %ld: echo %" PRIu64 " of a record never sent", q, p->got);
			check(rx[i], q, p->got);
			p->got++;
		}
		rte_pktmbuf_free_bulk(rx, nrx);
		got += nrx;
	}
	return got;
}

/* drained is whether every record built has been sent and echoed. */
static bool drained(const struct pair *pairs)
{
	for (long q = 0; q < opt.pairs; q++)
		if (pairs[q].n != 0 || pairs[q].got != pairs[q].built)
			return false;
	return true;
}

/* STALL_S is how long the driver waits for an echo, with records in
 * flight, before it calls them lost. */
#define STALL_S 5.0

static int run_driver(const char *argv0)
{
	char vdev[4096];
	int w = snprintf(vdev, sizeof vdev, "net_virtio_user0,path=%s,queues=%ld,queue_size=%ld,cq=1%s%s",
		opt.sock, opt.pairs, opt.slots, opt.virtio[0] != '\0' ? "," : "", opt.virtio);
	if (w < 0 || (size_t)w >= sizeof vdev)
		die("-sock and -virtio are too long");
	eal_init(argv0, vdev);
	make_pattern();
	if (rte_eth_dev_count_avail() != 1)
		die("%u ports, not the one virtio-user port", rte_eth_dev_count_avail());

	/* Mbufs in the driver's hands: a window of records a pair (built, on
	 * the Tx ring, with the device or on the Rx ring), the Rx rings'
	 * posted buffers, a burst a pair being checked, the per-lcore cache. */
	const unsigned nseg = segs_per_record();
	struct rte_mempool *pool = pool_create("virtio_drv",
		(unsigned)(opt.pairs * ((opt.window + opt.batch) * (long)nseg + opt.slots)) + 1024);

	struct rte_eth_dev_info info;
	int err = rte_eth_dev_info_get(0, &info);
	if (err != 0)
		die("rte_eth_dev_info_get: %s", rte_strerror(-err));
	struct rte_eth_conf conf;
	memset(&conf, 0, sizeof conf);
	if (nseg > 1 || opt.payload > seg_room()) {
		if (!(info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MULTI_SEGS))
			die("the port cannot send chained mbufs (no RTE_ETH_TX_OFFLOAD_MULTI_SEGS)");
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
		if (!(info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_SCATTER))
			die("the port cannot receive into chained mbufs (no RTE_ETH_RX_OFFLOAD_SCATTER: mrg_rxbuf=0?)");
		conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_SCATTER;
	}
	err = rte_eth_dev_configure(0, (uint16_t)opt.pairs, (uint16_t)opt.pairs, &conf);
	if (err != 0)
		die("rte_eth_dev_configure: %s", rte_strerror(-err));
	for (long q = 0; q < opt.pairs; q++) {
		err = rte_eth_rx_queue_setup(0, (uint16_t)q, (uint16_t)opt.slots, rte_eth_dev_socket_id(0), NULL, pool);
		if (err != 0)
			die("rte_eth_rx_queue_setup(%ld): %s", q, rte_strerror(-err));
		err = rte_eth_tx_queue_setup(0, (uint16_t)q, (uint16_t)opt.slots, rte_eth_dev_socket_id(0), NULL);
		if (err != 0)
			die("rte_eth_tx_queue_setup(%ld): %s", q, rte_strerror(-err));
	}
	err = rte_eth_dev_start(0);
	if (err != 0)
		die("rte_eth_dev_start: %s", rte_strerror(-err));

	static struct pair pairs[MAX_PAIRS];
	/* One record a pair first, not counted: the run starts with the
	 * device attached and its queues enabled. */
	double t0 = now_s();
	while (!drained(pairs) || pairs[0].built == 0) {
		pump(pool, pairs, true, 1);
		if (now_s() - t0 > 30)
			die("no echo from the device within 30 s");
	}

	const double hz = (double)rte_get_tsc_hz();
	printf("start\n");
	fflush(stdout);
	double cpu0 = cpu_s(), start = now_s();
	const uint64_t t_start = rte_get_tsc_cycles();
	const uint64_t deadline = t_start + (uint64_t)(opt.seconds * hz);
	const uint64_t stall = (uint64_t)(STALL_S * hz);
	uint64_t last = t_start;
	bool sending = true;
	for (;;) {
		unsigned got = pump(pool, pairs, sending, UINT64_MAX);
		uint64_t t = rte_get_tsc_cycles();
		if (got != 0)
			last = t;
		if (sending && t >= deadline)
			sending = false;
		if (!sending && drained(pairs))
			break;
		if (got == 0 && t - last > stall) {
			uint64_t lost = 0;
			for (long q = 0; q < opt.pairs; q++)
				lost += pairs[q].built - pairs[q].n - pairs[q].got;
			die("no echo for %.0f s with %" PRIu64 " records sent and not echoed: lost", STALL_S, lost);
		}
	}
	double elapsed = now_s() - start, cpu = cpu_s() - cpu0;
	uint64_t records = 0;
	for (long q = 0; q < opt.pairs; q++)
		records += pairs[q].got - 1; /* less the first, untimed one */
	printf("{\"system\":\"%s\",\"payload\":%ld,\"pairs\":%ld,\"slots\":%ld,\"batch\":%ld,\"window\":%ld,"
	       "\"segment\":%u,\"virtio\":\"%s\",\"memory\":\"%s\",\"records\":%" PRIu64
	       ",\"seconds\":%.6f,\"cpu_seconds\":%.6f}\n",
	       SYSTEM, opt.payload, opt.pairs, opt.slots, opt.batch, opt.window, seg_room(), opt.virtio,
	       opt.huge ? "hugepages" : "memfd", records, elapsed, cpu);
	fflush(stdout);
	rte_eth_dev_stop(0);
	rte_eth_dev_close(0);
	rte_eal_cleanup();
	return 0;
}

/* ----------------------------------------------------------------- flags */

static void usage(void)
{
	fprintf(stderr,
		"usage: vhost_bench -role device|driver -sock PATH [flags]\n"
		"  -role R      device: vhost-user backend that echoes; driver: virtio-user that sends and checks\n"
		"  -sock PATH   the vhost-user socket (the device listens, the driver connects)\n"
		"  -payload N   bytes a record (default 64; 16 to 8388608)\n"
		"  -pairs N     queue pairs (default 2)\n"
		"  -slots N     descriptors a virtqueue (default 256)\n"
		"  -batch N     most records a burst (default 32)\n"
		"  -window N    most records in flight a queue pair (default 2 x slots)\n"
		"  -seconds S   driver: how long to send before draining (default 2)\n"
		"  -seg N       bytes a segment of records larger than 2 KiB (default 16384)\n"
		"  -virtio ARGS driver: virtio-user devargs (default %s)\n"
		"  -huge        use hugepages (--in-memory --single-file-segments) instead of one memfd\n"
		"  -lcore N     keep the polling thread pinned to CPU N (EAL's -l N); default: unpinned\n"
		"  -v           log the virtio and vhost paths chosen\n",
		opt.virtio);
	exit(2);
}

/* flag_value matches argv[*i] as -name V, -name=V, --name V or --name=V,
 * as Go's flag package takes them, and returns V, or NULL if it is
 * another flag. */
static const char *flag_value(int argc, char **argv, int *i, const char *name)
{
	const char *a = argv[*i];
	a += a[1] == '-' ? 2 : 1;
	size_t n = strlen(name);
	if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '='))
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (*i + 1 >= argc)
		usage();
	return argv[++*i];
}

static bool int_flag(int argc, char **argv, int *i, const char *name, long *out)
{
	const char *v = flag_value(argc, argv, i, name);
	if (v == NULL)
		return false;
	char *end;
	errno = 0;
	*out = strtol(v, &end, 10);
	if (errno != 0 || *v == '\0' || *end != '\0')
		usage();
	return true;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		if (a[0] != '-' || a[1] == '\0')
			usage();
		const char *f = a + (a[1] == '-' ? 2 : 1);
		if (int_flag(argc, argv, &i, "payload", &opt.payload) || int_flag(argc, argv, &i, "pairs", &opt.pairs) ||
		    int_flag(argc, argv, &i, "slots", &opt.slots) || int_flag(argc, argv, &i, "batch", &opt.batch) ||
		    int_flag(argc, argv, &i, "window", &opt.window) || int_flag(argc, argv, &i, "seg", &opt.seg) ||
		    int_flag(argc, argv, &i, "lcore", &opt.lcore))
			continue;
		if ((v = flag_value(argc, argv, &i, "role")) != NULL)
			opt.role = v;
		else if ((v = flag_value(argc, argv, &i, "sock")) != NULL)
			opt.sock = v;
		else if ((v = flag_value(argc, argv, &i, "virtio")) != NULL)
			opt.virtio = v;
		else if ((v = flag_value(argc, argv, &i, "seconds")) != NULL) {
			char *end;
			opt.seconds = strtod(v, &end);
			if (*v == '\0' || *end != '\0')
				usage();
		} else if (strcmp(f, "huge") == 0)
			opt.huge = true;
		else if (strcmp(f, "v") == 0)
			opt.verbose = true;
		else
			usage();
	}
	if (opt.window == 0)
		opt.window = 2 * opt.slots;
	if (opt.role == NULL || opt.sock == NULL || opt.sock[0] == '\0')
		usage();
	if (opt.payload < HEADER || opt.payload > 8 << 20 || opt.pairs < 1 || opt.pairs > MAX_PAIRS ||
	    opt.slots < 1 || opt.slots > 32768 || opt.batch < 1 || opt.batch > MAX_BATCH || opt.window < 1 ||
	    opt.seg < RTE_MBUF_DEFAULT_DATAROOM || opt.seg > UINT16_MAX - RTE_PKTMBUF_HEADROOM ||
	    !(opt.seconds > 0) || opt.lcore < -1 || opt.lcore >= CPU_SETSIZE || (opt.payload + opt.seg - 1) / opt.seg > 32) {
		fprintf(stderr, "vhost_bench: -payload must be 16 to 8388608, -pairs 1 to %d, -slots 1 to 32768, "
				"-batch 1 to %d, -seg %d to %d, -window and -seconds positive, "
				"and a record at most 32 segments\n",
			MAX_PAIRS, MAX_BATCH, RTE_MBUF_DEFAULT_DATAROOM, UINT16_MAX - RTE_PKTMBUF_HEADROOM);
		return 2;
	}
	if (strcmp(opt.role, "device") == 0)
		return run_device(argv[0]);
	if (strcmp(opt.role, "driver") == 0)
		return run_driver(argv[0]);
	usage();
}
