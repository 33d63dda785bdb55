package ring

import (
	"fmt"
	"math/bits"
)

// This file is the single-agent side of the protocol for an agent that does
// not hold the metadata as a Go byte slice: a device that reaches it by DMA,
// or its own memory behind a BAR. LAYOUT.md describes the same rules in
// prose for firmware; a Queue follows them with atomics on the slice.
//
// Such an agent alone consumes (AgentConsumer) or alone produces
// (AgentProducer): the queue is formatted SINGLE_CONSUMER or
// SINGLE_PRODUCER. It keeps its cursor privately and stores it into the
// metadata when it syncs, once for a batch; the stamps say which slots it
// has consumed or published in the meantime, and that is what the other side
// reads. Every word it loads came from the other side and is checked:
// a stamp no correct agent writes is a *CorruptError, an access the memory
// refuses a *MemoryError.
//
// Attached with want.Resizable, an agent follows the resizes of a
// RESIZABLE queue (LAYOUT.md, "Resizing"): a producer calls Follow once a
// batch, a consumer when Peek finds nothing; each moves itself to the
// generation the link line names, through memory the caller's Reach gives
// (a device pins it), and the caller switches to the Next data region.

// Memory is the metadata of one queue as an agent reaches it: word loads and
// stores at byte addresses in the agent's own address space (an IOVA, an
// offset in a BAR). The metadata region starts at a base address the agent
// was given. Each access is one naturally aligned load (with acquire order)
// or store (with release order) and may fail, for example on a DMA fault.
type Memory interface {
	Load32(addr uint64) (uint32, error)
	Store32(addr uint64, v uint32) error
	Load64(addr uint64) (uint64, error)
	Store64(addr uint64, v uint64) error
}

// MemoryError is an access that Memory refused.
type MemoryError struct {
	Addr uint64 // the address of the word
	Err  error  // what the memory said
}

func (e *MemoryError) Error() string { return fmt.Sprintf("ring: access at %#x: %v", e.Addr, e.Err) }

func (e *MemoryError) Unwrap() error { return e.Err }

// ReadHeader reads the header of the queue whose metadata starts at base in
// m, checks it as Attach does (magic, version, required features,
// descriptor geometry, slot count and size, region sizes), and returns the
// queue's geometry and features. A header it refuses gives a *HeaderError
// whose Off names the field; a failed access a *MemoryError.
func ReadHeader(m Memory, base uint64) (Config, error) {
	var failed error
	load32 := func(off uint64) uint64 {
		v, err := m.Load32(base + off)
		if err != nil && failed == nil {
			failed = &MemoryError{Addr: base + off, Err: err}
		}
		return uint64(v)
	}
	load64 := func(off uint64) uint64 {
		v, err := m.Load64(base + off)
		if err != nil && failed == nil {
			failed = &MemoryError{Addr: base + off, Err: err}
		}
		return v
	}
	h := headerWords{
		magic: load32(OffMagic), version: load32(OffVersion), features: load32(OffFeatures),
		descOffset: load32(OffDescOffset), descSize: load32(OffDescSize),
		slots: load32(OffSlots), slotSize: load32(OffSlotSize),
		metaSize: load64(OffMetaSize), dataSize: load64(OffDataSize), generation: load32(OffGeneration),
	}
	if failed != nil {
		return Config{}, failed
	}
	return h.check()
}

// headerWords are the header fields as read, before any check.
type headerWords struct {
	magic, version, features, descOffset, descSize, slots, slotSize uint64
	metaSize, dataSize, generation                                  uint64
}

