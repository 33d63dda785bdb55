// Package ring is the YCQueue: a lock-free, zero-copy, multi-producer,
// multi-consumer circular queue laid out in two regions the caller supplies.
//
//	metadata region (Format/Attach validate it; never holds payload)
//	+--------+----------+----------+-------+-------+------+-----------------+
//	| header | producer | consumer | items | space | link | descriptors     |
//	| line   | cursor + | cursor + | wake  | wake  | line | 8 bytes a slot: |
//	|        | counters | counters | line  | line  |      | stamp, info     |
//	+--------+----------+----------+-------+-------+------+-----------------+
//	0        64         128        192     256     320    384
//
//	data region (payload only; no queue state)
//	+-----------+-----------+-----------+-----+---------------+
//	| slot 0    | slot 1    | slot 2    | ... | slot N-1      |
//	+-----------+-----------+-----------+-----+---------------+
//	each slot is SlotSize bytes; slot i starts at i*SlotSize
//
// The regions may be Go memory, an anonymous or memfd mapping shared with
// another process, or a device BAR; the queue never allocates them and never
// assumes how they are backed. LAYOUT.md specifies the metadata byte for
// byte, with the protocol a firmware author needs to implement either side;
// ycq_ring.h is the same layout for C.
//
// # Use
//
// Producers Reserve a run of consecutive slots, write each payload in place
// (WriteRun.Slot), and Publish each slot with its length, in any order, or
// Abort it. Consumers Reserve a run of published records, read them in place
// (ReadRun.Slot), and Release each, in any order. Reserve is all-or-nothing;
// ReserveUpTo takes as many as are ready. ErrFull and ErrEmpty mean "try
// again"; the core never blocks and never sleeps. Typed views a queue whose
// records are values of one plain type. A Resizable is a queue whose slot
// count changes while producers and consumers run, in one process (Resize)
// or across processes over shared regions (ResizeTo and Add).
//
// A goroutine that moves one record at a time through shared sides can
// take its slots or records from a CachedProducer or CachedConsumer, which
// reserve up to n at a time (one compare-and-swap of the shared cursor for
// n records) and hand them out one by one; records are still published and
// released one at a time. What a cache holds and has not handed out is
// reserved, so it is Flushed before its goroutine pauses.
//
// # Concurrency
//
// A Queue may be shared by any number of goroutines, and its regions by any
// number of processes or devices, unless the header records a single
// producer or a single consumer (Config.SingleProducer, SingleConsumer): then
// exactly one agent at a time may drive that side. A WriteRun or ReadRun may
// be handed between goroutines, but each of its slots must be finished
// (published, aborted or released) exactly once. Nothing on the reserve,
// publish or release path takes a lock or allocates.
//
// # Invariants
//
// Positions count every slot ever reserved; slot = position mod N. Each slot
// has a 32-bit stamp, compared modulo 2^32:
//
//   - stamp == p: the slot is free for position p (or reserved at p and not
//     yet published; the producer cursor tells which).
//   - stamp == p+1: the record at position p is published (or aborted, with
//     FlagAborted in its info word) and not yet released.
//   - stamp == p+N: released; free for position p+N.
//
// A producer takes position p only if it reads stamp p; a consumer only if
// it reads stamp p+1. Each side's cursor is moved with compare-and-swap (or
// a plain store for a single agent), so each position has one owner at a
// time. Publish stores stamp p+1 with release ordering after the payload is
// written and pairs with the consumer's acquire load of the stamp; Release
// stores p+N after the payload was read and pairs with the producer's load.
// Stamps and cursors are read as untrusted input: a value no correct agent
// could have written gives a *CorruptError (counted in the metadata), never
// a panic, an out-of-bounds access or an unbounded spin. The geometry is read
// once, validated, and kept in the Queue, so a rewritten header cannot steer
// an access outside the regions. Garbage in the data region changes payload
// only.
//
// # Agents outside this process
//
// A single agent that reaches the metadata by word loads and stores rather
// than as a Go slice (a device through its DMA window, memory behind a BAR)
// uses AttachConsumer or AttachProducer over a Memory: the same rules,
// with a private cursor stored once a batch (Sync). ReadHeader checks a
// header as Attach does. Package devicemodel's ycq device is such an agent.
package ring
