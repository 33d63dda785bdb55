/* device.c: main, and what the scenarios share (regions, wake hooks,
 * records). Usage: device <scenario> key=value... with the queues as
 * inherited descriptors; see the scenario files. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "device.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
#include <sanitizer/asan_interface.h>
#endif

void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("FAIL ", stdout);
	vfprintf(stdout, fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
	fflush(stdout);
	exit(1);
}

void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
	fflush(stdout);
}

const char *arg(int argc, char **argv, const char *key, const char *def)
{
	size_t n = strlen(key);
	for (int i = 2; i < argc; i++)
		if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=')
			return argv[i] + n + 1;
	return def;
}

uint64_t arg_u64(int argc, char **argv, const char *key, uint64_t def)
{
	const char *v = arg(argc, argv, key, NULL);
	char *end;
	if (v == NULL)
		return def;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 0);
	if (errno != 0 || *end != '\0')
		die("argument %s=%s: not a number", key, v);
	return x;
}

/* map_one maps [off, off+len) of fd with an inaccessible page on each side
 * of the pages that hold it, and poisons the rest of those pages. */
static uint8_t *map_one(int fd, uint64_t off, uint64_t len)
{
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t lo = off & ~(ps - 1), hi = (off + len + ps - 1) & ~(ps - 1);
	size_t span = (size_t)(hi - lo);
	if (len == 0)
		die("empty region at %llu", (unsigned long long)off);
	uint8_t *guard = mmap(NULL, span + 2 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guard == MAP_FAILED)
		die("mmap guard: %s", strerror(errno));
	uint8_t *pages = mmap(guard + ps, span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, (off_t)lo);
	if (pages == MAP_FAILED)
		die("mmap fd %d at %llu: %s", fd, (unsigned long long)lo, strerror(errno));
	uint8_t *region = pages + (off - lo);
#ifdef HAVE_ASAN
	ASAN_POISON_MEMORY_REGION(pages, (size_t)(off - lo));
	ASAN_POISON_MEMORY_REGION(region + len, (size_t)(hi - off - len));
#endif
	return region;
}

void map_queue(const char *spec, struct region *q)
{
	int fd;
	unsigned long long meta_off, meta_len, data_off, data_len;
	if (spec == NULL || sscanf(spec, "%d:%llu:%llu:%llu:%llu", &fd, &meta_off, &meta_len, &data_off, &data_len) != 5)
		die("queue %s: want fd:meta_off:meta_len:data_off:data_len", spec ? spec : "(none)");
	q->meta = map_one(fd, meta_off, meta_len);
	q->data = map_one(fd, data_off, data_len);
	q->meta_len = meta_len;
	q->data_len = data_len;
}

uint8_t *map_space(const char *spec, uint64_t *len)
{
	int fd;
	unsigned long long n;
	if (spec == NULL || sscanf(spec, "%d:%llu", &fd, &n) != 2)
		die("space %s: want fd:len", spec ? spec : "(none)");
	*len = n;
	return map_one(fd, 0, n);
}

/* Wake hooks. The futex words are in shared mappings, so the operations
 * are not FUTEX_PRIVATE: the kernel keys them on the page, and a Go
 * process that maps the same memfd wakes us and is woken by us. */

static void hook_wake(void *ctx, int line, uint32_t *word)
{
	struct hooks *h = ctx;
	(void)line;
	h->wakes++;
	syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void hook_wait(void *ctx, int line, uint32_t *word, uint32_t seen)
{
	struct hooks *h = ctx;
	h->waits++;
	if (h->announce)
		say("asleep %s %s", h->name, line == YCQ_LINE_ITEMS ? "items" : "space");
	if (h->timeout_ms > 0) {
		struct timespec ts = {0, (long)h->timeout_ms * 1000000L};
		syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, NULL, 0);
		return;
	}
	/* Until the word moves on: a signal or a spurious return sleeps
	 * again, so that one call is one sleep ended by a wake. */
	while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == seen)
		syscall(SYS_futex, word, FUTEX_WAIT, seen, NULL, NULL, 0);
}

void hooks_init(struct hooks *h, const char *name, struct ycq_wake_ops *ops)
{
	h->name = name;
	h->announce = 0;
	h->timeout_ms = 0;
	h->wakes = 0;
	h->waits = 0;
	ops->wake = hook_wake;
	ops->wait = hook_wait;
	ops->ctx = h;
}

/* Records. */

static uint32_t crc_table[256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1; /* CRC-32C, reflected */
		crc_table[i] = c;
	}
}

static uint32_t crc_update(uint32_t crc, const uint8_t *b, size_t n)
{
	crc = ~crc;
	for (size_t i = 0; i < n; i++)
		crc = crc_table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static uint64_t get64(const uint8_t *b)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

static uint32_t get32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void put64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *b, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

/* The checksum covers [0, 12) and [16, len): all but its own field. */
static uint32_t record_sum(const uint8_t *b, uint32_t len)
{
	return crc_update(crc_update(0, b, 12), b + REC_HEADER, len - REC_HEADER);
}

void record_fill(uint8_t *b, uint32_t len, uint32_t producer, uint64_t seq)
{
	uint64_t x = seq * 0x9E3779B97F4A7C15ull ^ (uint64_t)producer << 32;
	uint32_t n = len - REC_HEADER, i;
	put64(b, seq);
	put32(b + 8, producer);
	put32(b + 12, 0);
	for (i = 0; i + 8 <= n; i += 8)
		put64(b + REC_HEADER + i, x + i);
	for (; i < n; i++)
		b[REC_HEADER + i] = (uint8_t)x;
	put32(b + 12, record_sum(b, len));
}

int record_check(const uint8_t *b, uint32_t len, uint32_t *producer, uint64_t *seq)
{
	if (len < REC_HEADER)
		return -1;
	*seq = get64(b);
	*producer = get32(b + 8);
	return record_sum(b, len) == get32(b + 12) ? 0 : -1;
}

/* Random numbers. */

void rng_seed(struct rng *r, uint64_t seed)
{
	r->s = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
	if (r->s == 0)
		r->s = 1;
}

uint64_t rng_next(struct rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545F4914F6CDD1Dull;
}

uint32_t rng_below(struct rng *r, uint32_t n)
{
	return n == 0 ? 0 : (uint32_t)((rng_next(r) >> 32) % n);
}

void shuffle(struct rng *r, uint32_t *v, uint32_t n)
{
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = rng_below(r, i), t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

int main(int argc, char **argv)
{
	crc_init();
	if (argc < 2)
		die("usage: device echo|script|golden|hostile|resize|link key=value...");
	if (strcmp(argv[1], "echo") == 0)
		return run_echo(argc, argv);
	if (strcmp(argv[1], "script") == 0)
		return run_script(argc, argv);
	if (strcmp(argv[1], "golden") == 0)
		return run_golden(argc, argv);
	if (strcmp(argv[1], "hostile") == 0)
		return run_hostile(argc, argv);
	if (strcmp(argv[1], "resize") == 0)
		return run_resize(argc, argv);
	if (strcmp(argv[1], "link") == 0)
		return run_link(argc, argv);
	die("unknown scenario %s", argv[1]);
}
