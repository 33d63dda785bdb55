package ring

import (
	"fmt"
	"math"
	"math/bits"
)

// Config describes a queue for Format.
type Config struct {
	// Slots is the number of slots: a power of two in [MinSlots, MaxSlots].
	Slots int
	// SlotSize is the payload capacity of each slot in bytes: a multiple of
	// 8 in [8, MaxSlotSize].
	SlotSize int
	// SingleProducer records that exactly one agent produces; it then
	// advances the producer cursor with plain stores.
	SingleProducer bool
	// SingleConsumer records that exactly one agent consumes.
	SingleConsumer bool
	// Resizable makes the queue generation Generation (1 if 0) of a
	// resizable queue (FeatureResizable); a Resizable drives it.
	Resizable  bool
	Generation uint32
}

// MetaSize is the number of metadata bytes the queue needs.
func (c Config) MetaSize() int { return MetaSize(c.Slots) }

// DataSize is the number of data bytes the queue needs.
func (c Config) DataSize() int { return c.Slots * c.SlotSize }

func (c Config) features() uint32 {
	var f uint32
	if c.SingleProducer {
		f |= FeatureSingleProducer
	}
	if c.SingleConsumer {
		f |= FeatureSingleConsumer
	}
	if c.Resizable {
		f |= FeatureResizable
	}
	return f
}

// generation is the header's generation word: 0 for a queue that is not
// resizable.
func (c Config) generation() uint32 {
	if !c.Resizable {
		return 0
	}
	return max(c.Generation, 1)
}

// Validate reports whether the configuration describes a valid queue.
func (c Config) Validate() error {
	if c.Slots < MinSlots || c.Slots > MaxSlots || bits.OnesCount(uint(c.Slots)) != 1 {
		return invalidf("slots %d: want a power of two in [%d, %d]", c.Slots, MinSlots, MaxSlots)
	}
	if c.SlotSize < slotAlign || c.SlotSize > MaxSlotSize || c.SlotSize%slotAlign != 0 {
		return invalidf("slot size %d: want a multiple of %d in [%d, %d]", c.SlotSize, slotAlign, slotAlign, MaxSlotSize)
	}
	if uint64(c.Slots)*uint64(c.SlotSize) > math.MaxInt {
		return invalidf("%d slots of %d bytes do not fit in this address space", c.Slots, c.SlotSize)
	}
	if c.Generation != 0 && !c.Resizable {
		return invalidf("generation %d of a queue that is not resizable", c.Generation)
	}
	return nil
}

// Queue is a handle on a queue laid out in two caller-supplied regions. It
// holds the geometry it validated when it was made and never re-reads it
// from shared memory, so a peer that rewrites the header cannot steer it out
// of bounds. A Queue is safe for use by many goroutines, within the limits
// the SingleProducer and SingleConsumer features set.
type Queue struct {
	m        metaView
	data     []byte
	slots    uint64 // N
	mask     uint64 // N-1
	negSlots uint32 // -N modulo 2^32
	slotSize int
	features uint32
	// gen is 0 for a queue, and its generation (from 1) for one of a
	// Resizable's, whose producer cursor may carry the sealed bit (in any
	// other queue that bit is corruption). It fills the word features
	// leaves: a Queue stays 128 bytes, a size class the allocator aligns
	// to a cache line (TestQueueSize).
	gen uint32
}

// Format lays a new, empty queue out in meta and data and returns a handle
// on it. meta must hold at least cfg.MetaSize() bytes and start on an 8-byte
// boundary; data must hold at least cfg.DataSize() bytes. Format must finish
// before any other agent attaches: it writes the magic word last.
func Format(meta, data []byte, cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkRegions(meta, data, cfg.MetaSize(), cfg.DataSize()); err != nil {
		return nil, err
	}
	q := newQueue(meta, data, cfg)
	h := q.m.hdr
	h.magic.Store(0)
	clear(meta[OffVersion:cfg.MetaSize()])
	h.version.Store(Version)
	h.features.Store(cfg.features())
	h.descOffset.Store(OffDescs)
	h.slots.Store(uint32(cfg.Slots))
	h.slotSize.Store(uint32(cfg.SlotSize))
	h.metaSize.Store(uint64(cfg.MetaSize()))
	h.dataSize.Store(uint64(cfg.DataSize()))
	h.descSize.Store(DescSize)
	h.generation.Store(cfg.generation())
	for i := range q.m.descs {
		q.m.descs[i].word.Store(packDesc(uint32(i), 0, 0))
	}
	h.magic.Store(Magic)
	return q, nil
}

