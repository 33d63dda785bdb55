package ring

import "math/bits"

// CachedProducer hands out a queue's slots one at a time from runs it
// reserves up to n at a time: one reserve (for shared producers, one
// compare-and-swap of the producers' cursor, a locked instruction that
// waits for the stores before it) for up to n records instead of one each.
// Each slot it hands out is a run of one, published or aborted as any.
//
// It belongs to one goroutine. The slots it holds and has not handed out
// are reserved: consumers stop at the first of them until it is published,
// so call Flush before the goroutine stops producing for a while, or for
// good; Flush gives them back. Records are still published one at a time,
// each visible as soon as it is.
type CachedProducer struct {
	q    *Queue
	n    int
	run  WriteRun
	next int // the run's next slot to hand out
}

// CachedProducer makes a CachedProducer that reserves up to n slots at a
// time (1 to the slot count).
func (q *Queue) CachedProducer(n int) (*CachedProducer, error) {
	if n < 1 || uint64(n) > q.slots {
		return nil, invalidf("cache %d slots: want 1 to %d", n, q.slots)
	}
	return &CachedProducer{q: q, n: n}, nil
}

// Reserve returns a run of one slot: the next one the cache holds, or the
// first of a new reserve of up to n; ErrFull when no slot is free.
func (c *CachedProducer) Reserve() (WriteRun, error) {
	if c.next >= c.run.n {
		run, err := c.q.reserveWrite(c.n, false)
		if err != nil {
			return WriteRun{}, err
		}
		c.run, c.next = run, 0
	}
	w := WriteRun{q: c.q, start: c.run.start + uint64(c.next), n: 1}
	c.next++
	return w, nil
}

// Held is how many reserved slots the cache holds and has not handed out.
func (c *CachedProducer) Held() int { return c.run.n - c.next }

// Flush gives back the slots the cache holds, as WriteRun.AbortAll does:
// the cursor moves back over them when no producer reserved after them,
// else they become holes that consumers pass over.
func (c *CachedProducer) Flush() error {
	if c.next >= c.run.n {
		return nil
	}
	rest := WriteRun{q: c.q, start: c.run.start + uint64(c.next), n: c.run.n - c.next}
	c.run, c.next = WriteRun{}, 0
	return rest.AbortAll()
}

// CachedConsumer hands out a queue's records one at a time from runs it
// reserves up to n at a time, as CachedProducer does for slots: one
// reserve (for shared consumers, one compare-and-swap) for up to n
// records. Each record it hands out is a run of one, released or given
// back as any (with the holes that follow it in the queue).
//
// It belongs to one goroutine. The records it holds and has not handed
// out are this consumer's alone: no other consumer takes them, so call
// Flush before the goroutine stops consuming; Flush gives them back
// unread.
type CachedConsumer struct {
	q    *Queue
	n    int
	run  ReadRun
	next int // the run's next record to hand out
}

// CachedConsumer makes a CachedConsumer that reserves up to n records at a
// time (1 to the slot count).
func (q *Queue) CachedConsumer(n int) (*CachedConsumer, error) {
	if n < 1 || uint64(n) > q.slots {
		return nil, invalidf("cache %d records: want 1 to %d", n, q.slots)
	}
	return &CachedConsumer{q: q, n: n}, nil
}

// Reserve returns a run of one record: the next one the cache holds, or
// the first of a new reserve of up to n; ErrEmpty when none is ready.
func (c *CachedConsumer) Reserve() (ReadRun, error) {
	if c.next >= c.run.n {
		run, err := c.q.reserveRead(c.n, false)
		if err != nil {
			return ReadRun{}, err
		}
		c.run, c.next = run, 0
	}
	o := holeOffset(c.run.holes, c.next)
	r := ReadRun{q: c.q, start: c.run.start + uint64(o), n: 1}
	// The holes right after the record go back with it, as in the run.
	if h := bits.TrailingZeros64(^(c.run.holes >> (o + 1))); h > 0 {
		r.holes = (1<<h - 1) << 1
	}
	c.next++
	return r, nil
}

// Held is how many records the cache holds and has not handed out.
func (c *CachedConsumer) Held() int { return c.run.n - c.next }

// Flush gives back, unread, the records the cache holds, as
// ReadRun.AbortFrom does: possible only while no consumer has reserved
// after them. Otherwise it returns ErrNotLast and the cache keeps them, for
// Reserve to hand out.
func (c *CachedConsumer) Flush() error {
	if c.next >= c.run.n {
		return nil
	}
	run := c.run
	if err := run.AbortFrom(c.next); err != nil {
		return err
	}
	c.run, c.next = ReadRun{}, 0
	return nil
}
