package usbdev

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ycq-dev/ycq/devicemodel"
	"github.com/ycq-dev/ycq/internal/record"
	"github.com/ycq-dev/ycq/internal/testenv"
	"github.com/ycq-dev/ycq/usb/redir"
	"github.com/ycq-dev/ycq/ycqdev"
	"github.com/ycq-dev/ycq/ycqdev/usbproto"
)

// TestBackpressure: a guest that sends OUT transfers and no IN requests
// fills the receive and transmit rings; the next OutWindow transfers are
// held, their completions delayed, while the device still answers control
// requests; IN requests then drain everything, every record verified and
// every held transfer completed. One transfer more than the window stops
// the device reading, with nothing more buffered, until Close.
func TestBackpressure(t *testing.T) {
	d, g, errc := start(t, Options{})
	g.setConfiguration(1)
	const recSize, k = 64, 16
	g.setQueue(0, ycqdev.EngineEcho, recSize)
	fit := 2 * usbproto.RingSlots(recSize) / k
	sent := fit + usbproto.OutWindow
	held := map[uint64]bool{}
	for i := range sent {
		buf := make([]byte, k*recSize)
		for j := range k {
			recFormat.Fill(buf[j*recSize:][:recSize], record.Header{Seq: uint64(i*k + j)})
		}
		id := g.id()
		if i >= fit {
			held[id] = true
		}
		if err := g.bulkOut(usbproto.OutEndpoint(0), id, buf); err != nil {
			t.Fatal(err)
		}
	}
	for i := range fit {
		id, c := g.completion(usbproto.OutEndpoint(0))
		if c.Status != redir.StatusSuccess || held[id] {
			t.Fatalf("completion %d: id %d status %d (a held transfer: %v)", i, id, c.Status, held[id])
		}
	}
	g.sync() // the device still reads: the window is not exceeded
	d.mu.Lock()
	staged, waiting := len(d.pairs[0].q.staged), d.waiting.Load()
	d.mu.Unlock()
	if staged != usbproto.OutWindow || waiting != 0 {
		t.Fatalf("%d transfers staged, reader waiting %d; want %d and 0", staged, waiting, usbproto.OutWindow)
	}
	g.quiet("while the window is full")

	s := stream{pair: 0, engine: ycqdev.EngineEcho, recSize: recSize, records: sent * k, inFlight: 6, inLen: 40 * recSize}
	if err := s.consume(g); err != nil {
		t.Fatal(err)
	}
	for range usbproto.OutWindow {
		id, c := g.completion(usbproto.OutEndpoint(0))
		if c.Status != redir.StatusSuccess || !held[id] || int(c.Length) != k*recSize {
			t.Fatalf("held transfer's completion: id %d status %d length %d", id, c.Status, c.Length)
		}
		delete(held, id)
	}

	// Beyond the window: the reader stops, holding OutWindow, no more.
	// (The guest writes from a goroutine: the device no longer reads, so
	// the socket fills.)
	wrote := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < fit+usbproto.OutWindow+1 && err == nil; i++ {
			err = g.bulkOut(usbproto.OutEndpoint(0), g.id(), make([]byte, k*recSize))
		}
		wrote <- err
	}()
	slots := usbproto.RingSlots(recSize)
	testenv.WaitFor(t, "both rings full, the window staged and the reader waiting", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		q := d.pairs[0].q
		return d.waiting.Load() == 1 && len(q.staged) == usbproto.OutWindow && q.tx.Len() == slots && q.rx.Len() >= slots-engineBatch
	})
	// Nothing beyond the window was taken: the only completions are those
	// of the transfers the rings took (the reader sent them all before it
	// stopped, and no one else can complete an OUT transfer now).
	for i := range fit {
		if _, c := g.completion(usbproto.OutEndpoint(0)); c.Status != redir.StatusSuccess {
			t.Fatalf("completion %d: status %d", i, c.Status)
		}
	}
	if n := len(g.bulk[usbproto.OutEndpoint(0)]); n != 0 {
		t.Fatalf("%d more OUT completions", n)
	}
	d.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
	errc <- nil // for start's cleanup
	<-wrote     // nil, or the error of writing to a closed device
}

