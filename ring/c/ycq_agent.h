/* ycq_agent.h: the single-agent side of a ycq queue, for firmware.
 *
 * An agent is the one producer of a SINGLE_PRODUCER queue or the one
 * consumer of a SINGLE_CONSUMER queue (ring/LAYOUT.md); the other side may
 * be any number of Go processes using package ring. ycq_ring.c implements
 * it in freestanding C99: no libc, no allocation, no system calls, and
 * shared memory reached only through the macros of ycq_port.h. README.md
 * explains how to port it.
 *
 * Every call returns YCQ_OK or a negative YCQ_E* code (a wake the lines it
 * signaled, a follow YCQ_MOVED when it moved) and returns after a bounded
 * number of steps whatever the metadata holds: the geometry is read
 * and checked once, at attach, and kept in the agent; every word read after
 * that is checked before use, and a word no correct peer writes gives
 * YCQ_ECORRUPT, counted in the agent's own line (prod_corrupt or
 * cons_corrupt), with its offset in err_off. No access leaves the two
 * regions the caller passed to attach (after a follow, the two the reach
 * hook gave, as far as the next generation's header needs them).
 *
 * Resizing (LAYOUT.md, "Resizing"): a RESIZABLE queue is refused by
 * ycq_*_attach, as by any agent that does not follow resizes. Attached with
 * ycq_*_attach_resizable instead, the agent follows them: the producer
 * calls ycq_producer_follow once a batch, the consumer calls
 * ycq_consumer_follow when a reserve finds nothing; each reads the link
 * line, reaches the next generation through the caller's reach hook,
 * attaches there with the same checks as at start, and moves itself on
 * (the producer seals the generation it leaves, the consumer stores
 * link_left). A link no correct owner writes is refused with a code and
 * leaves the agent where it was.
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
#define YCQ_EFAULT        (-9) /* follow: the next generation's regions are out of reach (the reach hook, or shorter than its header says) */
#define YCQ_EBUSY        (-10) /* follow: the agent still holds slots of this generation; finish (release) its runs first */

/* What a follow returns when it moved the agent to the next generation. */
#define YCQ_MOVED 1

/* Bit 63 of a RESIZABLE queue's producer cursor: the generation is sealed,
 * and the cursor without it is its final position (LAYOUT.md, "Resizing";
 * ring.Sealed in Go). */
#ifndef YCQ_SEALED
#define YCQ_SEALED ((uint64_t)1 << 63)
#endif

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

/* The next generation of a RESIZABLE queue, as a follow found it named in
 * the link line of the one the agent is in. The link words are checked
 * before the reach hook sees them: generation is the one after the agent's,
 * slots a power of two in range, meta_addr 8-byte aligned. */
struct ycq_next {
	uint32_t generation; /* link_next */
	uint32_t slots;      /* link_slots */
	uint64_t meta_addr;  /* link_meta_addr, in the agent's address space */
	uint64_t data_addr;  /* link_data_addr */
	uint64_t meta_size;  /* YCQ_META_SIZE(slots): what the agent needs at meta_addr */
	uint64_t data_size;  /* slots times the slot size: what it needs at data_addr */
	/* Set by the reach hook: where the regions are here, and how many
	 * bytes from there the agent may touch. The header found at meta
	 * decides how much it does touch, checked against these lengths. */
	void *meta;
	uint64_t meta_len;
	void *data;
	uint64_t data_len;
	/* Set by a producer's follow: consumers slept on the items line of
	 * the generation it left, and were woken (ops.wake called). */
	int woke;
};

/* The porting hook for following resizes: how the agent reaches memory by
 * the addresses a link line holds. */
struct ycq_reach_ops {
	/* Map, pin or look up the regions next names and set next->meta,
	 * meta_len, data and data_len; return 0. Anything else: out of reach,
	 * and the follow fails with YCQ_EFAULT, the agent where it was (err_off
	 * YCQ_OFF_LINK_META_ADDR if the hook left next->meta NULL, else
	 * YCQ_OFF_LINK_DATA_ADDR). Called at most once a follow, only with a
	 * link that passed its checks. */
	int (*reach)(void *ctx, struct ycq_next *next);
	void *ctx;
};

/* A reach hook for a flat window of the agent's address space: addresses
 * addr to addr + len - 1 are the bytes at base. Pass the window as ctx.
 * An address outside the window is out of reach; one inside it reaches up
 * to the window's end. */
struct ycq_window {
	uint64_t addr;
	uint8_t *base;
	uint64_t len;
};
int ycq_reach_window(void *window, struct ycq_next *next);

/* What the producer and the consumer share. The caller may read slots,
 * slot_size, gen, err_off, err_value and err_next; the rest is
 * ycq_ring.c's. */
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
	uint32_t err_next;        /* 1: err_off is in the next generation's metadata (a follow refused its header) */
	uint32_t gen;             /* the generation, read at attach: 0 for a queue that is not resizable */
	uint32_t held;            /* slots (producer) or records (consumer) reserved and not yet finished */
	uint8_t follows;          /* attached with *_attach_resizable */
	uint8_t sealed;           /* producer: this generation's cursor carries YCQ_SEALED */
	struct ycq_reach_ops reach;
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
	uint32_t gen; /* the generation it was reserved in: a run of another one is refused */
};

