/* device.h: the conformance driver's shared parts. The driver is a hosted
 * Linux program around the freestanding ycq_ring.c: it plays the device
 * against the Go tests in ring/ (cref_*_test.go, golden_test.go), which
 * pass it the queues as inherited memfds and read what it reports on
 * stdout. */
#ifndef YCQ_DEVICE_H
#define YCQ_DEVICE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ycq_agent.h"

/* A queue the Go test passed: descriptor fd, the metadata at meta_off
 * (meta_len bytes) and the data at data_off (data_len bytes) in it. Each
 * region is mapped alone with inaccessible pages around it, and under
 * AddressSanitizer the rest of its pages is poisoned, so an access outside
 * the regions is caught at once. */
struct region {
	uint8_t *meta, *data;
	uint64_t meta_len, data_len;
};

/* Parse "fd:meta_off:meta_len:data_off:data_len" and map it. */
void map_queue(const char *spec, struct region *q);

/* Parse "fd:len" and map bytes 0 to len - 1 of fd alone, as map_queue maps
 * a region: a device's address space for the resize scenarios, every
 * generation's regions in it. */
uint8_t *map_space(const char *spec, uint64_t *len);

/* The wake hooks: FUTEX_WAKE, and FUTEX_WAIT until the word moves on. With
 * announce set, wait prints "asleep <name> <line>" before it sleeps, so the
 * Go side knows this side is past its second look; with timeout_ms, it
 * sleeps once for at most that long (for the hostile run, whose peer may
 * never wake it). */
struct hooks {
	const char *name;
	int announce;
	int timeout_ms;
	uint64_t wakes; /* FUTEX_WAKE calls: the wakeups this side sent */
	uint64_t waits; /* calls of the wait hook: the sleeps */
};
void hooks_init(struct hooks *h, const char *name, struct ycq_wake_ops *ops);

/* Records: internal/record's Plain layout with its checksum. */
#define REC_HEADER 16
void record_fill(uint8_t *b, uint32_t len, uint32_t producer, uint64_t seq);
/* 0 and the header if b is a record that checks, -1 otherwise. */
int record_check(const uint8_t *b, uint32_t len, uint32_t *producer, uint64_t *seq);

/* A small seeded generator (xorshift64*). */
struct rng { uint64_t s; };
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
uint32_t rng_below(struct rng *r, uint32_t n); /* 0 to n-1 */
void shuffle(struct rng *r, uint32_t *v, uint32_t n);

/* Exit 1 after printing why, on stdout (which the Go test shows). */
void die(const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((noreturn, format(printf, 1, 2)))
#endif
	;
void say(const char *fmt, ...)
#if defined(__GNUC__)
	__attribute__((format(printf, 1, 2)))
#endif
	;

/* "key=value" from argv, or def. */
const char *arg(int argc, char **argv, const char *key, const char *def);
uint64_t arg_u64(int argc, char **argv, const char *key, uint64_t def);

int run_echo(int argc, char **argv);
int run_script(int argc, char **argv);
int run_golden(int argc, char **argv);
int run_hostile(int argc, char **argv);
int run_resize(int argc, char **argv);
int run_link(int argc, char **argv);

#endif /* YCQ_DEVICE_H */
