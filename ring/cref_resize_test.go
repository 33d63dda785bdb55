package ring_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ycq-dev/ycq/ring"
)

// The tests of the C reference following resizes (ring/c/conformance/
// resize.c): a Go owner (ring.Resizable) grows and shrinks queues that
// the C agent drives, and the C agent's follows are held to the Go agent's
// (ring.AgentProducer.Follow, AgentConsumer.Follow) on the same link words
// and headers. The queues live in a cSpace: one memfd standing for the
// device's address space, as agent_resize_test.go's arenas do on the Go
// heap, which the device maps whole and reaches by address through
// ycq_reach_window.

// The C agent's return codes (ring/c/ycq_agent.h).
const (
	cMoved        = 1
	cOK           = 0
	cFull         = -1
	cEmpty        = -2
	cCorrupt      = -3
	cIncompatible = -4
	cInvalid      = -5
	cNotHeld      = -6
	cFault        = -9
	cBusy         = -10
)

// cSpace is arenas over a memfd the device maps too: address agentBase+i
// is byte i, for the Go agents (arenas.memory) and for the C one.
type cSpace struct {
	*arenas
	file *os.File
	n    int
}

func newCSpace(t *testing.T, n, maxSlots, slotSize int) *cSpace {
	t.Helper()
	meta := (ring.MetaSize(maxSlots) + 63) &^ 63
	stride := meta + maxSlots*slotSize
	size := n * stride
	ps := os.Getpagesize()
	pages := (size + ps - 1) &^ (ps - 1)
	fd, err := unix.MemfdCreate("ycq-cref-space", unix.MFD_CLOEXEC)
	require.NoError(t, err)
	file := os.NewFile(uintptr(fd), "ycq-cref-space")
	t.Cleanup(func() { file.Close() })
	require.NoError(t, unix.Ftruncate(fd, int64(pages)))
	m := mapShared(t, fd, pages)
	s := &cSpace{arenas: &arenas{mem: m[:size:size], metaSize: meta, stride: stride}, file: file, n: n}
	s.reset()
	return s
}

// reset clears the space and gives every arena back.
func (s *cSpace) reset() {
	clear(s.mem)
	s.free = s.free[:0]
	for i := range s.n {
		s.free = append(s.free, i*s.stride)
	}
}

// args tell the device where the space is: descriptor fd, at agentBase.
func (s *cSpace) args(fd int) []string {
	return []string{fmt.Sprintf("space=%d:%d", fd, len(s.mem)), fmt.Sprint("base=", agentBase)}
}

// end is the first address past the space.
func (s *cSpace) end() uint64 { return agentBase + uint64(len(s.mem)) }

// TestCRefFollowsResizes: a Go owner (ring.Resizable on both queues, one
// goroutine producing, consuming, resizing and retiring between its calls,
// as TestAgentFollowsResizes does) grows and shrinks both queues at random
// while the C device echoes every record from one into the other, following
// every resize: as the consumer of in (it leaves each drained generation
// with link_left) and as the producer of out (it seals each generation it
// leaves). The owner writes holes and rollbacks into in, and the device
// holes, rollbacks and give-backs of its own. The device checks that the
// records of in come in order, the owner that they all come back once, in
// order; the device followed exactly the resizes the owner made, and an
// arena is reused only once the queue's Retire and, for in, the device's
// link_left say every agent is done with it. It stops on counts, never on
// time: enough resizes of each queue and enough records. It runs with the
// device as a port ships it, with 64-bit words split (as on a 32-bit
// microcontroller: the drained test reads the sealed half first), and
// built with the sanitizers, the space between inaccessible pages.
func TestCRefFollowsResizes(t *testing.T) {
	for i, variant := range []string{"plain", "split64", "asan"} {
		t.Run(variant, func(t *testing.T) { runFollowsResizes(t, buildDevice(t, variant), uint64(i+1)) })
	}
}