// check validates a header as read and returns the queue it describes: the
// one set of header rules, for Attach and for ReadHeader.
func (h headerWords) check() (Config, error) {
	bad := func(field string, off, v uint64, err error, format string, args ...any) error {
		return &HeaderError{Field: field, Off: off, Value: v, Reason: fmt.Sprintf(format, args...), Err: err}
	}
	if h.magic != Magic {
		return Config{}, bad("magic", OffMagic, h.magic, ErrIncompatible, "want %#x (\"YCQ1\"): not a ycq queue, or not formatted yet", Magic)
	}
	if h.version != Version {
		return Config{}, bad("version", OffVersion, h.version, ErrIncompatible, "this package drives layout version %d", Version)
	}
	features := uint32(h.features)
	if unknown := features & FeaturesIncompatMask &^ featuresKnown; unknown != 0 {
		return Config{}, bad("features", OffFeatures, h.features, ErrIncompatible, "unknown required feature bits %#x", unknown)
	}
	if h.descOffset != OffDescs {
		return Config{}, bad("desc_offset", OffDescOffset, h.descOffset, ErrCorrupt, "want %d", OffDescs)
	}
	if h.descSize != DescSize {
		return Config{}, bad("desc_size", OffDescSize, h.descSize, ErrCorrupt, "want %d", DescSize)
	}
	cfg := Config{
		Slots:          int(h.slots),
		SlotSize:       int(h.slotSize),
		SingleProducer: features&FeatureSingleProducer != 0,
		SingleConsumer: features&FeatureSingleConsumer != 0,
		Resizable:      features&FeatureResizable != 0,
		Generation:     uint32(h.generation),
	}
	if cfg.Resizable && h.generation == 0 {
		return Config{}, bad("generation", OffGeneration, h.generation, ErrCorrupt, "a resizable queue's generation counts from 1")
	}
	if !cfg.Resizable {
		cfg.Generation = 0 // ignored on read
	}
	if n := cfg.Slots; n < MinSlots || n > MaxSlots || bits.OnesCount(uint(n)) != 1 {
		return Config{}, bad("slots", OffSlots, uint64(n), ErrCorrupt, "want a power of two in [%d, %d]", MinSlots, MaxSlots)
	}
	if s := cfg.SlotSize; s < slotAlign || s > MaxSlotSize || s%slotAlign != 0 {
		return Config{}, bad("slot_size", OffSlotSize, uint64(s), ErrCorrupt, "want a multiple of %d in [%d, %d]", slotAlign, slotAlign, MaxSlotSize)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, bad("data_size", OffDataSize, h.dataSize, ErrCorrupt, "%v", err)
	}
	if h.metaSize != uint64(cfg.MetaSize()) {
		return Config{}, bad("meta_size", OffMetaSize, h.metaSize, ErrCorrupt, "want %d for %d slots", cfg.MetaSize(), cfg.Slots)
	}
	if h.dataSize != uint64(cfg.DataSize()) {
		return Config{}, bad("data_size", OffDataSize, h.dataSize, ErrCorrupt, "want %d (%d slots of %d bytes)", cfg.DataSize(), cfg.Slots, cfg.SlotSize)
	}
	return cfg, nil
}

// agent is what both single-agent sides share: where the metadata is, the
// geometry it was checked against, and the private cursor.
type agent struct {
	m        Memory
	base     uint64
	slots    uint64
	slotSize uint32
	pos      uint64
	// follows: attached with want.Resizable, so Follow moves to the
	// generations a resize names. gen is this generation's number (0 for
	// a queue that is not resizable, which never links).
	follows bool
	gen     uint32
}