/* Slots a producer reserved: positions start to start + n - 1. Write each
 * in place, then publish or abort it once, in any order. */
struct ycq_write_run {
	uint64_t start;
	uint32_t n;
	uint32_t gen; /* the generation it was reserved in: a run of another one is refused */
};

/* Attach checks the queue in meta (meta_len bytes the agent may touch,
 * 8-byte aligned) and data (data_len bytes) as LAYOUT.md lists, requires
 * SINGLE_CONSUMER (SINGLE_PRODUCER for a producer), reads the agent's line
 * once, and keeps the geometry. ops may be NULL (never sleep, never
 * signal). A refused header gives YCQ_EINCOMPATIBLE or YCQ_ECORRUPT with
 * the field's offset in err_off; regions too small or misaligned,
 * YCQ_EINVAL. A RESIZABLE queue is refused (YCQ_EINCOMPATIBLE, at
 * features): see *_attach_resizable. Nothing is written to the metadata. */
int ycq_consumer_attach(struct ycq_consumer *c, void *meta, uint64_t meta_len,
                        void *data, uint64_t data_len, const struct ycq_wake_ops *ops);
int ycq_producer_attach(struct ycq_producer *p, void *meta, uint64_t meta_len,
                        void *data, uint64_t data_len, const struct ycq_wake_ops *ops);

/* Attach as above to a queue that may be RESIZABLE, following its resizes
 * (Go's want.Resizable): reach, which must not be NULL, is how the follows
 * reach the generations a link names. A queue that is not resizable is
 * attached as by ycq_*_attach (gen 0), and the follows do nothing. A
 * RESIZABLE header must carry a generation other than 0. A producer that
 * finds its generation's cursor already sealed (a reset in the middle of a
 * switch) takes the position without the bit, reserves nothing there
 * (YCQ_EFULL, not counted) and moves on at its next follow without storing
 * the cursor again. */
int ycq_consumer_attach_resizable(struct ycq_consumer *c, void *meta, uint64_t meta_len,
                                  void *data, uint64_t data_len, const struct ycq_wake_ops *ops,
                                  const struct ycq_reach_ops *reach);
int ycq_producer_attach_resizable(struct ycq_producer *p, void *meta, uint64_t meta_len,
                                  void *data, uint64_t data_len, const struct ycq_wake_ops *ops,
                                  const struct ycq_reach_ops *reach);

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
 * reserve returned. An agent that follows resizes does not wait when a
 * follow is due: a consumer whose generation is sealed, a producer whose
 * generation names the next one or is sealed. YCQ_EEMPTY (YCQ_EFULL) means: woken, or not slept at
 * all; call again, or reserve. The consumer sleeps on the items line, the
 * producer on the space line. */
int ycq_consumer_sleep(struct ycq_consumer *c, uint32_t n, int mode, struct ycq_read_run *r);
int ycq_producer_sleep(struct ycq_producer *p, uint32_t n, int mode, struct ycq_write_run *w);

/* Following resizes (LAYOUT.md, "Resizing"). Each returns YCQ_MOVED when
 * the agent moved to the next generation (next says which, and where),
 * YCQ_OK when there is nothing to follow yet, or a negative code, the
 * agent staying where it was with nothing sealed or left: YCQ_ECORRUPT for
 * a link or a next header no correct owner writes (counted in this
 * generation's *_corrupt), YCQ_EINCOMPATIBLE for a next header this agent
 * cannot drive or that disagrees with the link, YCQ_EFAULT for regions out
 * of reach, YCQ_EBUSY while the agent holds slots here. After a move the
 * agent's runs of the generation it left are refused (YCQ_EINVAL): follow
 * between batches.
 *
 * The producer calls it once a batch, before reserving: one load of
 * link_next while nothing is named. Once the next generation is named and
 * attached, it seals this one (a store of its cursor with YCQ_SEALED),
 * fences, pays the wakes it owes here and wakes this generation's
 * sleeping consumers, then moves on. Records it published here stay for
 * consumers to drain.
 *
 * The consumer calls it when a reserve finds nothing: one load of the
 * producer cursor while the generation is not sealed. Sealed, and the
 * consumer at its final position (drained), it reads the link, attaches
 * there, pays the wakes it owes here, stores link_left = link_next (its
 * last access to this generation, which the owner may then take back) and
 * moves on. A sealed generation that names no next one, or a final
 * position behind the consumer's, is YCQ_ECORRUPT. */
int ycq_producer_follow(struct ycq_producer *p, struct ycq_next *next);
int ycq_consumer_follow(struct ycq_consumer *c, struct ycq_next *next);
/* 1 if the consumer has taken everything its generation will hold (sealed,
 * and the consumer at its final position), 0 if not (or the agent does not
 * follow resizes), YCQ_ECORRUPT for a final position behind it. */
int ycq_consumer_drained(struct ycq_consumer *c);

/* A short name for a return code. */
const char *ycq_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* YCQ_AGENT_H */