func runFollowsResizes(t *testing.T, dev string, seed uint64) {
	const slotSize, perQueue, minRecords, tail = 16, 75, 20000, 2000
	sizes := []int{2, 4, 8, 16, 32, 64}
	sp := newCSpace(t, 12, 64, slotSize)
	inCfg := ring.Config{Slots: 16, SlotSize: slotSize, SingleConsumer: true, Resizable: true, Generation: 1}
	outCfg := ring.Config{Slots: 16, SlotSize: slotSize, SingleProducer: true, Resizable: true, Generation: 1}
	in0, inOff := sp.take(t, inCfg)
	out0, outOff := sp.take(t, outCfg)
	offs := map[*ring.Queue]int{in0: inOff, out0: outOff}
	in, err := ring.NewResizableOn(in0)
	require.NoError(t, err)
	out, err := ring.NewResizableOn(out0)
	require.NoError(t, err)

	args := append(append([]string{"resize"}, sp.args(3)...),
		fmt.Sprintf("in=%d:%d", sp.metaAddr(inOff), sp.dataAddr(inOff)),
		fmt.Sprintf("out=%d:%d", sp.metaAddr(outOff), sp.dataAddr(outOff)),
		fmt.Sprint("seed=", seed), "batch=8")
	d := startDevice(t, dev, args, sp.file)
	d.expect(t, "attached in_gen=1 out_gen=1")

	rng := rand.New(rand.NewPCG(seed, 2))
	var sent, got uint64
	var goAborted uint64
	stopAt := uint64(math.MaxUint64) // the records to send: set once enough resizes are made
	var waitLeft []leaving
	resize := func(r *ring.Resizable, base ring.Config) {
		cfg := base
		cfg.Slots = sizes[rng.IntN(len(sizes))]
		cfg.Generation = r.NextGeneration()
		if r.ResizePending() || len(sp.free) == 0 {
			return
		}
		q, off := sp.take(t, cfg)
		if err := r.ResizeTo(q, sp.metaAddr(off), sp.dataAddr(off)); err != nil {
			require.ErrorIs(t, err, ring.ErrResizing)
			sp.free = append(sp.free, off)
			return
		}
		offs[q] = off
	}
	guard := time.Now()
	for got < stopAt {
		moved := false
		if sent < stopAt {
			if w, err := in.Producer().ReserveUpTo(int(min(8, stopAt-sent))); err == nil {
				moved = true
				// Now and then the end of the run is given up (rolled
				// back, or holes once sealed), and a slot here and there
				// is a hole.
				k := w.Len()
				if rng.IntN(16) == 0 {
					k = rng.IntN(w.Len())
				}
				for i := range k {
					if rng.IntN(16) == 0 {
						require.NoError(t, w.Abort(i))
						goAborted++
						continue
					}
					putEchoed(w.Slot(i), sent)
					sent++
					require.NoError(t, w.Publish(i, slotSize))
				}
				if k < w.Len() {
					goAborted += uint64(w.Len() - k)
					require.NoError(t, w.AbortAll())
				}
			} else {
				require.ErrorIs(t, err, ring.ErrFull)
			}
		}
		if r, err := out.Consumer().ReserveUpTo(8); err == nil {
			moved = true
			for i := range r.Len() {
				b, err := r.Slot(i)
				require.NoError(t, err)
				require.NoError(t, checkEchoed(b, got), "record %d", got)
				got++
			}
			require.NoError(t, r.ReleaseAll())
		} else {
			require.ErrorIs(t, err, ring.ErrEmpty)
		}
		inResizes, outResizes := in.Stats().Resizes, out.Stats().Resizes
		if stopAt == math.MaxUint64 {
			if rng.IntN(40) == 0 {
				if inResizes < perQueue {
					resize(in, inCfg)
				}
				if outResizes < perQueue {
					resize(out, outCfg)
				}
			}
			if inResizes >= perQueue && outResizes >= perQueue && sent >= minRecords {
				// A tail of records after the last resize, which the
				// device takes from the newest in and echoes into the
				// newest out: it follows both last resizes on the way.
				stopAt = sent + tail
			}
		}
		waitLeft = sp.giveBack(in, out, offs, waitLeft)
		if !moved {
			select {
			case <-d.done:
				t.Fatalf("the device exited (%v) with %d of %d records back; it said:\n%s", d.err, got, sent, d.out.String())
			default:
			}
			if time.Since(guard) > 5*cHangGuard {
				t.Fatalf("no end after %v (a hang): %d of %d records back, %d+%d resizes; the device said:\n%s",
					5*cHangGuard, got, sent, inResizes, outResizes, d.out.String())
			}
			runtime.Gosched()
		}
	}
	sum := d.finish(t)
	_, err = out.Consumer().ReserveUpTo(1)
	require.ErrorIs(t, err, ring.ErrEmpty, "nothing after the last record")

	inResizes, outResizes := in.Stats().Resizes, out.Stats().Resizes
	require.Equal(t, got, sum["echoed"], "every record the device echoed came back, once, in order")
	require.Equal(t, sent, got)
	require.Equal(t, inResizes, sum["in_follows"], "the device left every generation of in the owner made")
	require.Equal(t, outResizes, sum["out_follows"], "the device followed every resize of out")
	require.GreaterOrEqual(t, inResizes+outResizes, uint64(2*perQueue))
	require.Equal(t, uint64(in.ProducerQueue().Config().Generation), sum["in_gen"])
	require.Equal(t, uint64(out.ConsumerQueue().Config().Generation), sum["out_gen"])
	// What the run covered.
	require.NotZero(t, goAborted, "holes and rollbacks by the owner")
	require.NotZero(t, sum["holes"], "holes by the device")
	require.NotZero(t, sum["rolled"], "rollbacks by the device")
	require.NotZero(t, sum["given_back"], "give-backs by the device")
	t.Logf("%d records, %d+%d resizes followed; device: %v", got, inResizes, outResizes, sum)
}

// linkDevice is the device's link scenario: one C producer and one C
// consumer, attached and followed on command, answering each command with
// what the call returned and the agent's state after it.
type linkDevice struct {
	d  *device
	sp *cSpace
}

func startLinkDevice(t *testing.T, variant string, sp *cSpace) *linkDevice {
	t.Helper()
	d := startDevice(t, buildDevice(t, variant), append([]string{"link"}, sp.args(3)...), sp.file)
	d.expect(t, "ready")
	return &linkDevice{d: d, sp: sp}
}

// cAnswer is one answer of the link scenario.
type cAnswer struct {
	rc           int
	off          uint64 // err_off
	next         bool   // err_next: off is in the next generation's header
	value        uint64 // err_value
	gen, slots   uint64
	pos, held, n uint64
	waited       bool
	link         ring.Next // of a follow: the link it found, and whether it woke consumers
	line         string
	fields       map[string]uint64
}

func (l *linkDevice) do(t *testing.T, format string, args ...any) cAnswer {
	t.Helper()
	cmd := fmt.Sprintf(format, args...)
	l.d.send(t, cmd)
	line := l.d.expect(t, strings.Fields(cmd)[0]+" ")
	a := cAnswer{line: line, fields: map[string]uint64{}}
	for _, f := range strings.Fields(line)[1:] {
		k, v, ok := strings.Cut(f, "=")
		require.True(t, ok, "%q in %q", f, line)
		if k == "rc" {
			rc, err := strconv.Atoi(v)
			require.NoError(t, err, "%q in %q", f, line)
			a.rc = rc
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "%q in %q", f, line)
		a.fields[k] = n
	}
	f := a.fields
	a.off, a.next, a.value = f["off"], f["next"] != 0, f["value"]
	a.gen, a.slots, a.pos, a.held, a.n, a.waited = f["gen"], f["slots"], f["pos"], f["held"], f["n"], f["waited"] != 0
	a.link = ring.Next{Generation: uint32(f["ngen"]), Slots: int(f["nslots"]), MetaAddr: f["nmeta"], DataAddr: f["ndata"], Woke: f["woke"] != 0}
	return a
}