// attachAgent reads the header at base, checks that it describes the queue
// the agent was told of (want's slot count and size) and that the agent's
// side is formatted for a single agent (feature), and reads the cursor at
// cursorOff. A resizable queue is refused unless want.Resizable says the
// agent follows resizes; want.Generation, when not 0, is the generation
// the header must carry (Follow's check of the generation it was sent to).
func attachAgent(m Memory, base uint64, want Config, feature uint32, cursorOff uint64) (agent, error) {
	if err := want.Validate(); err != nil {
		return agent{}, err
	}
	got, err := ReadHeader(m, base)
	if err != nil {
		return agent{}, err
	}
	if got.Slots != want.Slots {
		return agent{}, &HeaderError{Field: "slots", Off: OffSlots, Value: uint64(got.Slots), Reason: fmt.Sprintf("the agent was told %d", want.Slots), Err: ErrIncompatible}
	}
	if got.SlotSize != want.SlotSize {
		return agent{}, &HeaderError{Field: "slot_size", Off: OffSlotSize, Value: uint64(got.SlotSize), Reason: fmt.Sprintf("the agent was told %d", want.SlotSize), Err: ErrIncompatible}
	}
	if got.Resizable && !want.Resizable {
		return agent{}, &HeaderError{Field: "features", Off: OffFeatures, Value: uint64(got.features()),
			Reason: "a resizable queue: this agent does not follow resizes", Err: ErrIncompatible}
	}
	if want.Generation != 0 && (!got.Resizable || got.Generation != want.Generation) {
		return agent{}, &HeaderError{Field: "generation", Off: OffGeneration, Value: uint64(got.Generation),
			Reason: fmt.Sprintf("the link named generation %d of a resizable queue", want.Generation), Err: ErrCorrupt}
	}
	if got.features()&feature == 0 {
		side := "single producer"
		if feature == FeatureSingleConsumer {
			side = "single consumer"
		}
		return agent{}, &HeaderError{Field: "features", Off: OffFeatures, Value: uint64(got.features()),
			Reason: fmt.Sprintf("the queue is not formatted %s; the agent is the only one of its side", side), Err: ErrIncompatible}
	}
	a := agent{m: m, base: base, slots: uint64(want.Slots), slotSize: uint32(want.SlotSize), follows: want.Resizable, gen: got.Generation}
	if a.pos, err = a.load64(cursorOff); err != nil {
		return agent{}, err
	}
	return a, nil
}

// Pos is the agent's cursor: the position it consumes or produces next.
func (a *agent) Pos() uint64 { return a.pos }

// Cap is the generation's slot count.
func (a *agent) Cap() int { return int(a.slots) }

// SlotOffset is where the slot at the agent's position starts in the data
// region, in bytes.
func (a *agent) SlotOffset() uint64 { return (a.pos & (a.slots - 1)) * uint64(a.slotSize) }

func (a *agent) descAddr(p uint64) uint64 { return a.base + OffDescs + DescSize*(p&(a.slots-1)) }

func (a *agent) load32(off uint64) (uint32, error) {
	v, err := a.m.Load32(a.base + off)
	if err != nil {
		return 0, &MemoryError{Addr: a.base + off, Err: err}
	}
	return v, nil
}

func (a *agent) load64(off uint64) (uint64, error) {
	v, err := a.m.Load64(a.base + off)
	if err != nil {
		return 0, &MemoryError{Addr: a.base + off, Err: err}
	}
	return v, nil
}

func (a *agent) store32(off uint64, v uint32) error {
	if err := a.m.Store32(a.base+off, v); err != nil {
		return &MemoryError{Addr: a.base + off, Err: err}
	}
	return nil
}

func (a *agent) store64(off uint64, v uint64) error {
	if err := a.m.Store64(a.base+off, v); err != nil {
		return &MemoryError{Addr: a.base + off, Err: err}
	}
	return nil
}

// add adds n to a counter of the agent's own line. It is the only writer
// of that line, so a plain load and store suffice.
func (a *agent) add(off, n uint64) error {
	v, err := a.load64(off)
	if err != nil {
		return err
	}
	return a.store64(off, v+n)
}

// wake wakes the agents of the other side asleep on the wake line at
// futexOff (with its waiters word at waitersOff), if any: it bumps the futex
// word, as a waker must before it signals, and counts the wakeup as sent
// (sentOff) or as not needed (quietOff). It reports whether anyone sleeps,
// so the caller signals them (an interrupt, a futex wake). The agent's
// stores before it must be ordered before its load of the waiters word: a
// device's accesses are in order, a Go caller calls Fence first.
func (a *agent) wake(futexOff, waitersOff, sentOff, quietOff uint64) (bool, error) {
	n, err := a.load32(waitersOff)
	if err != nil {
		return false, err
	}
	if n == 0 {
		return false, a.add(quietOff, 1)
	}
	v, err := a.load32(futexOff)
	if err == nil {
		err = a.store32(futexOff, v+1)
	}
	if err != nil {
		return false, err
	}
	return true, a.add(sentOff, 1)
}

