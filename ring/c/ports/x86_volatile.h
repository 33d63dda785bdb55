/* ports/x86_volatile.h: a port of ycq_ring.c to x86 without the __atomic
 * builtins, an example for README.md that also runs on a development host:
 *   YCQ_CREF_CFLAGS='-DYCQ_PORT_HEADER="ports/x86_volatile.h"' \
 *       go test ./ring -run 'TestCRef|TestGolden'
 *
 * x86 keeps loads in order with loads and stores in order with stores, and
 * a load is never performed before an earlier load or store, so acquire
 * and release need only keep the compiler from moving accesses: a volatile
 * access between compiler barriers. The one reordering x86 does, a later
 * load passing an earlier store, is what YCQ_FENCE must forbid: MFENCE. */
#ifndef YCQ_PORT_X86_VOLATILE_H
#define YCQ_PORT_X86_VOLATILE_H

#include <stdint.h>

#define YCQ_X86_COMPILER_BARRIER() __asm__ __volatile__("" ::: "memory")

static inline uint32_t ycq_x86_load_acquire32(const uint32_t *p)
{
	uint32_t v = *(const volatile uint32_t *)p;
	YCQ_X86_COMPILER_BARRIER();
	return v;
}

static inline void ycq_x86_store_release32(uint32_t *p, uint32_t v)
{
	YCQ_X86_COMPILER_BARRIER();
	*(volatile uint32_t *)p = v;
}

#define YCQ_LOAD_ACQUIRE32(p)     ycq_x86_load_acquire32(p)
#define YCQ_STORE_RELEASE32(p, v) ycq_x86_store_release32((p), (v))
#define YCQ_FENCE()               __asm__ __volatile__("mfence" ::: "memory")

#ifndef YCQ_PORT_SPLIT64
#if defined(__x86_64__)
#define YCQ_PORT_SPLIT64 0
#else
#define YCQ_PORT_SPLIT64 1 /* on i386 a volatile 8-byte access is two 4-byte moves */
#endif
#endif
#if !YCQ_PORT_SPLIT64
/* An aligned 8-byte mov is single-copy atomic on x86-64. */
static inline uint64_t ycq_x86_load_acquire64(const uint64_t *p)
{
	uint64_t v = *(const volatile uint64_t *)p;
	YCQ_X86_COMPILER_BARRIER();
	return v;
}

static inline void ycq_x86_store_release64(uint64_t *p, uint64_t v)
{
	YCQ_X86_COMPILER_BARRIER();
	*(volatile uint64_t *)p = v;
}

#define YCQ_LOAD_ACQUIRE64(p)     ycq_x86_load_acquire64(p)
#define YCQ_STORE_RELEASE64(p, v) ycq_x86_store_release64((p), (v))
#endif

#endif /* YCQ_PORT_X86_VOLATILE_H */
