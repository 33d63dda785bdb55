/* ports/armv6m.h: a port of ycq_ring.c to ARMv6-M (Cortex-M0, M0+, M1),
 * an example for README.md. Build with -DYCQ_PORT_HEADER='"ports/armv6m.h"'.
 *
 * ARMv6-M has no exclusive loads and stores, so the compiler's __atomic
 * builtins become calls to a library the firmware may not have. ycq_ring.c
 * needs no read-modify-write, though: an aligned 32-bit load or store is
 * single-copy atomic on this core, and a DMB orders it against the
 * agent's other accesses, as seen by other bus masters (the host over
 * PCIe, a DMA engine). Memory shared with the host must be mapped as
 * Device or Normal non-cacheable, or kept coherent by the platform. */
#ifndef YCQ_PORT_ARMV6M_H
#define YCQ_PORT_ARMV6M_H

#include <stdint.h>

#define YCQ_ARMV6M_DMB() __asm__ __volatile__("dmb" ::: "memory")

/* Acquire: the load, then a barrier before anything later. */
static inline uint32_t ycq_armv6m_load_acquire32(const uint32_t *p)
{
	uint32_t v = *(const volatile uint32_t *)p;
	YCQ_ARMV6M_DMB();
	return v;
}

/* Release: a barrier after everything earlier, then the store. */
static inline void ycq_armv6m_store_release32(uint32_t *p, uint32_t v)
{
	YCQ_ARMV6M_DMB();
	*(volatile uint32_t *)p = v;
}

#define YCQ_LOAD_ACQUIRE32(p)     ycq_armv6m_load_acquire32(p)
#define YCQ_STORE_RELEASE32(p, v) ycq_armv6m_store_release32((p), (v))
#define YCQ_FENCE()               YCQ_ARMV6M_DMB()
#ifndef YCQ_PORT_SPLIT64
#define YCQ_PORT_SPLIT64          1 /* no 64-bit single-copy atomic access */
#endif

#endif /* YCQ_PORT_ARMV6M_H */