// sleeping registers the agent as asleep (on true) or awake (false) on the
// wake line whose waiters word is at waitersOff. The agent is the only one
// that sleeps on that line (its side has one agent), so a plain load and
// store suffice.
func (a *agent) sleeping(waitersOff uint64, on bool) error {
	v, err := a.load32(waitersOff)
	if err != nil {
		return err
	}
	if on {
		v++
	} else {
		v--
	}
	return a.store32(waitersOff, v)
}

func (a *agent) corrupt(side string, p uint64, format string, args ...any) error {
	return &CorruptError{Side: side, Addr: a.descAddr(p), Reason: fmt.Sprintf(format, args...)}
}

// AgentConsumer is the consuming side of a SINGLE_CONSUMER queue for one
// agent that reaches the metadata through Memory. It is not safe for
// concurrent use: it is the one agent of its side.
type AgentConsumer struct {
	agent
	holes uint64 // aborted slots Peek passed over
	// released: the position up to which slots are released in the
	// metadata; [released, pos) were released with ReleaseDeferred and
	// are stored by Flush.
	released uint64
}

// AttachConsumer checks the queue at base in m against the geometry the
// agent was told (want.Slots, want.SlotSize; the feature fields are
// ignored), requires SINGLE_CONSUMER, and reads the consumer cursor. With
// want.Resizable the agent follows resizes (Follow); without it a
// RESIZABLE queue is refused.
func AttachConsumer(m Memory, base uint64, want Config) (*AgentConsumer, error) {
	a, err := attachAgent(m, base, want, FeatureSingleConsumer, OffConsCursor)
	if err != nil {
		return nil, err
	}
	return &AgentConsumer{agent: a, released: a.pos}, nil
}

// Drained reports whether the consumer has taken everything its
// generation will ever hold: a resize sealed it, and the consumer's
// position is its final position, so Follow moves on. One load of the
// producer cursor; false at once for a queue that is not resizable or an
// agent that does not follow resizes.
func (c *AgentConsumer) Drained() (bool, error) {
	if !c.follows || c.gen == 0 {
		return false, nil
	}
	cur, err := c.load64(OffProdCursor)
	if err != nil || cur&Sealed == 0 {
		return false, err
	}
	final := cur &^ Sealed
	switch {
	case c.pos < final:
		return false, nil // not drained: Peek saw a slot not yet published
	case c.pos > final:
		return false, &CorruptError{Side: "consumer", Addr: c.base + OffProdCursor,
			Reason: fmt.Sprintf("generation %d sealed at position %d, behind the consumer's %d", c.gen, final, c.pos)}
	}
	return true, nil
}

// Named reports whether a resize has named the generation that follows
// this one: one load of link_next, a word written once a resize. A
// consumer that polls an empty queue asks it before Drained, which loads
// the producer cursor, the line the producers write on every reserve: a
// generation is sealed only after its successor is named.
func (c *AgentConsumer) Named() (bool, error) {
	if !c.follows || c.gen == 0 {
		return false, nil
	}
	n, err := c.load32(OffLinkNext)
	return n != 0, err
}