// followOutcome is what a follow did, in the terms both agents share:
// moved (and the link it followed), stayed, or refused with the C code the
// Go error stands for and the word behind it: its offset in this
// generation's metadata, or (next) in the next generation's header. An
// access out of reach (a Go *MemoryError, the C agent's YCQ_EFAULT) names
// no word both can agree on: Go says which access failed, C which link word
// led there.
type followOutcome struct {
	code int
	off  uint64
	next bool
	link ring.Next
	err  error // Go's
}

func (o followOutcome) String() string {
	return fmt.Sprintf("code %d off %d next %v link %+v (err %v)", o.code, o.off, o.next, o.link, o.err)
}

func goOutcome(t *testing.T, next ring.Next, ok bool, err error, base uint64) followOutcome {
	t.Helper()
	var (
		he *ring.HeaderError
		ce *ring.CorruptError
		me *ring.MemoryError
	)
	switch {
	case err == nil && ok:
		return followOutcome{code: cMoved, link: next}
	case err == nil:
		return followOutcome{code: cOK}
	case errors.As(err, &he):
		code := cIncompatible
		if errors.Is(err, ring.ErrCorrupt) {
			code = cCorrupt
		} else {
			require.ErrorIs(t, err, ring.ErrIncompatible)
		}
		return followOutcome{code: code, off: he.Off, next: true, err: err}
	case errors.As(err, &ce):
		return followOutcome{code: cCorrupt, off: ce.Addr - base, err: err}
	case errors.As(err, &me):
		return followOutcome{code: cFault, err: err}
	}
	t.Fatalf("an untyped error from a Go follow: %v", err)
	return followOutcome{}
}

func cOutcome(a cAnswer) followOutcome {
	o := followOutcome{code: a.rc}
	switch {
	case a.rc == cMoved:
		o.link = a.link
	case a.rc < 0 && a.rc != cFault:
		o.off, o.next = a.off, a.next
	}
	return o
}

// sideConfig is a generation of slots slots for side's single agent.
func sideConfig(side string, slots int, gen uint32) ring.Config {
	return ring.Config{Slots: slots, SlotSize: 16, SingleProducer: side == "producer", SingleConsumer: side == "consumer",
		Resizable: true, Generation: gen}
}

// corruptOff is the counter a side's C agent counts corruption in.
func corruptOff(side string) int {
	if side == "producer" {
		return ring.OffProdCorrupt
	}
	return ring.OffConsCorrupt
}

// followBoth attaches side's Go agent to the generation at off0 and follows
// once; then, on the same bytes (restored), the C agent. It returns both
// outcomes, and the space before and after each.
func followBoth(t *testing.T, l *linkDevice, side string, off0 int) (goOut, cOut followOutcome, before, goMem, cMem []byte) {
	t.Helper()
	sp := l.sp
	before = append([]byte(nil), sp.mem...)
	geo := ring.Config{Slots: int(binary.LittleEndian.Uint32(sp.mem[off0+ring.OffSlots:])), SlotSize: 16, Resizable: true}
	var (
		next ring.Next
		ok   bool
		err  error
	)
	if side == "producer" {
		p, aerr := ring.AttachProducer(sp.memory(), sp.metaAddr(off0), geo)
		require.NoError(t, aerr)
		next, ok, err = p.Follow(nil)
	} else {
		c, aerr := ring.AttachConsumer(sp.memory(), sp.metaAddr(off0), geo)
		require.NoError(t, aerr)
		next, ok, err = c.Follow(nil)
	}
	goOut = goOutcome(t, next, ok, err, sp.metaAddr(off0))
	goMem = append([]byte(nil), sp.mem...)
	copy(sp.mem, before)

	s := side[:1]
	a := l.do(t, "attach %s %d %d", s, sp.metaAddr(off0), sp.dataAddr(off0))
	require.Equal(t, cOK, a.rc, "C attach: %s", a.line)
	cOut = cOutcome(l.do(t, "follow %s", s))
	cMem = append([]byte(nil), sp.mem...)
	return goOut, cOut, before, goMem, cMem
}

// requireSameBytes fails with the 8-byte words (by offset) where got
// differs from want, the first few of them, rather than both spaces whole.
func requireSameBytes(t *testing.T, want, got []byte, msg string, args ...any) {
	t.Helper()
	require.Len(t, got, len(want))
	var diffs []string
	for o := 0; o+8 <= len(want); o += 8 {
		w, g := binary.LittleEndian.Uint64(want[o:]), binary.LittleEndian.Uint64(got[o:])
		if w != g && len(diffs) < 8 {
			diffs = append(diffs, fmt.Sprintf("offset %#x: want %#x, got %#x", o, w, g))
		}
	}
	if len(diffs) > 0 {
		t.Fatalf("%s:\n%s", fmt.Sprintf(msg, args...), strings.Join(diffs, "\n"))
	}
}

// requireSameFollow: the C agent did what the Go agent did, and wrote the
// same bytes, but for the corruption counter it keeps (the Go agent
// reports corruption only in the error it returns).
func requireSameFollow(t *testing.T, side string, off0 int, goOut, cOut followOutcome, goMem, cMem []byte) {
	t.Helper()
	require.Equal(t, goOut.code, cOut.code, "Go: %v; C: %v", goOut, cOut)
	if goOut.code < 0 && goOut.code != cFault {
		require.Equal(t, goOut.off, cOut.off, "the word behind the refusal (Go: %v)", goOut.err)
		require.Equal(t, goOut.next, cOut.next, "in the next generation's header (Go: %v)", goOut.err)
	}
	if goOut.code == cMoved {
		require.Equal(t, goOut.link, cOut.link, "the generation followed")
	}
	want := append([]byte(nil), goMem...)
	if cOut.code == cCorrupt {
		o := off0 + corruptOff(side)
		binary.LittleEndian.PutUint64(want[o:], binary.LittleEndian.Uint64(want[o:])+1)
	}
	requireSameBytes(t, want, cMem, "the C agent wrote what the Go agent wrote (Go: %v)", goOut)
}

