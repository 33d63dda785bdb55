package ring

import (
	"math/bits"
	"unsafe"
)

// PrefetchRead asks the CPU to start loading the cache line at b[i*stride]
// for each i below n, as DPDK's rte_prefetch0 does, so that a batch's
// misses (lines another CPU or a device wrote) overlap instead of each
// stalling in turn. It is a hint: it never faults and changes nothing a
// program can observe. Blocks past the end of b are left out.
func PrefetchRead(b []byte, n, stride int) {
	if n = prefetchCount(b, n, stride); n > 0 {
		prefetchLines(unsafe.Pointer(unsafe.SliceData(b)), n, stride, false)
	}
}

// PrefetchWrite is PrefetchRead for lines about to be written: the CPU
// fetches them to own (PREFETCHW), so the stores that follow need no
// second trip to take the line from the CPU that read it last.
func PrefetchWrite(b []byte, n, stride int) {
	if n = prefetchCount(b, n, stride); n > 0 {
		prefetchLines(unsafe.Pointer(unsafe.SliceData(b)), n, stride, true)
	}
}

// prefetchCount is how many of the n blocks of stride bytes start inside b.
func prefetchCount(b []byte, n, stride int) int {
	if n <= 0 || len(b) == 0 {
		return 0
	}
	if stride <= 0 {
		return 1
	}
	return min(n, (len(b)+stride-1)/stride)
}

// Prefetcher is a Memory that can start loading its lines ahead of use
// (PrefetchRead, PrefetchWrite at the address a): an agent's Prefetch asks
// it for the descriptors of its next batch. Memory that cannot (reached by
// messages, a BAR behind a trap) need not implement it.
type Prefetcher interface {
	Prefetch(a uint64, n, stride int, write bool)
}

// prefetchDescs asks m, if it is a Prefetcher, for the descriptor lines of
// the n positions from p, in two parts where they wrap.
func (a *agent) prefetchDescs(p uint64, n int, write bool) {
	pf, ok := a.m.(Prefetcher)
	if !ok || n <= 0 {
		return
	}
	n = min(n, int(a.slots))
	first := min(n, int(a.slots-p&(a.slots-1)))
	pf.Prefetch(a.descAddr(p), descLines(first), 64, write)
	if n > first {
		pf.Prefetch(a.descAddr(0), descLines(n-first), 64, write)
	}
}

// descLines is how many 64-byte lines n descriptors from a line's start
// take; a run starting inside a line may touch one more, which the next
// batch's prefetch or the hardware takes care of.
func descLines(n int) int { return (n*DescSize + 63) / 64 }

// Prefetch starts loading, to own, the descriptors of the consumer's next
// n positions, when its Memory is a Prefetcher: call it before a batch of
// Peek and Release, so the batch's descriptor misses overlap.
func (c *AgentConsumer) Prefetch(n int) { c.prefetchDescs(c.pos, n, true) }

// Prefetch starts loading, to own, the descriptors of the producer's next
// n positions, as AgentConsumer.Prefetch does, before a batch of Free and
// Publish.
func (p *AgentProducer) Prefetch(n int) { p.prefetchDescs(p.pos, n, true) }

// Prefetch starts loading the first line of every slot of the run, so the
// records' misses overlap rather than each stalling the loop that reads
// them in turn (lines a producer on another CPU, or a device, wrote).
func (r *ReadRun) Prefetch() {
	if r.q != nil {
		r.q.prefetchSlots(r.start, r.n+bits.OnesCount64(r.holes), false)
	}
}

// Prefetch starts fetching, to own, the first line of every slot of the
// run, before the producer fills them: each was last read by a consumer,
// perhaps on another CPU, and the stores would otherwise wait for them one
// after another.
func (w *WriteRun) Prefetch() {
	if w.q != nil {
		w.q.prefetchSlots(w.start, w.n, true)
	}
}

// prefetchSlots prefetches the first line of the n slots from position p.
func (q *Queue) prefetchSlots(p uint64, n int, write bool) {
	PrefetchSlots(q.data, p, q.slotSize, n, write)
}

// PrefetchSlots starts loading the first line of each of the n slots from
// position p of a queue whose data region is data, in slots of size bytes
// (its slot count, len(data)/size, a power of two), in two parts where
// they wrap: PrefetchWrite's fetch to own with write, PrefetchRead's
// otherwise. For an agent that reaches the payload directly.
func PrefetchSlots(data []byte, p uint64, size, n int, write bool) {
	if size <= 0 {
		return
	}
	slots := len(data) / size
	if slots == 0 || n <= 0 {
		return
	}
	n = min(n, slots)
	at := int(p & uint64(slots-1))
	first := min(n, slots-at)
	pf := PrefetchRead
	if write {
		pf = PrefetchWrite
	}
	pf(data[at*size:], first, size)
	if n > first {
		pf(data, n-first, size)
	}
}