// Attach returns a handle on a queue that another agent (a process, a
// device, firmware) laid out, after checking its header: magic, version,
// feature bits, descriptor geometry, slot count and size, and that both
// regions are large enough. A header it refuses gives a *HeaderError.
func Attach(meta, data []byte) (*Queue, error) {
	if !hostLittleEndian() {
		return nil, fmt.Errorf("%w: this host is big-endian; the layout is little-endian", ErrIncompatible)
	}
	if len(meta) < lineSize {
		return nil, invalidf("metadata region of %d bytes: shorter than the %d-byte header", len(meta), lineSize)
	}
	if !aligned(meta, 8) {
		return nil, invalidf("metadata region does not start on an 8-byte boundary")
	}
	h := viewHeader(meta)
	cfg, err := headerWords{
		magic: uint64(h.magic.Load()), version: uint64(h.version.Load()), features: uint64(h.features.Load()),
		descOffset: uint64(h.descOffset.Load()), descSize: uint64(h.descSize.Load()),
		slots: uint64(h.slots.Load()), slotSize: uint64(h.slotSize.Load()),
		metaSize: h.metaSize.Load(), dataSize: h.dataSize.Load(), generation: uint64(h.generation.Load()),
	}.check()
	if err != nil {
		return nil, err
	}
	if err := checkRegions(meta, data, cfg.MetaSize(), cfg.DataSize()); err != nil {
		return nil, err
	}
	return newQueue(meta, data, cfg), nil
}

func checkRegions(meta, data []byte, metaSize, dataSize int) error {
	if !hostLittleEndian() {
		return fmt.Errorf("%w: this host is big-endian; the layout is little-endian", ErrIncompatible)
	}
	if len(meta) < metaSize {
		return invalidf("metadata region of %d bytes: the queue needs %d", len(meta), metaSize)
	}
	if !aligned(meta, 8) {
		return invalidf("metadata region does not start on an 8-byte boundary")
	}
	if len(data) < dataSize {
		return invalidf("data region of %d bytes: the queue needs %d", len(data), dataSize)
	}
	return nil
}

func newQueue(meta, data []byte, cfg Config) *Queue {
	return &Queue{
		m:        view(meta, cfg.Slots),
		data:     data[:cfg.DataSize():cfg.DataSize()],
		slots:    uint64(cfg.Slots),
		mask:     uint64(cfg.Slots - 1),
		negSlots: -uint32(cfg.Slots),
		slotSize: cfg.SlotSize,
		features: cfg.features(),
		gen:      cfg.generation(),
	}
}

// New allocates both regions on the Go heap (metadata 64-byte aligned) and
// formats a queue in them: the simplest way to get a queue used only inside
// one process.
func New(cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return Format(AlignedBytes(cfg.MetaSize()), make([]byte, cfg.DataSize()), cfg)
}

// AlignedBytes returns n zeroed bytes on the Go heap starting on a 64-byte
// boundary.
func AlignedBytes(n int) []byte {
	b := make([]byte, n+lineSize)
	for off := 0; off < lineSize; off++ {
		if aligned(b[off:], lineSize) {
			return b[off : off+n : off+n]
		}
	}
	panic("unreachable")
}

// Config returns the geometry and features the queue was made or attached
// with.
func (q *Queue) Config() Config {
	return Config{
		Slots:          int(q.slots),
		SlotSize:       q.slotSize,
		SingleProducer: q.singleProducer(),
		SingleConsumer: q.singleConsumer(),
		Resizable:      q.gen != 0,
		Generation:     q.gen,
	}
}

// prodCursor is the producer cursor as a position: in a generation of a
// Resizable without the sealed bit (Sealed says whether it is set).
func (q *Queue) prodCursor() uint64 {
	c := q.m.prod.cursor.Load()
	if q.gen != 0 {
		c &^= sealed
	}
	return c
}

