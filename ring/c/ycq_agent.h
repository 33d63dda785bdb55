/* ycq_agent.h: the single-agent side of a ycq queue, for firmware.
 *
 * An agent is the one producer of a SINGLE_PRODUCER queue or the one
 * consumer of a SINGLE_CONSUMER queue (ring/LAYOUT.md); the other side may
 * be any number of Go processes using package ring. ycq_ring.c implements
 * it in freestanding C99: no libc, no allocation, no system calls, and
 * shared memory reached only through the macros of ycq_port.h. README.md
 * explains how to port it.
 *
 * Every call returns YCQ_OK or a negative YCQ_E* code and returns after a
 * bounded number of steps whatever the metadata holds: the geometry is read
 * and checked once, at attach, and kept in the agent; every word read after
 * that is checked before use, and a word no correct peer writes gives
 * YCQ_ECORRUPT, counted in the agent's own line (prod_corrupt or
 * cons_corrupt), with its offset in err_off. No access leaves the two
 * regions the caller passed to attach.
 *
 * Concurrency: an agent is one thread of control. Its calls must not run
 * concurrently with each other, and the caller owns the structs; attach
 * fills them in, and their fields are private to ycq_ring.c. */
#ifndef YCQ_AGENT_H
#define YCQ_AGENT_H

#include <stdint.h>

#include "ycq_ring.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define YCQ_OK             0
#define YCQ_EFULL         (-1) /* producer: not the slots asked for; try after consumers release */
#define YCQ_EEMPTY        (-2) /* consumer: not the records asked for; try after producers publish */
#define YCQ_ECORRUPT      (-3) /* the metadata holds a word no correct agent writes (err_off says where) */
#define YCQ_EINCOMPATIBLE (-4) /* attach: not a queue this code drives (magic, version, features) */
#define YCQ_EINVAL        (-5) /* the caller passed an argument out of range */
#define YCQ_ENOTHELD      (-6) /* the slot was already published, released or aborted */
#define YCQ_EFRAGMENTED   (-7) /* exact consumer reserve: records split by holes further apart than a run holds; use YCQ_UPTO */
#define YCQ_ENOTLAST      (-8) /* give-back: a later run was reserved; the records are still held */

/* Reserve modes. */
#define YCQ_UPTO  0 /* between 1 and n */
#define YCQ_EXACT 1 /* exactly n, or none */

/* The wake lines (LAYOUT.md, "Wake lines"). */
#define YCQ_LINE_ITEMS 0 /* consumers sleep here for records */
#define YCQ_LINE_SPACE 1 /* producers sleep here for space */

/* How many positions from its first record a read run can carry holes
 * (aborted slots) in: one bit each in ycq_read_run.holes. */
#define YCQ_HOLE_WINDOW 64

/* The porting hook for sleeping and waking (README.md, "Waking"). Either
 * pointer may be NULL. */
struct ycq_wake_ops {
	/* The agent found agents asleep on line and has bumped the line's
	 * futex word: signal them (FUTEX_WAKE for all, an interrupt, a
	 * doorbell). NULL: they poll the futex word. */
	void (*wake)(void *ctx, int line, uint32_t *futex_word);
	/* The agent is registered as asleep on line and has looked once more:
	 * sleep until *futex_word no longer holds the bits seen (as read from
	 * memory, in the layout's byte order), or a signal comes. Returning
	 * early is allowed; the caller tries again. NULL: return at once,
	 * which makes the sleep calls a poll. */
	void (*wait)(void *ctx, int line, uint32_t *futex_word, uint32_t seen);
	void *ctx;
};

/* What the producer and the consumer share. The caller may read slots,
 * slot_size, err_off and err_value; the rest is ycq_ring.c's. */
struct ycq_agent {
	uint8_t *meta;            /* the metadata region */
	uint8_t *data;            /* the data region */
	uint64_t mask;            /* slots - 1 */
	uint32_t slots;           /* N, read once at attach */
	uint32_t slot_size;       /* read once at attach */
	uint32_t line_off;        /* YCQ_OFF_PROD_CURSOR or YCQ_OFF_CONS_CURSOR */
	uint32_t pending;         /* wakes owed: bit 1 << YCQ_LINE_* */
	uint64_t line[8];         /* the agent's line, cursor and counters, as it last stored them */
	struct ycq_wake_ops ops;
	uint32_t err_off;         /* offset in the metadata of the word behind the last error */
	uint64_t err_value;       /* the value found there, or the argument refused */
};

struct ycq_consumer { struct ycq_agent a; };
struct ycq_producer { struct ycq_agent a; };

/* Records a consumer reserved: n records from position start, with the
 * aborted slots among and after them marked in holes (bit k: the slot at
 * start + k). Read them in place, release each once, in any order. */
struct ycq_read_run {
	uint64_t start;
	uint64_t holes;
	uint32_t n;
};

/* Slots a producer reserved: positions start to start + n - 1. Write each
 * in place, then publish or abort it once, in any order. */
struct ycq_write_run {
	uint64_t start;
	uint32_t n;
};