// Follow moves the consumer to the next generation once it has drained
// this one: call it when Peek finds nothing, after the releases before it
// are synced. It loads the producer cursor (one load while the generation
// is not sealed: ok false); sealed, and the consumer's position at its
// final position, it reads the link, attaches there (through the memory
// reach gives, with the usual header checks), stores its cursor and then
// link_left = link_next in this generation (the owner may give it back
// after that, so it is the agent's last access here) and moves on. A
// sealed generation that names no next one, a position past the final
// one, or a link or header no correct owner writes is a *CorruptError or
// *HeaderError, and the consumer stays where it was.
func (c *AgentConsumer) Follow(reach Reach) (Next, bool, error) {
	if drained, err := c.Drained(); err != nil || !drained {
		return Next{}, false, err
	}
	next, ok, err := c.link("consumer")
	if err != nil {
		return Next{}, false, err
	}
	if !ok {
		return Next{}, false, &CorruptError{Side: "consumer", Addr: c.base + OffLinkNext,
			Reason: fmt.Sprintf("generation %d is sealed and names no next generation", c.gen)}
	}
	a, err := c.attachNext(next, reach, FeatureSingleConsumer, OffConsCursor)
	if err != nil {
		return Next{}, false, err
	}
	if err := c.Sync(); err != nil {
		return Next{}, false, err
	}
	if err := c.store32(OffLinkLeft, next.Generation); err != nil {
		return Next{}, false, err
	}
	*c = AgentConsumer{agent: a, holes: c.holes, released: a.pos}
	return next, true, nil
}

// Peek looks at the slot at the consumer's position: ok and the record's
// length when a record is published there; ok false when nothing is yet.
// Aborted slots (holes) in front of it are released, passed over and
// counted here, and the cursor is stored after each, as Release and Sync
// would.
func (c *AgentConsumer) Peek() (length uint32, ok bool, err error) {
	for range c.slots {
		p := c.pos
		w, err := c.m.Load64(c.descAddr(p))
		if err != nil {
			return 0, false, &MemoryError{Addr: c.descAddr(p), Err: err}
		}
		seq, info := uint32(w), uint32(w>>32)
		switch {
		case seq == uint32(p)+1 && info <= c.slotSize:
			return info, true, nil
		case seq == uint32(p)+1 && info>>InfoFlagsShift == FlagAborted:
			// A hole; its length means nothing (LAYOUT.md).
			if err := c.Release(); err != nil {
				return 0, false, err
			}
			if err := c.Sync(); err != nil {
				return 0, false, err
			}
			if err := c.add(OffConsSkipped, 1); err != nil {
				return 0, false, err
			}
			c.holes++
		case seq == uint32(p), seq == uint32(p)+1-uint32(c.slots):
			// p: not published yet; p+1-N: the stamp one lap behind,
			// which a stale view of the slot can show. Nothing is ready.
			return 0, false, nil
		default:
			return 0, false, c.corrupt("consumer", p, "slot %d descriptor %#x at position %d: no producer writes that", p&(c.slots-1), w, p)
		}
	}
	return 0, false, nil
}

// HolesPassed counts the aborted slots Peek has passed over since attach.
// Passing a hole frees its slot, so an agent that saw it move wakes the
// producers (WakeProducers) as it would after a Release.
func (c *AgentConsumer) HolesPassed() uint64 { return c.holes }

// Release hands the slot at the consumer's position back to producers
// (stamp p+N) and moves on. The cursor in the metadata is stored by Sync.
func (c *AgentConsumer) Release() error {
	if err := c.Flush(); err != nil {
		return err
	}
	p := c.pos
	if err := c.m.Store64(c.descAddr(p), uint64(uint32(p)+uint32(c.slots))); err != nil {
		return &MemoryError{Addr: c.descAddr(p), Err: err}
	}
	c.pos++
	c.released = c.pos
	return nil
}

// ReleaseDeferred moves on from the slot at the consumer's position as
// Release does, but leaves its stamp for Flush (or Sync) to store with
// the rest of the batch. A batch's stamps stored together, last first,
// keep the producer, which polls them, from taking each descriptor line
// from this agent record by record while the agent still writes the line;
// a line taken and given back costs a trip between the CPUs each time. The
// slot's payload must not be touched after this call.
func (c *AgentConsumer) ReleaseDeferred() error {
	c.pos++
	if c.pos-c.released >= deferLimit(c.slots) {
		return c.Flush()
	}
	return nil
}