// Sealed reports whether the queue is a generation of a Resizable that a
// resize has sealed: no producer reserves in it any more.
func (q *Queue) Sealed() bool { return q.gen != 0 && q.m.prod.cursor.Load()&sealed != 0 }

func (q *Queue) singleProducer() bool { return q.features&FeatureSingleProducer != 0 }
func (q *Queue) singleConsumer() bool { return q.features&FeatureSingleConsumer != 0 }

// slot returns the whole payload area of the slot at position p.
func (q *Queue) slot(p uint64) []byte {
	off := int(p&q.mask) * q.slotSize
	return q.data[off : off+q.slotSize : off+q.slotSize]
}

// Stats is a snapshot of the counters and cursors in the metadata region.
// The words are read one at a time while the queue runs, and a peer may
// write anything there, so treat them as a monitoring view, not as truth.
type Stats struct {
	ProducerCursor uint64 // next position producers reserve
	ConsumerCursor uint64 // next position consumers reserve

	Reserved        uint64 // slots reserved by producers: cursor + RolledBack
	Published       uint64 // records published: Reserved - Aborted - reserved slots not yet published
	Aborted         uint64 // slots producers aborted, as holes or rolled back
	RolledBack      uint64 // aborted slots given back by moving the cursor back
	Full            uint64 // producer reserves refused as full
	ProducerCorrupt uint64 // corruption found by producers

	Consumed        uint64 // records reserved by consumers, net of those given back: cursor - Skipped
	Returned        uint64 // records consumers gave back unread
	Released        uint64 // records released: Consumed - records consumers hold
	Skipped         uint64 // aborted slots consumers passed over
	Empty           uint64 // consumer reserves refused as empty
	ConsumerCorrupt uint64 // corruption found by consumers

	ProducerWakeSent, ProducerWakeSuppressed uint64 // wakeups producers sent to consumers, or skipped
	ConsumerWakeSent, ConsumerWakeSuppressed uint64 // wakeups consumers sent to producers, or skipped
}

// Stats reads the counters.
func (q *Queue) Stats() Stats {
	p, c := q.m.prod, q.m.cons
	st := Stats{
		ProducerCursor:         q.prodCursor(),
		ConsumerCursor:         c.cursor.Load(),
		RolledBack:             p.rolledBack.Load(),
		Returned:               c.returned.Load(),
		Aborted:                p.aborted.Load(),
		Full:                   p.full.Load(),
		ProducerCorrupt:        p.corrupt.Load(),
		Skipped:                c.skipped.Load(),
		Empty:                  c.empty.Load(),
		ConsumerCorrupt:        c.corrupt.Load(),
		ProducerWakeSent:       p.wakeSent.Load(),
		ProducerWakeSuppressed: p.wakeSuppressed.Load(),
		ConsumerWakeSent:       c.wakeSent.Load(),
		ConsumerWakeSuppressed: c.wakeSuppressed.Load(),
	}
	// Neither side keeps a counter per record: a cursor counts every
	// position its side passed, and the stamps say which of those are still
	// held, so the counts follow from them. (Counting publishes and
	// releases on the cursor lines cost a quarter of the throughput of
	// shared sides at batch 1: one more read-modify-write of a contended
	// line per record.)
	st.Reserved = st.ProducerCursor + st.RolledBack
	st.Consumed = st.ConsumerCursor - st.Skipped
	unpublished, held := q.heldSlots(st.ProducerCursor, st.ConsumerCursor)
	st.Published = st.Reserved - st.Aborted - unpublished
	st.Released = st.Consumed - held
	return st
}

// heldSlots counts, from the stamps, the slots producers reserved and have
// not yet published or aborted (positions cons to prod with stamp p), and the
// records consumers reserved and have not yet released (positions before
// cons with stamp p+1 and no flag; none is older than a lap before the
// furthest cursor, since a producer reserves p+N only once p is released).
// It reads each stamp once while the queue runs, and a peer may write
// anything, so the window is clamped to a lap each way.
func (q *Queue) heldSlots(prod, cons uint64) (unpublished, held uint64) {
	n := q.slots
	if prod > cons {
		end := cons + min(prod-cons, n)
		for p := cons; p < end; p++ {
			if uint32(q.m.descs[p&q.mask].word.Load()) == uint32(p) {
				unpublished++
			}
		}
	}
	lo := uint64(0)
	if top := max(prod, cons); top > n {
		lo = top - n
	}
	for p := lo; p < cons; p++ {
		seq, _, flags := unpackDesc(q.m.descs[p&q.mask].word.Load())
		if seq == uint32(p+1) && flags&FlagAborted == 0 {
			held++
		}
	}
	return unpublished, held
}