// linked formats generation 1 of 8 slots for side's agent, and generation
// 2 named by a resize (ring.Resizable.ResizeTo), then lets scrib write
// over generation 1's first 384 bytes (its link line) or the space. It
// returns generation 1's offset.
func linked(scrib func(sp *cSpace, link []byte, nextOff int)) func(t *testing.T, sp *cSpace, side string) int {
	return func(t *testing.T, sp *cSpace, side string) int {
		t.Helper()
		q0, off0 := sp.take(t, sideConfig(side, 8, 1))
		r, err := ring.NewResizableOn(q0)
		require.NoError(t, err)
		q1, off1 := sp.take(t, sideConfig(side, 8, 2))
		require.NoError(t, r.ResizeTo(q1, sp.metaAddr(off1), sp.dataAddr(off1)))
		if scrib != nil {
			scrib(sp, sp.mem[off0:][:ring.OffDescs], off1)
		}
		return off0
	}
}

// TestCRefFollowHostile: TestAgentFollowHostile's link words and next
// headers, which no correct owner writes, and the honest link, each given
// to the Go agent and to the C agent on the same bytes: the same outcome
// (moved to the same generation, stayed, or the same typed refusal naming
// the same word), and the same bytes written (none on a refusal: not
// sealed, not left). The C agent is the sanitizer build, the space mapped
// between inaccessible pages: nothing is read past its bounds.
func TestCRefFollowHostile(t *testing.T) {
	sp := newCSpace(t, 2, 16, 16)
	l := startLinkDevice(t, "asan", sp)
	le32 := binary.LittleEndian.PutUint32
	le64 := binary.LittleEndian.PutUint64
	both := []string{"producer", "consumer"}
	cases := []struct {
		name    string
		sides   []string
		prepare func(t *testing.T, sp *cSpace, side string) int
		want    int // the outcome both must have
	}{
		{"honest", both, linked(nil), cMoved},
		{"skips a generation", both, linked(func(_ *cSpace, l []byte, _ int) { le32(l[ring.OffLinkNext:], 3) }), cCorrupt},
		{"names this generation", both, linked(func(_ *cSpace, l []byte, _ int) { le32(l[ring.OffLinkNext:], 1) }), cCorrupt},
		{"slots not a power of two", both, linked(func(_ *cSpace, l []byte, _ int) { le32(l[ring.OffLinkSlots:], 12) }), cCorrupt},
		{"slots beyond the limit", both, linked(func(_ *cSpace, l []byte, _ int) { le32(l[ring.OffLinkSlots:], 1<<31) }), cCorrupt},
		{"slots disagree with the header", both, linked(func(_ *cSpace, l []byte, _ int) { le32(l[ring.OffLinkSlots:], 32) }), cIncompatible},
		{"metadata outside the space", both, linked(func(_ *cSpace, l []byte, _ int) { le64(l[ring.OffLinkMetaAddr:], 1<<62) }), cFault},
		{"metadata address wraps", both, linked(func(_ *cSpace, l []byte, _ int) { le64(l[ring.OffLinkMetaAddr:], ^uint64(0)-7) }), cFault},
		{"metadata below the space", both, linked(func(_ *cSpace, l []byte, _ int) { le64(l[ring.OffLinkMetaAddr:], agentBase-64) }), cFault},
		{"metadata misaligned", both, linked(func(_ *cSpace, l []byte, _ int) {
			le64(l[ring.OffLinkMetaAddr:], binary.LittleEndian.Uint64(l[ring.OffLinkMetaAddr:])+4)
		}), cCorrupt},
		{"header in the space's last bytes", both, linked(func(sp *cSpace, l []byte, off int) {
			// The next header, whole, where its cursors and descriptors
			// would be past the end.
			copy(sp.mem[len(sp.mem)-64:], sp.mem[off:][:64])
			le64(l[ring.OffLinkMetaAddr:], sp.end()-64)
		}), cFault},
		{"next header of another generation", both, linked(func(sp *cSpace, _ []byte, off int) {
			le32(sp.mem[off+ring.OffGeneration:], 7)
		}), cCorrupt},
		{"next header not resizable", both, linked(func(sp *cSpace, _ []byte, off int) { sp.mem[off+ring.OffFeatures] &^= ring.FeatureResizable }), cCorrupt},
		{"next header not formatted", both, linked(func(sp *cSpace, _ []byte, off int) { clear(sp.mem[off:][:64]) }), cIncompatible},
		{"next header of another slot size", both, linked(func(sp *cSpace, _ []byte, off int) {
			le32(sp.mem[off+ring.OffSlotSize:], 8)
			le64(sp.mem[off+ring.OffDataSize:], 64)
		}), cIncompatible},
		{"next header of the other side", both, linked(func(sp *cSpace, _ []byte, off int) { sp.mem[off+ring.OffFeatures] ^= 3 }), cIncompatible},
		{"next header with an unknown required feature", both, linked(func(sp *cSpace, _ []byte, off int) { sp.mem[off+ring.OffFeatures] |= 0x80 }), cIncompatible},
		{"next header of generation 0", both, linked(func(sp *cSpace, _ []byte, off int) { le32(sp.mem[off+ring.OffGeneration:], 0) }), cCorrupt},
		{"next header's meta_size rewritten", both, linked(func(sp *cSpace, _ []byte, off int) { sp.mem[off+ring.OffMetaSize]++ }), cCorrupt},
		{"nothing named yet", []string{"producer"}, func(t *testing.T, sp *cSpace, side string) int {
			_, off := sp.take(t, sideConfig(side, 8, 1))
			return off
		}, cOK},
		{"not sealed yet", []string{"consumer"}, func(t *testing.T, sp *cSpace, side string) int {
			// Named, but the producers have not been sealed out: the
			// consumer stays.
			off := linked(nil)(t, sp, side)
			word64(sp.mem, off+ring.OffProdCursor).Store(0)
			return off
		}, cOK},
		{"sealed with a record left", []string{"consumer"}, func(t *testing.T, sp *cSpace, side string) int {
			off := linked(nil)(t, sp, side)
			word64(sp.mem, off+ring.OffProdCursor).Store(ring.Sealed | 1)
			return off
		}, cOK},
		{"sealed without a next generation", []string{"consumer"}, func(t *testing.T, sp *cSpace, side string) int {
			_, off := sp.take(t, sideConfig(side, 8, 1))
			word64(sp.mem, off+ring.OffProdCursor).Store(ring.Sealed)
			return off
		}, cCorrupt},
		{"sealed behind the consumer", []string{"consumer"}, func(t *testing.T, sp *cSpace, side string) int {
			_, off := sp.take(t, sideConfig(side, 8, 1))
			word64(sp.mem, off+ring.OffConsCursor).Store(5)
			word64(sp.mem, off+ring.OffProdCursor).Store(ring.Sealed | 3)
			return off
		}, cCorrupt},
		{"attached sealed", []string{"producer"}, func(t *testing.T, sp *cSpace, side string) int {
			// A reset in the middle of a switch: it moves on without
			// storing the cursor again.
			off := linked(nil)(t, sp, side)
			word64(sp.mem, off+ring.OffProdCursor).Store(ring.Sealed | 2)
			return off
		}, cMoved},
		{"consumers asleep", []string{"producer"}, func(t *testing.T, sp *cSpace, side string) int {
			off := linked(nil)(t, sp, side)
			word32(sp.mem, off+ring.OffItemsWaiters).Store(1)
			return off
		}, cMoved},
		{"generation wraps to 1", both, func(t *testing.T, sp *cSpace, side string) int {
			q0, off0 := sp.take(t, sideConfig(side, 8, math.MaxUint32))
			r, err := ring.NewResizableOn(q0)
			require.NoError(t, err)
			require.Equal(t, uint32(1), r.NextGeneration())
			q1, off1 := sp.take(t, sideConfig(side, 4, 1))
			require.NoError(t, r.ResizeTo(q1, sp.metaAddr(off1), sp.dataAddr(off1)))
			return off0
		}, cMoved},
		{"not resizable: the link line is ignored", both, func(t *testing.T, sp *cSpace, side string) int {
			cfg := sideConfig(side, 8, 0)
			cfg.Resizable = false
			_, off0 := sp.take(t, cfg)
			_, off1 := sp.take(t, sideConfig(side, 8, 2))
			link := sp.mem[off0:]
			le32(link[ring.OffLinkNext:], 1)
			le32(link[ring.OffLinkSlots:], 8)
			le64(link[ring.OffLinkMetaAddr:], sp.metaAddr(off1))
			le64(link[ring.OffLinkDataAddr:], sp.dataAddr(off1))
			word64(sp.mem, off0+ring.OffProdCursor).Store(ring.Sealed)
			return off0
		}, cOK},
	}
	for _, c := range cases {
		for _, side := range c.sides {
			t.Run(side+"/"+c.name, func(t *testing.T) {
				sp.reset()
				off0 := c.prepare(t, sp, side)
				goOut, cOut, before, goMem, cMem := followBoth(t, l, side, off0)
				require.Equal(t, c.want, goOut.code, "the Go agent: %v", goOut)
				if c.want != cMoved {
					requireSameBytes(t, before, goMem, "a refused follow writes nothing: not sealed, not left")
				}
				requireSameFollow(t, side, off0, goOut, cOut, goMem, cMem)
			})
		}
	}

	// Attach, not follow: an agent that does not follow resizes refuses a
	// resizable queue, and one that does refuses a resizable header with
	// no generation, as the Go agents do.
	for _, side := range both {
		t.Run(side+"/not following refuses", func(t *testing.T) {
			sp.reset()
			_, off := sp.take(t, sideConfig(side, 8, 1))
			a := l.do(t, "plain %s %d %d", side[:1], sp.metaAddr(off), sp.dataAddr(off))
			require.Equal(t, cIncompatible, a.rc)
			require.Equal(t, uint64(ring.OffFeatures), a.off)
			var err error
			if side == "producer" {
				_, err = ring.AttachProducer(sp.memory(), sp.metaAddr(off), ring.Config{Slots: 8, SlotSize: 16})
			} else {
				_, err = ring.AttachConsumer(sp.memory(), sp.metaAddr(off), ring.Config{Slots: 8, SlotSize: 16})
			}
			var he *ring.HeaderError
			require.ErrorAs(t, err, &he)
			require.Equal(t, uint64(ring.OffFeatures), he.Off)
			require.ErrorIs(t, err, ring.ErrIncompatible)
		})
		t.Run(side+"/resizable with no generation", func(t *testing.T) {
			sp.reset()
			_, off := sp.take(t, sideConfig(side, 8, 1))
			word32(sp.mem, off+ring.OffGeneration).Store(0)
			a := l.do(t, "attach %s %d %d", side[:1], sp.metaAddr(off), sp.dataAddr(off))
			require.Equal(t, cCorrupt, a.rc)
			require.Equal(t, uint64(ring.OffGeneration), a.off)
			_, err := ring.ReadHeader(sp.memory(), sp.metaAddr(off))
			var he *ring.HeaderError
			require.ErrorAs(t, err, &he)
			require.Equal(t, uint64(ring.OffGeneration), he.Off)
			require.ErrorIs(t, err, ring.ErrCorrupt)
		})
	}
}