// Flush stores the stamps of the slots released with ReleaseDeferred
// since the last Flush, last first. On an access the Memory refuses they
// all stay pending (storing one again is harmless).
func (c *AgentConsumer) Flush() error {
	for p := c.pos; p > c.released; p-- {
		q := p - 1
		if err := c.m.Store64(c.descAddr(q), uint64(uint32(q)+uint32(c.slots))); err != nil {
			return &MemoryError{Addr: c.descAddr(q), Err: err}
		}
	}
	c.released = c.pos
	return nil
}

// Sync stores the stamps ReleaseDeferred left (Flush), then the consumer
// cursor: call it after a batch of releases and before the agent stops, so
// that whenever it is stopped the cursor agrees with the stamps.
func (c *AgentConsumer) Sync() error {
	if err := c.Flush(); err != nil {
		return err
	}
	return c.store64(OffConsCursor, c.pos)
}

// deferLimit is the most stamps an agent leaves for Flush: a batch's
// worth, and at most half the ring, so the other side is never kept from
// a ring's worth of slots by stamps not yet stored.
func deferLimit(slots uint64) uint64 { return max(1, min(maxDeferred, slots/2)) }

// maxDeferred bounds a producer's deferred descriptors (its array).
const maxDeferred = 64

// WakeProducers wakes producers asleep for space, if any (see the space
// wake line in LAYOUT.md), and counts the wakeup on the consumer line. It
// reports whether any sleep, so the caller signals them.
func (c *AgentConsumer) WakeProducers() (bool, error) {
	return c.wake(OffSpaceFutex, OffSpaceWaiters, OffConsWakeSent, OffConsWakeSuppressed)
}

// Sleeping registers the consumer as asleep for records (true), before it
// looks once more and waits for a signal, or as awake again (false).
func (c *AgentConsumer) Sleeping(on bool) error { return c.sleeping(OffItemsWaiters, on) }

// Next is the generation a resize named, as a following agent reads it in
// the link line of the one it is in (LAYOUT.md, "Resizing").
type Next struct {
	Generation uint32 // link_next: the generation after this one
	Slots      int    // link_slots: its slot count (the slot size stays)
	MetaAddr   uint64 // link_meta_addr: where its metadata starts
	DataAddr   uint64 // link_data_addr: where its data region starts
	// Woke, from a producer's Follow: consumers slept on the items line
	// of the generation it left, and its futex word was bumped; signal
	// them, as after WakeConsumers.
	Woke bool
}

// Reach gives a following agent the memory through which it reaches the
// next generation's metadata (at next.MetaAddr), before it attaches there:
// a device maps or pins it. nil means the same Memory as now. An error
// stops the move: nothing is sealed or left.
type Reach func(next Next) (Memory, error)

// Generation is the number of the generation the agent is in: 0 for a
// queue that is not resizable.
func (a *agent) Generation() uint32 { return a.gen }

// link reads the link line: ok and the next generation once a resize has
// named it. link_next is loaded first (acquire, pairing with the owner's
// release store of it), then the words it publishes. A link that names
// anything but the generation after this one is corruption; the rest is
// checked when the agent attaches there.
func (a *agent) link(side string) (Next, bool, error) {
	if !a.follows || a.gen == 0 {
		return Next{}, false, nil
	}
	n, err := a.load32(OffLinkNext)
	if err != nil || n == 0 {
		return Next{}, false, err
	}
	if want := nextGeneration(a.gen); n != want {
		return Next{}, false, &CorruptError{Side: side, Addr: a.base + OffLinkNext,
			Reason: fmt.Sprintf("generation %d links to generation %d: want %d", a.gen, n, want)}
	}
	slots, err := a.load32(OffLinkSlots)
	if err != nil {
		return Next{}, false, err
	}
	meta, err := a.load64(OffLinkMetaAddr)
	if err != nil {
		return Next{}, false, err
	}
	data, err := a.load64(OffLinkDataAddr)
	if err != nil {
		return Next{}, false, err
	}
	if slots < MinSlots || slots > MaxSlots || bits.OnesCount32(slots) != 1 {
		return Next{}, false, &CorruptError{Side: side, Addr: a.base + OffLinkSlots,
			Reason: fmt.Sprintf("generation %d names generation %d of %d slots: not a power of two in [%d, %d]", a.gen, n, slots, MinSlots, MaxSlots)}
	}
	if meta%8 != 0 {
		return Next{}, false, &CorruptError{Side: side, Addr: a.base + OffLinkMetaAddr,
			Reason: fmt.Sprintf("generation %d names metadata at %#x: not 8-byte aligned", a.gen, meta)}
	}
	return Next{Generation: n, Slots: int(slots), MetaAddr: meta, DataAddr: data}, true, nil
}