// Check validates the shared state as a whole, which single operations
// cannot: that the cursors are in order and at most a lap apart, and that
// every slot between them carries a stamp at or past its position. A peer
// that moves a cursor by a whole multiple of 2^32 positions passes the
// per-slot checks (stamps are 32-bit); Check finds that. It may be called
// while the queue runs, for example when a wait has lasted too long: it
// reports corruption only for a state it read twice, and returns nil if the
// queue keeps moving too fast to read a state twice. It returns nil or a
// *CorruptError.
func (q *Queue) Check() error {
	for range 64 {
		reason := q.inconsistency()
		if reason == "" {
			return nil
		}
		if q.inconsistency() == reason {
			return &CorruptError{Side: "check", Reason: reason}
		}
	}
	return nil
}

// inconsistency describes what is wrong with one reading of the shared
// state, or returns "".
func (q *Queue) inconsistency() string {
	prod, cons := q.prodCursor(), q.m.cons.cursor.Load()
	// A single agent may store its cursor late (LAYOUT.md, "When a single
	// agent stores its cursor"), by less than a lap: consumers may then be
	// ahead of a single producer's stored cursor, and producers more than
	// a lap ahead of a single consumer's.
	ahead, lap := uint64(0), q.slots
	if q.singleProducer() {
		ahead = q.slots
	}
	if q.singleConsumer() {
		lap += q.slots
	}
	if cons > prod+ahead || prod > cons && prod-cons > lap {
		return fmt.Sprintf("producer cursor %d and consumer cursor %d are not within one lap of %d", prod, cons, q.slots)
	}
	for p := cons; p < prod; p++ {
		seq := uint32(q.m.descs[p&q.mask].word.Load())
		if int32(seq-uint32(p)) < 0 {
			return fmt.Sprintf("slot %d stamp %#x: behind position %d, which a producer reserved", p&q.mask, seq, p)
		}
	}
	return ""
}

// Len returns how many positions producers have reserved that consumers
// have not yet passed: records published or being written, not yet taken.
// It reads both cursors, one after the other, while the queue runs, so
// take it as an estimate, for example to decide how long to wait. It is
// always between 0 and the slot count.
func (q *Queue) Len() int {
	cons := q.m.cons.cursor.Load()
	prod := q.prodCursor()
	if prod <= cons {
		if q.singleProducer() {
			// A single producer may store its cursor late: the stamps
			// tell what it published past it.
			return q.Ready()
		}
		return 0
	}
	return int(min(prod-cons, q.slots))
}

// Ready returns how many positions from the consumer cursor on hold
// published records (or holes), read from the stamps rather than the
// producer cursor, so it is right even when a producer stores its cursor
// late: a device may store it once for a batch, and a device that dies
// mid-batch leaves records published past it. While producers run it is an
// estimate; once they have stopped it is exact.
func (q *Queue) Ready() int {
	pos := q.m.cons.cursor.Load()
	// A single consumer may store its cursor late: pass the positions it
	// already released first (their slots carry a stamp a lap or more
	// ahead: p+N, or p+N+1 once a producer published into them again).
	for range q.slots {
		seq := q.m.descs[pos&q.mask].word.Load()
		if d := uint32(seq) - uint32(pos); d != uint32(q.slots) && d != uint32(q.slots)+1 {
			break
		}
		pos++
	}
	n := uint64(0)
	for ; n < q.slots; n++ {
		p := pos + n
		if uint32(q.m.descs[p&q.mask].word.Load()) != uint32(p+1) {
			break
		}
	}
	return int(n)
}

// Cap returns the slot count.
func (q *Queue) Cap() int { return int(q.slots) }