// TestCRefFollowRules: what the C agent does around a follow that the Go
// agent's shape (one slot at a time, memory that may fail) does not have.
// It follows only holding nothing (YCQ_EBUSY, nothing written, while a run
// is unfinished), and refuses a run of the generation it left; its sleeps
// do not wait when a follow is due; and it checks at the follow that the
// next generation's regions are within reach, whole, where the Go agent
// leaves the data region to its caller and finds the rest of the metadata
// out of reach at its first access there.
func TestCRefFollowRules(t *testing.T) {
	sp := newCSpace(t, 3, 16, 16)
	l := startLinkDevice(t, "asan", sp)
	snapshot := func() []byte { return append([]byte(nil), sp.mem...) }
	resizable := func(t *testing.T, side string, gen uint32) (*ring.Resizable, *ring.Queue, int) {
		q, off := sp.take(t, sideConfig(side, 8, gen))
		r, err := ring.NewResizableOn(q)
		require.NoError(t, err)
		return r, q, off
	}
	resizeTo := func(t *testing.T, r *ring.Resizable, side string) int {
		q, off := sp.take(t, sideConfig(side, 8, r.NextGeneration()))
		require.NoError(t, r.ResizeTo(q, sp.metaAddr(off), sp.dataAddr(off)))
		return off
	}

	t.Run("producer busy", func(t *testing.T) {
		sp.reset()
		r, _, off0 := resizable(t, "producer", 1)
		require.Equal(t, cOK, l.do(t, "attach p %d %d", sp.metaAddr(off0), sp.dataAddr(off0)).rc)
		a := l.do(t, "reserve p 3")
		require.Equal(t, [2]uint64{3, 3}, [2]uint64{a.n, a.held}, a.line)
		resizeTo(t, r, "producer")
		before := snapshot()
		a = l.do(t, "follow p")
		require.Equal(t, cBusy, a.rc, a.line)
		require.Equal(t, [3]uint64{ring.OffProdCursor, 3, 1}, [3]uint64{a.off, a.value, a.gen}, a.line)
		requireSameBytes(t, before, sp.mem, "a busy follow writes nothing")
		require.Equal(t, cOK, l.do(t, "finish p").rc)
		a = l.do(t, "follow p")
		require.Equal(t, cMoved, a.rc, a.line)
		require.Equal(t, [3]uint64{2, 0, 0}, [3]uint64{a.gen, a.pos, a.held}, a.line)
		require.Equal(t, uint64(ring.Sealed|3), word64(sp.mem, off0+ring.OffProdCursor).Load(), "sealed at its final position")
		require.Equal(t, cInvalid, l.do(t, "again p").rc, "a run of the generation it left")
		a = l.do(t, "reserve p 8")
		require.Equal(t, [2]uint64{8, 8}, [2]uint64{a.n, a.held}, "the next generation is all free: %s", a.line)
		require.Equal(t, cOK, l.do(t, "finish p").rc)
	})

	t.Run("consumer busy", func(t *testing.T) {
		sp.reset()
		r, q0, off0 := resizable(t, "consumer", 1)
		w, err := q0.Producer().Reserve(2)
		require.NoError(t, err)
		require.NoError(t, w.PublishAll(0))
		resizeTo(t, r, "consumer") // seals at 2
		require.Equal(t, cOK, l.do(t, "attach c %d %d", sp.metaAddr(off0), sp.dataAddr(off0)).rc)
		require.Equal(t, cOK, l.do(t, "follow c").rc, "records left: not drained")
		require.Equal(t, uint64(2), l.do(t, "reserve c 8").n)
		before := snapshot()
		a := l.do(t, "follow c")
		require.Equal(t, cBusy, a.rc, "drained, the records still held: %s", a.line)
		require.Equal(t, [2]uint64{ring.OffConsCursor, 2}, [2]uint64{a.off, a.value}, a.line)
		requireSameBytes(t, before, sp.mem, "a busy follow writes nothing, link_left least of all")
		require.Equal(t, cOK, l.do(t, "finish c").rc)
		a = l.do(t, "follow c")
		require.Equal(t, cMoved, a.rc, a.line)
		require.Equal(t, uint32(2), word32(sp.mem, off0+ring.OffLinkLeft).Load())
		require.Equal(t, cInvalid, l.do(t, "again c").rc, "a run of the generation it left")
	})

	t.Run("consumer sleeps unless drained", func(t *testing.T) {
		sp.reset()
		r, _, off0 := resizable(t, "consumer", 1)
		require.Equal(t, cOK, l.do(t, "attach c %d %d", sp.metaAddr(off0), sp.dataAddr(off0)).rc)
		a := l.do(t, "sleep c")
		require.Equal(t, [2]any{cEmpty, true}, [2]any{a.rc, a.waited}, "nothing sealed: it sleeps: %s", a.line)
		require.Equal(t, cOK, l.do(t, "drained").rc)
		resizeTo(t, r, "consumer")
		a = l.do(t, "sleep c")
		require.Equal(t, [2]any{cEmpty, false}, [2]any{a.rc, a.waited}, "sealed and drained: a follow is due, no sleep: %s", a.line)
		require.Equal(t, 1, l.do(t, "drained").rc)
		require.Equal(t, cMoved, l.do(t, "follow c").rc)
		a = l.do(t, "sleep c")
		require.True(t, a.waited, "in the next generation, nothing sealed: %s", a.line)
	})

	t.Run("producer sleeps unless a follow is due", func(t *testing.T) {
		sp.reset()
		r, _, off0 := resizable(t, "producer", 1)
		require.Equal(t, cOK, l.do(t, "attach p %d %d", sp.metaAddr(off0), sp.dataAddr(off0)).rc)
		require.Equal(t, uint64(8), l.do(t, "reserve p 8").n)
		require.Equal(t, cOK, l.do(t, "finish p").rc)
		a := l.do(t, "sleep p")
		require.Equal(t, [2]any{cFull, true}, [2]any{a.rc, a.waited}, "full, nothing named: it sleeps: %s", a.line)
		resizeTo(t, r, "producer")
		a = l.do(t, "sleep p")
		require.Equal(t, [2]any{cFull, false}, [2]any{a.rc, a.waited}, "the next generation named: no sleep: %s", a.line)
		require.Equal(t, cMoved, l.do(t, "follow p").rc)
		// Attached again to the generation it sealed (a reset): nothing
		// to reserve there, not counted as full, and no sleep.
		full := word64(sp.mem, off0+ring.OffProdFull).Load()
		a = l.do(t, "attach p %d %d", sp.metaAddr(off0), sp.dataAddr(off0))
		require.Equal(t, [2]uint64{1, 8}, [2]uint64{a.gen, a.pos}, "the position without the sealed bit: %s", a.line)
		a = l.do(t, "reserve p 1")
		require.Equal(t, [2]any{cFull, uint64(0)}, [2]any{a.rc, a.n}, a.line)
		a = l.do(t, "sleep p")
		require.Equal(t, [2]any{cFull, false}, [2]any{a.rc, a.waited}, a.line)
		require.Equal(t, full, word64(sp.mem, off0+ring.OffProdFull).Load(), "a sealed generation is not full")
	})

	t.Run("a chain of generations", func(t *testing.T) {
		sp.reset()
		r, _, off0 := resizable(t, "producer", 1)
		require.Equal(t, cOK, l.do(t, "attach p %d %d", sp.metaAddr(off0), sp.dataAddr(off0)).rc)
		for gen := uint64(2); gen <= 6; gen++ {
			off := resizeTo(t, r, "producer")
			a := l.do(t, "follow p")
			require.Equal(t, cMoved, a.rc, a.line)
			require.Equal(t, ring.Next{Generation: uint32(gen), Slots: 8, MetaAddr: sp.metaAddr(off), DataAddr: sp.dataAddr(off)}, a.link)
			require.Equal(t, cOK, l.do(t, "follow p").rc, "nothing named in generation %d yet", gen)
			// Sealed by the C producer with nothing in it: the owner
			// takes it back.
			require.Len(t, r.Retire(), 1, "generation %d", gen-1)
			sp.free = append(sp.free, off0)
			off0 = off
		}
	})

	// Regions the Go agent follows into, checking them later, access by
	// access; the C agent checks them whole at the follow.
	for _, side := range []string{"producer", "consumer"} {
		t.Run(side+"/data out of reach", func(t *testing.T) {
			sp.reset()
			off0 := linked(func(_ *cSpace, l []byte, _ int) {
				binary.LittleEndian.PutUint64(l[ring.OffLinkDataAddr:], 1<<62)
			})(t, sp, side)
			goOut, cOut, before, _, cMem := followBoth(t, l, side, off0)
			require.Equal(t, cMoved, goOut.code, "the Go agent hands DataAddr to its caller: %v", goOut)
			require.Equal(t, cFault, cOut.code, "C: %v", cOut)
			a := l.do(t, "follow %s", side[:1])
			require.Equal(t, [3]any{cFault, uint64(ring.OffLinkDataAddr), false}, [3]any{a.rc, a.off, a.next}, a.line)
			requireSameBytes(t, before, cMem, "a refused follow writes nothing")
		})
		t.Run(side+"/descriptors out of reach", func(t *testing.T) {
			sp.reset()
			const room = 256 // the header and both cursor lines, not the descriptors
			off0 := linked(func(sp *cSpace, l []byte, off int) {
				copy(sp.mem[len(sp.mem)-room:], sp.mem[off:][:64])
				binary.LittleEndian.PutUint64(l[ring.OffLinkMetaAddr:], sp.end()-room)
			})(t, sp, side)
			geo := ring.Config{Slots: 8, SlotSize: 16, Resizable: true}
			// Go follows, and meets the end of the space at its first
			// descriptor there.
			var err error
			if side == "producer" {
				p, aerr := ring.AttachProducer(sp.memory(), sp.metaAddr(off0), geo)
				require.NoError(t, aerr)
				_, ok, ferr := p.Follow(nil)
				require.NoError(t, ferr)
				require.True(t, ok)
				_, err = p.Free()
			} else {
				c, aerr := ring.AttachConsumer(sp.memory(), sp.metaAddr(off0), geo)
				require.NoError(t, aerr)
				_, ok, ferr := c.Follow(nil)
				require.NoError(t, ferr)
				require.True(t, ok)
				_, _, err = c.Peek()
			}
			var me *ring.MemoryError
			require.ErrorAs(t, err, &me)
			sp.reset()
			off0 = linked(func(sp *cSpace, l []byte, off int) {
				copy(sp.mem[len(sp.mem)-room:], sp.mem[off:][:64])
				binary.LittleEndian.PutUint64(l[ring.OffLinkMetaAddr:], sp.end()-room)
			})(t, sp, side)
			before := snapshot()
			require.Equal(t, cOK, l.do(t, "attach %s %d %d", side[:1], sp.metaAddr(off0), sp.dataAddr(off0)).rc)
			a := l.do(t, "follow %s", side[:1])
			require.Equal(t, [4]any{cFault, uint64(ring.OffMetaSize), true, uint64(room)}, [4]any{a.rc, a.off, a.next, a.value}, a.line)
			requireSameBytes(t, before, sp.mem, "a refused follow writes nothing")
		})
	}
}