/* Attach checks the queue in meta (meta_len bytes the agent may touch,
 * 8-byte aligned) and data (data_len bytes) as LAYOUT.md lists, requires
 * SINGLE_CONSUMER (SINGLE_PRODUCER for a producer), reads the agent's line
 * once, and keeps the geometry. ops may be NULL (never sleep, never
 * signal). A refused header gives YCQ_EINCOMPATIBLE or YCQ_ECORRUPT with
 * the field's offset in err_off; regions too small or misaligned,
 * YCQ_EINVAL. Nothing is written to the metadata. */
int ycq_consumer_attach(struct ycq_consumer *c, void *meta, uint64_t meta_len,
                        void *data, uint64_t data_len, const struct ycq_wake_ops *ops);
int ycq_producer_attach(struct ycq_producer *p, void *meta, uint64_t meta_len,
                        void *data, uint64_t data_len, const struct ycq_wake_ops *ops);

/* The position the agent reserves next. */
uint64_t ycq_consumer_position(const struct ycq_consumer *c);
uint64_t ycq_producer_position(const struct ycq_producer *p);

/* Consumer. */

/* Reserve records: YCQ_UPTO 1 to n of them, YCQ_EXACT n (1 <= n <= N).
 * Holes in front of the first record are released and passed over, even
 * when no record follows (then YCQ_EEMPTY). On an error r is an empty run. */
int ycq_consumer_reserve(struct ycq_consumer *c, uint32_t n, int mode, struct ycq_read_run *r);
/* Record i of r in place: its payload and its length (at most the slot
 * size), after checking its descriptor once more. */
int ycq_consumer_record(struct ycq_consumer *c, const struct ycq_read_run *r, uint32_t i,
                        const uint8_t **payload, uint32_t *length);
/* The queue position of record i of r (i < r->n). */
uint64_t ycq_read_run_position(const struct ycq_read_run *r, uint32_t i);
/* Release record i of r, and the holes right after it, to producers. */
int ycq_consumer_release(struct ycq_consumer *c, const struct ycq_read_run *r, uint32_t i);
/* Release every record of r still held, last first. */
int ycq_consumer_release_all(struct ycq_consumer *c, const struct ycq_read_run *r);
/* Give records i to r->n - 1 back unread, to be delivered again in order:
 * only while r is the last run reserved (else YCQ_ENOTLAST, nothing
 * changed). r then holds records 0 to i - 1. */
int ycq_consumer_give_back(struct ycq_consumer *c, struct ycq_read_run *r, uint32_t i);

/* Producer. */

/* Reserve free slots: YCQ_UPTO 1 to n, YCQ_EXACT n (1 <= n <= N). On an
 * error w is an empty run. */
int ycq_producer_reserve(struct ycq_producer *p, uint32_t n, int mode, struct ycq_write_run *w);
/* The payload area of slot i of w, slot-size bytes, or NULL if i >= w->n. */
uint8_t *ycq_producer_slot(struct ycq_producer *p, const struct ycq_write_run *w, uint32_t i);
/* Publish slot i of w as a record of length bytes (at most the slot size),
 * written before the call. */
int ycq_producer_publish(struct ycq_producer *p, const struct ycq_write_run *w, uint32_t i, uint32_t length);
/* Publish every slot of w not yet published or aborted, last first. */
int ycq_producer_publish_all(struct ycq_producer *p, const struct ycq_write_run *w, uint32_t length);
/* Give slot i of w up: a hole that consumers pass over. */
int ycq_producer_abort(struct ycq_producer *p, const struct ycq_write_run *w, uint32_t i);
/* Give up every slot of w not yet published: when they end w and w is the
 * last run reserved, the cursor moves back over them (w->n shrinks) and the
 * positions are reused; the others become holes. */
int ycq_producer_abort_all(struct ycq_producer *p, struct ycq_write_run *w);

/* Waking and sleeping (LAYOUT.md, "Sleeping and waking").
 *
 * The operations above note which lines they owe a wake (a publish or an
 * abort: consumers; a rollback: producers; a release or holes passed:
 * producers; a give-back: consumers) and wake nobody themselves, so that a
 * batch costs one wake. *_wake pays what is owed: for each line, a fence,
 * then if anyone sleeps there the futex word is bumped and ops.wake called;
 * each is counted as wake_sent or wake_suppressed. Call it after each
 * batch, and before the agent waits for anything. It returns how many
 * lines it signaled. *_wake_line wakes one line now, owed or not. */
int ycq_consumer_wake(struct ycq_consumer *c);
int ycq_producer_wake(struct ycq_producer *p);
int ycq_consumer_wake_line(struct ycq_consumer *c, int line);
int ycq_producer_wake_line(struct ycq_producer *p, int line);

/* One round of sleeping: pay the wakes owed, read the line's futex word,
 * register in its waiters word (then a fence), reserve once more, and if
 * that still finds nothing call ops.wait; unregister, and return what the
 * reserve returned. YCQ_EEMPTY (YCQ_EFULL) means: woken, or not slept at
 * all; call again, or reserve. The consumer sleeps on the items line, the
 * producer on the space line. */
int ycq_consumer_sleep(struct ycq_consumer *c, uint32_t n, int mode, struct ycq_read_run *r);
int ycq_producer_sleep(struct ycq_producer *p, uint32_t n, int mode, struct ycq_write_run *w);

/* A short name for a return code. */
const char *ycq_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* YCQ_AGENT_H */