// TestSourceAndSink: the source engine answers one record with as many
// full-slot responses as its first word asks for (3,000 here, far more
// than a ring holds, produced as IN requests free the slots); the sink
// engine takes records and answers none, its IN requests held until
// cancelled.
func TestSourceAndSink(t *testing.T) {
	d, g, _ := start(t, Options{})
	g.setConfiguration(1)
	const recSize = 256
	g.setQueue(0, ycqdev.EngineSource, recSize)
	g.setQueue(1, ycqdev.EngineSink, 128)
	if s := g.queueState(1); s.ResponseSize != 0 || s.Engine != ycqdev.EngineSink {
		t.Fatalf("sink pair: %+v", s)
	}
	req := make([]byte, 2*recSize)
	le.PutUint32(req, 3000) // record 0: 3,000 responses; record 1: 0 means 1
	if err := g.bulkOut(usbproto.OutEndpoint(0), g.id(), req); err != nil {
		t.Fatal(err)
	}
	if _, c := g.completion(usbproto.OutEndpoint(0)); c.Status != redir.StatusSuccess {
		t.Fatalf("source OUT: %d", c.Status)
	}
	want := make([]byte, recSize)
	got, ins := 0, 0
	for got < 3001 {
		for ; ins < 8; ins++ {
			if err := g.bulkIn(usbproto.InEndpoint(0), g.id(), 7*recSize); err != nil {
				t.Fatal(err)
			}
		}
		_, c := g.completion(usbproto.InEndpoint(0))
		ins--
		if c.Status != redir.StatusSuccess || len(c.Data)%recSize != 0 {
			t.Fatalf("source IN: status %d, %d bytes", c.Status, len(c.Data))
		}
		for at := 0; at < len(c.Data); at += recSize {
			k := uint64(got)
			if got == 3000 {
				k = 0 // the second record's only response
			}
			devicemodel.SourcePattern(want, k)
			if !bytes.Equal(c.Data[at:at+recSize], want) {
				t.Fatalf("source response %d is not pattern %d", got, k)
			}
			got++
		}
	}
	if got != 3001 {
		t.Fatalf("%d source responses, want 3001", got)
	}
	// Sink.
	for range 50 {
		if err := g.bulkOut(usbproto.OutEndpoint(1), g.id(), make([]byte, 8*128)); err != nil {
			t.Fatal(err)
		}
		if _, c := g.completion(usbproto.OutEndpoint(1)); c.Status != redir.StatusSuccess {
			t.Fatalf("sink OUT: %d", c.Status)
		}
	}
	id := g.id()
	if err := g.bulkIn(usbproto.InEndpoint(1), id, 1024); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the sink's records to be taken", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.pairs[1].q.rx.Len() == 0
	})
	g.raw(redir.TypeCancelDataPacket, id, nil)
	g.expectBulk("the sink's IN request", usbproto.InEndpoint(1), id, redir.StatusCancelled)
	c := g.counters()
	if c.Pairs[1].Requests != 400 || c.Pairs[1].Responses != 0 || c.Pairs[0].Responses != 3001 {
		t.Fatalf("counters %+v", c)
	}
	// The rest of pair 0's IN requests stay held; Close drops them.
}

// failing is an engine that fails on a record starting with 0xFF.
type failing struct{}

func (failing) Responses([]byte) int { return 1 }
func (failing) Respond(in []byte, _ int, out []byte) (int, error) {
	if in[0] == 0xFF {
		return 0, errors.New("a record this engine refuses")
	}
	return copy(out, in), nil
}

