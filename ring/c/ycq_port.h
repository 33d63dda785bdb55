/* ycq_port.h: what ycq_ring.c needs from the platform, as macros a port
 * may define before this file is read (with -D, or in a header named by
 * YCQ_PORT_HEADER). README.md says what each must guarantee.
 *
 * The defaults are GCC/Clang __atomic builtins, which compile to plain
 * loads and stores on x86, to ldar/stlr on ARMv8 and to the right barriers
 * elsewhere. Everything ycq_ring.c does to shared memory goes through the
 * macros below and nothing else: no compare-and-swap, no locked
 * read-modify-write, only ordered loads and stores and one full fence. */
#ifndef YCQ_PORT_H
#define YCQ_PORT_H

#ifdef YCQ_PORT_HEADER
#include YCQ_PORT_HEADER
#endif

#include <stdint.h>

/* One naturally aligned 32-bit load with acquire order: no later load or
 * store of this agent is performed before it. p is a uint32_t pointer into
 * the metadata region. */
#ifndef YCQ_LOAD_ACQUIRE32
#define YCQ_LOAD_ACQUIRE32(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#endif

/* One naturally aligned 32-bit store with release order: every earlier
 * load and store of this agent (the payload written or read, the stamps
 * before it) is performed before it. */
#ifndef YCQ_STORE_RELEASE32
#define YCQ_STORE_RELEASE32(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#endif

/* A full barrier: every earlier store is visible to other agents before any
 * later load is performed. Only the wake protocol needs it (a waker between
 * its publish or release and its load of the waiters word; a sleeper
 * between registering and looking once more). */
#ifndef YCQ_FENCE
#define YCQ_FENCE() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif

/* 64-bit words (the cursor and the counters of the agent's own line).
 * YCQ_PORT_SPLIT64=1 accesses each as two 32-bit words, low half first, for
 * a platform without single-copy-atomic 64-bit loads and stores (Cortex-M,
 * RV32, a 32-bit DMA engine): the descriptors, the only words the other
 * side relies on, are 32-bit accesses either way. The default is 1 where the
 * compiler says 64-bit atomics are not lock-free. */
#ifndef YCQ_PORT_SPLIT64
#if defined(__GCC_ATOMIC_LLONG_LOCK_FREE) && __GCC_ATOMIC_LLONG_LOCK_FREE == 2
#define YCQ_PORT_SPLIT64 0
#else
#define YCQ_PORT_SPLIT64 1
#endif
#endif

#if !YCQ_PORT_SPLIT64
#ifndef YCQ_LOAD_ACQUIRE64
#define YCQ_LOAD_ACQUIRE64(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#endif
#ifndef YCQ_STORE_RELEASE64
#define YCQ_STORE_RELEASE64(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#endif
#endif

/* Byte order. The layout is little-endian; a big-endian port converts each
 * word it loads (YCQ_LE32 from the layout's order to the CPU's) and each
 * word it stores (the same swap). The default follows __BYTE_ORDER__. */
#ifndef YCQ_PORT_BIG_ENDIAN
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define YCQ_PORT_BIG_ENDIAN 1
#else
#define YCQ_PORT_BIG_ENDIAN 0
#endif
#endif

#endif /* YCQ_PORT_H */
