package ring_test

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/ring"
)

// Stress records are internal/record's Plain layout with a checksum:
// sequence number, producer id, CRC-32C, and a fill derived from them.
// farside_test.go and backing_test.go use the same helpers.
var stressRecord = record.Format{Sum: true}

const recMin = record.PlainSize

// writeRecord writes record seq of producer into the first length bytes
// of b.
func writeRecord(b []byte, producer uint32, seq uint64, length int) {
	stressRecord.Fill(b[:length], record.Header{Seq: seq, Producer: producer})
}

// checkRecord verifies a record in place and returns what it carries.
func checkRecord(b []byte) (uint32, uint64, error) {
	h, err := stressRecord.Check(b)
	return h.Producer, h.Seq, err
}

// seen is what a consumer took from the queue.
type seen struct {
	pos      uint64
	producer uint32
	seq      uint64
}

// verifySeen proves no loss, no duplicate, and per-producer order: sorted
// by queue position, each producer's sequence numbers are 0, 1, 2, ...,
// perProducer-1.
func verifySeen(t *testing.T, all []seen, producers int, perProducer uint64) {
	t.Helper()
	log := make([]record.Seen, len(all))
	for i, s := range all {
		log[i] = record.Seen{Pos: s.pos, Producer: s.producer, Seq: s.seq}
	}
	require.NoError(t, record.VerifyLog(log, producers, perProducer))
}

type stressConfig struct {
	producers, consumers int
	records              int // in all
	slots                int
	chaos                bool // random batches, modes, out-of-order publish/release, aborts
	seed                 uint64
}