// TestCRefFollowRandom: FuzzAgentFollow's inputs, drawn from a seed: link
// words, the next header, the cursors and the waiters word of the
// generation the agents are in, mostly near the honest values and now and
// then anything. The Go agent and the C agent (the sanitizer build) must
// do the same, by followBoth's measure, but where the C agent checks more
// at the follow, by design: a next generation whose data address, 64-byte
// header line, or regions as its header gives them are not wholly in the
// space is out of reach for C (YCQ_EFAULT, nothing written), before any
// check of its header; the Go agent reads what of it is there, leaves the
// data region to its caller, and meets the end at its first access past
// it.
func TestCRefFollowRandom(t *testing.T) {
	const rounds = 800
	sp := newCSpace(t, 2, 16, 16)
	l := startLinkDevice(t, "asan", sp)
	rng := rand.New(rand.NewPCG(13, 17))
	pick := func(keep uint64, p int, others ...uint64) uint64 {
		if rng.IntN(100) < p {
			return keep
		}
		if rng.IntN(8) == 0 {
			return rng.Uint64()
		}
		return others[rng.IntN(len(others))]
	}
	seen := map[string]int{}
	for round := range rounds {
		sp.reset()
		side := []string{"producer", "consumer"}[rng.IntN(2)]
		cfg := ring.Config{Slots: 8, SlotSize: 16, SingleProducer: true, SingleConsumer: true, Resizable: true, Generation: 1}
		q0, off0 := sp.take(t, cfg)
		cfg0 := cfg
		r, err := ring.NewResizableOn(q0)
		require.NoError(t, err)
		cfg.Generation, cfg.Slots = 2, []int{4, 8, 16}[rng.IntN(3)]
		q1, off1 := sp.take(t, cfg)
		require.NoError(t, r.ResizeTo(q1, sp.metaAddr(off1), sp.dataAddr(off1)))

		end, meta, data := sp.end(), sp.metaAddr(off1), sp.dataAddr(off1)
		link := sp.mem[off0:][:ring.OffDescs]
		le32 := func(off int, v uint64) { binary.LittleEndian.PutUint32(link[off:], uint32(v)) }
		le64 := func(off int, v uint64) { binary.LittleEndian.PutUint64(link[off:], v) }
		le32(ring.OffLinkNext, pick(2, 75, 0, 1, 3, math.MaxUint32))
		le32(ring.OffLinkSlots, pick(uint64(cfg.Slots), 75, 2, 4, 8, 16, 32, 12, 0, 1, 1<<24, 1<<25))
		metaAt := pick(meta, 60, meta+4, meta+8, meta-8, meta+64, sp.metaAddr(off0), end-64, end-48, end-256,
			end-512, end-8, end, agentBase-8, 0, 1<<62, ^uint64(0)-7, agentBase+uint64(rng.IntN(len(sp.mem)))&^7)
		le64(ring.OffLinkMetaAddr, metaAt)
		dataAt := pick(data, 75, 0, end, end-16, end-128, agentBase-16, agentBase+uint64(rng.IntN(len(sp.mem))))
		le64(ring.OffLinkDataAddr, dataAt)
		if to := int(metaAt - agentBase); metaAt != meta && metaAt >= agentBase && metaAt < end &&
			(to >= off0+cfg0.MetaSize() || to+64 <= off0) && rng.IntN(2) == 0 {
			// The next header where the link points (as much as fits),
			// but not over the metadata the agents attach to.
			copy(sp.mem[to:], sp.mem[off1:][:64])
		}
		for range rng.IntN(3) {
			// A byte of the next header, or a whole field, rewritten.
			o := off1 + rng.IntN(48)
			if rng.IntN(2) == 0 {
				sp.mem[o] = byte(rng.Uint32())
			} else {
				binary.LittleEndian.PutUint32(sp.mem[o&^3:], uint32(pick(0, 20, 1, 2, 3, 4, 7, 8, 16, 0x31514359)))
			}
		}
		k := uint64(rng.IntN(9))
		word64(sp.mem, off0+ring.OffProdCursor).Store(pick(0, 40, ring.Sealed, ring.Sealed|k, k, ring.Sealed|rng.Uint64()))
		word64(sp.mem, off0+ring.OffConsCursor).Store(pick(0, 60, k, k+1))
		if side == "consumer" && rng.IntN(2) == 0 {
			// Sealed at the consumer's position: drained, so the consumer
			// reads the link.
			word64(sp.mem, off0+ring.OffProdCursor).Store(ring.Sealed | word64(sp.mem, off0+ring.OffConsCursor).Load())
		}
		if rng.IntN(8) == 0 {
			word32(sp.mem, off0+ring.OffItemsWaiters).Store(1)
		}

		goOut, cOut, before, goMem, cMem := followBoth(t, l, side, off0)
		// Where C checks more, or first: its reach hook takes both
		// addresses before the header is read, and it checks the header
		// line whole before a word of it.
		reachOut := metaAt < agentBase || metaAt >= end || end-metaAt < 64 || dataAt < agentBase || dataAt >= end
		if cOut.code == cFault && goOut.code != cFault {
			// Only there, or where the regions the header gives are not
			// all in the space.
			regionsOut := false
			if goOut.code == cMoved {
				h, err := ring.ReadHeader(sp.memory(), goOut.link.MetaAddr)
				require.NoError(t, err, "Go followed to a header it read")
				da := goOut.link.DataAddr
				regionsOut = end-goOut.link.MetaAddr < uint64(h.MetaSize()) ||
					da < agentBase || da >= end || end-da < uint64(h.DataSize())
			}
			require.True(t, reachOut || regionsOut, "round %d, %s: C out of reach where Go %v", round, side, goOut)
			requireSameBytes(t, before, cMem, "round %d, %s: a refused follow writes nothing", round, side)
			seen["C out of reach, Go not"]++
			continue
		}
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			requireSameFollow(t, side, off0, goOut, cOut, goMem, cMem)
		})
		seen[fmt.Sprintf("%s %d", side, goOut.code)]++
	}
	t.Logf("outcomes (side, code): %v", seen)
	for _, side := range []string{"producer", "consumer"} {
		for _, code := range []int{cMoved, cOK, cCorrupt, cIncompatible, cFault} {
			require.NotZero(t, seen[fmt.Sprintf("%s %d", side, code)], "rounds where both agents' follow gave %d as %s", code, side)
		}
	}
	require.NotZero(t, seen["C out of reach, Go not"])
}
