package usbdev

import (
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"testing"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

var (
	recFormat  = record.Format{Sum: true}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// stream is one pair's part of a streaming test: records records of
// (pair, sequence, checksum), sequence numbers from seq0, sent perTransfer
// a transfer with at most OutWindow transfers uncompleted, and answered
// through inFlight IN requests of inLen bytes each.
type stream struct {
	pair        int
	engine      uint32
	recSize     int
	records     int
	perTransfer int
	inFlight    int
	inLen       int
	seq0        uint64
}

// run streams s through the device and verifies every response: each
// exactly once, in order, with the bytes its engine makes of the record.
// The IN requests still held at the end are cancelled (their completions
// must say so). It is safe to run from any goroutine.
func (s stream) run(g *guest) error {
	errc := make(chan error, 2)
	go func() { errc <- s.produce(g) }()
	go func() { errc <- s.consume(g) }()
	return errors.Join(<-errc, <-errc)
}

func (s stream) produce(g *guest) error {
	ep := usbproto.OutEndpoint(s.pair)
	outstanding, sent := map[uint64]int{}, 0
	for sent < s.records || len(outstanding) > 0 {
		if sent < s.records && len(outstanding) < usbproto.OutWindow {
			k := min(s.perTransfer, s.records-sent)
			buf := make([]byte, k*s.recSize)
			for i := range k {
				recFormat.Fill(buf[i*s.recSize:][:s.recSize], record.Header{Seq: s.seq0 + uint64(sent+i), Producer: uint32(s.pair)})
			}
			id := g.id()
			outstanding[id] = len(buf)
			if err := g.bulkOut(ep, id, buf); err != nil {
				return fmt.Errorf("pair %d: OUT: %w", s.pair, err)
			}
			sent += k
			continue
		}
		r, err := g.next(g.bulk[ep], "an OUT completion")
		if err != nil {
			return fmt.Errorf("pair %d: %w", s.pair, err)
		}
		c := r.body.(redir.BulkPacket)
		n, ok := outstanding[r.hdr.ID]
		if !ok || c.Status != redir.StatusSuccess || int(c.Length) != n {
			return fmt.Errorf("pair %d: OUT completion id %d status %d length %d (sent %d bytes, known %v)", s.pair, r.hdr.ID, c.Status, c.Length, n, ok)
		}
		delete(outstanding, r.hdr.ID)
	}
	return nil
}

func (s stream) consume(g *guest) error {
	ep := usbproto.InEndpoint(s.pair)
	respSize := usbproto.ResponseSize(s.engine, s.recSize)
	want := s.records
	outstanding := map[uint64]bool{}
	post := func() error {
		for len(outstanding) < s.inFlight {
			id := g.id()
			outstanding[id] = true
			if err := g.bulkIn(ep, id, s.inLen); err != nil {
				return fmt.Errorf("pair %d: IN: %w", s.pair, err)
			}
		}
		return nil
	}
	if err := post(); err != nil {
		return err
	}
	check := make([]byte, s.recSize)
	for got := 0; got < want; {
		r, err := g.next(g.bulk[ep], "an IN completion")
		if err != nil {
			return fmt.Errorf("pair %d after %d responses: %w", s.pair, got, err)
		}
		c := r.body.(redir.BulkPacket)
		if !outstanding[r.hdr.ID] || c.Status != redir.StatusSuccess || len(c.Data) == 0 || len(c.Data)%respSize != 0 || len(c.Data) > s.inLen || int(c.Length) != len(c.Data) {
			return fmt.Errorf("pair %d: IN completion id %d (ours: %v) status %d with %d bytes", s.pair, r.hdr.ID, outstanding[r.hdr.ID], c.Status, len(c.Data))
		}
		delete(outstanding, r.hdr.ID)
		for at := 0; at < len(c.Data); at += respSize {
			seq := s.seq0 + uint64(got)
			if got >= want {
				return fmt.Errorf("pair %d: response %d beyond the %d sent", s.pair, got, want)
			}
			if err := s.verify(c.Data[at:at+respSize], seq, check); err != nil {
				return fmt.Errorf("pair %d response %d: %w", s.pair, got, err)
			}
			got++
		}
		if got < want {
			if err := post(); err != nil {
				return err
			}
		}
	}
	// The requests left over hold nothing: cancel them.
	for id := range outstanding {
		if err := g.send(id, redir.CancelDataPacket{}); err != nil {
			return err
		}
	}
	for len(outstanding) > 0 {
		r, err := g.next(g.bulk[ep], "a cancelled IN completion")
		if err != nil {
			return fmt.Errorf("pair %d: %w", s.pair, err)
		}
		c := r.body.(redir.BulkPacket)
		if !outstanding[r.hdr.ID] || c.Status != redir.StatusCancelled || len(c.Data) != 0 {
			return fmt.Errorf("pair %d: after the stream, completion id %d status %d with %d bytes", s.pair, r.hdr.ID, c.Status, len(c.Data))
		}
		delete(outstanding, r.hdr.ID)
	}
	return nil
}

// verify checks one response to the record (pair, seq).
func (s stream) verify(resp []byte, seq uint64, scratch []byte) error {
	switch s.engine {
	case ycqdev.EngineEcho:
		h, err := recFormat.Check(resp)
		if err != nil {
			return err
		}
		if h.Producer != uint32(s.pair) || h.Seq != seq {
			return fmt.Errorf("record (pair %d, seq %d), want (%d, %d)", h.Producer, h.Seq, s.pair, seq)
		}
	case ycqdev.EngineCRC32C:
		recFormat.Fill(scratch, record.Header{Seq: seq, Producer: uint32(s.pair)})
		if sum, n := le.Uint32(resp), le.Uint32(resp[4:]); sum != crc32.Checksum(scratch, castagnoli) || n != uint32(s.recSize) {
			return fmt.Errorf("crc32c %#08x length %d, want %#08x %d", sum, n, crc32.Checksum(scratch, castagnoli), s.recSize)
		}
	default:
		return fmt.Errorf("no check for engine %d", s.engine)
	}
	return nil
}

// runAll runs streams concurrently.
func runAll(t *testing.T, g *guest, ss ...stream) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(ss))
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.run(g)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// twoPairs is the main workload: pair 0 through echo, pair 1 through
// crc32c, 10,000 records and more each, with many IN requests in flight.
func twoPairs(n int, seq0 uint64) []stream {
	return []stream{
		{pair: 0, engine: ycqdev.EngineEcho, recSize: 64, records: n, perTransfer: 16, inFlight: 16, inLen: 24 * 64, seq0: seq0},
		{pair: 1, engine: ycqdev.EngineCRC32C, recSize: 128, records: n, perTransfer: 32, inFlight: 12, inLen: 40 * devicemodel.CRCResponseSize, seq0: seq0},
	}
}

func setQueues(g *guest, ss []stream) {
	for _, s := range ss {
		g.setQueue(s.pair, s.engine, s.recSize)
	}
}

// TestStreamTwoPairs: the guest enumerates the device as QEMU's guest
// would (descriptors by control packets, set_configuration), sets up two
// queue pairs, and streams 12,000 records through each, echo and crc32c,
// with many IN requests in flight; every response is verified (none lost,
// duplicated, reordered or garbled) and the counters agree to the byte.
func TestStreamTwoPairs(t *testing.T) {
	d, g, _ := start(t, Options{})
	enumerate(t, g, DefaultPairs)
	ss := twoPairs(12000, 0)
	setQueues(g, ss)
	runAll(t, g, ss...)
	c := g.counters()
	for _, s := range ss {
		pc := c.Pairs[s.pair]
		rs := usbproto.ResponseSize(s.engine, s.recSize)
		want := usbproto.PairCounters{Requests: uint64(s.records), Responses: uint64(s.records),
			OutBytes: uint64(s.records * s.recSize), InBytes: uint64(s.records * rs)}
		if pc != want {
			t.Errorf("pair %d counters %+v, want %+v", s.pair, pc, want)
		}
	}
	if c.BadControl != 0 || c.BadPackets != 0 {
		t.Errorf("counters %+v: nothing should have been refused", c)
	}
	if got := d.Counters(); fmt.Sprint(got) != fmt.Sprint(c) {
		t.Errorf("Device.Counters %+v, GET_COUNTERS %+v", got, c)
	}
}

// TestLargeRecords streams records whose rings have fewer slots than the
// engine loop's batch (16 KiB: 32 slots; 64 KiB: 8 slots), through echo
// and the source engine, and through crc32c.
func TestLargeRecords(t *testing.T) {
	_, g, _ := start(t, Options{})
	g.setConfiguration(1)
	for _, size := range []int{16 << 10, 64 << 10} {
		ss := []stream{
			{pair: 0, engine: ycqdev.EngineEcho, recSize: size, records: 300, perTransfer: usbproto.RecordsPerTransfer(size), inFlight: 6, inLen: 2 * size},
			{pair: 1, engine: ycqdev.EngineCRC32C, recSize: size, records: 300, perTransfer: 2, inFlight: 4, inLen: 64},
		}
		setQueues(g, ss)
		runAll(t, g, ss...)
		g.reset()
	}
}
