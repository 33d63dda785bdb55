package hostdriver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ycq-dev/ycq/dma"
)

// The resize page: a resizable driver's resize counters (ResizeStats) in a
// memory file of its own, the memfd ResizePageName, where another process
// (`ycq stat -pid`) reads them. This file is the only definition of its
// layout. Little-endian; a header line, then one 64-byte line a pair:
//
//	offset    size  field
//	0         4     magic ResizePageMagic ("YCQZ")
//	4         4     version ResizePageVersion
//	8         4     pairs
//	12..63          zero
//	64*(1+i)        pair i's line:
//	  +0      4     newest generation
//	  +4      4     its slot count
//	  +8      8     resizes started
//	  +16     8     resizes completed
//	  +24     8     resizes rolled back (the device did not acknowledge)
//	  +32     8     resizes failed after the generation was named
//	  +40     8     nanoseconds spent waiting for old generations to drain
//	  +48..63       zero
//
// The driver stores each word as it changes (one writer: the pair's
// Resize); a reader may see a resize's words half updated, so it is a
// monitoring view, as ring.Stats is.
const (
	ResizePageName    = "ycq-resizes"
	ResizePageMagic   = 0x5a514359 // "YCQZ"
	ResizePageVersion = 1

	rpOffMagic   = 0
	rpOffVersion = 4
	rpOffPairs   = 8
	rpLine       = 64

	rpOffGeneration = 0
	rpOffSlots      = 4
	rpOffStarted    = 8
	rpOffCompleted  = 16
	rpOffRolledBack = 24
	rpOffFailed     = 32
	rpOffDraining   = 40
)

// ErrResizePage: bytes that are not a resize page this version reads.
var ErrResizePage = errors.New("hostdriver: not a resize page")

// PairResizes is one pair's line of a resize page.
type PairResizes struct {
	Pair       int           `json:"pair"`
	Generation uint32        `json:"generation"`
	Slots      int           `json:"slots"`
	Started    uint64        `json:"started"`
	Completed  uint64        `json:"completed"`
	RolledBack uint64        `json:"rolled_back"`
	Failed     uint64        `json:"failed"`
	Draining   time.Duration `json:"draining_ns"`
}

// ResizePageSize is the bytes of a resize page of pairs pairs.
func ResizePageSize(pairs int) int { return rpLine * (1 + pairs) }

// FormatResizePage lays an empty resize page of pairs pairs out in b, which
// must hold ResizePageSize(pairs) bytes.
func FormatResizePage(b []byte, pairs int) error {
	if pairs < 0 || len(b) < ResizePageSize(pairs) {
		return fmt.Errorf("%w: a page of %d pairs in %d bytes", ErrConfig, pairs, len(b))
	}
	clear(b[:ResizePageSize(pairs)])
	binary.LittleEndian.PutUint32(b[rpOffMagic:], ResizePageMagic)
	binary.LittleEndian.PutUint32(b[rpOffVersion:], ResizePageVersion)
	binary.LittleEndian.PutUint32(b[rpOffPairs:], uint32(pairs))
	return nil
}

// PutPairResizes writes r into its pair's line of the page b (formatted
// with more than r.Pair pairs).
func PutPairResizes(b []byte, r PairResizes) {
	l := b[rpLine*(1+r.Pair):][:rpLine]
	binary.LittleEndian.PutUint32(l[rpOffGeneration:], r.Generation)
	binary.LittleEndian.PutUint32(l[rpOffSlots:], uint32(r.Slots))
	binary.LittleEndian.PutUint64(l[rpOffStarted:], r.Started)
	binary.LittleEndian.PutUint64(l[rpOffCompleted:], r.Completed)
	binary.LittleEndian.PutUint64(l[rpOffRolledBack:], r.RolledBack)
	binary.LittleEndian.PutUint64(l[rpOffFailed:], r.Failed)
	binary.LittleEndian.PutUint64(l[rpOffDraining:], uint64(r.Draining))
}

// DecodeResizePage reads a resize page that another process wrote, and
// may have written anything into: the magic, the version and a pair count
// that fits b are checked, and every line is taken as it reads; anything
// else is ErrResizePage, with why.
func DecodeResizePage(b []byte) ([]PairResizes, error) {
	if len(b) < rpLine {
		return nil, fmt.Errorf("%w: %d bytes, under the %d of the header", ErrResizePage, len(b), rpLine)
	}
	if m := binary.LittleEndian.Uint32(b[rpOffMagic:]); m != ResizePageMagic {
		return nil, fmt.Errorf("%w: magic %#x", ErrResizePage, m)
	}
	if v := binary.LittleEndian.Uint32(b[rpOffVersion:]); v != ResizePageVersion {
		return nil, fmt.Errorf("%w: version %d, this reads %d", ErrResizePage, v, ResizePageVersion)
	}
	n := binary.LittleEndian.Uint32(b[rpOffPairs:])
	if uint64(n) > uint64(len(b)/rpLine-1) {
		return nil, fmt.Errorf("%w: %d pairs in %d bytes", ErrResizePage, n, len(b))
	}
	rs := make([]PairResizes, n)
	for i := range rs {
		l := b[rpLine*(1+i):][:rpLine]
		rs[i] = PairResizes{Pair: i,
			Generation: binary.LittleEndian.Uint32(l[rpOffGeneration:]),
			Slots:      int(binary.LittleEndian.Uint32(l[rpOffSlots:])),
			Started:    binary.LittleEndian.Uint64(l[rpOffStarted:]),
			Completed:  binary.LittleEndian.Uint64(l[rpOffCompleted:]),
			RolledBack: binary.LittleEndian.Uint64(l[rpOffRolledBack:]),
			Failed:     binary.LittleEndian.Uint64(l[rpOffFailed:]),
			Draining:   time.Duration(min(binary.LittleEndian.Uint64(l[rpOffDraining:]), 1<<63-1)),
		}
	}
	return rs, nil
}

// newResizePage makes the driver's resize page, for a resizable driver.
func (d *Driver) newResizePage(pairs int) error {
	r, err := dma.Memfd(ResizePageName, max(ResizePageSize(pairs), dma.PageSize), dma.Options{})
	if err != nil {
		return err
	}
	if err := FormatResizePage(r.Bytes(), pairs); err != nil {
		return errors.Join(err, r.Close())
	}
	d.rpMu.Lock()
	d.rpage = r
	d.rpMu.Unlock()
	return nil
}

// noteResizes stores the pair's resize counters in the driver's resize
// page, after a resize began, ended, or was rolled back.
func (p *Pair) noteResizes() {
	d := p.d
	st := p.ResizeStats()
	d.rpMu.Lock()
	defer d.rpMu.Unlock()
	if d.rpage != nil {
		PutPairResizes(d.rpage.Bytes(), PairResizes{Pair: p.index, Generation: st.Generation, Slots: st.Slots,
			Started: st.Started, Completed: st.Resizes, RolledBack: st.RolledBack, Failed: st.Failed, Draining: st.Draining})
	}
}