func runStress(t *testing.T, sc stressConfig) ring.Stats {
	const slotSize = 64
	q, err := ring.New(ring.Config{Slots: sc.slots, SlotSize: slotSize,
		SingleProducer: sc.producers == 1, SingleConsumer: sc.consumers == 1})
	require.NoError(t, err)
	perProducer := uint64(sc.records / sc.producers)
	total := int64(perProducer) * int64(sc.producers)

	var consumed atomic.Int64
	var failed atomic.Bool
	errs := make(chan error, sc.producers+sc.consumers+1)
	fail := func(err error) {
		failed.Store(true)
		errs <- err
	}
	var wg sync.WaitGroup
	for id := range sc.producers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(sc.seed, uint64(id)))
			p := q.Producer()
			order := make([]int, 0, 8)
			skip := make([]bool, 8)
			lens := make([]int, 8)
			var seq uint64
			for seq < perProducer && !failed.Load() {
				want := 1
				if sc.chaos {
					want = 1 + rng.IntN(8)
				}
				var w ring.WriteRun
				var err error
				if sc.chaos && rng.IntN(2) == 0 {
					w, err = p.Reserve(want)
				} else {
					w, err = p.ReserveUpTo(want)
				}
				if errors.Is(err, ring.ErrFull) {
					runtime.Gosched()
					continue
				}
				if err != nil {
					fail(err)
					return
				}
				if sc.chaos && rng.IntN(50) == 0 {
					// Give the whole run up before writing anything.
					if err := w.AbortAll(); err != nil {
						fail(err)
						return
					}
					continue
				}
				order = order[:0]
				for i := range w.Len() {
					skip[i] = sc.chaos && rng.IntN(10) == 0 || seq >= perProducer
					if !skip[i] {
						length := slotSize
						if sc.chaos {
							length = recMin + rng.IntN(slotSize-recMin+1)
						}
						writeRecord(w.Slot(i), uint32(id), seq, length)
						lens[i] = length
						seq++
					}
					order = append(order, i)
				}
				if sc.chaos {
					rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
				}
				for _, i := range order {
					var err error
					if skip[i] {
						err = w.Abort(i)
					} else {
						err = w.Publish(i, lens[i])
					}
					if err != nil {
						fail(err)
						return
					}
				}
			}
		})
	}
	logs := make([][]seen, sc.consumers)
	for id := range sc.consumers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(sc.seed, uint64(1000+id)))
			c := q.Consumer()
			log := make([]seen, 0, total/int64(sc.consumers)+1024)
			order := make([]int, 0, 16)
			defer func() { logs[id] = log }()
			for consumed.Load() < total && !failed.Load() {
				want := 1
				if sc.chaos {
					want = 1 + rng.IntN(16)
				}
				var r ring.ReadRun
				var err error
				if sc.chaos && rng.IntN(2) == 0 {
					r, err = c.Reserve(want)
					if errors.Is(err, ring.ErrFragmented) {
						// Too many holes for an exact run: as the error
						// says, take what is there.
						r, err = c.ReserveUpTo(want)
					}
				} else {
					r, err = c.ReserveUpTo(want)
				}
				if errors.Is(err, ring.ErrEmpty) {
					runtime.Gosched()
					continue
				}
				if err != nil {
					fail(err)
					return
				}
				mark := len(log)
				for i := range r.Len() {
					b, err := r.Slot(i)
					if err == nil {
						var s seen
						s.producer, s.seq, err = checkRecord(b)
						s.pos = r.Position(i)
						log = append(log, s)
					}
					if err != nil {
						fail(err)
						return
					}
				}
				keep := r.Len()
				if sc.chaos && rng.IntN(20) == 0 {
					from := rng.IntN(r.Len())
					switch err := r.AbortFrom(from); {
					case err == nil:
						log = log[:mark+from]
						keep = from
					case errors.Is(err, ring.ErrNotLast):
					default:
						fail(err)
						return
					}
				}
				order = order[:0]
				for i := range keep {
					order = append(order, i)
				}
				if sc.chaos {
					rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
				}
				for _, i := range order {
					if err := r.Release(i); err != nil {
						fail(err)
						return
					}
				}
				consumed.Add(int64(keep))
			}
		})
	}
	// Check must not see corruption in an honest queue under load.
	checking := make(chan struct{})
	var checker sync.WaitGroup
	checker.Go(func() {
		for {
			select {
			case <-checking:
				return
			default:
			}
			if err := q.Check(); err != nil {
				fail(err)
				return
			}
			runtime.Gosched()
		}
	})
	wg.Wait()
	close(checking)
	checker.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var all []seen
	for _, l := range logs {
		all = append(all, l...)
	}
	verifySeen(t, all, sc.producers, perProducer)
	st := q.Stats()
	require.Equal(t, uint64(total), st.Released)
	require.Equal(t, st.Published, st.Released)
	require.Equal(t, st.Reserved, st.Published+st.Aborted, "every reserved slot was published or aborted")
	require.Zero(t, st.ProducerCorrupt+st.ConsumerCorrupt)
	return st
}

func stressRecords(t *testing.T) int {
	if testing.Short() {
		return 100_000
	}
	return 1_000_000
}

// TestStress: 4 producers and 4 consumers move a million records through a
// 64-slot queue.
func TestStress(t *testing.T) {
	st := runStress(t, stressConfig{producers: 4, consumers: 4, records: stressRecords(t), slots: 64, seed: 1})
	t.Logf("stats: %+v", st)
}

// TestStressChaos: the same with batches of mixed sizes and modes, publish
// and release in random order, aborts on both sides.
func TestStressChaos(t *testing.T) {
	st := runStress(t, stressConfig{producers: 4, consumers: 4, records: stressRecords(t), slots: 64, chaos: true, seed: 2})
	require.NotZero(t, st.Aborted, "the chaos run aborted nothing")
	require.NotZero(t, st.Skipped)
	t.Logf("stats: %+v", st)
}

// TestStressSingle exercises the plain-store paths of a single producer and
// a single consumer.
func TestStressSingle(t *testing.T) {
	runStress(t, stressConfig{producers: 1, consumers: 1, records: stressRecords(t) / 4, slots: 64, chaos: true, seed: 3})
}