// TestEngineFailure: an engine error stops its pair (GET_QUEUE: failed),
// halts both endpoints and stalls what the pair holds; the other pair
// runs on; RESET and SET_QUEUE bring the pair back.
func TestEngineFailure(t *testing.T) {
	engines := devicemodel.Engines()
	engines[7] = failing{}
	d, g, _ := start(t, Options{Engines: engines})
	g.setConfiguration(1)
	g.setQueue(0, 7, 64)
	g.setQueue(1, ycqdev.EngineCRC32C, 64)
	ins := []uint64{g.id(), g.id()}
	for _, id := range ins {
		if err := g.bulkIn(usbproto.InEndpoint(0), id, 64); err != nil {
			t.Fatal(err)
		}
	}
	good := make([]byte, 64)
	bad := bytes.Repeat([]byte{0xFF}, 64)
	if err := g.bulkOut(usbproto.OutEndpoint(0), g.id(), append(good, bad...)); err != nil {
		t.Fatal(err)
	}
	if _, c := g.completion(usbproto.OutEndpoint(0)); c.Status != redir.StatusSuccess {
		t.Fatalf("OUT: %d", c.Status)
	}
	// The good record's response completes the first IN request; the bad
	// one fails the pair, which stalls the second.
	if _, c := g.completion(usbproto.InEndpoint(0)); c.Status != redir.StatusSuccess || !bytes.Equal(c.Data, good) {
		t.Fatalf("first IN: status %d, % x", c.Status, c.Data)
	}
	if _, c := g.completion(usbproto.InEndpoint(0)); c.Status != redir.StatusStall {
		t.Fatalf("second IN: status %d", c.Status)
	}
	if s := g.queueState(0); s.State != usbproto.QueueFailed|usbproto.QueueOutHalted|usbproto.QueueInHalted {
		t.Fatalf("failed pair: %+v", s)
	}
	s := stream{pair: 1, engine: ycqdev.EngineCRC32C, recSize: 64, records: 1000, perTransfer: 10, inFlight: 4, inLen: 80}
	if err := s.run(g); err != nil {
		t.Fatalf("the other pair: %v", err)
	}
	g.reset()
	g.setQueue(0, ycqdev.EngineEcho, 64)
	s = stream{pair: 0, engine: ycqdev.EngineEcho, recSize: 64, records: 1000, perTransfer: 10, inFlight: 4, inLen: 640}
	if err := s.run(g); err != nil {
		t.Fatalf("after RESET: %v", err)
	}
	_ = d
}

// TestContractMatchesDevice: usbproto's bmRequestType values are the
// setup bits desc.go names, and devicemodel's built-in engines answer as
// usbproto tells a host they do (how many responses, of what size).
func TestContractMatchesDevice(t *testing.T) {
	if usbproto.VendorOut != reqTypeVendor|reqRecipDevice || usbproto.VendorIn != reqDirIn|reqTypeVendor|reqRecipDevice {
		t.Fatalf("bmRequestType %#02x and %#02x", usbproto.VendorOut, usbproto.VendorIn)
	}
	if usbproto.ResponseSize(ycqdev.EngineCRC32C, 4096) != devicemodel.CRCResponseSize || usbproto.MaxSourceResponses != devicemodel.SourceMax {
		t.Fatalf("crc32c responses of %d bytes, source at most %d", usbproto.ResponseSize(ycqdev.EngineCRC32C, 4096), usbproto.MaxSourceResponses)
	}
	le32 := func(n uint32) []byte { return le.AppendUint32(make([]byte, 0, 64), n) }
	records := [][]byte{nil, {1, 2, 3}, le32(0), le32(1), le32(9), le32(1 << 20), le32(1<<20 + 1), le32(^uint32(0))}
	for id, e := range devicemodel.Engines() {
		for _, rec := range records {
			if got, want := usbproto.Responses(id, rec), e.Responses(rec); got != want {
				t.Errorf("engine %d, record % x: usbproto says %d responses, the engine gives %d", id, rec, got, want)
			}
		}
	}
}