// attachNext attaches the agent's side at the generation next names, through
// the memory reach gives: the usual header checks, plus that the header is
// generation next.Generation with link_slots slots and this slot size.
func (a *agent) attachNext(next Next, reach Reach, feature uint32, cursorOff uint64) (agent, error) {
	m := a.m
	if reach != nil {
		r, err := reach(next)
		if err != nil {
			return agent{}, err
		}
		if r != nil {
			m = r
		}
	}
	want := Config{Slots: next.Slots, SlotSize: int(a.slotSize), Resizable: true, Generation: next.Generation}
	return attachAgent(m, next.MetaAddr, want, feature, cursorOff)
}

// AgentProducer is the producing side of a SINGLE_PRODUCER queue for one
// agent that reaches the metadata through Memory. It is not safe for
// concurrent use: it is the one agent of its side.
type AgentProducer struct {
	agent
	// sealed: this generation's cursor carries the sealed bit (it was
	// attached so, after a reset in the middle of a switch): nothing more
	// is published here, and Follow moves on without storing it again.
	sealed bool
	// published: the position up to which records are published in the
	// metadata; [published, pos) were published with PublishDeferred,
	// their lengths in lengths (by position mod maxDeferred), and are
	// stored by Flush.
	published uint64
	lengths   [maxDeferred]uint32
}

// AttachProducer checks the queue at base in m as AttachConsumer does,
// requires SINGLE_PRODUCER, and reads the producer cursor. With
// want.Resizable the agent follows resizes (Follow); without it a
// RESIZABLE queue is refused.
func AttachProducer(m Memory, base uint64, want Config) (*AgentProducer, error) {
	a, err := attachAgent(m, base, want, FeatureSingleProducer, OffProdCursor)
	if err != nil {
		return nil, err
	}
	return newAgentProducer(a), nil
}

func newAgentProducer(a agent) *AgentProducer {
	p := &AgentProducer{agent: a}
	if a.gen != 0 && a.pos&Sealed != 0 {
		p.pos &^= Sealed
		p.sealed = true
	}
	p.published = p.pos
	return p
}

// Follow moves the producer to the next generation once a resize has
// named it: call it once per batch, before the batch, with nothing
// published since the last Sync that Sync has not stored. It reads
// link_next (one load when nothing is named: ok false); when a generation
// is named it checks the link, attaches there (through the memory reach
// gives, with the usual header checks), and only then seals this
// generation with a plain store of its cursor with Sealed (it is the only
// producer), fences, wakes this generation's sleeping consumers (Next.Woke:
// signal them) and moves on. Records published here stay for consumers to
// drain. A link or a header no correct owner writes is a *CorruptError or
// *HeaderError, and the producer stays where it was, unsealed.
func (p *AgentProducer) Follow(reach Reach) (Next, bool, error) {
	if err := p.Flush(); err != nil {
		return Next{}, false, err
	}
	next, ok, err := p.link("producer")
	if err != nil || !ok {
		return Next{}, false, err
	}
	a, err := p.attachNext(next, reach, FeatureSingleProducer, OffProdCursor)
	if err != nil {
		return Next{}, false, err
	}
	if !p.sealed {
		if err := p.store64(OffProdCursor, p.pos|Sealed); err != nil {
			return Next{}, false, err
		}
	}
	// The seal is a store and the wake below loads the waiters word:
	// order them, as a waker must (a device's read does not pass its
	// earlier writes; Fence does that for a Go agent).
	Fence()
	if next.Woke, err = p.WakeConsumers(); err != nil {
		return Next{}, false, err
	}
	*p = *newAgentProducer(a)
	return next, true, nil
}

// Free reports whether the slot at the producer's position is free (stamp
// p), so the agent may write its payload and Publish. A sealed generation
// has no free slot: Follow moves on.
func (p *AgentProducer) Free() (bool, error) {
	if p.sealed {
		return false, nil
	}
	pos := p.pos
	seq, err := p.m.Load32(p.descAddr(pos))
	if err != nil {
		return false, &MemoryError{Addr: p.descAddr(pos), Err: err}
	}
	switch seq {
	case uint32(pos):
		return true, nil
	case uint32(pos) - uint32(p.slots), uint32(pos) - uint32(p.slots) + 1:
		// The previous lap's record, not yet consumed or not yet released.
		return false, nil
	}
	return false, p.corrupt("producer", pos, "slot %d stamp %#x at position %d: no consumer writes that", pos&(p.slots-1), seq, pos)
}

// Publish makes the slot at the producer's position a record of length
// bytes (at most the slot size) and moves on. The payload must be written
// before; the descriptor (length, then stamp p+1, in one ordered store)
// goes after it. The cursor in the metadata is stored by Sync.
func (p *AgentProducer) Publish(length uint32) error {
	if length > p.slotSize {
		return invalidf("publish %d bytes into a %d-byte slot", length, p.slotSize)
	}
	if err := p.Flush(); err != nil {
		return err
	}
	pos := p.pos
	if err := p.m.Store64(p.descAddr(pos), packDesc(uint32(pos)+1, length, 0)); err != nil {
		return &MemoryError{Addr: p.descAddr(pos), Err: err}
	}
	p.pos++
	p.published = p.pos
	return nil
}

// PublishDeferred makes the slot at the producer's position a record of
// length bytes as Publish does, but leaves its descriptor for Flush (or
// Sync) to store with the rest of the batch, last first, for the reason
// AgentConsumer.ReleaseDeferred gives: consumers then find the batch whole
// and take it at once, instead of chasing the agent slot by slot through
// lines it is still writing.
func (p *AgentProducer) PublishDeferred(length uint32) error {
	if length > p.slotSize {
		return invalidf("publish %d bytes into a %d-byte slot", length, p.slotSize)
	}
	p.lengths[p.pos%maxDeferred] = length
	p.pos++
	if p.pos-p.published >= deferLimit(p.slots) {
		return p.Flush()
	}
	return nil
}

// Flush stores the descriptors of the records published with
// PublishDeferred since the last Flush, last first. On an access the
// Memory refuses they all stay pending (storing one again is harmless).
func (p *AgentProducer) Flush() error {
	for q := p.pos; q > p.published; q-- {
		pos := q - 1
		if err := p.m.Store64(p.descAddr(pos), packDesc(uint32(pos)+1, p.lengths[pos%maxDeferred], 0)); err != nil {
			return &MemoryError{Addr: p.descAddr(pos), Err: err}
		}
	}
	p.published = p.pos
	return nil
}

// Sync stores the descriptors PublishDeferred left (Flush), then the
// producer cursor, as AgentConsumer.Sync does for its side.
func (p *AgentProducer) Sync() error {
	if err := p.Flush(); err != nil {
		return err
	}
	if p.sealed {
		return nil // the sealed cursor is final
	}
	return p.store64(OffProdCursor, p.pos)
}

// WakeConsumers wakes consumers asleep for records, if any, and counts the
// wakeup on the producer line. It reports whether any sleep.
func (p *AgentProducer) WakeConsumers() (bool, error) {
	return p.wake(OffItemsFutex, OffItemsWaiters, OffProdWakeSent, OffProdWakeSuppressed)
}

// Sleeping registers the producer as asleep for space (true), or awake
// again (false).
func (p *AgentProducer) Sleeping(on bool) error { return p.sleeping(OffSpaceWaiters, on) }
